//! The results file: what `netpoll profile --json` writes. Documented in docs/results-format.md;
//! bump [`SCHEMA`] on any change that an older reader would misread.

use std::{collections::BTreeMap, fs, path::Path};

use serde::{Deserialize, Serialize};

pub use netpoll_ebpf::{abi::HookKind, syscalls::Class};

use crate::Histogram;

/// Schema name and version of the results file.
pub const SCHEMA: &str = "netpoll-results/1";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is not a netpoll results file: {error}")]
    Json {
        path: String,
        error: serde_json::Error,
    },
    #[error("{path} has schema {found:?}; this netpoll reads {SCHEMA:?}")]
    Schema { path: String, found: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub schema: String,
    pub tool: Tool,
    pub target: Target,
    pub host: Host,
    /// How the probes were attached: `tp_btf`, `raw_tp` or `tracepoint`.
    pub hook: HookKind,
    /// Whether read/write calls were split into socket and other (needs the sock tracepoints).
    pub socket_split: bool,
    /// Wall-clock start and end, RFC 3339 UTC.
    pub started_at: String,
    pub ended_at: String,
    pub duration_ns: u64,
    pub end_reason: EndReason,
    /// True when the run was cut short (Ctrl-C): numbers cover only the time collected.
    pub partial: bool,
    /// Exit status of a spawned command (`-- CMD`), when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_exit_code: Option<i32>,
    /// Totals by syscall; read/write calls appear once per `fd` kind seen.
    pub syscalls: Vec<SyscallStats>,
    /// Totals by class ([`Class`]), in [`Class::ALL`]'s order; each row has `total: true`.
    pub classes: Vec<SyscallStats>,
    /// Calls already blocked when the probes attached: latency is a lower bound (exit - attach).
    pub lower_bound: Vec<SyscallStats>,
    /// Per-process breakdown (`--per-pid`), keyed by pid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<u32, ProcessStats>,
    pub counters: Counters,
    /// The scheduler view (`--sched`): the target threads' time, in and outside calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<crate::sched::Scheduler>,
    /// `netpoll run`: the workload, client-side results, server process figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::run::RunInfo>,
    /// With `--bpf-stats`: what netpoll's own BPF programs cost, from the kernel's statistics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramCost>,
    /// `profile --lite`: no calls are timed, so `syscalls`, `classes` and `lower_bound` are
    /// empty; these are the figures lite mode has instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lite: Option<Lite>,
    /// The I/O-model verdict (`profile` of processes, `run`), with its evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_model: Option<crate::verdict::IoModel>,
    /// `profile --go`: a Go process's runtime scheduler state, sampled from its memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<crate::go::GoRuntime>,
    /// `--ready`: readiness-to-service delays and event-loop turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<crate::ready::Ready>,
    /// `profile`: netpoll's own process CPU over the collection (its user-space side: map
    /// reads, /proc sampling, the Go sampler...), beside its programs' time in the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netpoll_cpu: Option<NetpollCpu>,
    /// `profile` of processes (`--pid`, `-- COMMAND`): their memory (children included) at
    /// the collection's start and end; `connections` is the sockets they held at the end.
    /// (`run` has its server's in `run.memory`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::memory::RunMemory>,
    /// `--uring`: each io_uring request's path (inline, poll, io-wq) and phases, by operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring: Option<crate::uring::Uring>,
    /// `--stacks`: the measured calls by call stack and class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<crate::stacks::Stacks>,
}

/// What `--lite` measures, without hooks on every syscall: socket transfers from the socket
/// tracepoints and sleeps inside syscalls from the scheduler (docs/overhead.md says what it
/// cannot see).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lite {
    /// By syscall, those with a transfer or a sleep.
    pub syscalls: Vec<LiteSyscall>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiteSyscall {
    pub name: String,
    /// Socket transfers made by this syscall (one per read/recv/write/send call on a socket,
    /// one per message of recvmmsg/sendmmsg).
    pub socket_transfers: u64,
    /// Transfers that failed, including EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    /// Bytes moved by the successful transfers.
    pub bytes: u64,
    /// Times a call of this syscall put its thread to sleep.
    pub sleeps: u64,
    /// Off-CPU time of those sleeps (asleep, then waiting for a CPU), summed, and per sleep.
    pub off_cpu_sum_ns: u64,
    pub off_cpu_ns: Histogram,
}

