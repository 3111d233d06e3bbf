//! `netpoll run`: one I/O model's server (or a third-party server, `--server-cmd`) as its own
//! process, the probes attached to it, the load generator driving it, and one results file with
//! both sides. In steps: check everything, start the server (held before its first
//! instruction), attach, wait until it listens, measure, assemble, report.

mod server;

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
};

use analysis::{
    Results,
    memory::{MemoryEdge, RunMemory},
    models::Transport,
    models::{SPARE_DESCRIPTORS, Stop},
    results::{EndReason, Target, TargetKind},
    run::{Environment, PerRequest, RunInfo, SchedPerRequest, ServerProcess},
    sched::CallSched,
    verdict::{self, Observed},
    workload::{CpuList, LoadOptions, ServerConfig, Workload, cpu_list},
};
use anyhow::{Context as _, Result, anyhow, bail};

use self::server::{Server, Spec};
use super::{ResultsArgs, StackArgs};
use crate::{
    go,
    load::{self, Outcome, Plan, Protocol, StopReason, Watcher},
    memory, netns,
    observe::Sampler,
    output,
    probes::{
        Filter, GoProbes, Mode, Options, Probes, StackWalk,
        snapshot::{Collection, Snapshot},
        target::CommandState,
    },
    procfs::{self, MachineSample, ProcessSample},
    sinks::ResultsSinks,
    stacks::Images,
    system, workloads,
};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["model", "server_cmd"])))]
pub struct Args {
    /// I/O model to run (see `netpoll models`).
    #[arg(short, long)]
    model: Option<String>,
    #[command(flatten)]
    server: ServerConfig,
    #[command(flatten)]
    external: server::ExternalArgs,
    /// Address the model's server listens on (port 0: a free one).
    #[arg(
        short,
        long,
        default_value = "127.0.0.1:0",
        conflicts_with = "server_cmd"
    )]
    listen: SocketAddr,
    /// Run the model's server in a network namespace of its own, reached through a veth pair
    /// (198.18.0.0/15 addresses, the --listen port): requests cross a network device instead
    /// of loopback. Removed after the run; a crashed run's leftovers at the next one.
    #[arg(long, conflicts_with = "server_cmd")]
    netns: bool,
    #[command(flatten)]
    load: LoadOptions,
    /// Pin the server (all its threads) to these CPUs, like `taskset -c` (e.g. 1, or 2-3).
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    server_cpus: Option<CpuList>,
    /// Pin the load generator to these CPUs (disjoint from --server-cpus: less noise).
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    client_cpus: Option<CpuList>,
    /// The scheduler view: where the server's time per request goes (running, blocked, waiting
    /// for a CPU) and who wakes its threads. Adds hooks on every context switch and wakeup.
    #[arg(long)]
    sched: bool,
    /// The readiness-to-service view: how long each descriptor the server's waits report
    /// ready waits before the server touches it, and its event-loop turns. See
    /// `netpoll profile --ready`.
    #[arg(long)]
    ready: bool,
    /// The io_uring view, for an io_uring server (io-uring, io-uring+sqpoll, udp-io-uring, or a
    /// --server-cmd): each request's path through io_uring (inline, waited for readiness,
    /// io-wq), by operation, with its latency and phases. See `netpoll profile --uring`.
    #[arg(long)]
    uring: bool,
    /// The Go view, for a server written in Go (go-netpoller, or a Go --server-cmd): its
    /// runtime's scheduler sampled from its memory during the measurement window (goroutines
    /// parked on the network, runnable, in system calls; Ps, threads, the netpoller). See
    /// `netpoll profile --go`.
    #[arg(long)]
    go: bool,
    /// --go, plus every goroutine's network park, wake-up by netpoll and start, and the Ps
    /// handed off from blocked threads, over the window: uprobes on the runtime (about 13 µs
    /// per hit, a few hits per request: the server slows down). See `netpoll profile --go-exact`.
    #[arg(long)]
    go_exact: bool,
    #[command(flatten)]
    stacks: StackArgs,
    #[command(flatten)]
    results: ResultsArgs,
}

