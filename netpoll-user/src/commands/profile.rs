//! `netpoll profile`: check the request, attach to the targets, collect until told to stop,
//! report.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use analysis::{
    Results,
    results::{EndReason, Target, TargetKind, classes_of},
    workload::parse_seconds,
};
use anyhow::{Result, bail};

use super::ResultsArgs;
use crate::{
    output,
    probes::{
        Filter, Options, Probes,
        snapshot::{Collection, Snapshot},
        target::{self, CommandState, HeldCommand},
    },
    sinks::ResultsSinks,
    system,
};

#[derive(clap::Args)]
pub struct Args {
    /// Profile this process (all its threads, and what it spawns); repeat for several.
    #[arg(short, long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Profile every task with this name (as in /proc/PID/comm, at most 15 bytes).
    #[arg(short, long, value_name = "NAME")]
    comm: Option<String>,
    /// Profile every task in this cgroup v2 (absolute, or relative to /sys/fs/cgroup).
    #[arg(short = 'g', long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Profile every process on the machine.
    #[arg(short, long)]
    all: bool,
    /// Do not follow processes and threads created by --pid targets or the command.
    #[arg(long)]
    no_follow: bool,
    /// Break the results down by process.
    #[arg(long)]
    per_pid: bool,
    /// Stop after this many seconds (default: until Ctrl-C, the command exits, or every --pid exits).
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Print a class summary every SECS seconds while collecting.
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    interval: Option<Duration>,
    #[command(flatten)]
    results: ResultsArgs,
    /// Attach do-nothing programs on the same hooks instead: the floor of the overhead benchmark.
    #[arg(long, hide = true)]
    empty_programs: bool,
    /// Command to start and profile from its first syscall.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The targets, resolved: what the kernel filters on, and what the results say.
struct Targets {
    filter: Filter,
    target: Target,
    /// The command started with `--`, held until the probes are attached.
    command: Option<HeldCommand>,
    /// The `--pid`s given (their exit ends the collection).
    given_pids: Vec<u32>,
}

/// Runs a profile; returns the process exit code.
pub fn run(args: Args) -> Result<i32> {
    // Handlers before anything starts, so that Ctrl-C at any moment is handled.
    let signals = system::Signals::install()?;
    check(&args)?;
    system::check_privileges()?;
    let mut sinks = ResultsSinks::open(args.results.json.as_deref(), args.results.out.as_deref())?;
    let mut targets = resolve_targets(&args)?;
    let probes = match attach(&args, &targets) {
        Ok(p) => p,
        Err(e) => {
            if let Some(c) = &targets.command {
                c.stop();
            }
            return Err(e);
        }
    };
    let started_at = system::utc_now_rfc3339();
    let start = Instant::now();
    announce(&args, &targets, &probes);
    if let Some(c) = targets.command.as_mut() {
        c.release()?;
    }
    let (end_reason, exit_code, command_exit_code) = collect(&args, &targets, &probes, &signals)?;
    let results = probes.snapshot()?.into_results(Collection {
        target: Target {
            follow_children: probes.following,
            ..targets.target
        },
        hook: probes.hook,
        socket_split: probes.socket_split,
        started_at,
        duration_ns: start.elapsed().as_nanos() as u64,
        end_reason,
        command_exit_code,
        run: None,
    });
    // Detach before printing: the report is done, the target should not pay for our output.
    drop(probes);
    report(&args, &results, &mut sinks)?;
    Ok(exit_code)
}

/// Everything a user can get wrong is checked before anything is attached.
fn check(args: &Args) -> Result<()> {
    let kinds = [
        !args.pids.is_empty(),
        args.comm.is_some(),
        args.cgroup.is_some(),
        args.all,
        !args.command.is_empty(),
    ];
    match kinds.iter().filter(|&&t| t).count() {
        0 => bail!(
            "nothing to profile: give --pid PID, --comm NAME, --cgroup PATH, --all, or -- COMMAND [ARGS...]"
        ),
        1 => {}
        _ => bail!("give one kind of target: --pid, --comm, --cgroup, --all or -- COMMAND"),
    }
    target::check_pids(&args.pids)
}

fn resolve_targets(args: &Args) -> Result<Targets> {
    if let Some(name) = &args.comm
        && name.len() > 15
    {
        eprintln!(
            "netpoll: note: the kernel keeps 15 bytes of a task name; matching {:?}",
            &name[..15]
        );
    }
    let cgroup = args.cgroup.as_deref().map(system::cgroup_id).transpose()?;
    let command = if args.command.is_empty() {
        None
    } else {
        Some(HeldCommand::spawn(&args.command)?)
    };
    let mut pids = args.pids.clone();
    pids.extend(command.as_ref().map(|c| c.pid));
    let (kind, filter) = match (&args.comm, &cgroup) {
        _ if command.is_some() => (TargetKind::Command, Filter::Pids(pids.clone())),
        _ if !pids.is_empty() => (TargetKind::Pid, Filter::Pids(pids.clone())),
        (Some(name), _) => (TargetKind::Comm, Filter::Comm(name.clone())),
        (_, Some((_, id))) => (TargetKind::Cgroup, Filter::Cgroup(*id)),
        _ => (TargetKind::All, Filter::All),
    };
    Ok(Targets {
        filter,
        target: Target {
            kind,
            pids,
            comm: args.comm.clone(),
            cgroup: cgroup.map(|c| c.0.display().to_string()),
            command: args.command.clone(),
            follow_children: false,
        },
        command,
        given_pids: args.pids.clone(),
    })
}

fn attach(args: &Args, targets: &Targets) -> Result<Probes> {
    let mut probes = Probes::load(&Options {
        filter: targets.filter.clone(),
        follow_children: !args.no_follow,
        per_pid: args.per_pid,
        hook: args.results.hook,
        floor: args.empty_programs,
    })?;
    if probes.following {
        // Children that existed before we attached (nginx's workers, say). Scanned after the
        // fork hook is attached, so every child is caught by one or the other.
        for pid in system::descendants(&targets.target.pids) {
            probes.add_target(pid)?;
        }
    }
    for note in &probes.notes {
        eprintln!("netpoll: note: {note}");
    }
    Ok(probes)
}

fn announce(args: &Args, targets: &Targets, probes: &Probes) {
    let t = &targets.target;
    let what = match t.kind {
        TargetKind::Command => format!(
            "`{}` (PID {})",
            t.command.join(" "),
            t.pids.last().copied().unwrap_or(0)
        ),
        TargetKind::Comm => format!("tasks named {:?}", t.comm.as_deref().unwrap_or_default()),
        TargetKind::Cgroup => format!("cgroup {}", t.cgroup.as_deref().unwrap_or_default()),
        TargetKind::All => "every process".into(),
        TargetKind::Pid | TargetKind::Run => {
            let list: Vec<String> = t
                .pids
                .iter()
                .map(|&p| format!("{p} ({})", system::process_comm(p)))
                .collect();
            format!("PID {}", list.join(", "))
        }
    };
    eprintln!(
        "netpoll: attached {} hooks to {what}; {}",
        probes.hook.name(),
        match args.duration {
            Some(d) => format!(
                "collecting for {:.1}s (Ctrl-C to stop early)",
                d.as_secs_f64()
            ),
            None => "collecting until Ctrl-C".to_string(),
        }
    );
}

/// Collects until a signal, the command's exit, every --pid's exit or --duration; prints the
/// --interval summaries meanwhile. Returns why it stopped, the exit code, the command's status.
fn collect(
    args: &Args,
    targets: &Targets,
    probes: &Probes,
    signals: &system::Signals,
) -> Result<(EndReason, i32, Option<i32>)> {
    let start = Instant::now();
    let mut last_interval = (Instant::now(), None::<Snapshot>);
    loop {
        std::thread::sleep(Duration::from_millis(20));
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
            && !targets.given_pids.iter().any(|&p| system::process_alive(p))
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
    let classes = classes_of(&now.measured_since(before));
    println!("{}", system::utc_now_rfc3339());
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
    }
    sinks.write(results)
}
