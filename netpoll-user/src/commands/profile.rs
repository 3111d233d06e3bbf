//! `netpoll profile`: check the request, attach to the targets, collect until told to stop,
//! report.

use std::time::{Duration, Instant};

use analysis::{
    Results,
    memory::{MemoryEdge, RunMemory},
    results::{EndReason, Lite, TargetKind, classes_of},
    verdict,
    workload::parse_seconds,
};
use anyhow::Result;
use netpoll_ebpf::abi::Hook;

use super::{
    ResultsArgs, StackArgs,
    targets::{TargetArgs, Targets},
};
use crate::{
    go, memory,
    observe::Sampler,
    output,
    probes::{
        BpfStats, GoProbes, Probes,
        snapshot::{Collection, Snapshot},
        target::{CommandState, HeldCommand},
    },
    sinks::ResultsSinks,
    stacks::Images,
    system,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    targets: TargetArgs,
    /// Stop after this many seconds (default: until Ctrl-C, the command exits, or every --pid exits).
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Print a class summary every SECS seconds while collecting.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    interval: Option<Duration>,
    #[command(flatten)]
    stacks: StackArgs,
    #[command(flatten)]
    results: ResultsArgs,
    /// Attach do-nothing programs on the same hooks instead: the floor of the overhead benchmark;
    /// with hook names (sys_enter,sys_exit,sock_recv,sock_send,switch,wakeup,...), on those only.
    #[arg(long, hide = true, value_name = "HOOKS", num_args = 0.., value_delimiter = ',', value_parser = hook_name)]
    empty_programs: Option<Vec<Hook>>,
    /// The Go view: for a Go process (the first --pid, or the command), its runtime's
    /// scheduler state read from its memory every 20 ms: goroutines parked on the network,
    /// runnable goroutines (global and per-P queues), idle Ps, spinning and idle threads, and
    /// the time since the network was last polled. Nothing is attached to the process; its
    /// cost does not grow with the request rate. Needs the binary's symbol table (not built
    /// with -ldflags=-s).
    #[arg(long)]
    go: bool,
    /// --go, plus every goroutine's network park, wake-up by netpoll and start on a thread,
    /// and the Ps handed off when a thread blocks in a syscall: uprobes on four functions of
    /// the Go runtime. Exact, but every hit is a trap into the kernel (about 13 µs here, a few
    /// per request): measured when it starts and written into the results. For short windows.
    #[arg(long)]
    go_exact: bool,
}

/// A hook by the stem of its programs' names (`sys_enter`, `switch`, ...).
fn hook_name(name: &str) -> Result<Hook, String> {
    Hook::ALL
        .into_iter()
        .find(|h| h.stem() == name)
        .ok_or_else(|| {
            let names: Vec<_> = Hook::ALL.iter().map(|h| h.stem()).collect();
            format!("unknown hook {name:?}; hooks: {}", names.join(", "))
        })
}

