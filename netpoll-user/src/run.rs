//! `netpoll run`: one I/O model's server as its own process, the probes attached to it, the load
//! generator driving it, and one results file with both sides.

use std::{net::TcpListener, os::fd::AsRawFd as _, path::PathBuf};

use analysis::{
    Results, SCHEMA,
    results::{Target, Tool},
    run::{PerRequest, RunInfo, ServerConfig, ServerProcess},
};
use anyhow::{Context as _, Result, bail};

use crate::{
    load::{self, LoadOptions, Plan, Protocol, StopReason, Watcher},
    output,
    probes::{Filter, HookMode, Options, Probes, Snapshot},
    profile::tables_from,
    serve::ServeRequest,
    system::{self, ProcessSample},
    target::{CommandState, HeldCommand},
    workloads,
};

pub struct Request {
    pub server: ServeRequest,
    pub load: LoadOptions,
    pub json: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub hook: Option<HookMode>,
    pub quiet: bool,
}

/// Snapshots the probes and the server process at the window's edges, and watches for the
/// server dying and for Ctrl-C.
struct RunWatcher<'a> {
    probes: &'a Probes,
    server: &'a HeldCommand,
    signals: &'a system::Signals,
    before: Option<(Snapshot, ProcessSample)>,
    after: Option<(Snapshot, ProcessSample)>,
    peak_threads: u64,
    /// The latest cheap sample (CPU, threads), for when the server dies before the window ends.
    last_stat: Option<ProcessSample>,
    died: Option<(String, i32)>,
}

impl RunWatcher<'_> {
    fn sample(&mut self) -> Result<(Snapshot, ProcessSample)> {
        // A dead server's last figures are those of the latest tick (context switches lost).
        let process = ProcessSample::read(self.server.pid)
            .or(self.last_stat)
            .unwrap_or_default();
        self.peak_threads = self.peak_threads.max(process.threads);
        Ok((self.probes.snapshot()?, process))
    }
}

impl Watcher for RunWatcher<'_> {
    fn measurement_started(&mut self) -> Result<()> {
        self.before = Some(self.sample()?);
        Ok(())
    }

    fn measurement_ended(&mut self) -> Result<()> {
        self.after = Some(self.sample()?);
        Ok(())
    }

    fn check(&mut self) -> Option<StopReason> {
        if let Some(code) = self.signals.received() {
            return Some(StopReason::Signal(code));
        }
        if let CommandState::Exited(code) = self.server.poll() {
            let how = describe_exit(code);
            self.died = Some((how.clone(), code));
            return Some(StopReason::ServerDied(how));
        }
        if let Some(stat) = ProcessSample::read_stat(self.server.pid) {
            self.peak_threads = self.peak_threads.max(stat.threads);
            self.last_stat = Some(stat);
        }
        None
    }
}

fn describe_exit(code: i32) -> String {
    match code {
        c if c > 128 => match nix::sys::signal::Signal::try_from(c - 128) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {}", c - 128),
        },
        c => format!("exited with status {c}"),
    }
}

