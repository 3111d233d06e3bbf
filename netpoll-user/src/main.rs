//! `netpoll`: measure, with eBPF, how a process waits for and moves network I/O.

mod load;
mod output;
mod probes;
mod profile;
mod run;
mod serve;
mod system;
mod target;
mod workloads;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "netpoll",
    version,
    about = "Measure, with eBPF, what really happens inside network servers of different I/O models",
    long_about = "Measure, with eBPF, what really happens inside network servers of different I/O models.\n\n\
        netpoll times epoll_wait, poll/select, accept, connect, io_uring_enter and socket reads and writes \
        inside the kernel, per call, with log-linear histograms kept in BPF maps (no per-event copying). \
        Read and write calls are split into socket and other (files, pipes, eventfds)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Profile processes: counts, errors, EAGAINs, bytes and latency histograms of their I/O syscalls.
    #[command(after_help = "Examples:\n  \
        netpoll profile --pid $(pidof redis-server) --duration 10\n  \
        netpoll profile --comm nginx --per-pid --interval 1\n  \
        netpoll profile --json out.json -- python3 -m http.server 8000\n\n\
        Needs root (or CAP_BPF and CAP_PERFMON). Ctrl-C stops collection, prints what was \
        collected and writes --json; the exit code is then 130.")]
    Profile(ProfileArgs),
    /// List the I/O models that `serve` can run.
    Models,
    /// Run the echo service written in one I/O model (see `netpoll models`), until killed.
    #[command(
        after_help = "The protocol: the client sends --payload bytes, the server does the \
        per-request work (--think-us, --disk-read) and sends the same bytes back.\n\n\
        Example:\n  netpoll serve --model epoll-lt --listen 127.0.0.1:7878 --payload 64"
    )]
    Serve(ServeArgs),
    /// Load a server like wrk/wrk2: closed loop, or open loop at a constant rate without
    /// coordinated omission; latency percentiles and histogram.
    #[command(
        after_help = "TARGET is HOST:PORT for netpoll's echo protocol (see `netpoll serve`), \
        or an http:// URL: HTTP/1.1 keep-alive GET requests, for nginx and other servers.\n\n\
        Closed loop (default): each connection sends its next request when the reply arrives; \
        latency is from send to reply. Open loop (--rate): requests are sent on a fixed schedule \
        and latency is measured from each request's intended start, so time spent queued behind \
        a slow reply is counted, not omitted (as in wrk2).\n\n\
        Examples:\n  \
        netpoll load 127.0.0.1:7878 -c 64 -d 10\n  \
        netpoll load 127.0.0.1:7878 -c 16 --rate 20000 --json load.json\n  \
        netpoll load http://127.0.0.1:8080/index.html -c 32 -t 2"
    )]
    Load(LoadCmdArgs),
    /// Run one I/O model's server under load with the probes attached: client latency and
    /// throughput, server syscalls, CPU and context switches, per request.
    #[command(
        after_help = "The server runs as its own process (`netpoll serve`), held until the \
        probes are attached; the load comes from this process. Syscall figures, CPU time and \
        context switches cover the measurement window only (after --warmup).\n\n\
        Examples:\n  \
        netpoll run --model epoll-lt -c 64 -d 5\n  \
        netpoll run --model blocking-threads --think-us 200 --json blocking.json\n  \
        netpoll run --model select -c 8 --idle-connections 900 --rate 5000\n\n\
        Needs root (or CAP_BPF and CAP_PERFMON). Ctrl-C stops the run: the server is stopped, \
        the probes detached, partial results printed and written."
    )]
    Run(RunArgs),
    /// Charts and a report from results files: SVG and PNG charts, index.html, report.md and
    /// results.csv.
    #[command(
        after_help = "RESULTS are files written by `netpoll run --json` or `netpoll \
        profile --json`, or directories of them. Runs of several models are compared chart by \
        chart, each model in the same colour everywhere; profile results get a card each.\n\n\
        Examples:\n  \
        netpoll report epoll.json blocking.json --out report/\n  \
        netpoll report results/ --out report/ && xdg-open report/index.html"
    )]
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Results files, or directories of them.
    #[arg(required = true, value_name = "RESULTS")]
    inputs: Vec<PathBuf>,
    /// Directory to write the report into (created if needed).
    #[arg(short, long, value_name = "DIR", default_value = "netpoll-report")]
    out: PathBuf,
}

/// The echo server's options, shared by `serve` and `run`.
#[derive(clap::Args)]
struct ServerArgs {
    /// I/O model to run (see `netpoll models`).
    #[arg(short, long)]
    model: String,
    /// Bytes per request and per reply.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// CPU work per request, in microseconds (spinning).
    #[arg(long, default_value_t = 0)]
    think_us: u64,
    /// Bytes read from a file per request (file I/O, which epoll cannot multiplex).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    disk_read: usize,
    /// Threads for epoll-reactors and tokio (default: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// io-uring: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL).
    #[arg(long)]
    sqpoll: bool,
}

