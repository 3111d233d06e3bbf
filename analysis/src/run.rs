//! What `netpoll load` measures on the client side, and what `netpoll run` adds to a results file:
//! the workload, the server process's CPU and scheduling figures, and per-request ratios.
//! Documented in docs/results-format.md.

use serde::{Deserialize, Serialize};

use crate::{
    Histogram,
    results::{Host, Tool},
    workload::Workload,
};

/// Schema of the file `netpoll load --json` writes (client-side results only).
pub const LOAD_SCHEMA: &str = "netpoll-load/1";

/// The file `netpoll load --json` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadFile {
    pub schema: String,
    pub tool: Tool,
    pub host: Host,
    pub started_at: String,
    pub ended_at: String,
    pub load: LoadResults,
}

/// Client-side results of one load run. Only requests whose intended start lies in the
/// measurement window (after the warm-up) are counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResults {
    /// `host:port`, or the URL in HTTP mode.
    pub target: String,
    /// `echo` (netpoll's workloads) or `http` (HTTP/1.1 keep-alive GET).
    pub protocol: String,
    /// Echo: bytes per request and reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<usize>,
    pub mode: LoadMode,
    /// Open loop: the requested rate, requests per second over all connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub connections: usize,
    /// Extra connections opened and left silent for the whole run.
    pub idle_connections: usize,
    pub threads: usize,
    pub warmup_ns: u64,
    /// Time to open the idle connections, before the warm-up. Absent in older files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_open_ns: u64,
    /// Length of the measurement window actually run (shorter when partial).
    pub duration_ns: u64,
    /// True when the run was cut short (Ctrl-C, or the server died).
    pub partial: bool,
    /// Requests answered.
    pub requests: u64,
    /// `requests` per second of the measurement window.
    pub throughput_rps: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: LoadErrors,
    /// Open loop: requests due in the window that were never sent because their connection was
    /// still waiting for an earlier reply at the end (the server fell behind the rate).
    pub unsent: u64,
    /// Connections that got no reply to any request of the window: a server that serves some
    /// connections and leaves the others waiting (blocking-iterative) has fine latencies for
    /// the few it serves. Absent (0) in files written before netpoll counted them.
    #[serde(default)]
    pub starved_connections: u64,
    /// Latency from each request's intended start to its reply's last byte, nanoseconds. Closed
    /// loop: the intended start is the send. Open loop: the schedule's time, so time a request
    /// spent queued behind a slow reply counts (no coordinated omission).
    pub latency_ns: Histogram,
    /// From the request's actual send to its reply (what a closed-loop tool would report).
    pub service_time_ns: Histogram,
    /// Percentiles of `latency_ns`, exact to 3 significant digits (HdrHistogram).
    pub latency_percentiles: Percentiles,
    /// Open loop: how late the generator itself sent requests (send time minus the later of
    /// the intended time and the moment the connection was free). Part of `latency_ns`; if it
    /// is not small next to the latencies, the generator, not the server, is the bottleneck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lag: Option<Percentiles>,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Each connection sends its next request when the reply arrives.
    #[default]
    Closed,
    /// A constant rate; latency measured from each request's intended start.
    Open,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadErrors {
    /// Connections that could not be opened (or reopened after an error).
    pub connect: u64,
    /// Read or write failures (resets and the like).
    pub io: u64,
    /// Connections the server closed while a request was outstanding.
    pub closed: u64,
    /// Replies that were not the expected echo, or not parseable HTTP.
    pub bad_response: u64,
    /// HTTP replies with a status other than 2xx or 3xx (their latency is recorded too).
    pub http_status: u64,
    /// Requests without a reply within `--timeout` (the connection is then reopened).
    pub timeouts: u64,
}

