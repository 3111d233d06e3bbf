//! `cargo xtask bench overhead --server redis|nginx|go|all`: what each way of watching syscalls
//! costs a real server at saturation. redis-server under redis-benchmark (GET), nginx (one
//! worker, a small static file) and Go's net/http (the same file) under `netpoll load` (HTTP);
//! server pinned to one CPU, client to another. For Go, the setups are netpoll's own views
//! (`profile`, `profile --go`) against Go's runtime/trace collecting the same window. Throughput at saturation is noisy on a shared host (identical runs ±20%), so each run
//! also records the server's CPU time per request (the scheduler's exact accounting of its
//! threads) and the client's: the client is a process that is *not* a target, so its CPU per
//! request is what every other process on the machine pays. Setups interleave round by round;
//! medians, and ratios with bootstrap intervals.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use analysis::stats;
use analysis::stats::median;
use anyhow::{Context as _, Result, bail};
use nix::{
    sys::{
        resource::{UsageWho, getrusage},
        signal::{Signal, kill},
    },
    unistd::Pid,
};
use xtask::{release_netpoll, which, workspace_root};

use super::{
    overhead::watch,
    servers::{self, GoHttp, IoUringEcho, Nginx, Redis},
};
use crate::setup;

/// The server CPU and the client CPU: disjoint, so neither steals the other's time.
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
/// Client connections, as in the redis-benchmark runs.
const CONNECTIONS: usize = 50;
/// Where `--stacks`' results go, for the stacks taken per request.
const STACKS_JSON: &str = "stacks.json";

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ServerKind {
    /// redis-server under redis-benchmark -t get.
    Redis,
    /// nginx, one worker, a small static file, under netpoll load.
    Nginx,
    /// Go's net/http file server (GOMAXPROCS 1: pinned to one CPU), under netpoll load.
    Go,
    /// netpoll's io-uring model (echo, 64 B), under netpoll load: what `--uring` costs.
    IoUring,
    /// All four.
    All,
}

impl ServerKind {
    pub fn expand(kinds: &[ServerKind]) -> Vec<ServerKind> {
        if kinds.contains(&ServerKind::All) {
            return vec![
                ServerKind::Redis,
                ServerKind::Nginx,
                ServerKind::Go,
                ServerKind::IoUring,
            ];
        }
        let mut v = kinds.to_vec();
        v.dedup();
        v
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Nothing,
    Floor,
    Netpoll,
    Lite,
    Bpftrace,
    PerfTrace,
    Strace,
    /// `netpoll profile --go`: the probes and the sampled Go runtime.
    NetpollGo,
    /// `netpoll profile --go-exact`: the above and uprobes on four runtime functions.
    NetpollGoExact,
    /// `netpoll profile --ready`: the readiness-to-service view.
    NetpollReady,
    /// `netpoll profile --uring`: the io_uring view.
    NetpollUring,
    /// `netpoll profile --stacks`: a user stack walked per measured call.
    NetpollStacks,
    /// Go's own runtime/trace, collected through /debug/pprof/trace for the window.
    RuntimeTrace,
}

impl Setup {
    /// The setups of a server: the tools that watch syscalls, or, for Go, netpoll's views
    /// against Go's own tracer.
    fn of(kind: ServerKind) -> &'static [Setup] {
        match kind {
            ServerKind::Go => &[
                Setup::Nothing,
                Setup::Floor,
                Setup::Netpoll,
                Setup::NetpollStacks,
                Setup::NetpollGo,
                Setup::NetpollGoExact,
                Setup::RuntimeTrace,
            ],
            ServerKind::IoUring => &[
                Setup::Nothing,
                Setup::Floor,
                Setup::Netpoll,
                Setup::NetpollUring,
            ],
            _ => &[
                Setup::Nothing,
                Setup::Floor,
                Setup::Netpoll,
                Setup::NetpollStacks,
                Setup::NetpollReady,
                Setup::Lite,
                Setup::Bpftrace,
                Setup::PerfTrace,
                Setup::Strace,
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Setup::Nothing => "nothing attached",
            Setup::Floor => "empty programs (floor)",
            Setup::Netpoll => "netpoll profile --pid",
            Setup::Lite => "netpoll profile --lite",
            Setup::Bpftrace => "bpftrace, same histograms",
            Setup::PerfTrace => "perf trace -s",
            Setup::Strace => "strace -c",
            Setup::NetpollGo => "netpoll profile --go",
            Setup::NetpollGoExact => "netpoll profile --go-exact",
            Setup::NetpollReady => "netpoll profile --ready",
            Setup::NetpollUring => "netpoll profile --uring",
            Setup::NetpollStacks => "netpoll profile --stacks",
            Setup::RuntimeTrace => "Go runtime/trace",
        }
    }