/// Runs `netpoll run`; returns the exit code.
pub fn run(args: Args) -> Result<i32> {
    // Handlers before anything starts, so that Ctrl-C at any moment is handled (server
    // stopped, probes detached, results written).
    let signals = system::Signals::install()?;
    let mut checked = check(args)?;
    let mut server = Server::spawn(
        &checked.spec,
        &checked.workload,
        checked.server_cpus.as_deref(),
    )?;
    let mut probes = match attach(&checked, &mut server) {
        Ok(p) => p,
        Err(e) => {
            server.stop(&checked.spec);
            return Err(e);
        }
    };
    match server.wait_until_listening(&checked.spec, &signals) {
        Ok(None) => {}
        Ok(Some(code)) => {
            server.stop(&checked.spec);
            eprintln!("netpoll: interrupted before the server listened; nothing was measured");
            return Ok(code);
        }
        Err(e) => {
            server.stop(&checked.spec);
            return Err(e);
        }
    }
    // --go-exact: the server has exec'd its binary by now; the window opens after the
    // warm-up, so no transition it counts is missed.
    let exact = checked
        .go_exact
        .then(|| go_exact(&mut probes, server.pid()))
        .flatten();
    let started_at = system::utc_now_rfc3339();
    let images = Images::new(&mut probes);
    let measured = measure(&checked, &probes, exact.as_ref(), &server, &signals, images);
    // The server is stopped whatever happened (a dead model's server is already reaped; a
    // third-party server's group may still hold children); the probes stay until the last
    // snapshot.
    if measured.as_ref().map_or(true, |m| m.died.is_none())
        || matches!(checked.spec, Spec::External { .. })
    {
        server.stop(&checked.spec);
    }
    let measured = measured?;
    let exit_code = match &measured.outcome.stopped {
        None => 0,
        Some(StopReason::Signal(code)) => *code,
        Some(StopReason::ServerDied(_)) => 1,
    };
    let results = assemble(&checked, &probes, &server, started_at, measured)?;
    drop(probes);
    report(&mut checked, &results)?;
    Ok(exit_code)
}

/// `--go-exact`'s uprobes on the running server, or a one-line note why not.
fn go_exact(probes: &mut Probes, pid: u32) -> Option<go::exact::Plan> {
    let mut plan = go::exact::Plan::prepare_running(pid)
        .map_err(|e| eprintln!("netpoll: note: --go-exact: {e:#}"))
        .ok()?;
    plan.attach(probes)
        .map_err(|e| eprintln!("netpoll: note: --go-exact: {e:#}"))
        .ok()?;
    Some(plan)
}

/// What `check` found: everything a run needs before the server starts.
struct Checked {
    workload: Workload,
    spec: Spec,
    /// The veth path with `--netns`: torn down when dropped, after the server has stopped.
    path: Option<netns::Path>,
    plan: Plan,
    sinks: ResultsSinks,
    quiet: bool,
    hook: Option<netpoll_ebpf::abi::HookKind>,
    server_cpus: Option<Vec<usize>>,
    client_cpus: Option<Vec<usize>>,
    sched: bool,
    ready: bool,
    uring: bool,
    go: bool,
    go_exact: bool,
    stacks: Option<StackWalk>,
}

/// Everything a user can get wrong is checked before the server starts.
fn check(args: Args) -> Result<Checked> {
    let sinks = ResultsSinks::open(args.results.json.as_deref(), args.results.out.as_deref())?;
    system::check_privileges()?;
    for (cpus, option) in [
        (&args.server_cpus, "--server-cpus"),
        (&args.client_cpus, "--client-cpus"),
    ] {
        if let Some(CpuList(cpus)) = cpus {
            system::check_cpus(cpus, option)?;
        }
    }
    let path = if args.netns {
        for name in netns::remove_leftovers() {
            eprintln!("netpoll: removed network namespace {name}, left by a run that crashed");
        }
        Some(netns::Path::create(std::process::id())?)
    } else {
        None
    };
    let (workload, spec, plan) = match (&args.model, &args.external.server_cmd) {
        (Some(model), _) => check_model(model, &args, path.as_ref())?,
        (None, Some(command)) => check_external(command, &args)?,
        (None, None) => bail!("give --model or --server-cmd"),
    };
    // The server needs a descriptor per connection too; it inherits the raised limit.
    system::ensure_fd_limit(plan.descriptors(), "the connections")?;
    Ok(Checked {
        workload,
        spec,
        path,
        plan,
        sinks,
        quiet: args.results.quiet,
        hook: args.results.hook,
        server_cpus: args.server_cpus.map(|c| c.0),
        client_cpus: args.client_cpus.map(|c| c.0),
        sched: args.sched,
        ready: args.ready,
        uring: args.uring,
        go: args.go || args.go_exact,
        go_exact: args.go_exact,
        stacks: args.stacks.walk(),
    })
}

