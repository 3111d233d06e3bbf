//! `cargo xtask bench overhead`: what each way of watching syscalls costs the watched process.
//!
//! Two cases. Syscalls: a loop writes and reads 1 byte over an AF_UNIX socketpair (2 syscalls
//! per iteration), ns per syscall. Switches: two threads on one CPU ping-pong a byte over two
//! pipes (each hand-over a wakeup and a context switch), ns per switch: what hooks on every
//! context switch and wakeup (the scheduler view) cost. Each runs with nothing attached, with
//! do-nothing programs on netpoll's hooks (the floor: the cost of the hooks themselves), with
//! `netpoll profile` (and `--sched`), with bpftrace running the equivalent script, and with
//! `strace -c`; with `--baseline`, also with another netpoll binary (before and after a change
//! to the probes). Setups are interleaved round by round, so drift on a noisy machine hits them all
//! alike; medians are reported, with ratios and their intervals.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

use analysis::stats;
use analysis::stats::median;
use xtask::{release_netpoll, which};

use crate::setup;

/// What the loop does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Case {
    /// 1-byte write+read on a socketpair: ns per syscall.
    Syscalls,
    /// Two threads on one CPU handing a byte back and forth: ns per context switch.
    Switches,
}

impl Case {
    /// Context switches are slower than syscalls: fewer iterations keep the rounds short.
    pub(super) fn iterations(self, base: u64) -> u64 {
        match self {
            Case::Syscalls => base,
            Case::Switches => base / 5,
        }
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Case::Syscalls => "1-byte AF_UNIX write+read loop",
            Case::Switches => "two threads ping-ponging on one CPU",
        }
    }

    pub(super) fn unit(self) -> &'static str {
        match self {
            Case::Syscalls => "syscall",
            Case::Switches => "switch",
        }
    }

    fn setups(self) -> Vec<Setup> {
        match self {
            Case::Syscalls => vec![
                Setup::Nothing,
                Setup::Floor,
                Setup::Netpoll,
                Setup::NonTarget,
                Setup::NonTargetFrozen,
                Setup::Comm,
                Setup::CommNonTarget,
                Setup::Cgroup,
                Setup::CgroupNonTarget,
                Setup::All,
                Setup::Command,
                Setup::CommandNonTarget,
                Setup::Lite,
                Setup::LiteNonTarget,
                Setup::NetpollSched,
                Setup::Exporter,
                Setup::Bpftrace,
                Setup::Strace,
            ],
            Case::Switches => vec![
                Setup::Nothing,
                Setup::FloorSched,
                Setup::Netpoll,
                Setup::NetpollSched,
                Setup::FloorLite,
                Setup::Lite,
                Setup::LiteNonTarget,
                Setup::Bpftrace,
            ],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Nothing,
    Floor,
    /// Empty programs on every hook of the scheduler view too.
    FloorSched,
    /// Empty programs on lite mode's hooks.
    FloorLite,
    Netpoll,
    /// `netpoll profile` of another process: what a process that is not a target pays.
    NonTarget,
    /// The same, with netpoll's process stopped (SIGSTOP) once attached: its programs run, its
    /// user space does nothing. The difference to `NonTarget` is what netpoll's own work
    /// (sampling, map reads) costs the loop beyond the programs.
    NonTargetFrozen,
    /// `--comm` with the loop's name (the loop is a target).
    Comm,
    /// `--comm` with a name no task has.
    CommNonTarget,
    /// `--cgroup` with the loop moved into that cgroup.
    Cgroup,
    /// `--cgroup` of an empty cgroup.
    CgroupNonTarget,
    /// `--all`: every process is a target.
    All,
    /// `netpoll profile -- LOOP`: the loop started by netpoll.
    Command,
    /// `netpoll profile -- sleep 600`: the loop is not a target.
    CommandNonTarget,
    /// `netpoll profile --lite`.
    Lite,
    /// `netpoll profile --lite` of another process.
    LiteNonTarget,
    NetpollSched,
    /// `netpoll export`, scraped every second.
    Exporter,
    Bpftrace,
    Strace,
    /// `netpoll profile` of the `--baseline` binary.
    Baseline,
    /// The `--baseline` binary profiling another process.
    BaselineNonTarget,
    /// The `--baseline` binary's `--lite`.
    BaselineLite,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Nothing => "nothing attached",
            Setup::Floor => "empty programs (floor)",
            Setup::FloorSched => "empty programs, +sched hooks",
            Setup::FloorLite => "empty programs, lite's hooks",
            Setup::Netpoll => "netpoll profile --pid",
            Setup::NonTarget => "--pid, loop not a target",
            Setup::NonTargetFrozen => "--pid, not a target, netpoll stopped",
            Setup::Comm => "--comm",
            Setup::CommNonTarget => "--comm, loop not a target",
            Setup::Cgroup => "--cgroup",
            Setup::CgroupNonTarget => "--cgroup, loop not a target",
            Setup::All => "--all",
            Setup::Command => "-- COMMAND",
            Setup::CommandNonTarget => "-- COMMAND, loop not a target",
            Setup::Lite => "netpoll profile --lite",
            Setup::LiteNonTarget => "--lite, loop not a target",
            Setup::NetpollSched => "netpoll profile --sched",
            Setup::Exporter => "netpoll export, 1 scrape/s",
            Setup::Bpftrace => "bpftrace, same script",
            Setup::Strace => "strace -c",
            Setup::Baseline => "baseline netpoll profile",
            Setup::BaselineNonTarget => "baseline, loop not a target",
            Setup::BaselineLite => "baseline --lite",
        }
    }

    /// strace costs ~40x per syscall: fewer iterations keep its runs short.
    fn iterations(self, base: u64) -> u64 {
        if self == Setup::Strace {
            base / 20
        } else {
            base
        }
    }
}

