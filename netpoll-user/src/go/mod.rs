//! Go's runtime from the outside (`--go`): the executable inspected ([`binary`]), and its
//! scheduler state read from the running process's memory ([`runtime`]) at a fixed rate by a
//! thread of netpoll's own. Nothing is attached to the process and it is never stopped: the
//! cost does not grow with its request rate.

pub mod binary;
pub mod exact;
pub mod polls;
pub mod runtime;

use std::{
    fs,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use analysis::go::{Gauge, GoBinaryInfo, GoPoint, GoRuntime, add_to_series};
use anyhow::{Context as _, Result, bail};

use self::{binary::GoBinary, runtime::Layout};
use crate::probes::go::{ExactCounts, PollSite};
use crate::system;

/// Between two samples: 20 ms. The scheduler's state moves on the scale of sysmon's ticks
/// (it polls the network at most every 10 ms when nothing else does), and a sample costs
/// netpoll about 130 µs of CPU here (three rounds of process_vm_readv, some 25 µs each in this
/// VM, and the bookkeeping: measured with 40 goroutines; 500 µs with 2000): 50 samples a second
/// keep it under 1 % of one CPU. The interval stretches so that sampling stays under
/// [`MAX_SHARE`] whatever the goroutine count. The process is not disturbed.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// The most of one CPU sampling may take.
const MAX_SHARE: f64 = 0.01;

/// The Go programs' counts when a measurement window opened (`netpoll run`): subtracted at its
/// end. Empty for a profile, which counts from the start.
#[derive(Default)]
pub struct Baseline {
    pub polls: Vec<PollSite>,
    pub exact: Option<ExactCounts>,
}

impl Baseline {
    /// The counts now.
    pub fn take(probes: &crate::probes::Probes, exact: bool) -> Result<Baseline> {
        Ok(Baseline {
            polls: if probes.go_polls {
                probes.go_polls()?
            } else {
                Vec::new()
            },
            exact: if exact {
                Some(probes.go_exact_counts()?)
            } else {
                None
            },
        })
    }
}

/// The `go` section at the end of a profile or run: the sampled view (or why there is none),
/// the network polls by caller, and `--go-exact`'s view. What cannot be had is one line each.
pub fn finish(
    sampler: Sampler,
    exact: Option<&exact::Plan>,
    probes: &crate::probes::Probes,
    before: &Baseline,
) -> Option<GoRuntime> {
    let pid = sampler.pid;
    let (view, inspected) = sampler.finish();
    let mut go = match view {
        Ok(go) => Some(go),
        Err(e) => {
            eprintln!("netpoll: note: --go: {e:#}");
            None
        }
    };
    let Some(inspected) = inspected else {
        return go;
    };
    // The polls and the exact view stand even when the sampled one could not be had (a binary
    // stripped of its symbol table keeps the functions they need).
    if probes.go_polls {
        match probes.go_polls() {
            Ok(sites) => {
                let sites = polls::since(sites, &before.polls);
                go.get_or_insert_with(|| GoRuntime::new(pid, inspected.binary.info()))
                    .polls = polls::by_caller(&sites, &inspected);
            }
            Err(e) => eprintln!("netpoll: note: --go: reading the network polls: {e:#}"),
        }
    }
    if let Some(plan) = exact {
        match plan.results(probes, &inspected, before.exact.as_ref()) {
            Ok(view) => {
                go.get_or_insert_with(|| GoRuntime::new(pid, inspected.binary.info()))
                    .exact = Some(view);
            }
            Err(e) => eprintln!("netpoll: note: --go-exact: {e:#}"),
        }
    }
    go
}

/// How long to wait for a command started with `--` to exec its binary.
const EXEC_WAIT: Duration = Duration::from_secs(1);

/// A Go process's binary, inspected, and where it is loaded (a PIE's load bias, 0 otherwise):
/// what turns its code addresses into function names, kept after it exits.
pub struct Inspected {
    pub binary: GoBinary,
    pub bias: u64,
}

impl Inspected {
    /// The function at an address of the running process.
    pub fn function_at(&self, address: u64) -> Option<&str> {
        self.binary
            .function_at(address.wrapping_sub(self.bias))
            .map(|f| f.name.as_str())
    }
}

/// Samples one Go process until finished.
pub struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    inspected: Arc<OnceLock<Inspected>>,
    thread: JoinHandle<Result<GoRuntime>>,
}

