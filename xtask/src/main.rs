//! `cargo xtask`: netpoll's automation. Each task installs what it needs first and says so; one
//! module per task, shared helpers in the library (`lib.rs`).

mod bench;
mod experiments;
mod setup;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "netpoll's automation: setup, tests, experiments, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building netpoll needs (LLVM 22, bpf-linker, nightly rust-src) and what its
    /// tests drive (redis, bpftool, bpftrace, strace). Quick when everything is there.
    Setup,
    /// Run every check and test, as CI does: fmt, clippy, unit tests, and the integration tests
    /// that load the real probes (needs root).
    Test,
    /// Run the experiment suite (xtask/experiments.toml) and write its report: per experiment,
    /// results files, charts, tables and a sentence generated from the data.
    Experiments {
        /// The short suite CI runs (at most 3 minutes): fewer models and values, shorter runs.
        #[arg(long)]
        quick: bool,
        /// Run only this experiment.
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Where to write results (default: target/experiments/<unix time>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Repeat every run N times (interleaved); the report gives min/median/max and flags
        /// spreads above 10 %.
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: usize,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// The overhead benchmark's syscall loop (internal).
    #[command(hide = true)]
    BenchLoop { iterations: u64 },
}

#[derive(Subcommand)]
enum Bench {
    /// ns per syscall of a 1-byte socketpair loop with nothing, empty programs, netpoll,
    /// bpftrace and strace attached, interleaved, with ratios.
    Overhead {
        /// Interleaved rounds; the median of each setup is reported.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// write+read iterations per run (strace runs 1/20 of them).
        #[arg(long, default_value_t = 500_000)]
        iterations: u64,
    },
    /// Requests/s of `netpoll load` against wrk's on the same nginx, interleaved, with ratios.
    Load {
        /// Interleaved rounds; medians are reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Threads for both generators.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Connections for both generators.
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::test_prerequisites(),
        Task::Test => test::test(),
        Task::Experiments {
            quick,
            only,
            out,
            repeat,
        } => experiments::experiments(experiments::Options {
            quick,
            only,
            out,
            repeat,
        })
        .map(|_| ()),
        Task::Bench {
            bench: Bench::Overhead { rounds, iterations },
        } => bench::overhead::overhead(rounds, iterations),
        Task::Bench {
            bench:
                Bench::Load {
                    rounds,
                    seconds,
                    threads,
                    connections,
                },
        } => bench::load::load(rounds, seconds, threads, connections),
        Task::BenchLoop { iterations } => bench::overhead::syscall_loop(iterations),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
