//! The hot path's parts, micro-benchmarked: each of `abi::MICRO_PROGRAMS` (socket filters that
//! call the code the hooks call, on the same maps) run by the kernel `runs` times per
//! `BPF_PROG_TEST_RUN`, which reports the mean time per run; rounds interleave the programs so
//! that drift hits them alike. Nothing is attached.

use anyhow::{Context as _, Result, anyhow};
use aya::programs::{SocketFilter, TestRun, TestRunOptions};
use netpoll_ebpf::abi::MICRO_PROGRAMS;

use super::Probes;

/// One program's mean ns per run, one sample per round.
pub struct MicroSamples {
    pub program: &'static str,
    pub what: &'static str,
    pub ns_per_run: Vec<f64>,
}

impl Probes {
    /// Loads the micro programs and runs each `runs` times per round, `rounds` rounds.
    pub fn micro_costs(&mut self, rounds: usize, runs: u32) -> Result<Vec<MicroSamples>> {
        for (program, _) in MICRO_PROGRAMS {
            let p: &mut SocketFilter = self
                .ebpf
                .program_mut(program)
                .ok_or_else(|| anyhow!("program {program} is missing from the BPF object"))?
                .try_into()?;
            p.load().with_context(|| format!("loading {program}"))?;
        }
        // A minimal Ethernet frame's worth: the programs read only its length.
        let packet = [0u8; 64];
        let mut samples: Vec<MicroSamples> = MICRO_PROGRAMS
            .iter()
            .map(|&(program, what)| MicroSamples {
                program,
                what,
                ns_per_run: Vec::with_capacity(rounds),
            })
            .collect();
        let n = samples.len();
        for round in 0..rounds {
            for k in 0..n {
                let s = &mut samples[(k + round) % n];
                let p: &SocketFilter = self
                    .ebpf
                    .program(s.program)
                    .ok_or_else(|| anyhow!("program {} is missing", s.program))?
                    .try_into()?;
                let result = p
                    .test_run(TestRunOptions {
                        data_in: Some(&packet),
                        repeat: runs,
                        ..Default::default()
                    })
                    .with_context(|| format!("test run of {}", s.program))?;
                s.ns_per_run.push(result.duration.as_nanos() as f64);
            }
        }
        Ok(samples)
    }
}