impl Sampler {
    /// Starts sampling `pid`. The binary is inspected on the sampling thread (a command just
    /// released may not have exec'd its Go binary yet); what cannot be sampled is an error
    /// from [`Sampler::finish`], one line.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let inspected = Arc::new(OnceLock::new());
        let (stopped, shared) = (stop.clone(), inspected.clone());
        let thread = std::thread::Builder::new()
            .name("netpoll-go".into())
            .spawn(move || run(pid, &stopped, &shared))
            .expect("spawning the Go sampler");
        Sampler {
            pid,
            stop,
            inspected,
            thread,
        }
    }

    /// Stops sampling; the `go` section (or why there is none), and the binary as inspected
    /// (when it is a Go binary, even one that could not be sampled).
    pub fn finish(self) -> (Result<GoRuntime>, Option<Inspected>) {
        self.stop.store(true, Ordering::Relaxed);
        let view = self
            .thread
            .join()
            .unwrap_or_else(|_| bail!("the Go sampler panicked"));
        let inspected = Arc::try_unwrap(self.inspected)
            .ok()
            .and_then(OnceLock::into_inner);
        (view, inspected)
    }
}

/// The process's binary and where it is loaded. A command started with `--` is netpoll's own
/// fork until it execs: wait for the exec (a little while) before judging its binary.
pub(crate) fn inspect(pid: u32, stop: &AtomicBool) -> Result<(GoBinary, u64)> {
    let exe = format!("/proc/{pid}/exe");
    let own = std::env::current_exe().ok();
    let deadline = Instant::now() + EXEC_WAIT;
    while own.is_some()
        && fs::read_link(&exe).ok() == own
        && Instant::now() < deadline
        && !stop.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // /proc/PID/exe is the running file, even if it was replaced or deleted on disk.
    let data = fs::read(&exe).with_context(|| format!("cannot read {exe} (did it exit?)"))?;
    let shown = fs::read_link(&exe).map_or(exe.clone(), |p| p.display().to_string());
    let binary = GoBinary::parse(&data, &shown)?;
    let bias = load_bias(pid, &binary)?;
    Ok((binary, bias))
}

/// How far a PIE was moved when loaded: where its first mapping starts, less the address it
/// was linked at (0 for a fixed-address executable).
pub(crate) fn load_bias(pid: u32, binary: &GoBinary) -> Result<u64> {
    if !binary.pie {
        return Ok(0);
    }
    let maps = fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("cannot read /proc/{pid}/maps"))?;
    let exe = fs::read_link(format!("/proc/{pid}/exe"))?;
    let exe = exe.to_string_lossy();
    maps.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (range, offset) = (fields.first()?, fields.get(2)?);
            // The path is the rest of the line: it may hold spaces, and " (deleted)" when the
            // binary was replaced on disk (as /proc/PID/exe then says too).
            let path = fields.get(5..)?.join(" ");
            if path != exe || u64::from_str_radix(offset, 16).ok()? != 0 {
                return None;
            }
            let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            Some(start - binary.lowest_address)
        })
        .with_context(|| format!("{exe} is not mapped in process {pid}"))
}

/// A Go process ready to be read at any moment: its binary inspected, the runtime's layout
/// resolved. The sampler reads it at a fixed rate, the exporter at each scrape.
pub struct Live {
    pub pid: u32,
    /// What the binary is and kept (`go1.19.8`, PIE, symbols, DWARF).
    pub binary: GoBinaryInfo,
    /// The binary itself and its load bias: names code addresses.
    pub inspected: Inspected,
    layout: Layout,
}

