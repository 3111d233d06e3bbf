//! `cargo xtask bench hooks`: where netpoll's cost goes, hook by hook.
//!
//! Two measurements. The floor by hook: do-nothing programs attached to one hook at a time
//! (`netpoll profile --empty-programs HOOK`), timed on the overhead benchmark's loops in
//! interleaved rounds: what the kernel charges for running any program on that event, which
//! every process on the machine pays, target or not. And netpoll's own programs, from the
//! kernel's BPF statistics (`--bpf-stats`: run count and run time of each program), with the
//! loop as a target and as a bystander: their ns per run minus the do-nothing programs' ns per
//! run (what the statistics themselves add, two clock reads) is the work netpoll does there.
//! That difference, first, in interleaved rounds with intervals for each targeting mode, lite
//! mode's context switch, and (`--baseline`) another netpoll binary; then by event, once.

use std::{path::Path, process::Command};

use analysis::{Results, results::ProgramCost, stats};
use anyhow::{Context as _, Result, bail};
use xtask::release_netpoll;

use super::overhead::{Case, Targeting, run_loop, watch};
use crate::setup;

/// One timed setup: do-nothing programs on these hooks (none: nothing attached).
struct Floor {
    name: &'static str,
    hooks: &'static str,
    /// `--sched`: the scheduler view's hooks are attached with the syscall hooks.
    sched: bool,
}

const SYSCALL_FLOORS: &[Floor] = &[
    Floor {
        name: "nothing attached",
        hooks: "",
        sched: false,
    },
    Floor {
        name: "sys_enter",
        hooks: "sys_enter",
        sched: false,
    },
    Floor {
        name: "sys_exit",
        hooks: "sys_exit",
        sched: false,
    },
    Floor {
        name: "sock_recv + sock_send",
        hooks: "sock_recv,sock_send",
        sched: false,
    },
    Floor {
        name: "all of netpoll's",
        hooks: "sys_enter,sys_exit,sock_recv,sock_send,switch",
        sched: false,
    },
];

const SWITCH_FLOORS: &[Floor] = &[
    Floor {
        name: "nothing attached",
        hooks: "",
        sched: false,
    },
    Floor {
        name: "sched_switch",
        hooks: "switch",
        sched: false,
    },
    Floor {
        name: "sched_waking",
        hooks: "wakeup",
        sched: false,
    },
    Floor {
        name: "irq, softirq, hrtimer entry+exit",
        hooks: "irq_entry,irq_exit,softirq_entry,softirq_exit,timer_entry,timer_exit",
        sched: false,
    },
    Floor {
        name: "all of --sched's",
        hooks: "",
        sched: true,
    },
];

