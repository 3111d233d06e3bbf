//! `netpoll`: measure, with eBPF, how a process waits for and moves network I/O.

// The probes read syscall arguments at x86_64's `pt_regs` offsets and fill the kernel's syscall
// table with x86_64's numbers (netpoll-ebpf's `SYSCALLS`): another architecture would measure
// the wrong calls, so it does not build.
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "netpoll supports x86_64 only: its probes use x86_64's syscall numbers and registers"
);

mod commands;
mod go;
mod load;
mod memory;
mod metrics;
mod netns;
mod observe;
mod output;
mod probes;
mod procfs;
mod sinks;
mod stacks;
mod system;
mod workloads;

use std::process::ExitCode;

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
    Profile(commands::profile::Args),
    /// List the I/O models that `serve` can run.
    Models,
    /// Run the echo service written in one I/O model (see `netpoll models`), until killed.
    #[command(
        after_help = "The protocol: the client sends --payload bytes, the server does the \
        per-request work (--think-us, --disk-read) and sends the same bytes back.\n\n\
        Example:\n  netpoll serve --model epoll-lt --listen 127.0.0.1:7878 --payload 64"
    )]
    Serve(commands::serve::Args),
    /// Load a server like wrk/wrk2: closed loop, or open loop at a constant rate without
    /// coordinated omission; latency percentiles and histogram.
    #[command(
        after_help = "TARGET is HOST:PORT for netpoll's echo protocol (see `netpoll serve`), \
        or an http:// URL: HTTP/1.1 keep-alive GET requests, for nginx and other servers; \
        redis:// and memcached:// GET a key; udp:// sends UDP echo datagrams.\n\n\
        Closed loop (default): each connection sends its next request when the reply arrives; \
        latency is from send to reply. Open loop (--rate): requests are sent on a fixed schedule \
        and latency is measured from each request's intended start, so time spent queued behind \
        a slow reply is counted, not omitted (as in wrk2).\n\n\
        Examples:\n  \
        netpoll load 127.0.0.1:7878 -c 64 -d 10\n  \
        netpoll load 127.0.0.1:7878 -c 16 --rate 20000 --json load.json\n  \
        netpoll load http://127.0.0.1:8080/index.html -c 32 -t 2\n  \
        netpoll load udp://127.0.0.1:7878 -c 8 --rate 10000 --timeout 0.1"
    )]
    Load(commands::load::Args),
    /// Run one I/O model's server, or any server (--server-cmd), under load with the probes
    /// attached: client latency and throughput, server syscalls, CPU and context switches per
    /// request, and its I/O-model verdict.
    #[command(
        after_help = "The server runs as its own process (`netpoll serve`, or the --server-cmd \
        command in a process group of its own), held until the probes are attached; the load \
        comes from this process. Syscall figures, CPU time and context switches cover the \
        measurement window only (after --warmup), over all the server's processes.\n\n\
        Examples:\n  \
        netpoll run --model epoll-lt -c 64 -d 5\n  \
        netpoll run --model blocking-threads --think-us 200 --json blocking.json\n  \
        netpoll run --model select -c 8 --idle-connections 900 --rate 5000\n  \
        netpoll run --server-cmd 'redis-server --port 6399 --save \"\"' --connect 127.0.0.1:6399 --protocol redis\n  \
        netpoll run --server-cmd \"nginx -c $PWD/nginx.conf -g 'daemon off;'\" --connect http://127.0.0.1:8080/\n\n\
        Needs root (or CAP_BPF and CAP_PERFMON). Ctrl-C stops the run: the server is stopped, \
        the probes detached, partial results printed and written."
    )]
    Run(Box<commands::run::Args>),
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
    Report(commands::report::Args),
    /// Before and after a change: what changed beyond the noise between two sets of results
    /// files, each figure with its ratio and 95 % interval (benchstat's convention).
    #[command(
        after_help = "BEFORE and AFTER are files written by `netpoll run --json` or `netpoll \
        profile --json`, or directories of them; several files a side are repeated runs of one \
        configuration (5 a side is a good start). Every figure is compared: calls per second, \
        errors and EAGAIN shares, bytes, latency percentiles and means per syscall and class, \
        ready events per wait, the scheduler split, the client's figures and the per-request \
        ones of runs. A side's figure is the median of its files; the change is after / before \
        with a 95 % bootstrap interval over the repeats (one file a side: from each figure's own \
        sampling, which is weaker), and \"~\" when the interval contains 1. Figures that changed \
        most come first; the guide is docs/compare.md. Options go before `--`.\n\n\
        Examples:\n  \
        netpoll compare before/ -- after/\n  \
        netpoll compare --all a1.json a2.json a3.json a4.json -- b1.json b2.json b3.json b4.json\n  \
        netpoll compare --json change.json --csv change.csv before/ -- after/"
    )]
    Compare(commands::compare::Args),
    /// Serve the probes' figures to Prometheus: attach to the targets and answer /metrics
    /// (text, or protobuf with native histograms) until stopped.
    #[command(
        after_help = "The targets are those of `netpoll profile`. Every scrape reads the \
        probes' maps; counters are totals since the exporter started. Metrics are documented \
        in docs/metrics.md.\n\n\
        Examples:\n  \
        netpoll export --pid $(pidof redis-server)\n  \
        netpoll export --comm nginx --per-pid --listen 0.0.0.0:9464\n  \
        curl -s localhost:9464/metrics | grep netpoll_syscall_calls_total\n\n\
        Needs root (or CAP_BPF and CAP_PERFMON). SIGINT or SIGTERM detaches the probes and exits."
    )]
    Export(commands::export::Args),
    /// What each part of a measured call costs in the kernel (micro programs run by
    /// BPF_PROG_TEST_RUN), for `cargo xtask bench overhead`.
    #[command(hide = true)]
    MicroCosts(commands::micro::Args),
    /// Opens idle connections and holds them until stdin closes (the helper processes of
    /// `--idle-connections` beyond one process's descriptor limit).
    #[command(hide = true)]
    HoldConnections(load::HoldArgs),
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
            // One line, like every other error (clap's lines before its usage, joined); --help
            // has the rest.
            let text = e.to_string();
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("netpoll: {} (see --help)", line.join(" "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Profile(args) => commands::profile::run(args),
        Command::Models => commands::serve::list_models(),
        Command::Serve(args) => commands::serve::run(args),
        Command::Load(args) => commands::load::run(args),
        Command::Run(args) => commands::run::run(*args),
        Command::Report(args) => commands::report::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::MicroCosts(args) => commands::micro::run(args),
        Command::HoldConnections(args) => load::hold(args),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("netpoll: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