/// `xtask bench-loop [--switches] [--out FILE] N`: runs a loop, prints its figure (and writes
/// it to `out`).
pub fn bench_loop(switches: bool, iterations: u64, out: Option<&Path>) -> Result<()> {
    let ns = if switches {
        switch_loop(iterations)?
    } else {
        syscall_loop(iterations)?
    };
    println!("{ns:.1}");
    if let Some(out) = out {
        std::fs::write(out, format!("{ns:.1}\n"))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// The syscall loop: stops itself until the watcher is attached; ns per syscall.
fn syscall_loop(iterations: u64) -> Result<f64> {
    let mut pair = [0i32; 2];
    // SAFETY: valid out-pointer.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) } != 0 {
        bail!("socketpair: {}", std::io::Error::last_os_error());
    }
    // SAFETY: signalling ourselves; the parent continues us once the watcher is attached.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    let mut byte = [0u8; 1];
    let start = Instant::now();
    for _ in 0..iterations {
        // SAFETY: 1-byte buffers on our own sockets.
        unsafe {
            libc::write(pair[0], byte.as_ptr().cast(), 1);
            libc::read(pair[1], byte.as_mut_ptr().cast(), 1);
        }
    }
    Ok(start.elapsed().as_nanos() as f64 / (2 * iterations) as f64)
}

/// The switch loop: two threads pinned to one CPU hand a byte back and forth over two pipes;
/// ns per context switch (2 per round trip).
fn switch_loop(iterations: u64) -> Result<f64> {
    let (mut there, mut back) = ([0i32; 2], [0i32; 2]);
    // SAFETY: valid out-pointers.
    if unsafe { libc::pipe(there.as_mut_ptr()) | libc::pipe(back.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    let pin = || {
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    };
    pin();
    let echo = std::thread::spawn(move || {
        pin();
        let mut byte = [0u8; 1];
        for _ in 0..iterations {
            // SAFETY: 1-byte buffers on our own pipes.
            unsafe {
                libc::read(there[0], byte.as_mut_ptr().cast(), 1);
                libc::write(back[1], byte.as_ptr().cast(), 1);
            }
        }
    });
    // SAFETY: signalling ourselves; the parent continues us once the watcher is attached.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    let mut byte = [0u8; 1];
    let start = Instant::now();
    for _ in 0..iterations {
        // SAFETY: 1-byte buffers on our own pipes.
        unsafe {
            libc::write(there[1], byte.as_ptr().cast(), 1);
            libc::read(back[0], byte.as_mut_ptr().cast(), 1);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / (2 * iterations) as f64;
    let _ = echo.join();
    Ok(ns)
}

/// The netpoll binaries measured: this checkout's, and a baseline to compare it with.
struct Binaries<'a> {
    netpoll: &'a Path,
    baseline: Option<&'a Path>,
}

pub fn overhead(
    cases: &[Case],
    rounds: usize,
    iterations: u64,
    baseline: Option<&Path>,
) -> Result<()> {
    if cases.is_empty() {
        return Ok(());
    }
    setup::test_prerequisites()?;
    if let Some(b) = baseline
        && !b.is_file()
    {
        bail!("--baseline {}: no such file", b.display());
    }
    let netpoll = release_netpoll()?;
    let binaries = Binaries {
        netpoll: &netpoll,
        baseline,
    };
    for &case in cases {
        run_case(case, rounds, iterations, &binaries)?;
        if case == Case::Syscalls {
            micro_costs(&netpoll, rounds)?;
        }
    }
    Ok(())
}

/// Where a measured call's time goes: `netpoll micro-costs` runs the hot path's parts as
/// micro programs under `BPF_PROG_TEST_RUN` (steadier than any timed loop here).
fn micro_costs(netpoll: &Path, rounds: usize) -> Result<()> {
    println!("\nthe parts of a measured call, micro-benchmarked in the kernel:");
    let status = Command::new(netpoll)
        .args(["micro-costs", "--rounds", &rounds.max(3).to_string()])
        .status()
        .context("running netpoll micro-costs")?;
    if !status.success() {
        bail!("netpoll micro-costs failed ({status})");
    }
    Ok(())
}

fn run_case(case: Case, rounds: usize, iterations: u64, binaries: &Binaries) -> Result<()> {
    let xtask = std::env::current_exe()?;
    let mut setups = case.setups();
    if binaries.baseline.is_some() {
        setups.push(Setup::Baseline);
        if setups.contains(&Setup::NonTarget) {
            setups.push(Setup::BaselineNonTarget);
        }
        setups.push(Setup::BaselineLite);
    }
    setups.retain(|s| match s {
        Setup::Bpftrace | Setup::Strace => {
            let tool = if *s == Setup::Bpftrace {
                "bpftrace"
            } else {
                "strace"
            };
            let there = which(tool);
            if !there {
                eprintln!("xtask: {tool} is not installed: skipping it");
            }
            there
        }
        Setup::Cgroup | Setup::CgroupNonTarget => {
            let there = cgroup2_root().is_some();
            if !there {
                eprintln!(
                    "xtask: no cgroup v2 hierarchy mounted: skipping {}",
                    s.name()
                );
            }
            there
        }
        _ => true,
    });
    let iterations = case.iterations(iterations);
    let unit = case.unit();
    let samples = super::interleaved(rounds, setups.len(), |round, i| {
        let sample = measure(
            case,
            setups[i],
            setups[i].iterations(iterations),
            binaries,
            &xtask,
        )
        .with_context(|| format!("measuring with {}", setups[i].name()))?;
        eprintln!(
            "xtask: round {}/{rounds}: {:<36} {:>9.1} ns/{unit}, watcher {:>7.1} ns/{unit}",
            round + 1,
            setups[i].name(),
            sample.ns,
            sample.watcher_ns,
        );
        Ok(sample)
    })?;
    let ns = |i: usize| -> Vec<f64> { samples[i].iter().map(|s| s.ns).collect() };
    let watcher = |i: usize| -> Vec<f64> { samples[i].iter().map(|s| s.watcher_ns).collect() };
    let base = median(&ns(0));
    match case {
        Case::Syscalls => println!(
            "\nns per syscall, 1-byte AF_UNIX write+read loop, median of {rounds} interleaved rounds:"
        ),
        Case::Switches => println!(
            "\nns per context switch, two threads on one CPU ping-ponging over pipes, median of {rounds} interleaved rounds:"
        ),
    }
    println!(
        "(watcher: the watching process's own CPU while the loop ran, per {unit} of the loop; \
         machine: added + watcher)"
    );
    println!(
        "{:<36} {:>10} {:>9} {:>10} {:>9} {:>9} {:>13}",
        format!("setup"),
        format!("ns/{unit}"),
        "added",
        "x nothing",
        "watcher",
        "machine",
        "spread"
    );
    for (i, s) in setups.iter().enumerate() {
        let (lo, hi) = ns(i)
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let m = median(&ns(i));
        let w = median(&watcher(i));
        println!(
            "{:<36} {:>10.1} {:>9.1} {:>9.2}x {:>9.1} {:>9.1} {:>6.0}-{:<6.0}",
            s.name(),
            m,
            m - base,
            m / base,
            w,
            m - base + w,
            lo,
            hi
        );
    }
    // Added ns of each round: the setup's time minus that round's "nothing attached" time
    // (rounds are interleaved, so pairing them cancels slow drift).
    let added = |s: Setup| -> Option<Vec<f64>> {
        let i = setups.iter().position(|&x| x == s)?;
        Some(super::paired(&samples[i], &samples[0], |x, nothing| {
            x.ns - nothing.ns
        }))
    };
    let compare = |what: &str, a: Setup, b: Setup, target: &str| {
        if let (Some(a), Some(b)) = (added(a), added(b)) {
            let r = stats::ratio(&a, &b);
            let verdict = match r.verdict() {
                stats::Verdict::WithinNoise => "; within noise of 1x",
                _ => "",
            };
            let note = format!("{target}{verdict}");
            let note = note.trim_start_matches("; ");
            if note.is_empty() {
                println!("{what} {}", r.display());
            } else {
                println!("{what} {} ({note})", r.display());
            }
        }
    };
    println!("\nratios of added ns (medians of the rounds, 95 % bootstrap interval):");
    compare(
        "netpoll profile / empty-program floor:",
        Setup::Netpoll,
        Setup::Floor,
        "target <= 1.5x",
    );
    compare(
        "a process that is not a target / empty-program floor:",
        Setup::NonTarget,
        Setup::Floor,
        "target <= 1.1x",
    );
    compare(
        "not a target, netpoll stopped / empty-program floor:",
        Setup::NonTargetFrozen,
        Setup::Floor,
        "",
    );
    compare(
        "not a target, netpoll stopped / netpoll running:",
        Setup::NonTargetFrozen,
        Setup::NonTarget,
        "",
    );
    for (what, a, b) in [
        ("--comm / --pid:", Setup::Comm, Setup::Netpoll),
        ("--cgroup / --pid:", Setup::Cgroup, Setup::Netpoll),
        ("--all / --pid:", Setup::All, Setup::Netpoll),
        ("-- COMMAND / --pid:", Setup::Command, Setup::Netpoll),
        (
            "not a target: --comm / --pid:",
            Setup::CommNonTarget,
            Setup::NonTarget,
        ),
        (
            "not a target: --cgroup / --pid:",
            Setup::CgroupNonTarget,
            Setup::NonTarget,
        ),
        (
            "not a target: -- COMMAND / --pid:",
            Setup::CommandNonTarget,
            Setup::NonTarget,
        ),
    ] {
        compare(what, a, b, "");
    }
    compare(
        "netpoll profile --lite / empty-program floor:",
        Setup::Lite,
        Setup::Floor,
        "",
    );
    compare(
        "netpoll profile --lite / empty programs on lite's hooks:",
        Setup::Lite,
        Setup::FloorLite,
        "",
    );
    compare(
        "not a target, --lite / empty programs on lite's hooks:",
        Setup::LiteNonTarget,
        Setup::FloorLite,
        "",
    );
    compare(
        "not a target, --lite / not a target, full mode:",
        Setup::LiteNonTarget,
        Setup::NonTarget,
        "",
    );
    compare(
        "netpoll profile --sched / netpoll profile:",
        Setup::NetpollSched,
        Setup::Netpoll,
        "",
    );
    compare(
        "netpoll profile --sched / empty programs with the sched hooks:",
        Setup::NetpollSched,
        Setup::FloorSched,
        "",
    );
    if case == Case::Switches {
        // Only the switch loop's bpftrace script measures run-queue delay as --sched does.
        compare(
            "netpoll profile --sched / bpftrace runqlat-like:",
            Setup::NetpollSched,
            Setup::Bpftrace,
            "",
        );
    }
    compare(
        "netpoll export scraped every second / netpoll profile:",
        Setup::Exporter,
        Setup::Netpoll,
        "target <= 1.0x",
    );
    if case == Case::Syscalls {
        compare(
            "netpoll profile / bpftrace:",
            Setup::Netpoll,
            Setup::Bpftrace,
            "target <= 0.40x",
        );
        compare(
            "netpoll profile --lite / bpftrace:",
            Setup::Lite,
            Setup::Bpftrace,
            "",
        );
    }
    compare(
        "netpoll profile / the baseline binary's:",
        Setup::Netpoll,
        Setup::Baseline,
        "",
    );
    compare(
        "a process that is not a target, this binary / the baseline's:",
        Setup::NonTarget,
        Setup::BaselineNonTarget,
        "",
    );
    compare(
        "netpoll profile --lite, this binary / the baseline's:",
        Setup::Lite,
        Setup::BaselineLite,
        "",
    );
    compare(
        "netpoll profile / strace -c:",
        Setup::Netpoll,
        Setup::Strace,
        "",
    );
    Ok(())
}

/// One run of a loop under a setup.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    /// ns per syscall (or context switch) of the loop.
    pub ns: f64,
    /// The watching process's own CPU time (all its threads, from schedstat) while the loop
    /// ran, per syscall (or switch) of the loop: what watching costs beyond the loop's own
    /// slowdown. BPF programs run in the loop's time, not here.
    pub watcher_ns: f64,
}

fn measure(
    case: Case,
    setup: Setup,
    iterations: u64,
    binaries: &Binaries,
    xtask: &Path,
) -> Result<Sample> {
    let netpoll = binaries.netpoll;
    let profile = |binary: &Path, args: &[&str]| -> Result<Child> {
        watch(
            Command::new(binary).args(["profile", "--quiet"]).args(args),
            "attached",
        )
    };
    match setup {
        Setup::Command => {
            return run_loop_as_command(case, iterations, xtask, netpoll);
        }
        Setup::CommandNonTarget => {
            // netpoll starts (and follows) an idle command; the loop runs beside it.
            return run_loop(case, iterations, xtask, |_, _| {
                Ok(Some(profile(netpoll, &["--", "sleep", "600"])?))
            });
        }
        _ => {}
    }
    run_loop(case, iterations, xtask, |pid_s, guards| {
        let watcher = match setup {
            Setup::Nothing => None,
            Setup::Floor => Some(profile(netpoll, &["--empty-programs", "--pid", pid_s])?),
            Setup::FloorSched => Some(profile(
                netpoll,
                &["--empty-programs", "--sched", "--pid", pid_s],
            )?),
            Setup::FloorLite => Some(profile(
                netpoll,
                &["--empty-programs", "--lite", "--pid", pid_s],
            )?),
            Setup::Netpoll => Some(profile(netpoll, &["--pid", pid_s])?),
            Setup::Lite => Some(profile(netpoll, &["--lite", "--pid", pid_s])?),
            Setup::BaselineLite => Some(profile(
                binaries.baseline.unwrap_or(netpoll),
                &["--lite", "--pid", pid_s],
            )?),
            Setup::NonTarget
            | Setup::NonTargetFrozen
            | Setup::BaselineNonTarget
            | Setup::LiteNonTarget => {
                // The target is an idle process; the loop pays only what every process pays.
                let binary = match setup {
                    Setup::BaselineNonTarget => binaries.baseline.unwrap_or(netpoll),
                    _ => netpoll,
                };
                let mut args = Targeting::Pid.args(true, pid_s, guards)?;
                if setup == Setup::LiteNonTarget {
                    args.push("--lite".into());
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let child = profile(binary, &args)?;
                if setup == Setup::NonTargetFrozen {
                    // Programs attached, user space frozen until the loop is done.
                    kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP)?;
                }
                Some(child)
            }
            Setup::Comm
            | Setup::CommNonTarget
            | Setup::Cgroup
            | Setup::CgroupNonTarget
            | Setup::All => {
                let targeting = match setup {
                    Setup::Comm | Setup::CommNonTarget => Targeting::Comm,
                    Setup::Cgroup | Setup::CgroupNonTarget => Targeting::Cgroup,
                    _ => Targeting::All,
                };
                let bystander = matches!(setup, Setup::CommNonTarget | Setup::CgroupNonTarget);
                let args = targeting.args(bystander, pid_s, guards)?;
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Some(profile(netpoll, &args)?)
            }
            Setup::NetpollSched => Some(profile(netpoll, &["--sched", "--pid", pid_s])?),
            Setup::Exporter => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let listen = format!("127.0.0.1:{port}");
                let child = watch(
                    Command::new(netpoll).args(["export", "--pid", pid_s, "--listen", &listen]),
                    "serving",
                )?;
                scrape_every_second(port);
                Some(child)
            }
            Setup::Bpftrace => {
                // The same measurement as netpoll: per-syscall latency histograms of the target;
                // for switches, run-queue delay as BCC's runqlat measures it.
                let script = match case {
                    Case::Syscalls => format!(
                        "tracepoint:raw_syscalls:sys_enter /pid == {pid_s}/ {{ @start[tid] = nsecs; }}\n\
                         tracepoint:raw_syscalls:sys_exit /@start[tid]/ {{ @ns[args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
                    ),
                    Case::Switches => format!(
                        "tracepoint:sched:sched_wakeup /args->pid == {pid_s} || pid == {pid_s}/ {{ @q[args->pid] = nsecs; }}\n\
                         tracepoint:sched:sched_switch {{ if (args->prev_state == 0) {{ @q[args->prev_pid] = nsecs; }} \
                         $t = @q[args->next_pid]; if ($t) {{ @runq = hist(nsecs - $t); delete(@q[args->next_pid]); }} }}"
                    ),
                };
                let child = watch(Command::new("bpftrace").args(["-e", &script]), "Attaching")?;
                // bpftrace prints "Attaching N probes..." before attaching them.
                std::thread::sleep(Duration::from_secs(1));
                Some(child)
            }
            Setup::Baseline => Some(profile(
                binaries.baseline.unwrap_or(netpoll),
                &["--pid", pid_s],
            )?),
            Setup::Strace => Some(watch(
                Command::new("strace").args(["-c", "-f", "-p", pid_s]),
                "attached",
            )?),
            Setup::Command | Setup::CommandNonTarget => unreachable!("handled above"),
        };
        Ok(watcher)
    })
}

/// Each of `netpoll profile`'s ways of naming targets but `-- COMMAND` (which starts the loop
/// itself: [`run_loop_as_command`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Targeting {
    Pid,
    Comm,
    Cgroup,
    All,
}

impl Targeting {
    /// The target options that make the loop (PID `loop_pid`) a target, or, for a
    /// `bystander`, something else: an idle process, a name no task has, an empty cgroup.
    /// Every process is a target of `--all`. What it starts or makes is undone by `guards`.
    pub(super) fn args(
        self,
        bystander: bool,
        loop_pid: &str,
        guards: &mut Guards,
    ) -> Result<Vec<String>> {
        let pair = |option: &str, value: String| vec![option.to_string(), value];
        Ok(match (self, bystander) {
            (Targeting::Pid, false) => pair("--pid", loop_pid.to_string()),
            (Targeting::Pid, true) => {
                let idle = Command::new("sleep").arg("600").spawn()?;
                guards.kill(Pid::from_raw(idle.id() as i32));
                pair("--pid", idle.id().to_string())
            }
            (Targeting::Comm, false) => pair("--comm", loop_comm(loop_pid)?),
            (Targeting::Comm, true) => pair("--comm", "netpoll-nobody".to_string()),
            (Targeting::Cgroup, _) => {
                let cgroup = guards.cgroup()?;
                if !bystander {
                    std::fs::write(cgroup.join("cgroup.procs"), loop_pid)
                        .context("moving the loop into the benchmark's cgroup")?;
                }
                pair("--cgroup", cgroup.to_string_lossy().into_owned())
            }
            (Targeting::All, _) => vec!["--all".to_string()],
        })
    }
}

/// The loop's task name, as `--comm` matches it.
fn loop_comm(pid: &str) -> Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_string())
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid systems).
fn cgroup2_root() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| dir.into())
    })
}