/// Runs a profile; returns the process exit code.
pub fn run(args: Args) -> Result<i32> {
    // Handlers before anything starts, so that Ctrl-C at any moment is handled.
    let signals = system::Signals::install()?;
    args.targets.check()?;
    if args.targets.lite && (args.stacks.stacks || args.stacks.kernel_stacks) {
        anyhow::bail!("--stacks needs the exit of every measured call: not with --lite");
    }
    system::check_privileges()?;
    let mut sinks = ResultsSinks::open(args.results.json.as_deref(), args.results.out.as_deref())?;
    let mut targets = args.targets.resolve()?;
    // --go-exact's plan comes first: a binary it cannot probe is one line, and its maps are
    // sized only when it will be used.
    let go_pid = targets.go_target(args.go || args.go_exact);
    let mut exact = go_pid
        .filter(|_| args.go_exact)
        .and_then(|pid| note_err(go::exact::Plan::prepare(pid, &targets.executable(pid))));
    // On before attaching, so that the programs' first runs count too.
    let bpf_stats = BpfStats::enable(args.targets.bpf_stats);
    let mut probes = targets.attach(
        &args.targets,
        args.results.hook,
        args.empty_programs.clone(),
        go_pid.map(|pid| GoProbes {
            pid,
            exact: exact.is_some(),
        }),
        args.stacks.walk(),
    )?;
    if let Some(plan) = &mut exact
        && note_err(plan.attach(&mut probes)).is_none()
    {
        exact = None;
    }
    let started_at = system::utc_now_rfc3339();
    let start = Instant::now();
    let cpu_at_start = system::own_cpu_ns();
    // Processes' memory at the collection's edges (children counted with their parents): a
    // --pid's before it is told the probes are on (it may be gone soon after), a command's
    // once it has run its exec.
    let processes = matches!(targets.target.kind, TargetKind::Pid | TargetKind::Command)
        .then(|| targets.target.pids.clone());
    let mut memory = MemoryWatch::new(processes);
    if targets.command.is_none() {
        memory.start();
    }
    announce(&args, &targets, &probes);
    targets.release()?;
    if targets.command.is_some() {
        memory.start();
    }
    // After the release: a command has run its exec by then.
    let mut images = Images::new(&mut probes);
    images.watch(&probes, &targets.target.pids);
    let go = go_pid.map(go::Sampler::start);
    // Processes (not names, cgroups or the whole machine) get an I/O-model verdict, from the
    // probes and from their state in /proc, sampled while collecting.
    let judged =
        matches!(targets.target.kind, TargetKind::Pid | TargetKind::Command) && !probes.mode.lite();
    let mut sampler = Sampler::new(if judged {
        targets.target.pids.clone()
    } else {
        Vec::new()
    });
    let (end_reason, exit_code, command_exit_code) = collect(
        &args,
        &targets,
        &probes,
        &signals,
        &mut sampler,
        &mut images,
        &mut memory,
    )?;
    sampler.now();
    let memory = memory.finish();
    let mut snapshot = probes.snapshot()?;
    let raw_stacks = snapshot.stacks.take();
    let mut results = snapshot.into_results(Collection {
        target: targets.target,
        hook: probes.hook,
        socket_split: probes.socket_split,
        started_at,
        duration_ns: start.elapsed().as_nanos() as u64,
        end_reason,
        command_exit_code,
        run: None,
    });
    results.memory = memory;
    if bpf_stats.enabled {
        results.programs = probes.program_costs();
    }
    if let Some(raw) = &raw_stacks {
        let full = results.counters.stack_stats_full;
        results.stacks = Some(images.name(&probes, raw, full));
    }
    let (user, sys) = system::own_cpu_ns();
    let (user_ns, system_ns) = (
        user.saturating_sub(cpu_at_start.0),
        sys.saturating_sub(cpu_at_start.1),
    );
    results.netpoll_cpu = Some(analysis::results::NetpollCpu {
        user_ns,
        system_ns,
        per_second_ns: ((user_ns + system_ns) as f64 / start.elapsed().as_secs_f64().max(1e-9))
            as u64,
    });
    if let Some(sampler) = go {
        results.go = go::finish(sampler, exact.as_ref(), &probes, &go::Baseline::default());
    }
    if let Some(uring) = results.uring.as_mut() {
        uring.threads = sampler.io_threads();
    }
    // After the Go view: the verdict quotes it.
    if judged {
        results.io_model = Some(verdict::judge(&results, &sampler.observed));
    }
    // Detach before printing: the report is done, the target should not pay for our output.
    drop(probes);
    drop(bpf_stats);
    report(&args, &results, &mut sinks)?;
    Ok(exit_code)
}

/// The targets' memory (`profile` of processes): read as the collection starts, once a second
/// while it runs (a target may exit before the end), and at its end.
struct MemoryWatch {
    pids: Option<Vec<u32>>,
    before: Option<MemoryEdge>,
    /// The latest reading, its sockets and high-water marks, and when it was taken.
    last: Option<(MemoryEdge, u64, u64)>,
    at: Instant,
    peak_threads: u64,
}

impl MemoryWatch {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(pids: Option<Vec<u32>>) -> MemoryWatch {
        MemoryWatch {
            pids,
            before: None,
            last: None,
            at: Instant::now(),
            peak_threads: 0,
        }
    }

    /// The first reading.
    fn start(&mut self) {
        self.before = self.read().map(|l| l.0);
    }

    /// The processes' memory and the kernel's, their sockets and high-water marks; None when
    /// they are all gone.
    fn read(&mut self) -> Option<(MemoryEdge, u64, u64)> {
        let pids = self.pids.as_deref()?;
        let edge = memory::edge(pids)?;
        self.peak_threads = self.peak_threads.max(edge.server.threads);
        self.at = Instant::now();
        let reading = (edge, memory::sockets(pids), memory::peak_rss(pids));
        self.last = Some(reading.clone());
        Some(reading)
    }

    fn tick(&mut self) {
        if self.at.elapsed() >= Self::EVERY {
            self.read();
        }
    }

    /// The start against now, or against the last reading when the targets are gone.
    fn finish(mut self) -> Option<RunMemory> {
        let before = self.before.take()?;
        let (after, sockets, peak) = self.read().or(self.last.take())?;
        Some(RunMemory {
            connections: sockets,
            before,
            after,
            peak_rss_bytes: peak,
            peak_threads: self.peak_threads,
        })
    }
}

/// The value, or `None` after a one-line note: what `--go` and `--go-exact` cannot do does not
/// stop the profile.
fn note_err<T>(result: Result<T>) -> Option<T> {
    result
        .map_err(|e| eprintln!("netpoll: note: --go-exact: {e:#}"))
        .ok()
}