impl Live {
    /// Inspects `pid`'s binary (waiting for a command's exec, unless `stop`); one line when it
    /// cannot be read.
    pub fn open(pid: u32, stop: &AtomicBool) -> Result<Live> {
        let (binary, bias) = inspect(pid, stop)?;
        let layout = Layout::of(&binary, pid, bias)?;
        Ok(Live {
            pid,
            binary: binary.info(),
            inspected: Inspected { binary, bias },
            layout,
        })
    }

    /// The scheduler's state at `now_ns` (CLOCK_MONOTONIC); `None` when the process cannot be
    /// read (it exited).
    pub fn sample(&self, now_ns: u64) -> Option<runtime::Sample> {
        runtime::sample(self.pid, &self.layout, now_ns)
    }
}

fn run(pid: u32, stop: &AtomicBool, shared: &OnceLock<Inspected>) -> Result<GoRuntime> {
    let (binary, bias) = inspect(pid, stop)?;
    let inspected = shared.get_or_init(|| Inspected { binary, bias });
    let layout = Layout::of(&inspected.binary, pid, inspected.bias)?;
    let mut go = GoRuntime::new(pid, inspected.binary.info());
    // Every reason gets a value in every sample (0 when no goroutine waits for it), so each
    // gauge has as many samples as the others; those never seen are dropped at the end.
    let mut waiting: Vec<Gauge> = vec![Gauge::default(); layout.reasons.len() + 1];
    let first = system::monotonic_ns();
    let mut polling = 0u64;
    // What sampling costs netpoll: this thread's CPU time (reads, bookkeeping and wake-ups).
    let thread_cpu = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
        })
    };
    let cpu_at_start = thread_cpu();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = system::monotonic_ns();
        let cpu_before = thread_cpu();
        match runtime::sample(pid, &layout, now) {
            Some(s) => {
                go.samples += 1;
                go.network_waiters.record(s.network_waiters());
                go.running.record(s.running);
                go.runnable.record(s.runnable);
                go.in_syscall.record(s.in_syscall);
                for (i, gauge) in waiting.iter_mut().enumerate() {
                    let name = layout.reasons.get(i).map_or("other", String::as_str);
                    gauge.record(s.waiting.get(name).copied().unwrap_or(0));
                }
                go.global_runnable.record(s.global_runnable);
                go.local_runnable.record(s.local_runnable);
                go.procs.record(s.procs);
                go.idle_procs.record(s.idle_procs);
                go.threads.record(s.threads);
                go.spinning_threads.record(s.spinning_threads);
                go.idle_threads.record(s.idle_threads);
                go.goroutines.record(s.goroutines);
                polling += u64::from(s.polling_now);
                if let Some(age) = s.since_last_poll_ns {
                    go.since_last_poll_ns.record(age);
                }
                let point = GoPoint {
                    network_waiters: s.network_waiters() as f64,
                    runnable: s.runnable as f64,
                    idle_procs: s.idle_procs as f64,
                    threads: s.threads as f64,
                    goroutines: s.goroutines as f64,
                    polling_share: f64::from(u8::from(s.polling_now)),
                    ..GoPoint::default()
                };
                add_to_series(&mut go.series, now.saturating_sub(first), &point);
            }
            None => go.failed_samples += 1,
        }
        let took = thread_cpu().saturating_sub(cpu_before);
        next += INTERVAL.max(Duration::from_nanos(
            (took as f64 * (1.0 - MAX_SHARE) / MAX_SHARE) as u64,
        ));
        let wait = next.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            // Fell behind (netpoll was descheduled): skip the missed ticks, do not burst.
            next = Instant::now();
        }
        std::thread::sleep(wait);
    }
    if go.samples > 0 {
        go.polling_share = polling as f64 / go.samples as f64;
        go.sample_cost_ns = thread_cpu().saturating_sub(cpu_at_start) / go.samples;
        let span = system::monotonic_ns().saturating_sub(first);
        go.interval_ns = span / go.samples;
    }
    go.waiting = layout
        .reasons
        .iter()
        .map(String::as_str)
        .chain(["other"])
        .zip(waiting)
        .filter(|(name, gauge)| !name.is_empty() && gauge.max > 0)
        .map(|(name, gauge)| (name.to_string(), gauge))
        .collect();
    Ok(go)
}