pub fn hooks(
    rounds: usize,
    iterations: u64,
    baseline: Option<&Path>,
    compare_only: bool,
) -> Result<()> {
    setup::test_prerequisites()?;
    if let Some(b) = baseline
        && !b.is_file()
    {
        bail!("--baseline {}: no such file", b.display());
    }
    let netpoll = release_netpoll()?;
    let xtask = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("netpoll-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let compared = compare_costs(rounds, iterations, (&netpoll, baseline), &xtask, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    compared?;
    if compare_only {
        return Ok(());
    }
    for (case, floors) in [
        (Case::Syscalls, SYSCALL_FLOORS),
        (Case::Switches, SWITCH_FLOORS),
    ] {
        let iterations = case.iterations(iterations);
        timed_floors(case, floors, rounds, iterations, &netpoll, &xtask)?;
        // The syscall loop under the full mode; the switch loop under the scheduler view and
        // under lite mode (whose only per-switch cost is its sched_switch program).
        let modes: &[&[&str]] = match case {
            Case::Syscalls => &[&[]],
            Case::Switches => &[&["--sched"], &["--lite"]],
        };
        for mode in modes {
            program_costs(case, mode, iterations, &netpoll, &xtask)?;
        }
    }
    Ok(())
}

/// The floor of each hook: interleaved rounds, added ns per loop unit against nothing attached.
fn timed_floors(
    case: Case,
    floors: &[Floor],
    rounds: usize,
    iterations: u64,
    netpoll: &Path,
    xtask: &Path,
) -> Result<()> {
    let samples = super::interleaved(rounds, floors.len(), |round, i| {
        let f = &floors[i];
        let ns = run_loop(case, iterations, xtask, |pid, _| {
            if f.hooks.is_empty() && !f.sched {
                return Ok(None);
            }
            let mut cmd = Command::new(netpoll);
            cmd.args(["profile", "--quiet", "--pid", pid]);
            if f.sched {
                cmd.args(["--empty-programs", "--sched"]);
            } else {
                cmd.args(["--empty-programs", f.hooks]);
            }
            Ok(Some(watch(&mut cmd, "attached")?))
        })
        .with_context(|| format!("measuring do-nothing programs on {}", f.name))?
        .ns;
        eprintln!(
            "xtask: round {}/{rounds}: {:<34} {ns:>9.1} ns/{}",
            round + 1,
            f.name,
            case.unit()
        );
        Ok(ns)
    })?;
    println!(
        "\nThe floor by hook ({}): do-nothing programs on one hook at a time, median of {rounds} interleaved rounds",
        case.describe()
    );
    println!(
        "{:<34} {:>12} {:>28}",
        "hooks",
        format!("ns/{}", case.unit()),
        "added ns (95 % interval)"
    );
    for (f, s) in floors.iter().zip(&samples) {
        // Paired with the same round's "nothing attached", so slow drift cancels.
        let added = super::paired(s, &samples[0], |x, nothing| x - nothing);
        let added = if std::ptr::eq(f, &floors[0]) {
            "-".to_string()
        } else {
            stats::estimate(&added).display(|v| format!("{v:.0}"))
        };
        println!("{:<34} {:>12.1} {:>28}", f.name, stats::median(s), added);
    }
    Ok(())
}

/// netpoll's programs under the kernel's BPF statistics: one run of the loop each with
/// do-nothing programs, with netpoll watching the loop, and (syscall loop) watching another
/// process.
fn program_costs(
    case: Case,
    mode: &[&str],
    iterations: u64,
    netpoll: &Path,
    xtask: &Path,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("netpoll-bench-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let costs = program_costs_in(case, mode, iterations, netpoll, xtask, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    costs
}

fn program_costs_in(
    case: Case,
    mode: &[&str],
    iterations: u64,
    netpoll: &Path,
    xtask: &Path,
    dir: &Path,
) -> Result<()> {
    let run = |floor: bool, bystander: bool| -> Result<(Vec<ProgramCost>, f64)> {
        let setup = StatsSetup {
            sched: mode.contains(&"--sched"),
            lite: mode.contains(&"--lite"),
            floor,
            ..StatsSetup::new(case, Targeting::Pid, bystander)
        };
        stats_run(
            &setup,
            iterations,
            (netpoll, None),
            xtask,
            &dir.join("run.json"),
        )
    };
    let (empty, _) = run(true, false)?;
    let (target, own_cpu) = run(false, false)?;
    // The switch loop's threads always hand over to each other: as bystanders of the
    // scheduler view they would measure only its floor, but lite mode's switch program does
    // work for every task switched in.
    let bystander = if case == Case::Syscalls || mode.contains(&"--lite") {
        Some(run(false, true)?.0)
    } else {
        None
    };
    // What one loop unit (a syscall, a switch) makes each event fire.
    let units = (iterations * 2) as f64;
    println!(
        "\nnetpoll's programs ({}{}), kernel BPF statistics: ns per run, minus what the statistics add (a do-nothing program's ns per run)",
        case.describe(),
        if mode.is_empty() {
            String::new()
        } else {
            format!(", {}", mode.join(" "))
        }
    );
    println!(
        "{:<30} {:>10} {:>10} {:>12} {:>14} {:>16}",
        "event", "runs/unit", "empty", "netpoll", "its own work", "loop not target"
    );
    let by_event = |list: &[ProgramCost], event: &str| -> Option<ProgramCost> {
        list.iter().find(|p| p.event == event).cloned()
    };
    let mut own_total = 0.0;
    let mut rare = Vec::new();
    for t in &target {
        let per_unit = t.runs as f64 / units;
        // Events that fire less than once per 100 units (a thread's exit, an interrupt) cost
        // nothing per unit, and their few runs say little: named, not tabled.
        let Some(empty) = by_event(&empty, &t.event).filter(|_| per_unit >= 0.01) else {
            if t.runs > 0 {
                rare.push(t.event.clone());
            }
            continue;
        };
        let base = empty.ns_per_run();
        let own = t.ns_per_run() - base;
        own_total += own.max(0.0) * per_unit;
        let bystander = bystander
            .as_ref()
            .and_then(|b| by_event(b, &t.event))
            .filter(|b| b.runs > 0)
            .map_or("-".to_string(), |b| format!("{:.1}", b.ns_per_run() - base));
        println!(
            "{:<30} {:>10.3} {:>10.1} {:>12.1} {:>14.1} {:>16}",
            t.event,
            per_unit,
            base,
            t.ns_per_run(),
            own,
            bystander
        );
    }
    println!(
        "netpoll's own work per {}: {own_total:.0} ns (over the floor of its hooks); its \
         process (user space, every thread): {:.1} ms of CPU per second of collection",
        case.unit(),
        own_cpu
    );
    if !rare.is_empty() {
        println!(
            "(left out, firing less than once per 100 {}: {})",
            match case {
                Case::Syscalls => "syscalls",
                Case::Switches => "switches",
            },
            rare.join(", ")
        );
    }
    Ok(())
}

/// One setup of the interleaved BPF-statistics comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct StatsSetup {
    case: Case,
    targeting: Targeting,
    /// The loop is not a target (another process, name or cgroup is).
    bystander: bool,
    lite: bool,
    /// The scheduler view (`--sched`).
    sched: bool,
    /// The `--baseline` binary instead of this checkout's.
    baseline: bool,
    /// Do-nothing programs on the same hooks: what every other setup is measured against.
    floor: bool,
}

impl StatsSetup {
    const fn new(case: Case, targeting: Targeting, bystander: bool) -> StatsSetup {
        StatsSetup {
            case,
            targeting,
            bystander,
            lite: false,
            sched: false,
            baseline: false,
            floor: false,
        }
    }

    fn name(&self) -> String {
        let mut name = match self.targeting {
            Targeting::Pid => "--pid",
            Targeting::Comm => "--comm",
            Targeting::Cgroup => "--cgroup",
            Targeting::All => "--all",
        }
        .to_string();
        if self.lite {
            name.push_str(" --lite");
        }
        if self.sched {
            name.push_str(" --sched");
        }
        if self.floor {
            return format!(
                "empty programs{}",
                if self.lite { ", lite's hooks" } else { "" }
            );
        }
        name.push_str(if self.bystander {
            ", loop not a target"
        } else {
            ", loop a target"
        });
        if self.baseline {
            name = format!("baseline {name}");
        }
        name
    }
}

/// The setups compared: the syscall loop under each targeting mode, as a target and as a
/// bystander (`-- COMMAND` filters by PID as `--pid` does; `--all` has no bystander), and the
/// switch loop under `--lite`; with a baseline binary, each of them again with its programs.
fn stats_setups(baseline: bool) -> Vec<StatsSetup> {
    use Targeting::*;
    let (sys, sw) = (Case::Syscalls, Case::Switches);
    let mut setups = vec![
        StatsSetup {
            floor: true,
            ..StatsSetup::new(sys, Pid, false)
        },
        StatsSetup::new(sys, Pid, false),
        StatsSetup::new(sys, Pid, true),
        StatsSetup::new(sys, Comm, false),
        StatsSetup::new(sys, Comm, true),
        StatsSetup::new(sys, Cgroup, false),
        StatsSetup::new(sys, Cgroup, true),
        StatsSetup::new(sys, All, false),
        StatsSetup {
            floor: true,
            lite: true,
            ..StatsSetup::new(sw, Pid, false)
        },
        StatsSetup {
            lite: true,
            ..StatsSetup::new(sw, Pid, false)
        },
        StatsSetup {
            lite: true,
            ..StatsSetup::new(sw, Pid, true)
        },
    ];
    if baseline {
        let theirs: Vec<StatsSetup> = setups
            .iter()
            .filter(|s| !s.floor)
            .map(|s| StatsSetup {
                baseline: true,
                ..*s
            })
            .collect();
        setups.extend(theirs);
    }
    setups
}

/// One run under the kernel's BPF statistics: each program's cost, and netpoll's own CPU
/// (ms per second of collection).
fn stats_run(
    setup: &StatsSetup,
    iterations: u64,
    binaries: (&Path, Option<&Path>),
    xtask: &Path,
    json: &Path,
) -> Result<(Vec<ProgramCost>, f64)> {
    let netpoll = match (setup.baseline, binaries.1) {
        (true, Some(b)) => b,
        _ => binaries.0,
    };
    run_loop(setup.case, iterations, xtask, |pid, guards| {
        let mut cmd = Command::new(netpoll);
        cmd.args(["profile", "--quiet", "--bpf-stats", "--json"])
            .arg(json);
        if setup.lite {
            cmd.arg("--lite");
        }
        if setup.floor {
            cmd.arg("--empty-programs");
        }
        if setup.sched {
            cmd.arg("--sched");
        }
        cmd.args(setup.targeting.args(setup.bystander, pid, guards)?);
        Ok(Some(watch(&mut cmd, "attached")?))
    })?;
    let results = Results::load(json)?;
    if results.programs.is_empty() {
        bail!("no BPF statistics in {}", json.display());
    }
    let own_cpu = results.netpoll_cpu.map_or(0, |c| c.per_second_ns) as f64 / 1e6;
    Ok((results.programs, own_cpu))
}

/// What each setup's programs do beyond do-nothing programs on the same hooks, per unit of
/// the loop (syscall, switch), from the kernel's BPF statistics, in interleaved rounds: each
/// round's figure is taken against that round's floor run, so drift cancels. Medians with 95 %
/// intervals, and ratios.
fn compare_costs(
    rounds: usize,
    iterations: u64,
    binaries: (&Path, Option<&Path>),
    xtask: &Path,
    dir: &Path,
) -> Result<()> {
    let setups = stats_setups(binaries.1.is_some());
    let json = dir.join("compare.json");
    let runs = super::interleaved(rounds, setups.len(), |round, i| {
        let s = &setups[i];
        let run = stats_run(s, s.case.iterations(iterations), binaries, xtask, &json)
            .with_context(|| format!("measuring {}", s.name()))?;
        eprintln!("xtask: round {}/{rounds}: {}", round + 1, s.name());
        Ok(run)
    })?;
    // Own work of setup i in each round, against the floor of its loop and mode that round.
    let own_work = |i: usize| -> Vec<f64> {
        let s = &setups[i];
        let floor = setups
            .iter()
            .position(|f| f.floor && f.case == s.case && f.lite == s.lite)
            .expect("a floor per loop");
        let units = (s.case.iterations(iterations) * 2) as f64;
        (0..rounds)
            .map(|r| {
                runs[i][r]
                    .0
                    .iter()
                    .filter_map(|p| {
                        let base = runs[floor][r].0.iter().find(|e| e.event == p.event)?;
                        Some((p.ns_per_run() - base.ns_per_run()) * p.runs as f64 / units)
                    })
                    .sum()
            })
            .collect()
    };
    println!(
        "\nnetpoll's programs' own work (over do-nothing programs on the same hooks), kernel BPF statistics, median of {rounds} interleaved rounds (95 % interval)"
    );
    println!(
        "{:<40} {:>26} {:>18}",
        "setup", "own work per unit", "netpoll CPU ms/s"
    );
    let mut work = Vec::new();
    for (i, s) in setups.iter().enumerate() {
        let w = own_work(i);
        let cpu: Vec<f64> = runs[i].iter().map(|r| r.1).collect();
        if !s.floor {
            println!(
                "{:<40} {:>21} ns/{} {:>13.1}",
                s.name(),
                stats::estimate(&w).display(|v| format!("{v:.1}")),
                s.case.unit(),
                stats::median(&cpu)
            );
        }
        work.push(w);
    }
    let find = |f: &dyn Fn(&StatsSetup) -> bool| setups.iter().position(f);
    let ratio = |what: &str, a: Option<usize>, b: Option<usize>| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("{what} {}", stats::ratio(&work[a], &work[b]).display());
        }
    };
    println!("\nratios of own work (95 % bootstrap interval):");
    for (targeting, name) in [(Targeting::Comm, "--comm"), (Targeting::Cgroup, "--cgroup")] {
        for bystander in [false, true] {
            ratio(
                &format!(
                    "{name} / --pid, loop {}:",
                    if bystander {
                        "not a target"
                    } else {
                        "a target"
                    }
                ),
                find(&|s| s.targeting == targeting && s.bystander == bystander && !s.baseline),
                find(&|s| {
                    s.case == Case::Syscalls
                        && s.targeting == Targeting::Pid
                        && s.bystander == bystander
                        && !s.floor
                        && !s.baseline
                }),
            );
        }
    }
    for s in setups.iter().filter(|s| s.baseline) {
        ratio(
            &format!(
                "this binary / the baseline's, {}:",
                s.name().trim_start_matches("baseline ")
            ),
            find(&|t| {
                *t == StatsSetup {
                    baseline: false,
                    ..*s
                }
            }),
            find(&|t| t == s),
        );
    }
    // netpoll's own process, this binary against the baseline's, setup by setup.
    let cpu = |i: usize| -> Vec<f64> { runs[i].iter().map(|r| r.1).collect() };
    for s in setups.iter().filter(|s| s.baseline) {
        let ours = find(&|t| {
            *t == StatsSetup {
                baseline: false,
                ..*s
            }
        });
        if let (Some(a), Some(b)) = (ours, find(&|t| t == s)) {
            println!(
                "netpoll's own CPU per second, this binary / the baseline's, {}: {}",
                s.name().trim_start_matches("baseline "),
                stats::ratio(&cpu(a), &cpu(b)).display()
            );
        }
    }
    Ok(())
}