impl LoadErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.closed + self.bad_response + self.http_status + self.timeouts
    }

    pub fn add(&mut self, o: &LoadErrors) {
        self.connect += o.connect;
        self.io += o.io;
        self.closed += o.closed;
        self.bad_response += o.bad_response;
        self.http_status += o.http_status;
        self.timeouts += o.timeouts;
    }
}

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// What `netpoll run` adds to a results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The model the server ran (`model`) and its options (`server`).
    #[serde(flatten)]
    pub workload: Workload,
    pub load: LoadResults,
    pub server_process: ServerProcess,
    pub per_request: PerRequest,
    /// Where server and client ran, and what else the machine did during the window: what
    /// could disturb the run. Absent in files written before netpoll recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// A kernel-bypass model's XDP program over the window: what it did with the packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpCounts>,
    /// The server's memory and the kernel's at the window's edges, and the peak. Absent in
    /// files written before netpoll recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::memory::RunMemory>,
}

/// Packets the `af-xdp` model's XDP program handled, from its own per-CPU map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounts {
    /// To the AF_XDP socket: the echo port's datagrams.
    pub redirected: u64,
    /// To the kernel's network stack (ARP, other ports and protocols).
    pub passed: u64,
    /// The echo port, but no AF_XDP socket on the queue.
    pub dropped: u64,
}

impl XdpCounts {
    pub fn since(&self, earlier: &XdpCounts) -> XdpCounts {
        XdpCounts {
            redirected: self.redirected.saturating_sub(earlier.redirected),
            passed: self.passed.saturating_sub(earlier.passed),
            dropped: self.dropped.saturating_sub(earlier.dropped),
        }
    }
}

/// CPU placement and disturbances of one run's measurement window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// CPUs the server was pinned to (`--server-cpus`); absent: not pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpus: Option<Vec<usize>>,
    /// CPUs the load generator was pinned to (`--client-cpus`); absent: not pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cpus: Option<Vec<usize>>,
    /// The network path between load generator and server when not loopback (`--netns`): the
    /// veth pair, its addresses and the server's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// CPUs of the machine.
    pub cpus: usize,
    /// Time the hypervisor gave the machine's CPUs to others (steal, all CPUs, /proc/stat).
    pub steal_ns: u64,
    /// CPU time of netpoll's own process: the load generator and the probes' reading.
    pub client_cpu_ns: u64,
    /// Busy CPU time of everything else: other processes, kernel threads, interrupts (the
    /// machine's busy time, /proc/stat, minus the server's and netpoll's own).
    pub other_cpu_ns: u64,
}

/// The server process during the measurement window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerProcess {
    pub pid: u32,
    /// CPU time in user and kernel mode (all threads, clock-tick resolution).
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Context switches of the server's threads: voluntary (it blocked) and involuntary
    /// (preempted). Threads that exited during the window are not included.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Most threads seen at once (sampled every 50 ms, and at both ends of the window).
    pub peak_threads: u64,
    /// How the server ended when it died during the run, e.g. `killed by SIGKILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub died: Option<String>,
}

/// Server-side figures divided by the requests answered in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerRequest {
    /// Every measured syscall (socket reads and writes, waits, accepts, file reads...).
    pub syscalls: f64,
    /// epoll_wait, epoll_pwait and epoll_pwait2 calls.
    pub epoll_waits: f64,
    /// Calls that returned EAGAIN.
    pub eagain: f64,
    pub context_switches: f64,
    /// Server CPU time (user + system), microseconds.
    pub cpu_us: f64,
    /// The scheduler view (`--sched`): where the server's thread time went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<SchedPerRequest>,
    /// The Go view (`--go`, `--go-exact`) of a Go server, per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<GoPerRequest>,
    /// The readiness view (`--ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyPerRequest>,
    /// The io_uring view (`--uring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring: Option<UringPerRequest>,
}

/// The io_uring view of a run: io_uring requests per request served, and the share of them
/// (in %) that took each path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UringPerRequest {
    pub uring_requests: f64,
    pub inline_pct: f64,
    pub poll_pct: f64,
    pub io_wq_pct: f64,
    #[serde(default)]
    pub deferred_pct: f64,
    /// Mean latency of a poll request's wait for readiness and of its task work,
    /// microseconds (0 without poll requests).
    pub poll_wait_us: f64,
    pub task_work_us: f64,
    /// CPU time of io_uring's own threads per request, microseconds: io-wq workers and SQPOLL
    /// threads (part of the server's CPU per request).
    #[serde(default)]
    pub io_wq_cpu_us: f64,
    #[serde(default)]
    pub sqpoll_cpu_us: f64,
}

