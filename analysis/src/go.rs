//! The Go view of a results file (`--go`): the Go runtime's scheduler state, sampled from the
//! process's memory at a fixed rate while collecting. Documented in docs/results-format.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Histogram;

/// Frames of a network poll itself, skipped to find who polled: netpoll and the system-call
/// stubs below it (their package moved between releases). An assembly stub keeps no frame of
/// its own, so a frame-pointer walk from inside it goes straight to netpoll's caller: then
/// netpoll is not seen.
pub const POLL_CHAIN: [&str; 8] = [
    "runtime.netpoll",
    "runtime.epollwait",
    "runtime/internal/syscall.Syscall6",
    "runtime/internal/syscall.EpollWait",
    "internal/runtime/syscall.Syscall6",
    "internal/runtime/syscall.EpollWait",
    "internal/runtime/syscall/linux.Syscall6",
    "internal/runtime/syscall/linux.EpollWait",
];

/// The wait reason of a goroutine parked on the network, as the runtime names it.
pub const IO_WAIT: &str = "IO wait";

/// The `go` section: one Go process's runtime, sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoRuntime {
    pub pid: u32,
    /// The executable, as inspected: its Go version, whether it is PIE, and what it kept.
    pub binary: GoBinaryInfo,
    /// Mean time between samples, ns: 20 ms, longer when sampling would take more than 1 % of a
    /// CPU.
    pub interval_ns: u64,
    /// Samples taken, and attempts that could not read the process (it exited, say).
    pub samples: u64,
    pub failed_samples: u64,
    /// What one sample cost netpoll, on average: the sampling thread's CPU time (the reads of
    /// the process's memory, the bookkeeping, the wake-ups) per sample, ns.
    pub sample_cost_ns: u64,
    /// Goroutines parked waiting for the network: waiting with the reason "IO wait".
    pub network_waiters: Gauge,
    /// Goroutines by state: running on a thread, runnable (waiting for a P), in a system call
    /// (a blocking file read, say: its thread is held), and waiting, by the runtime's own
    /// name of the reason ("IO wait", "chan receive", "select", "sleep", "sync.Mutex.Lock"...;
    /// reasons never seen are left out).
    pub running: Gauge,
    pub runnable: Gauge,
    pub in_syscall: Gauge,
    pub waiting: BTreeMap<String, Gauge>,
    /// Runnable goroutines waiting for a P: in the global queue, and in the Ps' local queues.
    pub global_runnable: Gauge,
    pub local_runnable: Gauge,
    /// Ps (GOMAXPROCS) and idle Ps.
    pub procs: Gauge,
    pub idle_procs: Gauge,
    /// The runtime's threads (Ms), those spinning (looking for work) and those parked idle.
    pub threads: Gauge,
    pub spinning_threads: Gauge,
    pub idle_threads: Gauge,
    /// Goroutines that are not dead, the runtime's own included.
    pub goroutines: Gauge,
    /// Share of samples in which a thread was blocked in netpoll (sched.lastpoll = 0).
    pub polling_share: f64,
    /// When no thread was blocked in netpoll: time since the network was last polled, ns, one
    /// value per such sample.
    pub since_last_poll_ns: Histogram,
    /// Per-second means, for time-series charts (coarser steps on long runs).
    pub series: Vec<GoPoint>,
    /// Every network poll (epoll_pwait) of the process, by the runtime function that made it
    /// (from the user stack at the call) and how it could wait; most calls first.
    #[serde(default)]
    pub polls: Vec<GoPolls>,
    /// `--go-exact`: every goroutine's network park, wake-up and start, from uprobes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<GoExact>,
}

/// The network polls of one caller and timeout kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoPolls {
    /// The runtime function that polled (`runtime.findRunnable`, `runtime.sysmon`,
    /// `runtime.pollWork`, `runtime.startTheWorldWithSema`...), "(no stack)" when the stack
    /// could not be taken.
    pub caller: String,
    /// "blocking" (timeout -1), "non-blocking" (0) or "timed" (until the next timer).
    pub timeout: String,
    pub calls: u64,
    /// Ready events returned in all (goroutines made runnable, at most one per descriptor and
    /// direction), and calls that returned none.
    pub events: u64,
    pub empty: u64,
    /// Time inside the calls, ns.
    pub time_ns: u64,
}

