//! `cargo xtask`: netpoll's automation. Each task installs what it needs first and says so; one
//! module per task, shared helpers in the library (`lib.rs`).

mod bench;
mod experiments;
mod setup;
mod test;

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
    /// Run the experiment suite (xtask/experiments.toml) and write its report: an A/A noise
    /// calibration, then per experiment the results files, charts, tables and findings stated
    /// with 95 % intervals.
    Experiments(experiments::Options),
    /// Build the release `netpoll` (the probes embedded) and install it as `cargo install`
    /// does, into ~/.cargo/bin (or ROOT/bin), after the same automatic set-up.
    Install {
        /// Install into ROOT/bin instead.
        #[arg(long, value_name = "ROOT")]
        root: Option<std::path::PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// The overhead benchmark's loops (internal).
    #[command(hide = true)]
    BenchLoop {
        /// The context-switch loop instead of the syscall loop.
        #[arg(long)]
        switches: bool,
        /// Also write the figure to this file (when the loop runs under `netpoll profile --`,
        /// whose output is not the benchmark's to read).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        iterations: u64,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// ns per syscall of a 1-byte socketpair loop, and ns per context switch of two threads
    /// ping-ponging on one CPU, with nothing, empty programs, netpoll (and --sched), the
    /// exporter, bpftrace and strace attached, interleaved, with ratios and their intervals.
    /// With --server: a real server at saturation (throughput loss, server and client CPU per
    /// request).
    Overhead {
        /// The loops to measure: syscalls (ns per syscall), switches (ns per context switch).
        /// Both when neither --case nor --server is given.
        #[arg(long, value_enum, value_delimiter = ',')]
        case: Vec<bench::overhead::Case>,
        /// Real servers to measure instead of (or with --case, besides) the loops: redis
        /// (redis-benchmark GET), nginx (netpoll load HTTP), go (Go's net/http under netpoll
        /// load: netpoll profile, profile --go and Go's runtime/trace), all.
        #[arg(long, value_enum, value_delimiter = ',')]
        server: Vec<bench::real_server::ServerKind>,
        /// redis-benchmark requests per run (--server redis).
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Seconds per run of netpoll load (--server nginx, go).
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Interleaved rounds; the median of each setup is reported.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// write+read iterations per run (strace runs 1/20 of them; the switch loop 1/5).
        #[arg(long, default_value_t = 500_000)]
        iterations: u64,
        /// Another netpoll binary (say, built from the commit before a change to the probes),
        /// measured as `netpoll profile` in the same interleaved rounds: before and after.
        #[arg(long, value_name = "NETPOLL")]
        baseline: Option<std::path::PathBuf>,
    },
    /// Where netpoll's cost goes, hook by hook: do-nothing programs on one hook at a time
    /// (timed, interleaved), and netpoll's own programs from the kernel's BPF statistics, with
    /// the loop as a target and as a bystander.
    Hooks {
        /// Interleaved rounds of the timed part; medians are reported.
        #[arg(long, default_value_t = 9)]
        rounds: usize,
        /// write+read iterations per run (the switch loop runs 1/5 of them).
        #[arg(long, default_value_t = 300_000)]
        iterations: u64,
        /// Another netpoll binary (say, built from the commit before a change to the probes):
        /// its programs' own work beside this checkout's, in the same interleaved rounds.
        #[arg(long, value_name = "NETPOLL")]
        baseline: Option<std::path::PathBuf>,
        /// Only the interleaved comparison of the programs' own work (targeting modes, lite
        /// mode's context switch, --baseline), not the timed floors and the per-event tables.
        #[arg(long)]
        compare_only: bool,
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
        Task::Experiments(options) => experiments::experiments(options).map(|_| ()),
        Task::Install { root } => setup::install(root.as_deref()),
        Task::Bench {
            bench:
                Bench::Overhead {
                    mut case,
                    server,
                    requests,
                    seconds,
                    rounds,
                    iterations,
                    baseline,
                },
        } => {
            if case.is_empty() && server.is_empty() {
                case = vec![
                    bench::overhead::Case::Syscalls,
                    bench::overhead::Case::Switches,
                ];
            }
            bench::overhead::overhead(&case, rounds, iterations, baseline.as_deref()).and_then(
                |()| {
                    if server.is_empty() {
                        return Ok(());
                    }
                    bench::real_server::real_server(&server, rounds, requests, seconds)
                },
            )
        }
        Task::Bench {
            bench:
                Bench::Hooks {
                    rounds,
                    iterations,
                    baseline,
                    compare_only,
                },
        } => bench::hooks::hooks(rounds, iterations, baseline.as_deref(), compare_only),
        Task::Bench {
            bench:
                Bench::Load {
                    rounds,
                    seconds,
                    threads,
                    connections,
                },
        } => bench::load::load(rounds, seconds, threads, connections),
        Task::BenchLoop {
            switches,
            out,
            iterations,
        } => bench::overhead::bench_loop(switches, iterations, out.as_deref()),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