impl UringPerRequest {
    /// `None` when there is nothing to divide, or the server made no io_uring request.
    pub fn compute(uring: &crate::uring::Uring, requests: u64) -> Option<UringPerRequest> {
        if requests == 0 || uring.finished() == 0 {
            return None;
        }
        let [inline, poll, io_wq, deferred] = uring.path_shares().map(|(_, pct)| pct);
        let polled = uring.path("poll");
        let mean = |sum: u64, n: u64| sum as f64 / n.max(1) as f64 / 1e3;
        Some(UringPerRequest {
            uring_requests: uring.finished() as f64 / requests as f64,
            inline_pct: inline,
            poll_pct: poll,
            io_wq_pct: io_wq,
            deferred_pct: deferred,
            poll_wait_us: polled
                .as_ref()
                .map_or(0.0, |p| mean(p.wait_sum_ns, p.waits)),
            task_work_us: polled
                .as_ref()
                .map_or(0.0, |p| mean(p.task_work_sum_ns, p.task_works)),
            io_wq_cpu_us: uring
                .threads
                .map_or(0.0, |t| mean(t.io_wq.on_cpu_ns, requests)),
            sqpoll_cpu_us: uring
                .threads
                .map_or(0.0, |t| mean(t.sqpoll.on_cpu_ns, requests)),
        })
    }
}

/// The readiness-to-service view of a run: the delays of readable reports (until a read or
/// an accept; microseconds) and the loop's turns per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadyPerRequest {
    pub delay_mean_us: f64,
    pub delay_p99_us: f64,
    pub turns: f64,
    /// Mean turn, microseconds, and the ready events it handled.
    pub turn_mean_us: f64,
    pub events_per_turn: f64,
}

impl ReadyPerRequest {
    pub fn compute(ready: &crate::ready::Ready, requests: u64) -> Option<ReadyPerRequest> {
        if requests == 0 {
            return None;
        }
        let all = ready.readable_delays();
        let turns = ready.turns.max(1) as f64;
        Some(ReadyPerRequest {
            delay_mean_us: all.sum_ns as f64 / all.count.max(1) as f64 / 1e3,
            delay_p99_us: all
                .histogram
                .quantile(0.99)
                .map_or(0.0, |q| q.estimate() as f64 / 1e3),
            turns: ready.turns as f64 / requests as f64,
            turn_mean_us: ready.turn_sum_ns as f64 / turns / 1e3,
            events_per_turn: ready.turn_events as f64 / turns,
        })
    }
}

/// A Go server's runtime, per request: its network polls (`--go`), and with `--go-exact` its
/// goroutines' network parks, the wait from a netpoll wake-up to running, and P hand-offs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GoPerRequest {
    pub network_polls: f64,
    /// Of them, made by sysmon.
    pub sysmon_polls: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_parks: Option<f64>,
    /// Mean, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_to_run_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoffs: Option<f64>,
    /// What `--go-exact`'s probes cost the server per request: hits x the measured cost of
    /// one, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_cost_us: Option<f64>,
}

impl GoPerRequest {
    /// From the `go` section of a run answering `requests`; `None` when there is nothing to
    /// divide.
    pub fn compute(go: &crate::go::GoRuntime, requests: u64) -> Option<GoPerRequest> {
        if requests == 0 {
            return None;
        }
        let n = requests as f64;
        let polls: u64 = go.polls.iter().map(|p| p.calls).sum();
        let sysmon: u64 = go
            .polls
            .iter()
            .filter(|p| p.caller == "runtime.sysmon")
            .map(|p| p.calls)
            .sum();
        let exact = go.exact.as_ref();
        Some(GoPerRequest {
            network_polls: polls as f64 / n,
            sysmon_polls: sysmon as f64 / n,
            network_parks: exact.map(|e| e.parks as f64 / n),
            wake_to_run_us: exact.map(|e| e.wake_to_run_ns.mean() / 1e3),
            handoffs: exact.map(|e| e.handoffs.values().sum::<u64>() as f64 / n),
            probe_cost_us: exact.map(|e| (e.hits * e.cost_per_hit_ns) as f64 / 1e3 / n),
        })
    }
}