/// Runs the loop: started stopped, `attach` starts a watcher on its PID (and may start other
/// processes or make a cgroup, in the guards), then it runs; returns what it printed, ns per
/// syscall or switch, and the watcher's CPU meanwhile.
pub(super) fn run_loop(
    case: Case,
    iterations: u64,
    xtask: &Path,
    attach: impl FnOnce(&str, &mut Guards) -> Result<Option<Child>>,
) -> Result<Sample> {
    let mut target = Command::new(xtask);
    target.arg("bench-loop");
    if case == Case::Switches {
        target.arg("--switches");
    }
    let target = target
        .arg(iterations.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = Pid::from_raw(target.id() as i32);
    // If anything below fails, the stopped loop must not stay behind.
    let mut loop_guard = KillOnDrop(Some(pid));
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
        Ok(WaitStatus::Stopped(..)) => {}
        other => bail!("the loop did not stop for the watcher: {other:?}"),
    }
    let mut guards = Guards::default();
    let watcher = attach(&target.id().to_string(), &mut guards)?;
    let watcher_cpu = || {
        watcher
            .as_ref()
            .map_or(Ok(0), |w| super::servers::cpu_ns(w.id()))
    };
    let cpu_before = watcher_cpu()?;
    kill(pid, Signal::SIGCONT)?;
    let out = target.wait_with_output();
    let cpu_after = watcher_cpu();
    // Reaped (or unreachable): its PID may be reused, so it must not be killed later.
    loop_guard.0 = None;
    let out = out?;
    if let Some(mut w) = watcher {
        let w_pid = Pid::from_raw(w.id() as i32);
        // A frozen watcher must run again to hear SIGINT.
        let _ = kill(w_pid, Signal::SIGCONT);
        let _ = kill(w_pid, Signal::SIGINT);
        let _ = w.wait();
    }
    drop(guards);
    let ns: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the loop printed no measurement")?;
    Ok(Sample {
        ns,
        watcher_ns: cpu_after?.saturating_sub(cpu_before) as f64 / (2 * iterations) as f64,
    })
}