/// One of netpoll's models: built if it must be, on a listener opened here (a busy port is a
/// clear error now, and the address is known), which the server inherits.
fn check_model(
    model: &str,
    args: &Args,
    path: Option<&netns::Path>,
) -> Result<(Workload, Spec, Plan)> {
    let workload = Workload {
        model: model.into(),
        server: args.server.clone(),
        external: None,
    };
    let (mut workload, model) = workload.resolve().map_err(|e| anyhow!(e))?;
    // A model built on first use is built now, not while the load generator waits.
    workloads::prepare(&workload.model)?;
    if model.family == analysis::verdict::Family::KernelBypass && path.is_none() {
        bail!(
            "{} takes packets from a network device, and loopback has none: add --netns",
            model.name
        );
    }
    let payload = workload.server.payload;
    // With --netns the socket is made inside the namespace, on the server's address there.
    let listen = match path {
        Some(p) => SocketAddr::new(p.server_ip.into(), args.listen.port()),
        None => args.listen,
    };
    let transport = model.transport;
    let workers = workload.server.processes();
    let bind = move || -> Result<(OwnedFd, SocketAddr)> {
        Ok(match transport {
            Transport::Tcp => {
                let l = workloads::workers::listen(listen, workers > 1)?;
                let addr = l.local_addr()?;
                (l.into(), addr)
            }
            Transport::Udp => {
                let s =
                    UdpSocket::bind(listen).with_context(|| format!("cannot bind UDP {listen}"))?;
                let addr = s.local_addr()?;
                (s.into(), addr)
            }
        })
    };
    let (socket, addr) = match path {
        Some(p) => p.inside(bind)?,
        None => bind()?,
    };
    let plan = match transport {
        Transport::Tcp => Plan::with(
            addr,
            addr.to_string(),
            Protocol::echo(payload),
            Some(payload),
            &args.load,
        )?,
        Transport::Udp => Plan::new(&format!("udp://{addr}"), payload, &args.load)?,
    };
    workload.server.listen = plan.addr.to_string();
    check_limits(model, &workload.server, &args.load)?;
    Ok((
        workload,
        Spec::Model {
            socket,
            netns: path.map(|p| p.handle().as_raw_fd()),
            udp: (transport == Transport::Udp).then_some(addr),
        },
        plan,
    ))
}

/// Whether the model's server can hold the run's connections: each process within its own
/// limits (select's FD_SETSIZE, a thread per connection's mappings) and the open-files limit,
/// raised as far as it may be (the server inherits it). The limit named in one line when not,
/// with what would fit.
fn check_limits(
    model: &analysis::models::Model,
    server: &ServerConfig,
    load: &analysis::workload::LoadOptions,
) -> Result<()> {
    let processes = server.processes();
    let held = load.connections + load.idle_connections;
    // SO_REUSEPORT's hash spreads connections unevenly: room for a tenth more in each.
    let per_process = if processes == 1 {
        held
    } else {
        held.div_ceil(processes) * 11 / 10
    };
    let workers = if processes > 1 {
        format!(" ({processes} worker processes, about {per_process} connections each)")
    } else {
        String::new()
    };
    let limits = analysis::models::ProcessLimits::read();
    match model.stops(per_process, &limits) {
        Some(Stop::Model(why)) => bail!(
            "{why}: {} connections + {} idle{workers}; use fewer{}",
            load.connections,
            load.idle_connections,
            if model.descriptor_limit.is_some() {
                ", more --workers, or poll or epoll"
            } else {
                ""
            }
        ),
        Some(Stop::Descriptors(why)) => {
            let most = limits.descriptors - SPARE_DESCRIPTORS;
            let needed = held.div_ceil(most * 10 / 11).max(2);
            let max = analysis::workload::MAX_WORKERS as usize;
            if needed > max {
                bail!(
                    "{why}: {held} connections{workers}; {max} worker processes hold about {}: use fewer connections",
                    max * most * 10 / 11
                )
            }
            bail!(
                "{why}: {held} connections{workers}; use --workers {needed} (processes sharing the port) or fewer connections"
            )
        }
        None => {}
    }
    system::ensure_fd_limit((per_process + SPARE_DESCRIPTORS) as u64, "the connections")
}

