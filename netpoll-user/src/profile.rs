//! `netpoll profile`: attach, collect until told to stop, report.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use analysis::{
    Results, SCHEMA,
    results::{ProcessStats, SyscallStats, Target, Tool, classes_of},
};
use anyhow::{Result, bail};

use crate::{
    output,
    probes::{Filter, HookMode, Options, Probes, Snapshot, slot_parts},
    system,
    target::{self, CommandState, HeldCommand},
};

/// What the user asked for, already parsed.
pub struct Request {
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    pub cgroup: Option<PathBuf>,
    pub all: bool,
    pub command: Vec<String>,
    pub follow_children: bool,
    pub per_pid: bool,
    pub duration: Option<Duration>,
    pub interval: Option<Duration>,
    pub json: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub hook: Option<HookMode>,
    pub floor: bool,
    pub quiet: bool,
}

/// Runs a profile; returns the process exit code.
pub fn run(req: Request, signals: &system::Signals) -> Result<i32> {
    // Everything a user can get wrong is checked before anything is attached.
    let targets = [
        !req.pids.is_empty(),
        req.comm.is_some(),
        req.cgroup.is_some(),
        req.all,
        !req.command.is_empty(),
    ];
    match targets.iter().filter(|&&t| t).count() {
        0 => bail!(
            "nothing to profile: give --pid PID, --comm NAME, --cgroup PATH, --all, or -- COMMAND [ARGS...]"
        ),
        1 => {}
        _ => bail!("give one kind of target: --pid, --comm, --cgroup, --all or -- COMMAND"),
    }
    if req.duration.is_some_and(|d| d.is_zero()) || req.interval.is_some_and(|d| d.is_zero()) {
        bail!("--duration and --interval must be greater than zero");
    }
    system::check_privileges()?;
    let mut sinks = output::ResultsSinks::open(req.json.as_deref(), req.out.as_deref())?;
    target::check_pids(&req.pids)?;
    let comm = req.comm.clone();
    if let Some(name) = &comm
        && name.len() > 15
    {
        eprintln!(
            "netpoll: note: the kernel keeps 15 bytes of a task name; matching {:?}",
            &name[..15]
        );
    }
    let cgroup = req.cgroup.as_deref().map(system::cgroup_id).transpose()?;
    let mut command = if req.command.is_empty() {
        None
    } else {
        Some(HeldCommand::spawn(&req.command)?)
    };

    let mut pids = req.pids.clone();
    pids.extend(command.as_ref().map(|c| c.pid));
    let filter = match (&comm, &cgroup) {
        _ if !pids.is_empty() => Filter::Pids(pids.clone()),
        (Some(name), _) => Filter::Comm(name.clone()),
        (_, Some((_, id))) => Filter::Cgroup(*id),
        _ => Filter::All,
    };
    let options = Options {
        filter,
        follow_children: req.follow_children,
        per_pid: req.per_pid,
        hook: req.hook,
        floor: req.floor,
    };
    let mut probes = match Probes::load(&options) {
        Ok(p) => p,
        Err(e) => {
            if let Some(c) = &command {
                c.stop();
            }
            return Err(e);
        }
    };
    if probes.following {
        // Children that existed before we attached (nginx's workers, say). Scanned after the
        // fork hook is attached, so every child is caught by one or the other.
        for pid in system::descendants(&pids) {
            probes.add_target(pid)?;
        }
    }
    for note in &probes.notes {
        eprintln!("netpoll: note: {note}");
    }
    let started_at = system::utc_now_rfc3339();
    let start = Instant::now();
    let what = describe_target(&req, &pids, cgroup.as_ref().map(|c| &c.0));
    eprintln!(
        "netpoll: attached {} hooks to {what}; {}",
        probes.hook.name(),
        match req.duration {
            Some(d) => format!(
                "collecting for {:.1}s (Ctrl-C to stop early)",
                d.as_secs_f64()
            ),
            None => "collecting until Ctrl-C".to_string(),
        }
    );
    if let Some(c) = command.as_mut() {
        c.release()?;
    }

    let tick = Duration::from_millis(20);
    let mut last_interval = (Instant::now(), None::<Snapshot>);
    let mut command_exit_code = None;
    let (end_reason, exit_code) = loop {
        std::thread::sleep(tick);
        if let Some(code) = signals.received() {
            if let Some(c) = &command {
                command_exit_code = c.stop();
            }
            break ("interrupted", code);
        }
        if let Some(c) = &command
            && let CommandState::Exited(code) = c.poll()
        {
            command_exit_code = Some(code);
            break ("command_exited", 0);
        }
        if !req.pids.is_empty() && !req.pids.iter().any(|&p| system::process_alive(p)) {
            break ("targets_exited", 0);
        }
        if req.duration.is_some_and(|d| start.elapsed() >= d) {
            break ("duration", 0);
        }
        if let Some(every) = req.interval
            && last_interval.0.elapsed() >= every
        {
            let now = probes.snapshot()?;
            print_interval(&now, last_interval.1.as_ref(), last_interval.0.elapsed());
            last_interval = (Instant::now(), Some(now));
        }
    };
    let snapshot = probes.snapshot()?;
    let tables = tables_from(&snapshot);
    let duration_ns = start.elapsed().as_nanos() as u64;
    let results = Results {
        schema: SCHEMA.to_string(),
        tool: Tool {
            name: "netpoll".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        target: Target {
            kind: match () {
                _ if !req.command.is_empty() => "command",
                _ if !req.pids.is_empty() => "pid",
                _ if comm.is_some() => "comm",
                _ if cgroup.is_some() => "cgroup",
                _ => "all",
            }
            .into(),
            pids,
            comm,
            cgroup: cgroup.map(|c| c.0.display().to_string()),
            command: req.command.clone(),
            follow_children: probes.following,
        },
        host: system::host(),
        hook: probes.hook.name().into(),
        socket_split: probes.socket_split,
        started_at,
        ended_at: system::utc_now_rfc3339(),
        duration_ns,
        end_reason: end_reason.into(),
        partial: end_reason == "interrupted",
        command_exit_code,
        syscalls: tables.syscalls,
        classes: tables.classes,
        lower_bound: tables.lower_bound,
        processes: tables.processes,
        counters: snapshot.counters.clone(),
        run: None,
    };
    // Detach before printing: the report is done, the target should not pay for our output.
    drop(probes);
    if !req.quiet {
        print!("{}", output::report(&results));
    }
    sinks.write(&results)?;
    Ok(exit_code)
}

fn describe_target(req: &Request, pids: &[u32], cgroup: Option<&PathBuf>) -> String {
    if !req.command.is_empty() {
        return format!(
            "`{}` (PID {})",
            req.command.join(" "),
            pids.last().copied().unwrap_or(0)
        );
    }
    if let Some(name) = &req.comm {
        return format!("tasks named {name:?}");
    }
    if let Some(path) = cgroup {
        return format!("cgroup {}", path.display());
    }
    if req.all {
        return "every process".into();
    }
    let list: Vec<String> = pids
        .iter()
        .map(|&p| format!("{p} ({})", system::process_comm(p)))
        .collect();
    format!("PID {}", list.join(", "))
}

/// The measured part of a results file, from one snapshot.
pub struct Tables {
    pub syscalls: Vec<SyscallStats>,
    pub classes: Vec<SyscallStats>,
    pub lower_bound: Vec<SyscallStats>,
    pub processes: BTreeMap<u32, ProcessStats>,
}

/// Splits a snapshot into syscall, class, lower-bound and per-process lists. With --per-pid the
/// totals are the processes' sums plus what could not be attributed to a process.
pub fn tables_from(snapshot: &Snapshot) -> Tables {
    let (mut syscalls, mut lower_bound) = split_slots(&snapshot.slots);
    let mut processes = BTreeMap::new();
    for (&pid, slots) in &snapshot.per_pid {
        let (measured, lower) = split_slots(slots);
        add_rows(&mut syscalls, &measured);
        add_rows(&mut lower_bound, &lower);
        let comm = snapshot
            .comms
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| system::process_comm(pid));
        let classes = classes_of(&measured);
        processes.insert(
            pid,
            ProcessStats {
                comm,
                syscalls: measured,
                classes,
            },
        );
    }
    Tables {
        classes: classes_of(&syscalls),
        syscalls,
        lower_bound,
        processes,
    }
}