    /// The tool it needs, if not netpoll.
    fn tool(self) -> Option<&'static str> {
        match self {
            Setup::Bpftrace => Some("bpftrace"),
            Setup::PerfTrace => Some("perf"),
            Setup::Strace => Some("strace"),
            _ => None,
        }
    }

    /// strace stops the server at every syscall (~10x slower): fewer requests keep it short.
    fn share(self) -> u64 {
        if self == Setup::Strace { 10 } else { 1 }
    }
}

/// One run: what the client got, and what the server and the client spent per request.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rps: f64,
    server_ns_per_request: f64,
    client_ns_per_request: f64,
    /// The watching tool's own process (netpoll, bpftrace, perf, strace), per request: what
    /// watching costs outside the server (0 when nothing watches, or Go's tracer, which runs
    /// inside the server).
    watcher_ns_per_request: f64,
    /// `--stacks`: the stacks taken (measured calls) per request, from the profile's results.
    stacks_per_request: f64,
    /// Requests answered.
    answered: u64,
}

/// The server being measured and how to drive it.
enum Running {
    Redis(Redis),
    Nginx(Nginx, u32),
    Go(GoHttp),
    IoUring(IoUringEcho),
}

impl Running {
    fn target(&self) -> u32 {
        match self {
            Running::Redis(r) => r.pid(),
            Running::Nginx(_, worker) => *worker,
            Running::Go(go) => go.pid(),
            Running::IoUring(echo) => echo.pid(),
        }
    }

    /// The HTTP port, for the servers netpoll load drives.
    fn port(&self) -> Option<u16> {
        match self {
            Running::Redis(_) => None,
            Running::Nginx(nginx, _) => Some(nginx.port),
            Running::Go(go) => Some(go.port),
            Running::IoUring(echo) => Some(echo.port),
        }
    }

    fn describe(&self, requests: u64, seconds: u64) -> String {
        match self {
            Running::Redis(_) => format!(
                "redis-server (CPU {SERVER_CPU}) under redis-benchmark -t get -c {CONNECTIONS} \
                 -n {requests} (CPU {CLIENT_CPU})"
            ),
            Running::Nginx(..) => format!(
                "nginx, 1 worker (CPU {SERVER_CPU}), small static file, under netpoll load -c \
                 {CONNECTIONS} -d {seconds} (CPU {CLIENT_CPU})"
            ),
            Running::Go(..) => format!(
                "Go net/http (CPU {SERVER_CPU}, GOMAXPROCS 1), small static file, under netpoll \
                 load -c {CONNECTIONS} -d {seconds} (CPU {CLIENT_CPU})"
            ),
            Running::IoUring(..) => format!(
                "netpoll serve --model io-uring (CPU {SERVER_CPU}), 64 B echo, under netpoll load \
                 -c {CONNECTIONS} -d {seconds} (CPU {CLIENT_CPU})"
            ),
        }
    }

    /// Runs the client once; returns (requests answered, requests/s).
    fn drive(&self, netpoll: &Path, requests: u64, seconds: u64, dir: &Path) -> Result<(u64, f64)> {
        match self {
            Running::Redis(redis) => {
                let out = servers::pin(
                    Command::new("redis-benchmark").args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &redis.port.to_string(),
                        "-t",
                        "get",
                        "-c",
                        &CONNECTIONS.to_string(),
                        "-n",
                        &requests.to_string(),
                        "--csv",
                        "-q",
                    ]),
                    Some(CLIENT_CPU),
                )
                .stderr(Stdio::inherit())
                .output()
                .context("running redis-benchmark")?;
                let text = String::from_utf8_lossy(&out.stdout);
                // --csv: a header, then "GET","<requests/s>",...
                let rps = text
                    .lines()
                    .find_map(|l| l.strip_prefix("\"GET\",\""))
                    .and_then(|rest| rest.split('"').next())
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("no GET rate in redis-benchmark's output: {text}"))?;
                Ok((requests, rps))
            }
            Running::Nginx(..) | Running::Go(..) | Running::IoUring(..) => {
                let port = self.port().expect("a server netpoll load drives");
                let target = match self {
                    Running::IoUring(..) => format!("127.0.0.1:{port}"),
                    _ => format!("http://127.0.0.1:{port}/index.html"),
                };
                let load = servers::netpoll_load(
                    netpoll,
                    &target,
                    1,
                    CONNECTIONS,
                    seconds,
                    Some(CLIENT_CPU),
                    &dir.join("load.json"),
                )?;
                Ok((load.requests, load.throughput_rps))
            }
        }
    }
}

