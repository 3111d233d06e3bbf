//! The Go view's programs (in netpoll's object with the rest): `--go`'s on the epoll_pwait
//! tracepoints, which attribute each network poll of the Go process to the user stack that made
//! it; `--go-exact`'s uprobes on runtime functions of that process; and the calibration that
//! measures what one uprobe hit costs on this machine before they are attached.

use std::{num::NonZeroU32, path::Path, time::Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{UProbe, uprobe::UProbeScope},
};
use netpoll_ebpf::abi::{
    GO_CALIBRATION_PROGRAM, GO_POLL_PROGRAMS, GoExact, GoPollKey, GoPollStats, maps,
};

use super::Probes;

/// `--go-exact`'s counts at one moment: the programs' totals, and `handoffp`'s callers (return
/// address, hand-offs).
#[derive(Clone)]
pub struct ExactCounts {
    pub counts: GoExact,
    pub handoffs: Vec<(u64, u64)>,
}

impl ExactCounts {
    /// What was counted since `before` (taken earlier from the same programs).
    pub fn since(&self, before: &ExactCounts) -> ExactCounts {
        let mut counts = self.counts;
        counts.add(&before.counts, -1);
        let handoffs = self
            .handoffs
            .iter()
            .map(|&(caller, n)| {
                let old = before
                    .handoffs
                    .iter()
                    .find(|h| h.0 == caller)
                    .map_or(0, |h| h.1);
                (caller, n.saturating_sub(old))
            })
            .filter(|h| h.1 > 0)
            .collect();
        ExactCounts { counts, handoffs }
    }
}

/// Where `--go-exact`'s probes go: a program of [`netpoll_ebpf::abi::GO_EXACT_HOOKS`] and the
/// file offset of the runtime function's first instruction.
pub struct UprobeSite {
    pub program: &'static str,
    pub file_offset: u64,
}

/// The function the calibration probes: netpoll's own, called in a loop with and without a
/// uprobe. Not inlined, not merged, kept.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn netpoll_uprobe_calibration(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(1)
}

/// Calls per calibration round: about 13 ms of probe hits at this machine's 13 µs each.
const CALIBRATION_CALLS: u64 = 1000;
const CALIBRATION_ROUNDS: usize = 3;

/// The polls of one site: the user stack (innermost first; empty when it could not be
/// taken), how the poll may wait, and what its calls did.
pub struct PollSite {
    pub frames: Vec<u64>,
    pub key: GoPollKey,
    pub stats: GoPollStats,
}

impl Probes {
    /// Attaches `--go`'s programs on the epoll_pwait tracepoints (exit first: a call is counted
    /// only when its entry was seen).
    pub(super) fn attach_go_polls(&mut self) -> Result<()> {
        for (program, event) in GO_POLL_PROGRAMS {
            self.attach_tracepoints(program, "syscalls", &[event])?;
        }
        self.go_polls = true;
        Ok(())
    }

    /// The Go process's network polls so far, by site.
    pub fn go_polls(&self) -> Result<Vec<PollSite>> {
        let polls: PerCpuHashMap<&MapData, GoPollKey, GoPollStats> =
            PerCpuHashMap::try_from(self.map(maps::GO_POLLS)?)?;
        let mut sites = Vec::new();
        for entry in polls.iter() {
            let (key, per_cpu) = entry?;
            let mut stats = GoPollStats::default();
            for v in per_cpu.iter() {
                stats.calls += v.calls;
                stats.events += v.events;
                stats.empty += v.empty;
                stats.time_ns += v.time_ns;
            }
            let frames = key.frames.iter().copied().filter(|&ip| ip != 0).collect();
            sites.push(PollSite { frames, key, stats });
        }
        Ok(sites)
    }
    /// Attaches `--go-exact`'s programs to `path` (the process's binary) for process `pid`
    /// only: the kernel plants its breakpoints in that process's mapping of the file alone.
    pub fn attach_go_exact(
        &mut self,
        pid: u32,
        path: &Path,
        sites: &[UprobeSite],
        polldesc: (u32, u32),
    ) -> Result<()> {
        let pid = NonZeroU32::new(pid).ok_or_else(|| anyhow!("--go-exact needs a process"))?;
        let mut layout: Array<&mut MapData, u32> =
            Array::try_from(self.map_mut(maps::GO_POLLDESC)?)?;
        layout.set(0, polldesc.0, 0)?;
        layout.set(1, polldesc.1, 0)?;
        for site in sites {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(site.program)
                .ok_or_else(|| anyhow!("program {} is missing from the BPF object", site.program))?
                .try_into()?;
            program.load()?;
            program
                .attach(site.file_offset, path, UProbeScope::OneProcess(pid))
                .with_context(|| {
                    format!(
                        "--go-exact: attaching a uprobe to {} at offset {:#x}",
                        path.display(),
                        site.file_offset
                    )
                })?;
        }
        Ok(())
    }