impl GoRuntime {
    /// The share of network polls sysmon made (the rest: the scheduler and the GC), if any poll
    /// was seen.
    pub fn sysmon_poll_share(&self) -> Option<f64> {
        let all: u64 = self.polls.iter().map(|p| p.calls).sum();
        let sysmon: u64 = self
            .polls
            .iter()
            .filter(|p| p.caller == "runtime.sysmon")
            .map(|p| p.calls)
            .sum();
        (all > 0).then(|| sysmon as f64 / all as f64)
    }
}

/// `--go-exact`: uprobes on four functions of the runtime, so every transition is seen:
/// parked on the network (`runtime.netpollblockcommit`), made runnable by netpoll
/// (`runtime.netpollready`), running (`runtime.execute`), a P handed off (`runtime.handoffp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoExact {
    /// The runtime functions probed (at their first instruction).
    pub functions: Vec<String>,
    /// What one uprobe hit cost on this machine when the probes were attached: a function of
    /// netpoll's own called with and without a probe, the difference per call, ns.
    pub cost_per_hit_ns: u64,
    /// Probe hits in all (every call of the four functions): their cost is about
    /// `hits * cost_per_hit_ns` of the process's CPU time.
    pub hits: u64,
    /// Goroutines parked on the network.
    pub parks: u64,
    /// `netpollready` calls (one per ready descriptor netpoll returned), goroutines they made
    /// runnable, and of those, the ones whose park was seen (not parked before the probes).
    pub ready_calls: u64,
    pub wakes: u64,
    pub wakes_of_seen_parks: u64,
    /// Goroutines woken by netpoll that then ran: the wait for a P measured.
    pub runs_after_wake: u64,
    /// Parked on the network, then ran without a netpoll wake-up: a deadline, a close, or
    /// readiness that raced the park (its commit then fails and the goroutine goes on).
    pub resumed_otherwise: u64,
    /// Goroutines scheduled onto a thread (`execute`), for any reason.
    pub executes: u64,
    /// Parks or wake-ups that could not be followed (the maps were full).
    pub lost: u64,
    /// From a network park to its wake-up, ns (the time blocked on the network).
    pub parked_ns: Histogram,
    /// From a network wake-up to running, ns (the wait for a P and a thread: scheduler latency).
    pub wake_to_run_ns: Histogram,
    /// Ps handed to another thread because theirs blocked, by the runtime function that did it
    /// (`runtime.retake`: sysmon took the P of a thread in a long syscall;
    /// `runtime.entersyscallblock`: a syscall known to block).
    pub handoffs: BTreeMap<String, u64>,
}

/// What the binary itself says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoBinaryInfo {
    pub path: String,
    /// As `.go.buildinfo` has it: `go1.19.8`.
    pub version: String,
    pub pie: bool,
    /// The ELF symbol table is there (not `-ldflags=-s`), and DWARF (not `-w`).
    pub symbols: bool,
    pub dwarf: bool,
}

/// A sampled quantity: extremes, mean and the distribution of its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    /// One value per sample (exact below 64).
    pub histogram: Histogram,
}

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge {
            min: 0,
            max: 0,
            mean: 0.0,
            histogram: Histogram::new(netpoll_ebpf::histogram::READY_BUCKETS),
        }
    }
}

impl GoRuntime {
    /// Nothing sampled yet.
    pub fn new(pid: u32, binary: GoBinaryInfo) -> GoRuntime {
        GoRuntime {
            pid,
            binary,
            interval_ns: 0,
            samples: 0,
            failed_samples: 0,
            sample_cost_ns: 0,
            network_waiters: Gauge::default(),
            running: Gauge::default(),
            runnable: Gauge::default(),
            in_syscall: Gauge::default(),
            waiting: BTreeMap::new(),
            global_runnable: Gauge::default(),
            local_runnable: Gauge::default(),
            procs: Gauge::default(),
            idle_procs: Gauge::default(),
            threads: Gauge::default(),
            spinning_threads: Gauge::default(),
            idle_threads: Gauge::default(),
            goroutines: Gauge::default(),
            polling_share: 0.0,
            since_last_poll_ns: Histogram::new(netpoll_ebpf::histogram::LATENCY_BUCKETS),
            series: Vec::new(),
            polls: Vec::new(),
            exact: None,
        }
    }