pub fn real_server(kinds: &[ServerKind], rounds: usize, requests: u64, seconds: u64) -> Result<()> {
    setup::test_prerequisites()?;
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if online < 2 {
        bail!("the server scenario pins server and client to CPUs 1 and 0: it needs 2 CPUs");
    }
    let netpoll = release_netpoll()?;
    for kind in ServerKind::expand(kinds) {
        let setups: Vec<Setup> = Setup::of(kind)
            .iter()
            .copied()
            .filter(|s| match s.tool() {
                Some(tool) if !which(tool) => {
                    eprintln!("xtask: {tool} is not installed: skipping it");
                    false
                }
                _ => true,
            })
            .collect();
        let dir = workspace_root()?.join(format!("target/bench-server-{kind:?}").to_lowercase());
        let running = match kind {
            ServerKind::Redis => Running::Redis(Redis::start(&dir, Some(SERVER_CPU))?),
            ServerKind::Nginx => {
                let nginx = Nginx::start(&dir, Some(SERVER_CPU))?;
                let worker = nginx.worker()?;
                Running::Nginx(nginx, worker)
            }
            ServerKind::Go => Running::Go(GoHttp::start(&dir, Some(SERVER_CPU))?),
            ServerKind::IoUring => {
                std::fs::create_dir_all(&dir)?;
                Running::IoUring(IoUringEcho::start(&netpoll, Some(SERVER_CPU))?)
            }
            ServerKind::All => unreachable!("expanded above"),
        };
        let describe = running.describe(requests, seconds);
        eprintln!("xtask: {describe}; {rounds} interleaved rounds");
        // One unmeasured run: the server's caches and the client's first connections warm up.
        running.drive(&netpoll, requests / 4, 1, &dir)?;
        let samples = super::interleaved(rounds, setups.len(), |round, i| {
            let s = measure(&running, setups[i], &netpoll, requests, seconds, &dir)
                .with_context(|| format!("measuring {} with {}", describe, setups[i].name()))?;
            eprintln!(
                "xtask: round {}/{rounds}: {:<26} {:>9.0} req/s, server {:>6.2} µs/req, client {:>6.2} µs/req, watcher {:>6.2} µs/req",
                round + 1,
                setups[i].name(),
                s.rps,
                s.server_ns_per_request / 1e3,
                s.client_ns_per_request / 1e3,
                s.watcher_ns_per_request / 1e3
            );
            Ok(s)
        })?;
        drop(running);
        report(&describe, rounds, &setups, &samples);
    }
    Ok(())
}

/// CPU time of every child this process has waited for, ns.
fn children_cpu_ns() -> Result<u64> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000;
    Ok(ns(u.user_time()) + ns(u.system_time()))
}