fn announce(args: &Args, targets: &Targets, probes: &Probes) {
    eprintln!(
        "netpoll: attached {} hooks to {}; {}",
        probes.describe_hooks(),
        targets.describe(),
        match args.duration {
            Some(d) => format!(
                "collecting for {:.1}s (Ctrl-C to stop early)",
                d.as_secs_f64()
            ),
            None => "collecting until Ctrl-C".to_string(),
        }
    );
}

/// The longest the collection sleeps between looks when every exit it waits for has a pidfd.
const LONGEST_SLEEP: Duration = Duration::from_millis(250);

/// Collects until a signal, the command's exit, every --pid's exit or --duration; prints the
/// --interval summaries meanwhile. Returns why it stopped, the exit code, the command's status.
fn collect(
    args: &Args,
    targets: &Targets,
    probes: &Probes,
    signals: &system::Signals,
    sampler: &mut Sampler,
    images: &mut Images,
    memory: &mut MemoryWatch,
) -> Result<(EndReason, i32, Option<i32>)> {
    let start = Instant::now();
    let mut last_interval = (Instant::now(), None::<Snapshot>);
    // netpoll sleeps until something happens: a signal, the command's or a --pid's exit (their
    // pidfds), the end of --duration or of an interval, or at most LONGEST_SLEEP for the
    // verdict's sampling (once a second). Waking every 20 ms cost about 1 % of a CPU here.
    let mut watched: Vec<(u32, std::os::fd::OwnedFd)> = targets
        .given_pids
        .iter()
        .chain(targets.command.as_ref().map(|c| &c.pid))
        .filter_map(|&pid| Some((pid, system::pidfd(pid)?)))
        .collect();
    let all_watched = watched.len() == targets.given_pids.len() + targets.command.iter().count();
    // The verdict's first look at the targets, as the collection starts.
    sampler.tick();
    loop {
        let mut sleep = if all_watched && probes.mode.stacks().is_none() {
            LONGEST_SLEEP
        } else {
            // Without a pidfd, exits are noticed by looking; `--stacks` learns every 50 ms.
            Duration::from_millis(20)
        };
        if let Some(d) = args.duration {
            sleep = sleep.min(d.saturating_sub(start.elapsed()));
        }
        if let Some(every) = args.interval {
            sleep = sleep.min(every.saturating_sub(last_interval.0.elapsed()));
        }
        {
            use std::os::fd::AsFd;
            let fds: Vec<_> = watched.iter().map(|(_, fd)| fd.as_fd()).collect();
            signals.wait(&fds, sleep);
        }
        // An exited process's pidfd stays readable: stop watching it (the command is a zombie
        // until reaped below, which is not alive either).
        watched.retain(|(pid, _)| crate::procfs::process_alive(*pid));
        sampler.tick();
        memory.tick();
        images.poll(probes);
        if let Some(code) = signals.received() {
            let status = targets.command.as_ref().and_then(HeldCommand::stop);
            return Ok((EndReason::Interrupted, code, status));
        }
        if let Some(c) = &targets.command
            && let CommandState::Exited(code) = c.poll()
        {
            return Ok((EndReason::CommandExited, 0, Some(code)));
        }
        if !targets.given_pids.is_empty()
            && !targets
                .given_pids
                .iter()
                .any(|&p| crate::procfs::process_alive(p))
        {
            return Ok((EndReason::TargetsExited, 0, None));
        }
        if args.duration.is_some_and(|d| start.elapsed() >= d) {
            return Ok((EndReason::Duration, 0, None));
        }
        if let Some(every) = args.interval
            && last_interval.0.elapsed() >= every
        {
            let now = probes.snapshot()?;
            print_interval(&now, last_interval.1.as_ref(), last_interval.0.elapsed());
            last_interval = (Instant::now(), Some(now));
        }
    }
}

fn print_interval(now: &Snapshot, before: Option<&Snapshot>, elapsed: Duration) {
    println!("{}", system::utc_now_rfc3339());
    if now.lite.is_some() {
        let window = before.map_or_else(|| now.clone(), |b| now.since(b));
        let lite = Lite::from_rows(window.lite.unwrap_or_default());
        println!("{}", output::lite_report(&lite, elapsed.as_secs_f64()));
        return;
    }
    let classes = classes_of(&now.measured_since(before));
    if classes.is_empty() {
        println!("(no measured syscalls in this interval)\n");
    } else {
        println!(
            "{}",
            output::table("CLASS", &classes, elapsed.as_secs_f64())
        );
    }
}

fn report(args: &Args, results: &Results, sinks: &mut ResultsSinks) -> Result<()> {
    if !args.results.quiet {
        print!("{}", output::report(results));
        if let Some(m) = &results.memory {
            print!("{}", output::memory_report(m, "targets", "sockets held"));
        }
    }
    sinks.write(results)
}
