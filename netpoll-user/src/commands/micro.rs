//! `netpoll micro-costs` (hidden, for `cargo xtask bench overhead`): what each part of a
//! measured call costs in the kernel, from the micro programs ([`crate::probes::micro`]), and
//! the sum per measured call as the hooks use them.

use analysis::stats::{self, median};
use anyhow::Result;

use crate::probes::{Filter, Mode, Options, Probes};

#[derive(clap::Args)]
pub struct Args {
    /// Interleaved rounds; medians with 95 % intervals are reported.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Runs of each program per round (the kernel reports their mean).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

/// What the hooks run per measured call of a target, in micro programs: `sys_enter` looks up
/// the syscall table, asks who runs and the cached verdict (which looks up the call slot) and
/// reads the clock; `sys_exit` looks up the slot, reads the clock and accounts the call. Who
/// runs is asked of the kernel (`micro_pid_tgid`) once per context switch, not per call.
const ENTER: &[&str] = &["micro_syscall_table", "micro_verdict", "micro_clock"];
const EXIT: &[&str] = &["micro_current", "micro_clock", "micro_account"];
/// A bystander's syscall: the table and the verdict at entry, the verdict at exit.
const BYSTANDER: &[&str] = &["micro_syscall_table", "micro_verdict", "micro_verdict"];

pub fn run(args: Args) -> Result<i32> {
    crate::system::check_privileges()?;
    let mut probes = Probes::load(&Options {
        filter: Filter::Pids(Vec::new()),
        follow_children: false,
        hook: None,
        mode: Mode::Full {
            per_pid: false,
            sched: false,
            ready: false,
            stacks: None,
        },
        go: None,
        uring: false,
    })?;
    let samples = probes.micro_costs(args.rounds as usize, args.runs)?;
    let empty = &samples[0].ns_per_run;
    // Each round's figure less that round's empty run (interleaved: drift cancels).
    let net = |s: &[f64]| -> Vec<f64> { s.iter().zip(empty).map(|(x, e)| x - e).collect() };
    println!(
        "BPF_PROG_TEST_RUN, {} runs per program and round, {} interleaved rounds: ns per run \
         less the empty program's ({:.1} ns), median (95 % interval)",
        args.runs,
        args.rounds,
        median(empty)
    );
    for s in &samples[1..] {
        println!(
            "  {:<22} {:>18}  {}",
            s.program,
            stats::estimate(&net(&s.ns_per_run)).display(|v| format!("{v:.1}")),
            s.what
        );
    }
    let sum = |parts: &[&str]| -> Vec<f64> {
        (0..empty.len())
            .map(|round| {
                parts
                    .iter()
                    .filter_map(|p| samples.iter().find(|s| s.program == *p))
                    .map(|s| s.ns_per_run[round] - empty[round])
                    .sum()
            })
            .collect()
    };
    let (enter, exit, bystander) = (sum(ENTER), sum(EXIT), sum(BYSTANDER));
    let both: Vec<f64> = enter.iter().zip(&exit).map(|(a, b)| a + b).collect();
    let clocks: Vec<f64> = sum(&["micro_clock", "micro_clock"]);
    let fmt = |v: &[f64]| stats::estimate(v).display(|v| format!("{v:.1}"));
    println!("per measured call of a target, the parts as the hooks use them:");
    println!("  sys_enter {} ns: {}", fmt(&enter), ENTER.join(" + "));
    println!("  sys_exit  {} ns: {}", fmt(&exit), EXIT.join(" + "));
    println!(
        "  both      {} ns, of which the two clock reads {} ns ({:.0} %)",
        fmt(&both),
        fmt(&clocks),
        100.0 * median(&clocks) / median(&both)
    );
    println!(
        "a bystander's syscall: {} ns ({})",
        fmt(&bystander),
        BYSTANDER.join(" + ")
    );
    Ok(0)
}
