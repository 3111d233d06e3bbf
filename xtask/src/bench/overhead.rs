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
    Netpoll,
    /// `netpoll profile` of another process: what a process that is not a target pays.
    NonTarget,
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
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Nothing => "nothing attached",
            Setup::Floor => "empty programs (floor)",
            Setup::FloorSched => "empty programs, +sched hooks",
            Setup::Netpoll => "netpoll profile",
            Setup::NonTarget => "netpoll, loop not a target",
            Setup::Lite => "netpoll profile --lite",
            Setup::LiteNonTarget => "--lite, loop not a target",
            Setup::NetpollSched => "netpoll profile --sched",
            Setup::Exporter => "netpoll export, 1 scrape/s",
            Setup::Bpftrace => "bpftrace, same script",
            Setup::Strace => "strace -c",
            Setup::Baseline => "baseline netpoll profile",
            Setup::BaselineNonTarget => "baseline, loop not a target",
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

/// The loop, run as `xtask bench-loop N`: stops itself until the watcher is attached, then
/// prints ns per syscall.
pub fn syscall_loop(iterations: u64) -> Result<()> {
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
    let ns = start.elapsed().as_nanos() as f64 / (2 * iterations) as f64;
    println!("{ns:.1}");
    Ok(())
}

/// The switch loop, run as `xtask bench-loop --switches N`: two threads pinned to one CPU hand
/// a byte back and forth over two pipes; prints ns per context switch (2 per round trip).
pub fn switch_loop(iterations: u64) -> Result<()> {
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
    println!("{ns:.1}");
    Ok(())
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
        _ => true,
    });
    let iterations = case.iterations(iterations);
    let samples = super::interleaved(rounds, setups.len(), |round, i| {
        let ns = measure(
            case,
            setups[i],
            setups[i].iterations(iterations),
            binaries,
            &xtask,
        )
        .with_context(|| format!("measuring with {}", setups[i].name()))?;
        eprintln!(
            "xtask: round {}/{rounds}: {:<30} {ns:>9.1} ns/{}",
            round + 1,
            setups[i].name(),
            case.unit()
        );
        Ok(ns)
    })?;
    let medians: Vec<f64> = samples.iter().map(|s| median(s)).collect();
    let base = medians[0];
    match case {
        Case::Syscalls => println!(
            "\nns per syscall, 1-byte AF_UNIX write+read loop, median of {rounds} interleaved rounds:"
        ),
        Case::Switches => println!(
            "\nns per context switch, two threads on one CPU ping-ponging over pipes, median of {rounds} interleaved rounds:"
        ),
    }
    println!(
        "{:<30} {:>10} {:>10} {:>12} {:>12}",
        "setup",
        format!("ns/{}", case.unit()),
        "added ns",
        "x nothing",
        "spread"
    );
    for (i, s) in setups.iter().enumerate() {
        let (lo, hi) = samples[i]
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "{:<30} {:>10.1} {:>10.1} {:>11.2}x {:>5.0}-{:<6.0}",
            s.name(),
            medians[i],
            medians[i] - base,
            medians[i] / base,
            lo,
            hi
        );
    }
    // Added ns of each round: the setup's time minus that round's "nothing attached" time
    // (rounds are interleaved, so pairing them cancels slow drift).
    let added = |s: Setup| -> Option<Vec<f64>> {
        let i = setups.iter().position(|&x| x == s)?;
        Some(
            samples[i]
                .iter()
                .zip(&samples[0])
                .map(|(x, nothing)| x - nothing)
                .collect(),
        )
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
        "netpoll profile --lite / empty-program floor:",
        Setup::Lite,
        Setup::Floor,
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
        "netpoll profile / strace -c:",
        Setup::Netpoll,
        Setup::Strace,
        "",
    );
    Ok(())
}

fn measure(
    case: Case,
    setup: Setup,
    iterations: u64,
    binaries: &Binaries,
    xtask: &Path,
) -> Result<f64> {
    let netpoll = binaries.netpoll;
    run_loop(case, iterations, xtask, |pid_s, idle_target| {
        let watcher = match setup {
            Setup::Nothing => None,
            Setup::Floor => Some(watch(
                Command::new(netpoll).args([
                    "profile",
                    "--quiet",
                    "--empty-programs",
                    "--pid",
                    pid_s,
                ]),
                "attached",
            )?),
            Setup::FloorSched => Some(watch(
                Command::new(netpoll).args([
                    "profile",
                    "--quiet",
                    "--empty-programs",
                    "--sched",
                    "--pid",
                    pid_s,
                ]),
                "attached",
            )?),
            Setup::Netpoll => Some(watch(
                Command::new(netpoll).args(["profile", "--quiet", "--pid", pid_s]),
                "attached",
            )?),
            Setup::Lite => Some(watch(
                Command::new(netpoll).args(["profile", "--quiet", "--lite", "--pid", pid_s]),
                "attached",
            )?),
            Setup::NonTarget | Setup::BaselineNonTarget | Setup::LiteNonTarget => {
                // The target is an idle process; the loop pays only what every process pays.
                let binary = match setup {
                    Setup::BaselineNonTarget => binaries.baseline.unwrap_or(netpoll),
                    _ => netpoll,
                };
                let idle = Command::new("sleep").arg("600").spawn()?;
                let idle_pid = idle.id();
                *idle_target = KillOnDrop(Some(Pid::from_raw(idle_pid as i32)));
                let mut cmd = Command::new(binary);
                cmd.args(["profile", "--quiet", "--pid", &idle_pid.to_string()]);
                if setup == Setup::LiteNonTarget {
                    cmd.arg("--lite");
                }
                Some(watch(&mut cmd, "attached")?)
            }
            Setup::NetpollSched => Some(watch(
                Command::new(netpoll).args(["profile", "--quiet", "--sched", "--pid", pid_s]),
                "attached",
            )?),
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
            Setup::Baseline => Some(watch(
                Command::new(binaries.baseline.unwrap_or(netpoll))
                    .args(["profile", "--quiet", "--pid", pid_s]),
                "attached",
            )?),
            Setup::Strace => Some(watch(
                Command::new("strace").args(["-c", "-f", "-p", pid_s]),
                "attached",
            )?),
        };
        Ok(watcher)
    })
}

/// Runs the loop: started stopped, `attach` starts a watcher on its PID (and may start other
/// processes, in the guard), then it runs; returns what it printed, ns per syscall or switch.
pub(super) fn run_loop(
    case: Case,
    iterations: u64,
    xtask: &Path,
    attach: impl FnOnce(&str, &mut KillOnDrop) -> Result<Option<Child>>,
) -> Result<f64> {
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
    let mut others = KillOnDrop(None);
    let watcher = attach(&target.id().to_string(), &mut others)?;
    kill(pid, Signal::SIGCONT)?;
    let out = target.wait_with_output();
    // Reaped (or unreachable): its PID may be reused, so it must not be killed later.
    loop_guard.0 = None;
    let out = out?;
    if let Some(mut w) = watcher {
        let _ = kill(Pid::from_raw(w.id() as i32), Signal::SIGINT);
        let _ = w.wait();
    }
    drop(others);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the loop printed no measurement")
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