impl Lite {
    /// The section of a snapshot's rows (one per syscall): those with something to say.
    pub fn from_rows(rows: impl IntoIterator<Item = LiteSyscall>) -> Lite {
        Lite {
            syscalls: rows.into_iter().filter(|r| !r.is_empty()).collect(),
        }
    }
}

impl LiteSyscall {
    pub fn merge(&mut self, other: &LiteSyscall) {
        self.socket_transfers += other.socket_transfers;
        self.errors += other.errors;
        self.eagain += other.eagain;
        self.bytes += other.bytes;
        self.sleeps += other.sleeps;
        self.off_cpu_sum_ns += other.off_cpu_sum_ns;
        self.off_cpu_ns.merge(&other.off_cpu_ns);
    }

    pub fn since(&self, earlier: &LiteSyscall) -> LiteSyscall {
        LiteSyscall {
            name: self.name.clone(),
            socket_transfers: self
                .socket_transfers
                .saturating_sub(earlier.socket_transfers),
            errors: self.errors.saturating_sub(earlier.errors),
            eagain: self.eagain.saturating_sub(earlier.eagain),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            sleeps: self.sleeps.saturating_sub(earlier.sleeps),
            off_cpu_sum_ns: self.off_cpu_sum_ns.saturating_sub(earlier.off_cpu_sum_ns),
            off_cpu_ns: self.off_cpu_ns.since(&earlier.off_cpu_ns),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.socket_transfers == 0 && self.sleeps == 0
    }
}

/// netpoll's own CPU time while it collected (getrusage of its process: every thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetpollCpu {
    pub user_ns: u64,
    pub system_ns: u64,
    /// (user + system) per second of collection, ns: the share of one CPU profiling took in
    /// netpoll's own process.
    pub per_second_ns: u64,
}

/// One of netpoll's BPF programs: how often it ran and for how long (kernel.bpf_stats_enabled;
/// the time is spent in the processes whose events it hooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramCost {
    /// Program name, as `bpftool prog` shows it (up to 15 bytes of it).
    pub program: String,
    /// The tracepoint it is attached to, `category:event`.
    pub event: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramCost {
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.runs as f64
        }
    }
}

/// Why collection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `--duration` (or the load's measurement window) ran out.
    Duration,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Every `--pid` target exited.
    TargetsExited,
    /// The command given after `--` exited.
    CommandExited,
    /// `netpoll run`: the server died during the run.
    ServerDied,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    /// This netpoll (every crate of the workspace shares its version).
    pub fn netpoll() -> Tool {
        Tool {
            name: "netpoll".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What was profiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    #[default]
    Pid,
    Comm,
    Cgroup,
    Command,
    All,
    /// The server `netpoll run` started.
    Run,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Whether tasks created by the targets were followed.
    pub follow_children: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessStats {
    pub comm: String,
    pub syscalls: Vec<SyscallStats>,
    pub classes: Vec<SyscallStats>,
}

/// What a read or write call touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fd {
    Socket,
    /// Regular files, pipes, eventfds, ttys...
    Other,
}

impl Fd {
    pub fn name(self) -> &'static str {
        match self {
            Fd::Socket => "socket",
            Fd::Other => "other",
        }
    }
}

/// Counters and histograms of one syscall (or class) in one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyscallStats {
    /// Syscall name (`epoll_wait`, `recvfrom`, ...) or class name (`socket_read`, ...).
    pub name: String,
    /// The row is the total of a class (`classes`), not one syscall.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub total: bool,
    /// For read/write syscalls: what the call touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<Fd>,
    pub calls: u64,
    pub errors: u64,
    pub eagain: u64,
    pub bytes: u64,
    /// Waiting calls (epoll, poll, select) that returned no ready event.
    pub zero_ready: u64,
    /// Waiting calls made with a zero timeout (could not block).
    pub nonblocking: u64,
    pub latency_sum_ns: u64,
    /// Latency histogram, nanoseconds, as `[low, high, count]` buckets.
    pub latency_ns: Histogram,
    /// Ready events per successful waiting call, as `[low, high, count]` buckets.
    #[serde(default, skip_serializing_if = "Histogram::is_empty")]
    pub ready_events: Histogram,
    /// The scheduler view (`--sched`): the latency split into on CPU, blocked and run queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<crate::sched::CallSched>,
}