fn measure(
    running: &Running,
    setup: Setup,
    netpoll: &Path,
    requests: u64,
    seconds: u64,
    dir: &Path,
) -> Result<Sample> {
    let target = running.target();
    let watcher = attach(setup, target, netpoll, running.port(), seconds, dir)?;
    let result = (|| {
        // Only the client is reaped between these two readings, so the children's CPU delta is
        // the client's alone.
        let watcher_pid = match &watcher {
            Some(Watcher::Process(child)) => Some(child.id()),
            _ => None,
        };
        let watcher_cpu = || watcher_pid.map_or(Ok(0), servers::cpu_ns);
        let (server0, client0, watcher0) =
            (servers::cpu_ns(target)?, children_cpu_ns()?, watcher_cpu()?);
        let (answered, rps) = running.drive(netpoll, requests / setup.share(), seconds, dir)?;
        let (server1, client1, watcher1) =
            (servers::cpu_ns(target)?, children_cpu_ns()?, watcher_cpu()?);
        if answered == 0 {
            bail!("the client got no replies");
        }
        Ok(Sample {
            rps,
            server_ns_per_request: (server1 - server0) as f64 / answered as f64,
            client_ns_per_request: (client1 - client0) as f64 / answered as f64,
            watcher_ns_per_request: watcher1.saturating_sub(watcher0) as f64 / answered as f64,
            stacks_per_request: 0.0,
            answered,
        })
    })();
    let mut result = result;
    match watcher {
        Some(Watcher::Process(mut w)) => {
            let _ = kill(Pid::from_raw(w.id() as i32), Signal::SIGINT);
            let _ = w.wait();
            if setup == Setup::NetpollStacks
                && let Ok(sample) = result.as_mut()
            {
                let stacks = analysis::Results::load(&dir.join(STACKS_JSON))
                    .context("--stacks results")?
                    .stacks
                    .context("no stacks section")?;
                let calls: u64 = stacks.stacks.iter().map(|s| s.calls).sum();
                // The profile also ran before the client started and after it stopped: the
                // server idles then (a few timer wakeups).
                sample.stacks_per_request = calls as f64 / sample.answered.max(1) as f64;
            }
        }
        Some(Watcher::Trace(t)) => {
            let bytes = t
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));
            let bytes = bytes.context("collecting Go's runtime/trace")?;
            if bytes < 1024 {
                bail!("Go's runtime/trace gave only {bytes} bytes");
            }
        }
        None => {}
    }
    result
}

/// What watches the server during a run: a tool's process (stopped with SIGINT), or the thread
/// reading Go's runtime/trace for the window (it ends by itself).
enum Watcher {
    Process(Child),
    Trace(std::thread::JoinHandle<Result<u64>>),
}

/// Asks the Go server for a runtime/trace of `seconds` (net/http/pprof) and reads it: the
/// tracer runs inside the server for the whole window. Returns the trace's size.
fn collect_trace(
    port: u16,
    seconds: u64,
    dir: &Path,
) -> Result<std::thread::JoinHandle<Result<u64>>> {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(
        conn,
        "GET /debug/pprof/trace?seconds={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        seconds + 1
    )?;
    let out = dir.join("runtime.trace");
    Ok(std::thread::spawn(move || {
        let mut body = Vec::new();
        conn.read_to_end(&mut body)?;
        std::fs::write(&out, &body)?;
        Ok(body.len() as u64)
    }))
}

/// Starts the setup's watcher on the server, attached when this returns.
fn attach(
    setup: Setup,
    target: u32,
    netpoll: &Path,
    port: Option<u16>,
    seconds: u64,
    dir: &Path,
) -> Result<Option<Watcher>> {
    let pid = target.to_string();
    if setup == Setup::RuntimeTrace {
        let port = port.context("runtime/trace is collected from an HTTP server")?;
        let trace = collect_trace(port, seconds, dir)?;
        // The tracer starts when the request is served: give it that moment.
        std::thread::sleep(Duration::from_millis(200));
        return Ok(Some(Watcher::Trace(trace)));
    }
    let process = match setup {
        Setup::RuntimeTrace => unreachable!("handled above"),
        Setup::NetpollGo => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--go", "--pid", &pid]),
            "attached",
        )?),
        Setup::NetpollReady => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--ready", "--pid", &pid]),
            "attached",
        )?),
        Setup::NetpollUring => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--uring", "--pid", &pid]),
            "attached",
        )?),
        Setup::NetpollStacks => Some(watch(
            Command::new(netpoll)
                .args(["profile", "--quiet", "--stacks", "--pid", &pid, "--json"])
                .arg(dir.join(STACKS_JSON)),
            "attached",
        )?),
        Setup::NetpollGoExact => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--go-exact", "--pid", &pid]),
            "attached",
        )?),
        Setup::Nothing => None,
        Setup::Floor => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--empty-programs", "--pid", &pid]),
            "attached",
        )?),
        Setup::Netpoll => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--pid", &pid]),
            "attached",
        )?),
        Setup::Lite => Some(watch(
            Command::new(netpoll).args(["profile", "--quiet", "--lite", "--pid", &pid]),
            "attached",
        )?),
        Setup::Bpftrace => {
            // netpoll's default figures in bpftrace: per-syscall latency histograms of the target.
            let script = format!(
                "tracepoint:raw_syscalls:sys_enter /pid == {pid}/ {{ @start[tid] = nsecs; }}\n\
                 tracepoint:raw_syscalls:sys_exit /@start[tid]/ {{ @ns[args->id] = hist(nsecs - @start[tid]); delete(@start[tid]); }}"
            );
            let child = watch(Command::new("bpftrace").args(["-e", &script]), "Attaching")?;
            // bpftrace prints "Attaching N probes..." before attaching them.
            std::thread::sleep(Duration::from_secs(1));
            Some(child)
        }
        Setup::PerfTrace => {
            // perf trace prints nothing until it stops: give it time to attach, check it lives.
            let mut child = Command::new("perf")
                .args(["trace", "-s", "-p", &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting perf trace")?;
            std::thread::sleep(Duration::from_secs(2));
            if let Some(status) = child.try_wait()? {
                bail!("perf trace exited ({status}) before the run");
            }
            Some(child)
        }
        Setup::Strace => Some(watch(
            Command::new("strace").args(["-c", "-f", "-p", &pid]),
            "attached",
        )?),
    };
    Ok(process.map(Watcher::Process))
}