/// A third-party server: its target as `netpoll load` takes it, and nothing else accepting
/// connections there yet.
fn check_external(command: &str, args: &Args) -> Result<(Workload, Spec, Plan)> {
    let e = &args.external;
    let connect = e
        .connect
        .as_deref()
        .ok_or_else(|| anyhow!("--server-cmd needs --connect"))?;
    let s = &args.server;
    if s.think_us != 0 || s.disk_read != 0 || s.threads != 0 || s.sqpoll {
        bail!(
            "--think-us, --disk-read, --threads and --sqpoll are options of netpoll's models, not of a --server-cmd server"
        );
    }
    let target = server::target(connect, e.protocol)?;
    let plan = Plan::new(&target, s.payload, &args.load)?;
    let name = e
        .name
        .clone()
        .unwrap_or_else(|| server::default_name(command));
    let mut workload = Workload::external(&name, command, &target);
    workload.server.payload = s.payload;
    workload.server.listen = plan.addr.to_string();
    let spec = Spec::external(e, command, plan.addr)?;
    Ok((workload, spec, plan))
}

fn attach(c: &Checked, server: &mut Server) -> Result<Probes> {
    let probes = Probes::load(&Options {
        filter: Filter::Pids(vec![server.pid()]),
        follow_children: true,
        hook: c.hook,
        mode: Mode::Full {
            per_pid: false,
            sched: c.sched,
            ready: c.ready,
            stacks: c.stacks,
        },
        // --go: the server's network polls attributed to their callers.
        go: c.go.then(|| GoProbes {
            pid: server.pid(),
            exact: c.go_exact,
        }),
        uring: c.uring,
    })?;
    for note in &probes.notes {
        eprintln!("netpoll: note: {note}");
    }
    eprintln!(
        "netpoll: attached {} hooks to the {} server (PID {}) on {}",
        probes.hook.name(),
        c.workload.label(),
        server.pid(),
        c.workload.server.listen
    );
    server.held.release()?;
    Ok(probes)
}

/// Everything sampled at an edge of the measurement window.
#[derive(Clone)]
struct Edge {
    probes: Snapshot,
    server: ProcessSample,
    /// netpoll's own process: the load generator.
    client: ProcessSample,
    machine: MachineSample,
    /// A kernel-bypass model's XDP counts.
    xdp: Option<analysis::run::XdpCounts>,
    /// The server's memory and the kernel's, read apart from the rest (before the load, and
    /// once the window has closed: too slow for the edge itself); None: the server was gone.
    memory: Option<MemoryEdge>,
}

/// What the load and the watcher measured.
struct Measured {
    outcome: Outcome,
    /// Samples at the window's edges.
    before: Option<Edge>,
    after: Option<Edge>,
    peak_threads: u64,
    /// How the server died during the run, and its exit status.
    died: Option<(String, i32)>,
    observed: Observed,
    /// io_uring's threads in the server over the window (from the samples at its edges).
    io_threads: Option<analysis::uring::UringThreads>,
    /// `--go`: the server's runtime over the window.
    go: Option<analysis::go::GoRuntime>,
    /// `--stacks`: the server's mappings.
    images: Images,
    /// The sum of the server processes' resident high-water marks when the window closed.
    peak_rss: u64,
}