impl SyscallStats {
    pub fn merge(&mut self, other: &SyscallStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.eagain += other.eagain;
        self.bytes += other.bytes;
        self.zero_ready += other.zero_ready;
        self.nonblocking += other.nonblocking;
        self.latency_sum_ns += other.latency_sum_ns;
        self.latency_ns.merge(&other.latency_ns);
        self.ready_events.merge(&other.ready_events);
        match (&mut self.sched, &other.sched) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, Some(theirs)) => self.sched = Some(theirs.clone()),
            _ => {}
        }
    }

    /// Exact mean latency (from the in-kernel sum), if any call was seen.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.latency_sum_ns as f64 / self.calls as f64)
    }

    /// The class of the syscall (from the syscall table and what the call touched), or the class
    /// a total row sums. `None` for a name netpoll does not measure.
    pub fn class(&self) -> Option<Class> {
        if self.total {
            return Class::from_name(&self.name);
        }
        let syscall = netpoll_ebpf::syscalls::syscall(&self.name)?;
        Some(Class::of(
            syscall.family,
            self.fd.map(|fd| fd == Fd::Socket),
        ))
    }

    /// Display label: `read (socket)`, `epoll_wait`, `socket_read`.
    pub fn label(&self) -> String {
        match self.fd {
            Some(fd) => format!("{} ({})", self.name, fd.name()),
            None => self.name.clone(),
        }
    }
}

/// How a counter reads: a count since the probes attached, or a level at the moment read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// Exposed as a Prometheus counter (`_total`); a window's value is the difference.
    Total,
    /// Exposed as a gauge; a window's value is the later one.
    Level,
}

/// One of [`Counters`]: what the results file, the terminal warnings, the exporter and the
/// docs say of it, defined once in `counters!` below.
#[derive(Debug)]
pub struct CounterDef {
    /// The field in `counters` (and the metric name: `netpoll_NAME_total` for a total).
    pub name: &'static str,
    pub kind: CounterKind,
    /// Where the probes keep it: an index of the kernel's COUNTERS map; `None`: counted by user
    /// space.
    pub kernel: Option<u32>,
    /// The metric's help text (one sentence).
    pub help: &'static str,
    /// What the terminal says when it is not zero (`None`: bookkeeping, not a loss).
    pub warning: Option<&'static str>,
}

/// The counters: adding one is one entry here (and its index in `netpoll_ebpf::abi::counter` if
/// the probes count it); the results file, warnings and metrics follow. docs/results-format.md
/// and docs/metrics.md list each (a test checks they do).
macro_rules! counters {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $kind:ident, $kernel:expr, $help:literal, $warning:expr;
    )+) => {
        /// Things that would otherwise be lost silently, and bookkeeping worth knowing.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Counters {
            $(
                $(#[doc = $doc])+
                #[serde(default)]
                pub $field: u64,
            )+
        }

        impl Counters {
            /// Every counter, in the results file's order.
            pub const DEFS: &'static [CounterDef] = &[$(CounterDef {
                name: stringify!($field),
                kind: CounterKind::$kind,
                kernel: $kernel,
                help: $help,
                warning: $warning,
            }),+];

            /// Each counter with its value, in [`Counters::DEFS`] order.
            pub fn values(&self) -> Vec<(&'static CounterDef, u64)> {
                Self::DEFS.iter().zip([$(self.$field),+]).collect()
            }

            /// Counters from a value for each definition.
            pub fn from_values(mut value: impl FnMut(&'static CounterDef) -> u64) -> Counters {
                let mut defs = Self::DEFS.iter();
                Counters {
                    $($field: value(defs.next().expect("one definition per field")),)+
                }
            }
        }
    };
}

use netpoll_ebpf::abi::counter;