fn report(describe: &str, rounds: usize, setups: &[Setup], samples: &[Vec<Sample>]) {
    let column =
        |i: usize, f: fn(&Sample) -> f64| -> Vec<f64> { samples[i].iter().map(f).collect() };
    let rps = |s: &Sample| s.rps;
    let server = |s: &Sample| s.server_ns_per_request;
    let client = |s: &Sample| s.client_ns_per_request;
    // Loss of each round against that round's "nothing attached" (setups[0]): pairing the
    // rounds cancels slow drift.
    let loss = |i: usize| -> Vec<f64> {
        super::paired(&samples[i], &samples[0], |s, nothing| {
            1.0 - s.rps / nothing.rps
        })
    };
    let added = |i: usize, f: fn(&Sample) -> f64| -> Vec<f64> {
        super::paired(&samples[i], &samples[0], |s, nothing| f(s) - f(nothing))
    };
    println!("\n{describe}; median of {rounds} interleaved rounds:");
    let watcher = |s: &Sample| s.watcher_ns_per_request;
    println!(
        "{:<26} {:>9} {:>7} {:>15} {:>11} {:>15} {:>16}",
        "setup", "req/s", "loss", "server µs/req", "added", "client µs/req", "watcher µs/req"
    );
    for (i, s) in setups.iter().enumerate() {
        println!(
            "{:<26} {:>9.0} {:>6.1}% {:>15.2} {:>11.2} {:>15.2} {:>16.3}",
            s.name(),
            median(&column(i, rps)),
            100.0 * median(&loss(i)),
            median(&column(i, server)) / 1e3,
            median(&added(i, server)) / 1e3,
            median(&column(i, client)) / 1e3,
            median(&column(i, watcher)) / 1e3,
        );
    }
    let at = |s: Setup| setups.iter().position(|&x| x == s);
    // A ratio of two setups' figures, unless the denominator is within noise of zero (a floor
    // whose loss is lost in the noise): then no ratio means anything.
    let line = |what: &str, a: Setup, b: Setup, figure: &dyn Fn(usize) -> Vec<f64>, goal: &str| {
        let (Some(a), Some(b)) = (at(a), at(b)) else {
            return;
        };
        let (a, b) = (figure(a), figure(b));
        let denominator = stats::estimate(&b);
        if denominator.interval.is_none_or(|(low, _)| low <= 0.0) {
            println!(
                "{what:<58} n/a: the denominator ({:.3}) is within noise of zero ({goal})",
                denominator.median
            );
            return;
        }
        let r = stats::ratio(&a, &b);
        let noise = if r.verdict() == stats::Verdict::WithinNoise {
            "; within noise of 1x"
        } else {
            ""
        };
        println!("{what:<58} {} ({goal}{noise})", r.display());
    };
    let server_cpu = |i: usize| column(i, server);
    // What watching costs the machine: the server's added CPU and the watcher's own.
    let machine_added = |i: usize| {
        super::paired(&samples[i], &samples[0], |s, nothing| {
            s.server_ns_per_request - nothing.server_ns_per_request + s.watcher_ns_per_request
        })
    };
    let client_cpu = |i: usize| column(i, client);
    let server_added = |i: usize| added(i, server);
    println!("\nratios (medians of the rounds, 95 % bootstrap interval):");
    use Setup::*;
    line(
        "CPU added per request (server + watcher), --go / profile:",
        NetpollGo,
        Netpoll,
        &machine_added,
        "goal <= 1.15x",
    );
    line(
        "CPU added per request (server + watcher), --go / runtime/trace:",
        NetpollGo,
        RuntimeTrace,
        &machine_added,
        "goal <= 1x",
    );
    line(
        "server CPU per request, --go-exact / nothing:",
        NetpollGoExact,
        Nothing,
        &server_cpu,
        "stated, no goal: every hit is a trap",
    );
    line(
        "throughput loss, --go / runtime/trace:",
        NetpollGo,
        RuntimeTrace,
        &loss,
        "lower is cheaper",
    );
    line(
        "CPU added per request (server + watcher), --ready / profile:",
        NetpollReady,
        Netpoll,
        &machine_added,
        "goal <= 1.15x",
    );
    line(
        "server CPU per request, --uring / profile:",
        NetpollUring,
        Netpoll,
        &server_cpu,
        "stated, no goal: the view changes io_uring's batching",
    );
    line(
        "CPU added per request (server + watcher), --uring / profile:",
        NetpollUring,
        Netpoll,
        &machine_added,
        "goal <= 1.15x",
    );
    line(
        "throughput, --uring / profile:",
        NetpollUring,
        Netpoll,
        &|i: usize| column(i, rps),
        "stated",
    );
    line(
        "server CPU per request, --stacks / profile:",
        NetpollStacks,
        Netpoll,
        &server_cpu,
        "stated: a user stack walked per measured call",
    );
    line(
        "CPU added per request (server + watcher), --stacks / profile:",
        NetpollStacks,
        Netpoll,
        &machine_added,
        "stated",
    );
    if let (Some(st), Some(np)) = (at(NetpollStacks), at(Netpoll)) {
        // Per round: the server CPU --stacks adds over profile, per stack taken.
        let per_stack = super::paired(&samples[st], &samples[np], |s, p| {
            (s.server_ns_per_request - p.server_ns_per_request) / s.stacks_per_request.max(1e-9)
        });
        let per_request = stats::estimate(&column(st, |s| s.stacks_per_request));
        println!(
            "{:<58} {} ns ({:.2} stacks per request)",
            "server CPU per stack taken, --stacks over profile:",
            stats::estimate(&per_stack).display(|v| format!("{v:.0}")),
            per_request.median
        );
    }
    line(
        "throughput loss, netpoll / bpftrace:",
        Netpoll,
        Bpftrace,
        &loss,
        "goal <= 0.4x",
    );
    line(
        "throughput loss, netpoll / floor:",
        Netpoll,
        Floor,
        &loss,
        "goal <= 1.3x",
    );
    line(
        "throughput loss, --lite / bpftrace:",
        Lite,
        Bpftrace,
        &loss,
        "goal <= 0.2x, and a loss <= 5%",
    );
    line(
        "server CPU per request, netpoll / floor:",
        Netpoll,
        Floor,
        &server_cpu,
        "goal <= 1.3x",
    );
    line(
        "server CPU per request, --lite / nothing:",
        Lite,
        Nothing,
        &server_cpu,
        "what the target pays in lite mode",
    );
    line(
        "server CPU added per request, netpoll / bpftrace:",
        Netpoll,
        Bpftrace,
        &server_added,
        "lower is cheaper",
    );
    line(
        "server CPU added per request, --lite / netpoll:",
        Lite,
        Netpoll,
        &server_added,
        "lower is cheaper",
    );
    line(
        "client (not a target) CPU per request, netpoll / floor:",
        Netpoll,
        Floor,
        &client_cpu,
        "goal <= 1.1x",
    );
    line(
        "client (not a target) CPU per request, netpoll / nothing:",
        Netpoll,
        Nothing,
        &client_cpu,
        "what a bystander pays",
    );
    line(
        "client (not a target) CPU per request, --lite / nothing:",
        Lite,
        Nothing,
        &client_cpu,
        "what a bystander pays in lite mode",
    );
}