/// Snapshots the probes and the server process at the window's edges, and watches for the
/// server dying and for Ctrl-C.
struct RunWatcher<'a> {
    probes: &'a Probes,
    server: &'a Server,
    signals: &'a system::Signals,
    before: Option<Edge>,
    after: Option<Edge>,
    peak_threads: u64,
    /// The latest cheap sample (CPU, threads), for when the server dies before the window ends.
    last_stat: Option<ProcessSample>,
    died: Option<(String, i32)>,
    /// The server's state in /proc for the I/O-model verdict, sampled at the window's edges.
    sampler: Sampler,
    /// A kernel-bypass model: its XDP program's counts are read at the edges too.
    bypass: bool,
    /// `--go`: sampling the server's Go runtime during the window.
    go: Option<go::Sampler>,
    go_view: Option<analysis::go::GoRuntime>,
    /// `--go-exact`'s uprobes, when attached.
    exact: Option<&'a go::exact::Plan>,
    /// The Go programs' counts when the window opened (subtracted at its end).
    go_before: go::Baseline,
    wants_go: bool,
    /// `--stacks`: the server's mappings, kept from its first stack.
    images: Images,
    peak_rss: u64,
    /// The memory read once the connections were open, before the load: the window's first
    /// edge.
    opened: Option<MemoryEdge>,
}

impl RunWatcher<'_> {
    fn sample(&mut self) -> Result<Edge> {
        // A dead server's last figures are those of the latest tick (context switches lost).
        // Worker processes count with their parent.
        let server = ProcessSample::read_tree(self.server.pid())
            .or(self.last_stat)
            .unwrap_or_default();
        self.peak_threads = self.peak_threads.max(server.threads);
        Ok(Edge {
            probes: self.probes.snapshot()?,
            memory: None,
            server,
            client: ProcessSample::read_stat(std::process::id()).unwrap_or_default(),
            machine: MachineSample::read().unwrap_or_default(),
            xdp: self
                .bypass
                .then(|| workloads::af_xdp::counts(self.server.pid()))
                .flatten(),
        })
    }
}

impl RunWatcher<'_> {
    /// The server's memory and the kernel's: too slow for inside the window (a process of
    /// 19,000 connections has 19,000 descriptors to count; 100,000 took 0.5 s), so read before
    /// the load starts and after the window has closed.
    fn memory(&self) -> Option<MemoryEdge> {
        memory::edge(&[self.server.pid()])
    }
}

impl Watcher for RunWatcher<'_> {
    fn connections_opened(&mut self) -> Result<()> {
        self.opened = self.memory();
        // The verdict's first look (every descriptor's fdinfo: 0.5 s at 19,000 connections,
        // 1.9 s at 100,000) before the load, not at the window's start.
        self.sampler.now();
        Ok(())
    }

    fn measurement_started(&mut self) -> Result<()> {
        let mut before = self.sample()?;
        before.memory = self.opened.take();
        self.before = Some(before);
        self.sampler.window_opens();
        if self.wants_go {
            self.go = Some(go::Sampler::start(self.server.pid()));
            self.go_before = go::Baseline::take(self.probes, self.exact.is_some())?;
        }
        Ok(())
    }

    fn measurement_ended(&mut self) -> Result<()> {
        let mut after = self.sample()?;
        // The window has closed: the slow readings now.
        after.memory = self.memory();
        self.after = Some(after);
        self.peak_rss = memory::peak_rss(&[self.server.pid()]);
        self.sampler.now();
        if let Some(sampler) = self.go.take() {
            self.go_view = go::finish(sampler, self.exact, self.probes, &self.go_before);
        }
        Ok(())
    }

    fn check(&mut self) -> Option<StopReason> {
        if let Some(code) = self.signals.received() {
            return Some(StopReason::Signal(code));
        }
        if let CommandState::Exited(code) = self.server.held.poll() {
            let how = server::describe_exit(code);
            self.died = Some((how.clone(), code));
            return Some(StopReason::ServerDied(how));
        }
        if let Some(stat) = ProcessSample::read_stat(self.server.pid()) {
            self.peak_threads = self.peak_threads.max(stat.threads);
            self.last_stat = Some(stat);
        }
        self.images.poll(self.probes);
        None
    }
}