    /// `--go-exact`'s counts so far, over every CPU.
    pub fn go_exact_counts(&self) -> Result<ExactCounts> {
        let per_cpu: PerCpuArray<&MapData, GoExact> =
            PerCpuArray::try_from(self.map(maps::GO_EXACT)?)?;
        let values = per_cpu.get(&0, 0)?;
        let mut counts = values[0];
        for v in values.iter().skip(1) {
            counts.add(v, 1);
        }
        let handoffs: HashMap<&MapData, u64, u64> =
            HashMap::try_from(self.map(maps::GO_HANDOFFS)?)?;
        let handoffs = handoffs.iter().filter_map(Result::ok).collect();
        Ok(ExactCounts { counts, handoffs })
    }

    /// What one uprobe hit costs now, ns: [`netpoll_uprobe_calibration`] called in a loop
    /// without and with a probe (interleaved rounds, medians), the difference per call. The
    /// probe counts its hits: fewer than the calls is an error, not a number.
    pub fn uprobe_hit_cost(&mut self) -> Result<u64> {
        let offset = own_file_offset(netpoll_uprobe_calibration as *const () as u64)?;
        let program: &mut UProbe = self
            .ebpf
            .program_mut(GO_CALIBRATION_PROGRAM)
            .ok_or_else(|| anyhow!("program {GO_CALIBRATION_PROGRAM} is missing"))?
            .try_into()?;
        program.load()?;
        let pid = NonZeroU32::new(std::process::id()).expect("a process id is not 0");
        let time = || {
            let start = Instant::now();
            let mut x = 0;
            for _ in 0..CALIBRATION_CALLS {
                x = netpoll_uprobe_calibration(x);
            }
            std::hint::black_box(x);
            start.elapsed().as_nanos() as f64 / CALIBRATION_CALLS as f64
        };
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..CALIBRATION_ROUNDS {
            without.push(time());
            let link = program
                .attach(offset, "/proc/self/exe", UProbeScope::OneProcess(pid))
                .context("attaching the calibration uprobe to netpoll itself")?;
            with.push(time());
            program.detach(link)?;
        }
        let hits: Array<&MapData, u64> = Array::try_from(self.map(maps::GO_CALIBRATION)?)?;
        let expected = CALIBRATION_CALLS * CALIBRATION_ROUNDS as u64;
        if hits.get(&0, 0)? != expected {
            bail!(
                "the calibration uprobe fired {} times for {expected} calls",
                hits.get(&0, 0)?
            );
        }
        let cost = analysis::stats::median(&with) - analysis::stats::median(&without);
        Ok(cost.max(0.0) as u64)
    }
}

/// Where an address of netpoll's own code is in its executable file.
fn own_file_offset(address: u64) -> Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, _perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
            let (start, end) = range.split_once('-')?;
            let (start, end) = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            (start..end)
                .contains(&address)
                .then(|| Some(address - start + u64::from_str_radix(offset, 16).ok()?))?
        })
        .ok_or_else(|| anyhow!("netpoll's own code is not in /proc/self/maps"))
}