/// The server's thread time per request, from the scheduler view, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedPerRequest {
    /// Running inside measured calls (the kernel's work for them).
    pub on_cpu_in_calls_us: f64,
    /// Running elsewhere: user space and other syscalls (the CPU time from /proc minus the
    /// above; clock-tick resolution).
    pub on_cpu_elsewhere_us: f64,
    /// Waiting for a CPU (runnable, not running), summed over the threads.
    pub runq_us: f64,
    /// Asleep, summed over the threads (idle threads count too).
    pub blocked_us: f64,
    /// Of that, asleep inside measured calls.
    pub blocked_in_calls_us: f64,
    /// Thread wakeups, and by whom.
    pub wakeups: f64,
    pub wakeups_by_interrupt: f64,
    pub wakeups_by_same_process: f64,
    pub wakeups_by_other_process: f64,
    pub preemptions: f64,
}

impl SchedPerRequest {
    /// From the window's scheduler totals and its calls' sums (nanoseconds).
    pub fn compute(
        requests: u64,
        threads: &crate::sched::Scheduler,
        in_calls: &crate::sched::CallSched,
        cpu_us: f64,
    ) -> Option<SchedPerRequest> {
        if requests == 0 {
            return None;
        }
        let n = requests as f64;
        let us = |ns: u64| ns as f64 / 1e3 / n;
        let on_cpu_in_calls_us = us(in_calls.on_cpu_sum_ns);
        Some(SchedPerRequest {
            on_cpu_in_calls_us,
            on_cpu_elsewhere_us: (cpu_us - on_cpu_in_calls_us).max(0.0),
            runq_us: us(threads.runq_ns),
            blocked_us: us(threads.blocked_ns),
            blocked_in_calls_us: us(in_calls.blocked_sum_ns),
            wakeups: threads.wakeups.total() as f64 / n,
            wakeups_by_interrupt: threads.wakeups.interrupt as f64 / n,
            wakeups_by_same_process: threads.wakeups.same_process as f64 / n,
            wakeups_by_other_process: threads.wakeups.other_process as f64 / n,
            preemptions: threads.preemptions as f64 / n,
        })
    }
}

impl PerRequest {
    /// Ratios over `requests`; all zero when no request was answered.
    pub fn compute(
        requests: u64,
        syscalls: u64,
        epoll_waits: u64,
        eagain: u64,
        process: &ServerProcess,
    ) -> PerRequest {
        if requests == 0 {
            return PerRequest::default();
        }
        let n = requests as f64;
        PerRequest {
            syscalls: syscalls as f64 / n,
            epoll_waits: epoll_waits as f64 / n,
            eagain: eagain as f64 / n,
            context_switches: (process.voluntary_switches + process.involuntary_switches) as f64
                / n,
            cpu_us: (process.cpu_user_ns + process.cpu_system_ns) as f64 / 1e3 / n,
            sched: None,
            go: None,
            ready: None,
            uring: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_request_ratios() {
        let process = ServerProcess {
            cpu_user_ns: 3_000_000,
            cpu_system_ns: 1_000_000,
            voluntary_switches: 150,
            involuntary_switches: 50,
            ..ServerProcess::default()
        };
        let r = PerRequest::compute(100, 450, 120, 7, &process);
        assert_eq!(r.syscalls, 4.5);
        assert_eq!(r.epoll_waits, 1.2);
        assert_eq!(r.eagain, 0.07);
        assert_eq!(r.context_switches, 2.0);
        assert_eq!(r.cpu_us, 40.0);
        assert_eq!(
            PerRequest::compute(0, 5, 5, 5, &process),
            PerRequest::default()
        );
    }

    #[test]
    fn error_total_adds_every_kind() {
        let mut e = LoadErrors {
            connect: 1,
            io: 2,
            closed: 3,
            bad_response: 4,
            http_status: 5,
            timeouts: 6,
        };
        e.add(&e.clone());
        assert_eq!(e.total(), 42);
    }
}