/// Drives the load, snapshotting at the window's edges.
fn measure(
    c: &Checked,
    probes: &Probes,
    exact: Option<&go::exact::Plan>,
    server: &Server,
    signals: &system::Signals,
    images: Images,
) -> Result<Measured> {
    // The load generator's threads inherit this thread's CPUs.
    if let Some(cpus) = &c.client_cpus {
        system::pin(0, cpus)?;
    }
    let mut watcher = RunWatcher {
        probes,
        server,
        signals,
        before: None,
        after: None,
        peak_threads: 0,
        last_stat: None,
        died: None,
        sampler: Sampler::new(vec![server.pid()]),
        bypass: c.path.is_some()
            && analysis::models::model(&c.workload.model)
                .is_some_and(|m| m.family == analysis::verdict::Family::KernelBypass),
        go: None,
        go_view: None,
        exact,
        go_before: go::Baseline::default(),
        wants_go: c.go,
        images,
        peak_rss: 0,
        opened: None,
    };
    watcher.images.watch(probes, &[server.pid()]);
    let outcome = load::run(&c.plan, &mut watcher, !c.quiet);
    // Sampled at the window's edges, before the look with the load gone.
    let io_threads = watcher.sampler.io_threads();
    // Once more with the load gone: idle workers show where they park.
    watcher.sampler.now();
    // Cut short before the window ended (Ctrl-C, the server died): what was sampled.
    if let Some(sampler) = watcher.go.take() {
        watcher.go_view = go::finish(sampler, exact, probes, &watcher.go_before);
    }
    let RunWatcher {
        before,
        after,
        peak_threads,
        died,
        sampler,
        go_view,
        images,
        peak_rss,
        ..
    } = watcher;
    Ok(Measured {
        outcome: outcome?,
        before,
        after,
        peak_threads,
        died,
        observed: sampler.observed,
        io_threads,
        go: go_view,
        images,
        peak_rss,
    })
}

/// The results file: the probes' window, the client's results, the server process.
fn assemble(
    c: &Checked,
    probes: &Probes,
    server: &Server,
    started_at: String,
    m: Measured,
) -> Result<Results> {
    let after = match m.after {
        Some(a) => a,
        None => Edge {
            probes: probes.snapshot()?,
            server: ProcessSample::default(),
            client: ProcessSample::default(),
            machine: MachineSample::default(),
            xdp: None,
            memory: None,
        },
    };
    // Ended before the measurement began: an empty window.
    let before = m.before.unwrap_or_else(|| after.clone());
    let mut window = after.probes.since(&before.probes);
    let raw_stacks = window.stacks.take();
    let server_process = server_process(
        server.pid(),
        &before.server,
        &after.server,
        m.peak_threads,
        &m.died,
    );
    let environment = environment(c, &before, &after);
    let load = m.outcome.results;
    let memory = before
        .memory
        .clone()
        .zip(after.memory.clone())
        .map(|(before, after)| RunMemory {
            connections: (load.connections + load.idle_connections) as u64,
            before,
            after,
            peak_rss_bytes: m.peak_rss,
            peak_threads: m.peak_threads,
        });
    let measured: Vec<_> = window.measured_since(None);
    let count = |f: &dyn Fn(&analysis::results::SyscallStats) -> u64| -> u64 {
        measured.iter().map(f).sum()
    };
    let mut per_request = PerRequest::compute(
        load.requests,
        count(&|s| s.calls),
        count(&|s| {
            if s.class() == Some(analysis::results::Class::Epoll) {
                s.calls
            } else {
                0
            }
        }),
        count(&|s| s.eagain),
        &server_process,
    );
    if let Some(threads) = &window.scheduler {
        let mut in_calls = CallSched::default();
        measured
            .iter()
            .filter_map(|s| s.sched.as_ref())
            .for_each(|s| in_calls.merge(s));
        per_request.sched =
            SchedPerRequest::compute(load.requests, threads, &in_calls, per_request.cpu_us);
    }
    let end_reason = match &m.outcome.stopped {
        None => EndReason::Duration,
        Some(StopReason::Signal(_)) => EndReason::Interrupted,
        Some(StopReason::ServerDied(_)) => EndReason::ServerDied,
    };
    let observed = m.observed;
    let mut results = window.into_results(Collection {
        target: Target {
            kind: TargetKind::Run,
            pids: vec![server.pid()],
            command: server.argv.clone(),
            follow_children: true,
            ..Target::default()
        },
        hook: probes.hook,
        socket_split: probes.socket_split,
        started_at,
        duration_ns: load.duration_ns,
        end_reason,
        command_exit_code: m.died.as_ref().map(|d| d.1),
        run: Some(RunInfo {
            workload: c.workload.clone(),
            load,
            server_process,
            per_request,
            environment: Some(environment),
            xdp: after
                .xdp
                .zip(before.xdp)
                .map(|(after, before)| after.since(&before)),
            memory,
        }),
    });
    if let (Some(ready), Some(run)) = (&results.ready, results.run.as_mut()) {
        run.per_request.ready = analysis::run::ReadyPerRequest::compute(ready, run.load.requests);
    }
    if let Some(uring) = results.uring.as_mut() {
        uring.threads = m.io_threads;
    }
    if let (Some(uring), Some(run)) = (&results.uring, results.run.as_mut()) {
        run.per_request.uring = analysis::run::UringPerRequest::compute(uring, run.load.requests);
    }
    if let (Some(go), Some(run)) = (&m.go, results.run.as_mut()) {
        run.per_request.go = analysis::run::GoPerRequest::compute(go, run.load.requests);
    }
    results.go = m.go;
    if let Some(raw) = &raw_stacks {
        let mut images = m.images;
        let full = results.counters.stack_stats_full;
        results.stacks = Some(images.name(probes, raw, full));
    }
    // After the Go view: the verdict quotes it.
    results.io_model = Some(verdict::judge(&results, &observed));
    Ok(results)
}