/// Runs the loop as `netpoll profile -- LOOP`: netpoll starts it (held until the probes are
/// attached); the loop stops itself as always and is continued once found.
fn run_loop_as_command(
    case: Case,
    iterations: u64,
    xtask: &Path,
    netpoll: &Path,
) -> Result<Sample> {
    let out = std::env::temp_dir().join(format!("netpoll-bench-loop-{}.out", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(netpoll);
    cmd.args(["profile", "--quiet", "--"])
        .arg(xtask)
        .arg("bench-loop");
    if case == Case::Switches {
        cmd.arg("--switches");
    }
    cmd.arg("--out").arg(&out).arg(iterations.to_string());
    let watcher = watch(&mut cmd, "attached")?;
    let w_pid = watcher.id();
    let mut guards = Guards::default();
    guards.kill(Pid::from_raw(w_pid as i32));
    // The loop is netpoll's child; it has exec'd and stopped itself when it is stopped under
    // the loop's own name.
    let xtask_comm = loop_comm(&std::process::id().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let loop_pid = loop {
        if let Some(pid) = children(w_pid).into_iter().find(|&c| {
            loop_comm(&c.to_string()).is_ok_and(|n| n == xtask_comm) && state(c) == Some('T')
        }) {
            break pid;
        }
        if Instant::now() > deadline {
            bail!("the loop started by netpoll did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let cpu_before = super::servers::cpu_ns(w_pid)?;
    let mut cpu_after = cpu_before;
    kill(Pid::from_raw(loop_pid as i32), Signal::SIGCONT)?;
    // netpoll reaps the loop: its CPU is sampled until then (every 20 ms, a bystander's load).
    while state(loop_pid).is_some_and(|s| s != 'Z') {
        if let Ok(cpu) = super::servers::cpu_ns(w_pid) {
            cpu_after = cpu;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut watcher = watcher;
    let _ = kill(Pid::from_raw(w_pid as i32), Signal::SIGINT);
    let _ = watcher.wait();
    guards.pids.clear();
    let ns = std::fs::read_to_string(&out)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .context("the loop wrote no measurement");
    let _ = std::fs::remove_file(&out);
    Ok(Sample {
        ns: ns?,
        watcher_ns: cpu_after.saturating_sub(cpu_before) as f64 / (2 * iterations) as f64,
    })
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// A process's state letter (`R`, `S`, `T`, `Z`...), None once it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name, in parentheses, may hold spaces: the state follows its last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Kills (and reaps) a process when dropped: nothing the benchmark starts outlives it.
pub(super) struct KillOnDrop(pub(super) Option<Pid>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// What a setup starts beside its watcher, undone when dropped: processes killed (and reaped),
/// then the cgroup removed (empty once they and the loop are gone).
#[derive(Default)]
pub(super) struct Guards {
    pids: Vec<Pid>,
    cgroup: Option<std::path::PathBuf>,
}

impl Guards {
    pub(super) fn kill(&mut self, pid: Pid) {
        self.pids.push(pid);
    }

    /// A new, empty cgroup v2 for this run.
    fn cgroup(&mut self) -> Result<std::path::PathBuf> {
        let root = cgroup2_root().context("no cgroup v2 hierarchy is mounted")?;
        let dir = root.join(format!("netpoll-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.cgroup = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Guards {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(dir) = &self.cgroup {
            // The kernel frees a cgroup's last task a moment after it is reaped.
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Scrapes /metrics every second until the exporter goes away (as Prometheus would).
fn scrape_every_second(port: u16) {
    std::thread::spawn(move || {
        loop {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            use std::io::{Read as _, Write as _};
            let _ = stream.write_all(
                b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink);
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// Starts a watcher and waits until its stderr or stdout says `ready`.
pub(super) fn watch(cmd: &mut Command, ready: &str) -> Result<Child> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(ready) {
                return Ok(child);
            }
            seen.push(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{cmd:?} exited ({status}) before attaching: {}",
                seen.join(" / ")
            );
        }
    }
    let _ = child.kill();
    bail!("{cmd:?} did not attach within 60 s: {}", seen.join(" / "))
}