/// Adds rows into totals, matching by syscall and fd kind.
fn add_rows(totals: &mut Vec<SyscallStats>, rows: &[SyscallStats]) {
    for row in rows {
        match totals
            .iter_mut()
            .find(|t| t.name == row.name && t.fd == row.fd)
        {
            Some(total) => total.merge(row),
            None => totals.push(row.clone()),
        }
    }
}

fn split_slots(slots: &[SyscallStats]) -> (Vec<SyscallStats>, Vec<SyscallStats>) {
    let (mut measured, mut lower) = (Vec::new(), Vec::new());
    for (slot, row) in slots.iter().enumerate() {
        if row.calls == 0 {
            continue;
        }
        if slot_parts(slot).2 {
            lower.push(row.clone())
        } else {
            measured.push(row.clone())
        }
    }
    (measured, lower)
}

fn print_interval(now: &Snapshot, before: Option<&Snapshot>, elapsed: Duration) {
    let rows: Vec<_> = now
        .slots
        .iter()
        .enumerate()
        .filter(|(slot, _)| !slot_parts(*slot).2)
        .map(|(slot, row)| before.map_or(row.clone(), |b| row.since(&b.slots[slot])))
        .filter(|r| r.calls > 0)
        .collect();
    let classes = classes_of(&rows);
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