/// Placement, and what else used the machine's CPUs during the window.
fn environment(c: &Checked, before: &Edge, after: &Edge) -> Environment {
    let cpu = |p: &ProcessSample| p.user_ns + p.system_ns;
    let server = cpu(&after.server).saturating_sub(cpu(&before.server));
    let client = cpu(&after.client).saturating_sub(cpu(&before.client));
    let busy = after.machine.busy_ns.saturating_sub(before.machine.busy_ns);
    Environment {
        network: c.path.as_ref().map(netns::Path::describe),
        server_cpus: c.server_cpus.clone(),
        client_cpus: c.client_cpus.clone(),
        cpus: procfs::online_cpus(),
        steal_ns: after
            .machine
            .steal_ns
            .saturating_sub(before.machine.steal_ns),
        client_cpu_ns: client,
        other_cpu_ns: busy.saturating_sub(server + client),
    }
}

/// The server's CPU time and context switches over the window, from /proc.
fn server_process(
    pid: u32,
    p0: &ProcessSample,
    p1: &ProcessSample,
    peak_threads: u64,
    died: &Option<(String, i32)>,
) -> ServerProcess {
    let switches_known = p0.switches_read && p1.switches_read;
    if !switches_known {
        eprintln!(
            "netpoll: note: the server's context switches could not be read at both ends of the \
             window; they are reported as 0"
        );
    }
    let known = u64::from(switches_known);
    ServerProcess {
        pid,
        cpu_user_ns: p1.user_ns.saturating_sub(p0.user_ns),
        cpu_system_ns: p1.system_ns.saturating_sub(p0.system_ns),
        voluntary_switches: p1.voluntary_switches.saturating_sub(p0.voluntary_switches) * known,
        involuntary_switches: p1
            .involuntary_switches
            .saturating_sub(p0.involuntary_switches)
            * known,
        peak_threads,
        died: died.as_ref().map(|d| d.0.clone()),
    }
}

fn report(c: &mut Checked, results: &Results) -> Result<()> {
    if !c.quiet
        && let Some(run) = &results.run
    {
        print!("{}", output::load_report(&run.load));
        print!("{}", output::report(results));
        print!("{}", output::run_report(run));
    }
    c.sinks.write(results)?;
    if let Some(died) = results
        .run
        .as_ref()
        .and_then(|r| r.server_process.died.as_ref())
    {
        eprintln!(
            "netpoll: error: the server died during the run ({died}); client-side results kept"
        );
    }
    Ok(())
}
