//! `netpoll`: measure, with eBPF, how a process waits for and moves network I/O.

mod output;
mod probes;
mod profile;
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
}

#[derive(clap::Args)]
struct ServeArgs {
    /// I/O model to run (see `netpoll models`).
    #[arg(short, long)]
    model: String,
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(short, long, default_value = "127.0.0.1:7878")]
    listen: std::net::SocketAddr,
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
    /// Write the full results (every bucket and counter) as JSON; see docs/results-format.md.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Hook kind to use (default: the cheapest the kernel accepts: tp-btf, raw-tp, tracepoint).
    #[arg(long, value_enum)]
    hook: Option<probes::HookMode>,
    /// Do not print the report (with --json).
    #[arg(short, long)]
    quiet: bool,
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
        Command::Profile(a) => match profile::Signals::install() {
            // Before anything is attached, so that Ctrl-C at any moment is handled (probes
            // detached, results written).
            Err(e) => Err(e.context("cannot install signal handlers")),
            Ok(signals) => profile::run(
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
                    json: a.json,
                    hook: a.hook,
                    floor: a.empty_programs,
                    quiet: a.quiet,
                },
                &signals,
            ),
        },
        Command::Models => {
            serve::list_models();
            Ok(0)
        }
        Command::Serve(a) => serve::serve(serve::ServeRequest {
            model: a.model,
            listen: a.listen,
            payload: a.payload,
            think_us: a.think_us,
            disk_read: a.disk_read,
            threads: a.threads,
            sqpoll: a.sqpoll,
        })
        .map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("netpoll: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