counters! {
    /// Calls not measured because the in-flight map was full.
    in_flight_full: Total, Some(counter::IN_FLIGHT_FULL),
        "Calls not measured: the in-flight map was full.",
        Some("calls were not measured: the in-flight map was full");
    /// Tasks created by targets that could not be followed (target map full).
    targets_full: Total, Some(counter::TARGETS_FULL),
        "Tasks created by targets not followed: the target map was full.",
        Some("tasks created by targets could not be followed: the target map was full");
    /// Calls counted without their process because the per-process map was full.
    pid_stats_full: Total, Some(counter::PID_STATS_FULL),
        "Calls counted without their process: the per-process map was full.",
        Some("calls are in the totals but not in a process: the per-process map was full");
    /// Threads that exited inside a measured call (the call never returned).
    died_in_call: Total, Some(counter::DIED_IN_CALL),
        "Threads that exited inside a measured call.",
        Some("threads exited inside a measured call");
    /// Tasks (threads and processes) created by targets and followed.
    followed_tasks: Total, Some(counter::FOLLOWED_TASKS),
        "Threads and processes created by targets and followed.",
        None;
    /// Threads with an entry in the in-flight map when the run ended (live target threads; dead
    /// threads' entries are removed when they exit).
    in_flight_entries: Level, None,
        "Threads with a call parked in the in-flight map.",
        None;
    /// The scheduler view could not track a thread (its map was full).
    threads_full: Total, Some(counter::THREADS_FULL),
        "Threads the scheduler view could not track: its map was full.",
        Some("threads were not tracked: the scheduler view's map was full");
    /// `--stacks`: measured calls in no stack (the stack table was full).
    stack_stats_full: Total, Some(counter::STACK_STATS_FULL),
        "Measured calls not counted in any call stack: the stack table was full.",
        Some("calls are in the totals but in no call stack: the stack table was full");
}

impl Counters {
    /// What happened between `earlier` and `self`: totals subtract, levels are `self`'s.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (now, before) = (self.values(), earlier.values());
        let mut pairs = now.iter().zip(&before);
        Counters::from_values(|def| {
            let ((_, now), (_, before)) = pairs.next().expect("same definitions");
            match def.kind {
                CounterKind::Total => now.saturating_sub(*before),
                CounterKind::Level => *now,
            }
        })
    }

    /// The warning lines of the counters that are not zero.
    pub fn warnings(&self) -> Vec<String> {
        self.values()
            .into_iter()
            .filter(|(_, value)| *value > 0)
            .filter_map(|(def, value)| Some(format!("{value} {}", def.warning?)))
            .collect()
    }
}

impl Results {
    pub fn load(path: &Path) -> Result<Results, LoadError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|error| LoadError::Io {
            path: shown.clone(),
            error,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses results text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Results, LoadError> {
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: String,
        }
        let path = origin.to_string();
        let head: SchemaOnly = serde_json::from_str(text).map_err(|error| LoadError::Json {
            path: path.clone(),
            error,
        })?;
        if head.schema != SCHEMA {
            return Err(LoadError::Schema {
                path,
                found: head.schema,
            });
        }
        let mut results: Results =
            serde_json::from_str(text).map_err(|error| LoadError::Json { path, error })?;
        // Files written before rows carried `total`: the rows of `classes` are the totals.
        let per_process = results.processes.values_mut().map(|p| &mut p.classes);
        for row in std::iter::once(&mut results.classes)
            .chain(per_process)
            .flatten()
        {
            row.total = true;
        }
        Ok(results)
    }

    pub fn class(&self, class: Class) -> Option<&SyscallStats> {
        self.classes.iter().find(|c| c.name == class.name())
    }