/// Runs `netpoll run`; returns the exit code.
pub fn run(req: Request, signals: &system::Signals) -> Result<i32> {
    // Everything a user can get wrong is checked before the server starts.
    let model = workloads::find(&req.server.model)?;
    let payload = req.server.payload;
    if payload == 0 {
        bail!("--payload must be at least 1 byte");
    }
    let mut sinks = output::ResultsSinks::open(req.json.as_deref(), req.out.as_deref())?;
    system::check_privileges()?;
    // Listening here makes a busy port a clear error now, and tells us the address; the server
    // inherits the socket.
    let listen = req.server.listen;
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let plan = Plan::with(
        addr,
        addr.to_string(),
        Protocol::echo(payload),
        Some(payload),
        &req.load,
    )?;
    if let Some(limit) = model.descriptor_limit {
        // Descriptors 0-2, the listener and the model's own take the lowest numbers.
        let needed = req.load.connections + req.load.idle_connections + 8;
        if needed > limit {
            bail!(
                "{} watches only descriptors below {limit}: {} connections + {} idle need about {needed}; use fewer, or poll or epoll",
                model.name,
                req.load.connections,
                req.load.idle_connections
            );
        }
    }
    // The server needs a descriptor per connection too; it inherits the raised limit.
    system::ensure_fd_limit(plan.descriptors(), "the connections")?;

    let exe = std::env::current_exe().context("cannot find the netpoll executable")?;
    let s = &req.server;
    let mut argv = vec![
        exe.display().to_string(),
        "serve".into(),
        "--model".into(),
        model.name.into(),
        "--payload".into(),
        payload.to_string(),
        "--think-us".into(),
        s.think_us.to_string(),
        "--disk-read".into(),
        s.disk_read.to_string(),
        "--threads".into(),
        s.threads.to_string(),
        "--listen-fd".into(),
        listener.as_raw_fd().to_string(),
    ];
    if s.sqpoll {
        argv.push("--sqpoll".into());
    }
    let mut server = HeldCommand::spawn_passing(&argv, Some(listener.as_raw_fd()))?;
    drop(listener);
    let options = Options {
        filter: Filter::Pids(vec![server.pid]),
        follow_children: true,
        per_pid: false,
        hook: req.hook,
        floor: false,
    };
    let probes = match Probes::load(&options) {
        Ok(p) => p,
        Err(e) => {
            server.stop();
            return Err(e);
        }
    };
    for note in &probes.notes {
        eprintln!("netpoll: note: {note}");
    }
    eprintln!(
        "netpoll: attached {} hooks to the {} server (PID {}) on {addr}",
        probes.hook.name(),
        model.name,
        server.pid
    );
    if let Err(e) = server.release() {
        server.stop();
        return Err(e);
    }
    let started_at = system::utc_now_rfc3339();
    let mut watcher = RunWatcher {
        probes: &probes,
        server: &server,
        signals,
        before: None,
        after: None,
        peak_threads: 0,
        last_stat: None,
        died: None,
    };
    let outcome = load::run(&plan, &mut watcher, !req.quiet);
    let RunWatcher {
        before,
        after,
        peak_threads,
        died,
        ..
    } = watcher;
    // The server is stopped whatever happened; the probes stay until the last snapshot.
    if died.is_none() {
        server.stop();
    }
    let outcome = outcome?;
    let after = match after {
        Some(a) => a,
        None => (probes.snapshot()?, ProcessSample::default()),
    };
    // Ended before the measurement began: an empty window.
    let before = before.unwrap_or_else(|| after.clone());
    let window = after.0.since(&before.0);
    let (hook, socket_split) = (probes.hook.name(), probes.socket_split);
    drop(probes);

    let tables = tables_from(&window);
    let (p0, p1) = (&before.1, &after.1);
    let switches_known = p0.switches_read && p1.switches_read;
    if !switches_known {
        eprintln!(
            "netpoll: note: the server's context switches could not be read at both ends of the \
             window; they are reported as 0"
        );
    }
    let server_process = ServerProcess {
        pid: server.pid,
        cpu_user_ns: p1.user_ns.saturating_sub(p0.user_ns),
        cpu_system_ns: p1.system_ns.saturating_sub(p0.system_ns),
        voluntary_switches: (p1.voluntary_switches.saturating_sub(p0.voluntary_switches))
            * u64::from(switches_known),
        involuntary_switches: (p1
            .involuntary_switches
            .saturating_sub(p0.involuntary_switches))
            * u64::from(switches_known),
        peak_threads,
        died: died.as_ref().map(|d| d.0.clone()),
    };
    let syscalls: u64 = tables.syscalls.iter().map(|s| s.calls).sum();
    let eagain: u64 = tables.syscalls.iter().map(|s| s.eagain).sum();
    let epoll_waits: u64 = tables
        .syscalls
        .iter()
        .filter(|s| s.name.starts_with("epoll_"))
        .map(|s| s.calls)
        .sum();
    let load_results = outcome.results;
    let per_request = PerRequest::compute(
        load_results.requests,
        syscalls,
        epoll_waits,
        eagain,
        &server_process,
    );
    let (end_reason, exit_code) = match &outcome.stopped {
        None => ("duration", 0),
        Some(StopReason::Signal(code)) => ("interrupted", *code),
        Some(StopReason::ServerDied(_)) => ("server_died", 1),
    };
    let results = Results {
        schema: SCHEMA.into(),
        tool: Tool {
            name: "netpoll".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        target: Target {
            kind: "run".into(),
            pids: vec![server.pid],
            command: argv,
            follow_children: true,
            ..Target::default()
        },
        host: system::host(),
        hook: hook.into(),
        socket_split,
        started_at,
        ended_at: system::utc_now_rfc3339(),
        duration_ns: load_results.duration_ns,
        end_reason: end_reason.into(),
        partial: outcome.stopped.is_some(),
        command_exit_code: died.as_ref().map(|d| d.1),
        syscalls: tables.syscalls,
        classes: tables.classes,
        lower_bound: tables.lower_bound,
        processes: tables.processes,
        counters: window.counters,
        run: Some(RunInfo {
            model: model.name.into(),
            server: ServerConfig {
                listen: addr.to_string(),
                payload,
                think_us: s.think_us,
                disk_read: s.disk_read,
                threads: s.threads,
                sqpoll: s.sqpoll,
            },
            load: load_results,
            server_process,
            per_request,
        }),
    };
    if !req.quiet
        && let Some(run) = &results.run
    {
        print!("{}", output::load_report(&run.load));
        print!("{}", output::report(&results));
        print!("{}", output::run_report(run));
    }
    sinks.write(&results)?;
    if let Some((how, _)) = &died {
        eprintln!(
            "netpoll: error: the server died during the run ({how}); client-side results kept"
        );
    }
    Ok(exit_code)
}