    /// Mean goroutines waiting for anything but the network.
    pub fn waiting_otherwise(&self) -> f64 {
        self.waiting
            .iter()
            .filter(|(reason, _)| reason.as_str() != IO_WAIT)
            .map(|(_, g)| g.mean)
            .sum()
    }
}

impl Gauge {
    pub fn record(&mut self, value: u64) {
        let n = self.histogram.total();
        if n == 0 {
            (self.min, self.max) = (value, value);
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.mean += (value as f64 - self.mean) / (n + 1) as f64;
        self.histogram.record(value);
    }
}

/// One step of the time series: the means of the samples in `[t_ns, t_ns + step)` since the
/// first sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GoPoint {
    pub t_ns: u64,
    pub step_ns: u64,
    pub network_waiters: f64,
    pub runnable: f64,
    pub idle_procs: f64,
    pub threads: f64,
    pub goroutines: f64,
    pub polling_share: f64,
    /// Samples averaged in this point (not written: only the means are).
    #[serde(skip)]
    pub samples: u64,
}

/// The most points a series keeps: beyond, two neighbours merge and the step doubles.
pub const MAX_POINTS: usize = 600;

/// Appends a sample at `t_ns` (since the first) to the series, one point per `step` (starting
/// at a second), merging neighbours when the series would pass [`MAX_POINTS`].
pub fn add_to_series(series: &mut Vec<GoPoint>, t_ns: u64, values: &GoPoint) {
    let step = series.first().map_or(1_000_000_000, |p| p.step_ns);
    let slot = t_ns / step * step;
    if series.last().is_none_or(|p| p.t_ns != slot) {
        series.push(GoPoint {
            t_ns: slot,
            step_ns: step,
            ..GoPoint::default()
        });
    }
    let point = series.last_mut().expect("just pushed");
    point.samples += 1;
    let k = point.samples as f64;
    let mean = |m: &mut f64, v: f64| *m += (v - *m) / k;
    mean(&mut point.network_waiters, values.network_waiters);
    mean(&mut point.runnable, values.runnable);
    mean(&mut point.idle_procs, values.idle_procs);
    mean(&mut point.threads, values.threads);
    mean(&mut point.goroutines, values.goroutines);
    mean(&mut point.polling_share, values.polling_share);
    if series.len() > MAX_POINTS {
        let merged: Vec<GoPoint> = series
            .chunks(2)
            .map(|pair| {
                let n: u64 = pair.iter().map(|p| p.samples).sum::<u64>().max(1);
                let avg = |f: fn(&GoPoint) -> f64| {
                    pair.iter().map(|p| f(p) * p.samples as f64).sum::<f64>() / n as f64
                };
                GoPoint {
                    t_ns: pair[0].t_ns,
                    step_ns: 2 * step,
                    network_waiters: avg(|p| p.network_waiters),
                    runnable: avg(|p| p.runnable),
                    idle_procs: avg(|p| p.idle_procs),
                    threads: avg(|p| p.threads),
                    goroutines: avg(|p| p.goroutines),
                    polling_share: avg(|p| p.polling_share),
                    samples: n,
                }
            })
            .collect();
        *series = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_keep_extremes_mean_and_distribution() {
        let mut g = Gauge::default();
        for v in [3, 5, 4] {
            g.record(v);
        }
        assert_eq!((g.min, g.max, g.mean), (3, 5, 4.0));
        assert_eq!(g.histogram.total(), 3);
    }

    #[test]
    fn the_series_keeps_a_point_per_second_and_coarsens_past_its_limit() {
        let mut series = Vec::new();
        let point = |w: f64| GoPoint {
            network_waiters: w,
            ..GoPoint::default()
        };
        // Two samples in the first second, one in the second.
        add_to_series(&mut series, 0, &point(2.0));
        add_to_series(&mut series, 500_000_000, &point(4.0));
        add_to_series(&mut series, 1_200_000_000, &point(10.0));
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].network_waiters, 3.0);
        assert_eq!(series[1].t_ns, 1_000_000_000);
        // Past the limit, neighbours merge and the step doubles.
        for s in 2..=MAX_POINTS as u64 {
            add_to_series(&mut series, s * 1_000_000_000, &point(1.0));
        }
        assert!(series.len() <= MAX_POINTS, "{}", series.len());
        assert_eq!(series[0].step_ns, 2_000_000_000);
        assert_eq!(series[0].network_waiters, (2.0 + 4.0 + 10.0) / 3.0);
    }
}