    /// A syscall's totals over both fd kinds.
    pub fn syscall(&self, name: &str) -> Option<SyscallStats> {
        let mut rows = self.syscalls.iter().filter(|s| s.name == name);
        let mut total = rows.next()?.clone();
        rows.for_each(|r| total.merge(r));
        total.fd = None;
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_schemas_with_a_clear_error() {
        let err = Results::parse(r#"{"schema":"netpoll-results/9"}"#, "x.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"x.json has schema "netpoll-results/9"; this netpoll reads "netpoll-results/1""#
        );
        let err = Results::parse("{", "y.json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("y.json is not a netpoll results file"),
            "{err}"
        );
    }
}

/// Sums syscall rows into class totals, in [`Class::ALL`]'s order, skipping classes without
/// calls.
pub fn classes_of(rows: &[SyscallStats]) -> Vec<SyscallStats> {
    Class::ALL
        .iter()
        .filter_map(|&class| {
            let mut total = SyscallStats {
                name: class.name().to_string(),
                total: true,
                ..SyscallStats::default()
            };
            rows.iter()
                .filter(|r| !r.total && r.class() == Some(class))
                .for_each(|r| total.merge(r));
            (total.calls > 0).then_some(total)
        })
        .collect()
}

impl SyscallStats {
    /// What happened between `earlier` and `self` (both cumulative).
    pub fn since(&self, earlier: &SyscallStats) -> SyscallStats {
        SyscallStats {
            name: self.name.clone(),
            total: self.total,
            fd: self.fd,
            calls: self.calls.saturating_sub(earlier.calls),
            errors: self.errors.saturating_sub(earlier.errors),
            eagain: self.eagain.saturating_sub(earlier.eagain),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            zero_ready: self.zero_ready.saturating_sub(earlier.zero_ready),
            nonblocking: self.nonblocking.saturating_sub(earlier.nonblocking),
            latency_sum_ns: self.latency_sum_ns.saturating_sub(earlier.latency_sum_ns),
            latency_ns: self.latency_ns.since(&earlier.latency_ns),
            ready_events: self.ready_events.since(&earlier.ready_events),
            sched: match (&self.sched, &earlier.sched) {
                (Some(now), Some(before)) => Some(now.since(before)),
                (now, _) => now.clone(),
            },
        }
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;

    #[test]
    fn counters_come_from_one_table_and_the_docs_list_them() {
        let c = Counters {
            in_flight_full: 5,
            in_flight_entries: 3,
            ..Counters::default()
        };
        let earlier = Counters {
            in_flight_full: 2,
            in_flight_entries: 9,
            ..Counters::default()
        };
        let window = c.since(&earlier);
        assert_eq!((window.in_flight_full, window.in_flight_entries), (3, 3));
        assert_eq!(
            c.warnings(),
            ["5 calls were not measured: the in-flight map was full"]
        );
        let json = serde_json::to_value(&c).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let names: Vec<&str> = Counters::DEFS.iter().map(|d| d.name).collect();
        assert_eq!(fields.len(), names.len());
        let results_format = include_str!("../../docs/results-format.md");
        let metrics = include_str!("../../docs/metrics.md");
        for def in Counters::DEFS {
            assert!(
                results_format.contains(&format!("| `{}` |", def.name)),
                "docs/results-format.md does not list counters.{}",
                def.name
            );
            let metric = match def.kind {
                CounterKind::Total => format!("`netpoll_{}_total`", def.name),
                CounterKind::Level => format!("`netpoll_{}`", def.name),
            };
            assert!(
                metrics.contains(&metric),
                "docs/metrics.md does not list {metric}"
            );
        }
    }

    #[test]
    fn classes_follow_the_syscall_table() {
        let row = |name: &str, fd: Option<Fd>, calls| SyscallStats {
            name: name.into(),
            fd,
            calls,
            ..Default::default()
        };
        let rows = [
            row("read", Some(Fd::Socket), 3),
            row("recvfrom", Some(Fd::Socket), 4),
            row("read", Some(Fd::Other), 5),
            row("epoll_pwait", None, 7),
        ];
        let classes = classes_of(&rows);
        let names: Vec<_> = classes.iter().map(|c| (c.name.as_str(), c.calls)).collect();
        assert_eq!(names, [("epoll", 7), ("socket_read", 7), ("other_read", 5)]);
        assert!(classes.iter().all(|c| c.total));
        assert_eq!(classes[1].class(), Some(Class::SocketRead));
        // "accept" is a syscall and a class: either row says Accept.
        assert_eq!(row("accept", None, 1).class(), Some(Class::Accept));
        assert_eq!(row("nanosleep", None, 1).class(), None);
    }
}