/// The load generator's options, shared by `load` and `run`.
#[derive(clap::Args)]
struct LoadArgs {
    /// Connections sending requests (one outstanding request each).
    #[arg(short, long, default_value_t = 16)]
    connections: usize,
    /// Load-generator threads, each driving a share of the connections from one epoll loop.
    #[arg(short = 't', long, default_value_t = 1)]
    client_threads: usize,
    /// Measured time, after the warm-up.
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// Time loaded but not measured first (connections warm, caches and thread pools filled).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_seconds_or_zero)]
    warmup: Duration,
    /// Open loop: requests per second over all connections, on a fixed schedule.
    #[arg(short = 'R', long, value_name = "REQ/S", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Extra connections opened first and left silent (select and poll scan them every call).
    #[arg(long, default_value_t = 0, value_name = "N")]
    idle_connections: usize,
    /// A request without a reply after this long counts as a timeout; its connection is reopened.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    timeout: Duration,
}

impl ServerArgs {
    fn request(&self, listen: std::net::SocketAddr) -> serve::ServeRequest {
        serve::ServeRequest {
            model: self.model.clone(),
            listen,
            payload: self.payload,
            think_us: self.think_us,
            disk_read: self.disk_read,
            threads: self.threads,
            sqpoll: self.sqpoll,
        }
    }
}

impl LoadArgs {
    fn options(&self) -> load::LoadOptions {
        load::LoadOptions {
            connections: self.connections,
            idle_connections: self.idle_connections,
            threads: self.client_threads,
            rate: self.rate,
            warmup: self.warmup,
            duration: self.duration,
            timeout: self.timeout,
        }
    }
}

#[derive(clap::Args)]
struct LoadCmdArgs {
    /// HOST:PORT (echo protocol) or http://HOST[:PORT]/PATH.
    target: String,
    /// Echo protocol: bytes per request (the server's --payload).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[command(flatten)]
    load: LoadArgs,
    /// Write the results as JSON (schema netpoll-load/1, see docs/results-format.md).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bar and no report (with --json).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Address the server listens on (port 0: a free one).
    #[arg(short, long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    results: ResultsArgs,
}

/// Where results go and how the probes attach: shared by `profile` and `run`.
#[derive(clap::Args)]
struct ResultsArgs {
    /// Write the full results (every bucket and counter) as JSON; see docs/results-format.md.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write charts and a report (and results.json) into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Hook kind to use (default: the cheapest the kernel accepts: tp-btf, raw-tp, tracepoint).
    #[arg(long, value_enum)]
    hook: Option<probes::HookMode>,
    /// Do not print the report, nor a progress bar (with --json or --out).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(short, long, default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,
    /// Serve on this inherited, already listening socket instead (used by `netpoll run`).
    #[arg(long, hide = true, value_name = "FD")]
    listen_fd: Option<i32>,
}

#[derive(clap::Args)]
struct ProfileArgs {
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

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    if s.parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_seconds(s)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s} is not a positive number of requests per second"
        )),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other error; --help has the rest.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("netpoll: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Models => {
            serve::list_models();
            Ok(0)
        }
        Command::Report(a) => output::report_command(&a.inputs, &a.out).map(|()| 0),
        // No handlers: a server dies of SIGINT/SIGTERM like any other.
        Command::Serve(a) => serve::serve(a.server.request(a.listen), a.listen_fd).map(|()| 0),
        // Handlers before anything starts, so that Ctrl-C at any moment is handled (server
        // stopped, probes detached, results written).
        command => match system::Signals::install() {
            Err(e) => Err(e.context("cannot install signal handlers")),
            Ok(signals) => measure(command, &signals),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("netpoll: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The commands that measure, and must stop cleanly on SIGINT/SIGTERM.
fn measure(command: Command, signals: &system::Signals) -> anyhow::Result<i32> {
    match command {
        Command::Profile(a) => profile::run(
            profile::Request {
                pids: a.pids,
                comm: a.comm,
                cgroup: a.cgroup,
                all: a.all,
                command: a.command,
                follow_children: !a.no_follow,
                per_pid: a.per_pid,
                duration: a.duration,
                interval: a.interval,
                json: a.results.json,
                out: a.results.out,
                hook: a.results.hook,
                floor: a.empty_programs,
                quiet: a.results.quiet,
            },
            signals,
        ),
        Command::Load(a) => load::command::run(
            load::command::Request {
                target: a.target,
                payload: a.payload,
                options: a.load.options(),
                json: a.json,
                quiet: a.quiet,
            },
            signals,
        ),
        Command::Run(a) => run::run(
            run::Request {
                server: a.server.request(a.listen),
                load: a.load.options(),
                json: a.results.json,
                out: a.results.out,
                hook: a.results.hook,
                quiet: a.results.quiet,
            },
            signals,
        ),
        Command::Models | Command::Report(_) | Command::Serve(_) => {
            unreachable!("handled in main")
        }
    }
}
