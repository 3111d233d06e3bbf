//! The I/O-model verdict: which of the lecture's I/O models a process uses, judged from what the
//! probes counted (the syscall tables) and from the process's state, sampled in /proc while it
//! ran ([`Observed`]: its threads and what each waited in, its epoll registrations, its sockets'
//! flags, its io_urings). Rules, not guesses: each family has a signature, the first that
//! matches wins, and the evidence is given in numbers; without enough to go on the verdict is
//! "unknown", with what was seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::results::{Results, SyscallStats};

/// What netpoll saw of the process's state in /proc, over the samples taken while collecting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Samples taken.
    pub samples: u32,
    /// Most processes and threads seen at once.
    pub processes: u32,
    pub threads: u32,
    /// Threads that ran at least a tenth as much as the busiest between the first and the
    /// last sample (0: fewer than two samples).
    pub busy_threads: u32,
    /// Most threads seen at once waiting in each syscall (by name; `other` for the rest).
    pub waiting_in: BTreeMap<String, u32>,
    /// Most sockets seen open at once, and of those the most with O_NONBLOCK and with O_ASYNC.
    pub sockets: u32,
    pub nonblocking_sockets: u32,
    pub async_sockets: u32,
    /// Of those, UDP sockets (their inodes in /proc/net/udp and udp6).
    #[serde(default)]
    pub udp_sockets: u32,
    /// epoll instances watching at least one descriptor, the most seen at once; their
    /// registrations, and of those the edge-triggered (EPOLLET) and one-shot ones.
    pub epoll_instances: u32,
    pub epoll_registrations: u32,
    pub edge_triggered: u32,
    pub oneshot: u32,
    /// io_uring instances, and their submission-queue polling threads (SQPOLL).
    pub io_urings: u32,
    /// XDP programs the process holds (AF_XDP servers load their own).
    #[serde(default)]
    pub xdp_programs: u32,
    pub sq_poll_threads: u32,
}

impl Observed {
    /// Folds one sample in: each figure keeps the most seen at once.
    pub fn add_sample(&mut self, sample: &Observed) {
        self.samples += 1;
        let max = |a: &mut u32, b: u32| *a = (*a).max(b);
        max(&mut self.processes, sample.processes);
        max(&mut self.threads, sample.threads);
        for (name, n) in &sample.waiting_in {
            max(self.waiting_in.entry(name.clone()).or_default(), *n);
        }
        // The socket and epoll figures of the sample with the most sockets (one moment, so
        // the fractions stay consistent).
        if sample.sockets >= self.sockets {
            self.sockets = sample.sockets;
            self.nonblocking_sockets = sample.nonblocking_sockets;
            self.async_sockets = sample.async_sockets;
            self.udp_sockets = sample.udp_sockets;
        }
        if sample.epoll_registrations >= self.epoll_registrations {
            self.epoll_instances = sample.epoll_instances;
            self.epoll_registrations = sample.epoll_registrations;
            self.edge_triggered = sample.edge_triggered;
            self.oneshot = sample.oneshot;
        }
        max(&mut self.io_urings, sample.io_urings);
        max(&mut self.xdp_programs, sample.xdp_programs);
        max(&mut self.sq_poll_threads, sample.sq_poll_threads);
    }

    fn waiting(&self, names: &[&str]) -> u32 {
        names.iter().filter_map(|n| self.waiting_in.get(*n)).sum()
    }
}

/// The I/O models the verdict tells apart (the lecture's, and the ones real servers use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// One thread, blocking calls, one connection at a time.
    BlockingIterative,
    /// A thread (or process) per connection, blocking calls.
    BlockingPerConnection,
    /// Non-blocking sockets polled in a loop, without waiting for readiness.
    BusyPolling,
    Select,
    Poll,
    /// One epoll instance, one thread waiting on it.
    EpollReactor,
    /// Several epoll instances, each with its own thread or process (nginx's workers).
    EpollReactors,
    /// An M:N runtime: one epoll instance, worker threads parked on futexes (tokio, Go).
    MnRuntime,
    IoUring,
    /// Packets taken before the kernel's network stack: an XDP program feeding AF_XDP rings.
    KernelBypass,
    /// Readiness signalled by the kernel (O_ASYNC).
    SignalDriven,
    Unknown,
}

impl Family {
    /// The family as results files spell it (`epoll_reactor`, `mn_runtime`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Family::BlockingIterative => "blocking_iterative",
            Family::BlockingPerConnection => "blocking_per_connection",
            Family::BusyPolling => "busy_polling",
            Family::Select => "select",
            Family::Poll => "poll",
            Family::EpollReactor => "epoll_reactor",
            Family::EpollReactors => "epoll_reactors",
            Family::MnRuntime => "mn_runtime",
            Family::IoUring => "io_uring",
            Family::KernelBypass => "kernel_bypass",
            Family::SignalDriven => "signal_driven",
            Family::Unknown => "unknown",
        }
    }
}

/// How sure the verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    High,
    Medium,
    Low,
}

/// The verdict, as `profile` prints it and `--json` carries it (`io_model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoModel {
    pub family: Family,
    /// In words, with the details the family alone does not say: "epoll, edge-triggered,
    /// single reactor".
    pub name: String,
    pub confidence: Confidence,
    /// The numbers it rests on, one sentence each.
    pub evidence: Vec<String>,
    pub observed: Observed,
}

/// Fewer I/O calls than this say too little about a process to judge it.
const MIN_CALLS: u64 = 20;

const EPOLL: &[&str] = &["epoll_wait", "epoll_pwait", "epoll_pwait2"];
const POLL: &[&str] = &["poll", "ppoll"];
const SELECT: &[&str] = &["select", "pselect6"];
const READS: &[&str] = &["read", "readv", "recvfrom", "recvmsg", "recvmmsg"];

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Everything the rules look at, computed once from the results and the observations.
struct Signals<'a> {
    o: &'a Observed,
    /// Calls of each kind of readiness wait, and of io_uring_enter and epoll_pwait.
    epoll: u64,
    poll: u64,
    select: u64,
    uring: u64,
    pwait: u64,
    /// Every measured syscall.
    all_calls: u64,
    /// Reads that touched sockets (and reads of unknown target, without the socket split).
    socket_reads: SyscallStats,
    /// The readiness waits' totals.
    waits: SyscallStats,
    /// Ready descriptors per readiness wait (exact below 64: the buckets are 1 wide there).
    ready_per_wait: Option<f64>,
    /// Threads seen at once waiting in readiness calls, in reads, in epoll, on futexes.
    waits_seen: u32,
    in_reads: u32,
    in_epoll: u32,
    in_futex: u32,
    /// Requests served in the window (`netpoll run`), to state figures per request.
    requests: Option<u64>,
    /// The Go view (`--go`), when the process was sampled.
    go: Option<&'a crate::go::GoRuntime>,
    /// The readiness view (`--ready`).
    ready: Option<&'a crate::ready::Ready>,
    /// The io_uring view (`--uring`).
    uring_view: Option<&'a crate::uring::Uring>,
    seconds: f64,
}

impl<'a> Signals<'a> {
    fn of(r: &'a Results, o: &'a Observed) -> Signals<'a> {
        let calls = |names: &[&str]| -> u64 {
            r.syscalls
                .iter()
                .filter(|s| names.contains(&s.name.as_str()))
                .map(|s| s.calls)
                .sum()
        };
        let total = |keep: &dyn Fn(&SyscallStats) -> bool| {
            let mut t = SyscallStats::default();
            r.syscalls
                .iter()
                .filter(|s| keep(s))
                .for_each(|s| t.merge(s));
            t
        };
        let socket_reads =
            total(&|s| READS.contains(&s.name.as_str()) && s.fd != Some(crate::results::Fd::Other));
        let waits = total(&|s| s.class().is_some_and(|c| c.is_readiness_wait()));
        let (events, counted) =
            waits
                .ready_events
                .buckets()
                .fold((0.0, 0), |(sum, n), (low, high, count)| {
                    (sum + count as f64 * (low + high) as f64 / 2.0, n + count)
                });
        Signals {
            o,
            epoll: calls(EPOLL),
            poll: calls(POLL),
            select: calls(SELECT),
            uring: calls(&["io_uring_enter"]),
            pwait: calls(&["epoll_pwait"]),
            all_calls: r.syscalls.iter().map(|s| s.calls).sum(),
            socket_reads,
            waits,
            ready_per_wait: (counted > 0).then(|| events / counted as f64),
            waits_seen: o.waiting(EPOLL) + o.waiting(POLL) + o.waiting(SELECT),
            in_reads: o.waiting(READS),
            in_epoll: o.waiting(EPOLL),
            in_futex: o.waiting(&["futex"]),
            requests: r
                .run
                .as_ref()
                .map(|run| run.load.requests)
                .filter(|&q| q > 0),
            go: r.go.as_ref(),
            ready: r.ready.as_ref(),
            uring_view: r.uring.as_ref(),
            seconds: (r.duration_ns as f64 / 1e9).max(1e-9),
        }
    }

    fn multiplex(&self) -> u64 {
        self.epoll + self.poll + self.select
    }

    fn eagain_pct(&self) -> f64 {
        pct(self.socket_reads.eagain, self.socket_reads.calls)
    }

    fn zero_timeout_pct(&self) -> f64 {
        pct(self.waits.nonblocking, self.waits.calls)
    }

    /// Most sockets are non-blocking: a process that waits for readiness, or polls.
    fn mostly_nonblocking(&self) -> bool {
        self.o.sockets > 0 && self.o.nonblocking_sockets * 2 > self.o.sockets
    }

    /// The process waits for readiness: a thread was seen waiting in a readiness call, or
    /// there is a wait per 100 reads (one wait may return many ready sockets), or there are
    /// waits at all and the sockets are non-blocking (at 1000 connections, one epoll_wait can
    /// return hundreds of ready sockets: fewer than one wait per 100 reads). A few stray waits
    /// beside blocking sockets (a library's poll at start-up) do not make a multiplexing server.
    fn waits_for_readiness(&self) -> bool {
        let m = self.multiplex();
        self.waits_seen > 0
            || m * 100 >= self.socket_reads.calls
            || (m > 0 && self.mostly_nonblocking())
    }

    /// Processes rather than threads carry the connections.
    fn process_per_connection(&self) -> bool {
        self.o.processes > 1 && self.o.processes * 2 >= self.o.threads
    }

    /// `n` per request (`netpoll run`) or per second.
    fn per(&self, n: u64) -> String {
        match self.requests {
            Some(requests) => format!("{:.2} per request", n as f64 / requests as f64),
            None => format!("{:.0}/s", n as f64 / self.seconds),
        }
    }

    /// Trigger mode of the epoll registrations. Servers often leave the listener or a wakeup
    /// descriptor level-triggered (nginx: the listener and its channel to the master, in each
    /// worker): the sockets decide, so a few exceptions per instance do not make it "mixed".
    fn trigger(&self) -> &'static str {
        let o = self.o;
        let level = o.epoll_registrations.saturating_sub(o.edge_triggered);
        if o.epoll_registrations == 0 {
            "trigger unknown"
        } else if o.edge_triggered >= level
            && (level * 10 <= o.epoll_registrations || level <= 2 * o.epoll_instances.max(1))
        {
            "edge-triggered"
        } else if o.edge_triggered * 10 <= o.epoll_registrations {
            "level-triggered"
        } else {
            "mixed level- and edge-triggered"
        }
    }

    /// Go's runtime polls epoll with a zero timeout (epoll_pwait) whenever a scheduler looks
    /// for work: its signature, even with GOMAXPROCS=1 and a single busy thread.
    fn go_polls(&self) -> bool {
        self.pwait * 2 > self.epoll && self.zero_timeout_pct() >= 20.0
    }

    /// The evidence every verdict states, in one place: threads, reads, sockets, waits, epoll.
    fn evidence(&self) -> Vec<String> {
        let o = self.o;
        let mut evidence = vec![format!(
            "{} thread(s) in {} process(es), {} busy; threads seen waiting in: {}",
            o.threads,
            o.processes,
            if o.busy_threads == 0 {
                "?".to_string()
            } else {
                o.busy_threads.to_string()
            },
            if o.waiting_in.is_empty() {
                "nothing".to_string()
            } else {
                o.waiting_in
                    .iter()
                    .map(|(name, n)| format!("{name} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )];
        let reads = &self.socket_reads;
        if reads.calls > 0 {
            evidence.push(format!(
                "socket reads: {} ({}), {:.0}% ended in EAGAIN",
                reads.calls,
                self.per(reads.calls),
                self.eagain_pct()
            ));
        }
        if o.sockets > 0 {
            evidence.push(format!(
                "{} sockets open, {} non-blocking, {} with O_ASYNC",
                o.sockets, o.nonblocking_sockets, o.async_sockets
            ));
        }
        if self.multiplex() > 0 {
            evidence.push(format!(
                "readiness waits: epoll {}, poll {}, select {} ({} in all); {} ready descriptors per wait, {:.0}% with a zero timeout",
                self.epoll,
                self.poll,
                self.select,
                self.per(self.multiplex()),
                self.ready_per_wait
                    .map_or("-".to_string(), |r| format!("{r:.1}")),
                self.zero_timeout_pct()
            ));
        }
        if o.epoll_instances > 0 {
            evidence.push(format!(
                "{} epoll instance(s) with {} registrations: {} edge-triggered, {} one-shot",
                o.epoll_instances, o.epoll_registrations, o.edge_triggered, o.oneshot
            ));
        }
        if let Some(go) = self.go.filter(|go| go.samples > 0) {
            evidence.push(format!(
                "Go runtime ({}, sampled): {:.0} goroutines on {:.0} P(s) and {:.0} threads; on average {:.1} parked on the network, {:.1} runnable, {:.1} running, {:.1} in system calls; a thread blocked in netpoll in {:.0}% of the samples",
                go.binary.version,
                go.goroutines.mean,
                go.procs.mean,
                go.threads.mean,
                go.network_waiters.mean,
                go.runnable.mean,
                go.running.mean,
                go.in_syscall.mean,
                100.0 * go.polling_share
            ));
        }
        if let Some(ready) = self.ready {
            evidence.extend(ready_evidence(ready, self.in_epoll));
        }
        if let Some(uring) = self.uring_view.filter(|u| u.finished() > 0) {
            evidence.push(uring_evidence(uring));
        }
        if let Some((go, sysmon)) = self.go.and_then(|go| Some((go, go.sysmon_poll_share()?))) {
            let calls: u64 = go.polls.iter().map(|p| p.calls).sum();
            let blocking: u64 = go
                .polls
                .iter()
                .filter(|p| p.timeout == "blocking")
                .map(|p| p.calls)
                .sum();
            let scheduler: u64 = go
                .polls
                .iter()
                .filter(|p| p.caller.eq_ignore_ascii_case("runtime.findRunnable"))
                .map(|p| p.calls)
                .sum();
            evidence.push(format!(
                "Go's network polls: {calls}, {:.0}% of them blocking; made by the scheduler looking for work {:.1}%, by sysmon {:.1}%",
                100.0 * blocking as f64 / calls as f64,
                100.0 * scheduler as f64 / calls as f64,
                100.0 * sysmon
            ));
        }
        evidence
    }
}

/// The io_uring view's evidence: which paths the requests took, and for how long.
fn uring_evidence(u: &crate::uring::Uring) -> String {
    let q = |h: &crate::Histogram| {
        h.quantile(0.5)
            .map_or("-".into(), |q| crate::chart::fmt_ns(q.estimate() as f64))
    };
    let parts: Vec<String> = crate::uring::PATHS
        .iter()
        .zip(u.path_shares())
        .filter_map(|(path, (_, pct))| {
            let all = u.path(path)?;
            Some(format!("{pct:.0}% {path} (p50 {})", q(&all.latency_ns)))
        })
        .collect();
    let mut ops: Vec<(&str, u64)> = Vec::new();
    for r in &u.requests {
        match ops.iter_mut().find(|(op, _)| *op == r.op) {
            Some((_, n)) => *n += r.requests,
            None => ops.push((&r.op, r.requests)),
        }
    }
    ops.sort_by_key(|o| std::cmp::Reverse(o.1));
    let ops: Vec<String> = ops
        .iter()
        .take(4)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    format!(
        "io_uring requests: {} ({}); by path: {}",
        u.finished(),
        ops.join(", "),
        parts.join(", ")
    )
}

/// The readiness view's evidence: how long ready descriptors waited for service, and the loop's
/// turns; with one thread waiting in epoll, what a long turn means for every other descriptor.
fn ready_evidence(ready: &crate::ready::Ready, in_epoll: u32) -> Vec<String> {
    let all = ready.readable_delays();
    if all.count == 0 {
        return Vec::new();
    }
    let q = |h: &crate::Histogram, p: f64| h.quantile(p).map_or(0, |q| q.estimate());
    let mut evidence = vec![format!(
        "readiness to service: {} descriptors reported readable waited {} on average for the process's read or accept (p50 {}, p99 {}); {} were serviced only after their thread had waited again",
        all.count,
        crate::chart::style::fmt_ns((all.sum_ns / all.count) as f64),
        crate::chart::style::fmt_ns(q(&all.histogram, 0.5) as f64),
        crate::chart::style::fmt_ns(q(&all.histogram, 0.99) as f64),
        all.deferred
    )];
    if ready.turns > 0 {
        let (p50, p99) = (q(&ready.turn_ns, 0.5), q(&ready.turn_ns, 0.99));
        let mut line = format!(
            "event-loop turns: {}, p50 {}, p99 {}, {:.1} ready events each",
            ready.turns,
            crate::chart::style::fmt_ns(p50 as f64),
            crate::chart::style::fmt_ns(p99 as f64),
            ready.turn_events as f64 / ready.turns as f64
        );
        // A single reactor whose slow turns are far longer than its usual: everything ready
        // waits behind the slowest handler of the turn (head-of-line blocking).
        if in_epoll == 1 && p99 > 4 * p50.max(1) {
            line.push_str(
                "; one thread waits in epoll and its slowest turns are over 4x its usual: every descriptor ready in such a turn waits behind its slowest handler",
            );
        }
        evidence.push(line);
    }
    evidence
}

/// What a rule concluded: the family, its name in words, how sure, and the sentence of the
/// rule's own reasoning.
struct Finding {
    family: Family,
    name: String,
    confidence: Confidence,
    reason: String,
}

fn finding(family: Family, name: &str, confidence: Confidence, reason: String) -> Option<Finding> {
    Some(Finding {
        family,
        name: name.to_string(),
        confidence,
        reason,
    })
}

/// A rule: a family's signature. The first rule that matches gives the verdict.
type Rule = fn(&Signals) -> Option<Finding>;

/// The rules, most specific signature first.
const RULES: &[Rule] = &[
    kernel_bypass,
    io_uring,
    signal_driven,
    too_few_calls,
    busy_polling,
    blocking_iterative,
    blocking_per_connection,
    acceptor_beside_blocked_readers,
    pre_forked,
    select_or_poll,
    epoll_reactors,
    mn_runtime,
    epoll_reactor,
];

fn kernel_bypass(s: &Signals) -> Option<Finding> {
    (s.o.xdp_programs > 0).then_some(())?;
    finding(
        Family::KernelBypass,
        "kernel bypass: AF_XDP (an XDP program feeds rings shared with user space)",
        Confidence::High,
        format!(
            "{} XDP program(s) held by the process; {} measured syscalls in all ({}): packets reach it through AF_XDP rings, not sockets",
            s.o.xdp_programs,
            s.all_calls,
            s.per(s.all_calls)
        ),
    )
}

fn io_uring(s: &Signals) -> Option<Finding> {
    let o = s.o;
    (o.io_urings > 0 && (s.uring > s.socket_reads.calls || o.sq_poll_threads > 0)).then_some(())?;
    let name = if o.sq_poll_threads > 0 {
        "io_uring, SQPOLL (a kernel thread submits)"
    } else {
        "io_uring"
    };
    finding(
        Family::IoUring,
        name,
        Confidence::High,
        format!(
            "{} io_uring instance(s), {} submission-queue polling thread(s); io_uring_enter: {} ({}), socket reads by syscall: {}",
            o.io_urings,
            o.sq_poll_threads,
            s.uring,
            s.per(s.uring),
            s.socket_reads.calls
        ),
    )
}

/// Most sockets with O_ASYNC (nginx sets it on its few master-worker channels only).
fn signal_driven(s: &Signals) -> Option<Finding> {
    let o = s.o;
    (o.async_sockets * 2 > o.sockets).then_some(())?;
    finding(
        Family::SignalDriven,
        "signal-driven I/O (O_ASYNC)",
        Confidence::High,
        format!(
            "{} of {} sockets with O_ASYNC: the kernel signals readiness; threads waiting for signals: {}",
            o.async_sockets,
            o.sockets,
            o.waiting(&["rt_sigtimedwait", "rt_sigsuspend", "pause"])
        ),
    )
}

fn too_few_calls(s: &Signals) -> Option<Finding> {
    let io_calls = s.multiplex() + s.uring + s.socket_reads.calls;
    (io_calls < MIN_CALLS).then_some(())?;
    finding(
        Family::Unknown,
        "unknown",
        Confidence::Low,
        format!("only {io_calls} reads and waits seen: too few to judge"),
    )
}

/// Reads that mostly fail with EAGAIN, and nothing waits for readiness.
fn busy_polling(s: &Signals) -> Option<Finding> {
    (!s.waits_for_readiness() && s.eagain_pct() >= 50.0).then_some(())?;
    finding(
        Family::BusyPolling,
        "non-blocking busy polling",
        Confidence::High,
        format!(
            "{:.0}% of socket reads returned EAGAIN and there is no readiness wait ({} calls): polling in a loop",
            s.eagain_pct(),
            s.multiplex()
        ),
    )
}

/// One thread, reads that block, no readiness waits.
fn blocking_iterative(s: &Signals) -> Option<Finding> {
    let o = s.o;
    (!s.waits_for_readiness() && o.threads <= 1 && o.processes <= 1).then_some(())?;
    // Mostly UDP sockets: datagrams, each perhaps from another client.
    let unit = if o.udp_sockets > 0 && o.udp_sockets * 2 >= o.sockets {
        "datagram"
    } else {
        "connection"
    };
    finding(
        Family::BlockingIterative,
        &format!("blocking, iterative (one {unit} at a time)"),
        Confidence::High,
        format!(
            "one thread, no readiness waits ({} calls), reads that block: one {unit} at a time",
            s.multiplex()
        ),
    )
}

/// Several threads or processes, reads that block, no readiness waits.
fn blocking_per_connection(s: &Signals) -> Option<Finding> {
    (!s.waits_for_readiness()).then_some(())?;
    let (name, confidence) = if s.process_per_connection() {
        ("blocking, a process per connection", Confidence::Medium)
    } else {
        ("blocking, a thread per connection", Confidence::High)
    };
    finding(
        Family::BlockingPerConnection,
        name,
        if s.in_reads >= 2 {
            confidence
        } else {
            Confidence::Low
        },
        format!(
            "no readiness waits ({} calls); up to {} threads at once blocked in reads",
            s.multiplex(),
            s.in_reads
        ),
    )
}

/// Threads (or processes) reading blocking sockets, beside one waiting for readiness on the
/// listener only: Python's ThreadingHTTPServer (an acceptor in poll, a thread per connection in
/// recv) and ForkingTCPServer (the same, a process per connection). Seen either as readers
/// blocked at the samples' moments, or, when handlers are short-lived (HTTP/1.0: a connection
/// per request), as waits far rarer than reads made by one thread of many.
fn acceptor_beside_blocked_readers(s: &Signals) -> Option<Finding> {
    let o = s.o;
    let blocking_sockets = o.sockets > 0 && o.nonblocking_sockets * 2 < o.sockets;
    let readers_seen = s.in_reads >= 2 && s.in_reads > s.waits_seen;
    let waits_rare = s.multiplex() * 100 < s.socket_reads.calls
        && (o.threads >= 3 || o.processes >= 3)
        && s.waits_seen <= 1;
    (blocking_sockets && (readers_seen || waits_rare)).then_some(())?;
    let (name, unit) = if s.process_per_connection() {
        (
            "blocking, a process per connection (an acceptor waits for readiness)",
            "process",
        )
    } else {
        (
            "blocking, a thread per connection (an acceptor waits for readiness)",
            "thread",
        )
    };
    finding(
        Family::BlockingPerConnection,
        name,
        Confidence::Medium,
        format!(
            "{} threads seen blocked in reads on blocking sockets ({} of {} non-blocking), {} readiness waits ({}) by {} waiting thread(s): an acceptor loop and a {unit} per connection",
            s.in_reads,
            o.nonblocking_sockets,
            o.sockets,
            s.multiplex(),
            s.per(s.multiplex()),
            s.waits_seen
        ),
    )
}

/// Many single-threaded processes, each waiting on its one connection (one ready descriptor
/// per wait) and the idle ones in accept: pre-forked processes, one per connection (Apache's
/// prefork waits for a keep-alive connection's next request in poll).
fn pre_forked(s: &Signals) -> Option<Finding> {
    let o = s.o;
    let one_ready = s.ready_per_wait.is_some_and(|r| r <= 1.5);
    (o.processes >= 4 && o.threads <= o.processes + 1 && o.epoll_instances <= 1 && one_ready)
        .then_some(())?;
    finding(
        Family::BlockingPerConnection,
        "a process per connection (pre-forked)",
        Confidence::Medium,
        format!(
            "{} single-threaded processes, {} waiting in accept, {} waiting for readiness on about one descriptor each: a process per connection",
            o.processes,
            o.waiting(&["accept", "accept4"]),
            s.waits_seen
        ),
    )
}

fn select_or_poll(s: &Signals) -> Option<Finding> {
    (s.poll + s.select > s.epoll).then_some(())?;
    let (family, name, call) = if s.select >= s.poll {
        (Family::Select, "select, one thread", "select")
    } else {
        (Family::Poll, "poll, one thread", "poll")
    };
    finding(
        family,
        name,
        Confidence::High,
        format!("most readiness waits are {call} calls: every wait hands the kernel the whole set"),
    )
}

fn epoll_reactors(s: &Signals) -> Option<Finding> {
    let o = s.o;
    (o.epoll_instances >= 2).then_some(())?;
    let per = if o.processes >= 2 {
        "process"
    } else {
        "thread"
    };
    // Many more threads parked on futexes than reactors: each reactor (Apache's event MPM: a
    // listener thread per process) hands requests to a pool of worker threads.
    let (name, reason) = if s.in_futex > 2 * o.epoll_instances {
        (
            format!(
                "epoll, {}, a reactor per {per} handing requests to worker threads",
                s.trigger()
            ),
            format!(
                "{} thread(s) parked on futexes beside {} waiting in epoll: worker pools behind the reactors",
                s.in_futex, s.in_epoll
            ),
        )
    } else {
        (
            format!("epoll, {}, a reactor per {per}", s.trigger()),
            format!(
                "{} epoll instances, each waited in by its own {per}",
                o.epoll_instances
            ),
        )
    };
    finding(Family::EpollReactors, &name, Confidence::High, reason)
}

/// Several threads doing the work, the idle ones parked on futexes: a runtime's workers (a
/// single busy thread with idle helpers parked, as redis has, is a single reactor).
fn mn_runtime(s: &Signals) -> Option<Finding> {
    let o = s.o;
    let go = s.go_polls();
    (o.threads >= 2 && s.in_futex >= 1 && (o.busy_threads != 1 || go)).then_some(())?;
    let name = if go {
        "M:N runtime (Go's netpoller: zero-timeout epoll_pwait polls)"
    } else {
        "M:N runtime (epoll + worker threads)"
    };
    finding(
        Family::MnRuntime,
        name,
        Confidence::Medium,
        format!(
            "{} thread(s) parked on futexes beside {} waiting in epoll: workers woken by the runtime",
            s.in_futex, s.in_epoll
        ),
    )
}

fn epoll_reactor(s: &Signals) -> Option<Finding> {
    let o = s.o;
    let confidence = if o.threads <= 1 || o.busy_threads == 1 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    finding(
        Family::EpollReactor,
        &format!("epoll, {}, single reactor", s.trigger()),
        confidence,
        format!("one epoll instance, {} thread(s) waiting in it", s.in_epoll),
    )
}

/// Evidence that speaks against a family: each sentence lowers the verdict's confidence by
/// one step, so a verdict with contradicting evidence is never "high".
fn contradictions(s: &Signals, family: Family) -> Vec<String> {
    let o = s.o;
    let mut against = Vec::new();
    let blocking = matches!(
        family,
        Family::BlockingIterative | Family::BlockingPerConnection
    );
    let multiplexing = matches!(
        family,
        Family::Select
            | Family::Poll
            | Family::EpollReactor
            | Family::EpollReactors
            | Family::MnRuntime
    );
    if blocking && s.mostly_nonblocking() {
        against.push(format!(
            "{} of {} sockets are non-blocking, which blocking I/O does not need",
            o.nonblocking_sockets, o.sockets
        ));
    }
    // A read after a readiness wait may find nothing (a pre-forked process polls its
    // connection, then reads): EAGAIN speaks against blocking I/O only without waits.
    if blocking && !s.waits_for_readiness() && s.socket_reads.calls > 0 && s.eagain_pct() >= 25.0 {
        against.push(format!(
            "{:.0}% of socket reads ended in EAGAIN, which a read that blocks never returns",
            s.eagain_pct()
        ));
    }
    if multiplexing && s.in_reads >= 2 && !s.mostly_nonblocking() {
        against.push(format!("{} threads were seen blocked in reads", s.in_reads));
    }
    if family == Family::BusyPolling && s.waits_seen > 0 {
        against.push(format!(
            "{} thread(s) were seen waiting for readiness",
            s.waits_seen
        ));
    }
    against
}

fn lower(c: Confidence) -> Confidence {
    match c {
        Confidence::High => Confidence::Medium,
        Confidence::Medium | Confidence::Low => Confidence::Low,
    }
}

/// Judges the process from its results and what was observed in /proc: the first rule that
/// matches, its confidence lowered by each piece of contradicting evidence.
pub fn judge(r: &Results, o: &Observed) -> IoModel {
    let signals = Signals::of(r, o);
    let found = RULES
        .iter()
        .find_map(|rule| rule(&signals))
        .expect("the last rule always matches");
    let mut evidence = signals.evidence();
    evidence.push(found.reason);
    let mut confidence = found.confidence;
    for against in contradictions(&signals, found.family) {
        confidence = lower(confidence);
        evidence.push(format!("against it: {against}"));
    }
    IoModel {
        family: found.family,
        name: found.name,
        confidence,
        evidence,
        observed: o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results_with(rows: &[(&str, u64, u64)]) -> Results {
        use crate::results::{Counters, EndReason, HookKind, Host, Target, Tool};
        Results {
            schema: crate::SCHEMA.into(),
            tool: Tool::netpoll(),
            target: Target::default(),
            host: Host {
                hostname: "fixture".into(),
                kernel: "6.18.0".into(),
                arch: "x86_64".into(),
                cpus: 2,
            },
            hook: HookKind::TpBtf,
            socket_split: true,
            started_at: String::new(),
            ended_at: String::new(),
            duration_ns: 1_000_000_000,
            end_reason: EndReason::Duration,
            partial: false,
            command_exit_code: None,
            syscalls: rows
                .iter()
                .map(|(name, calls, eagain)| SyscallStats {
                    name: name.to_string(),
                    calls: *calls,
                    eagain: *eagain,
                    ..SyscallStats::default()
                })
                .collect(),
            classes: vec![],
            lower_bound: vec![],
            processes: Default::default(),
            counters: Counters::default(),
            scheduler: None,
            run: None,
            programs: vec![],
            lite: None,
            io_model: None,
            go: None,
            ready: None,
            netpoll_cpu: None,
            memory: None,
            uring: None,
            stacks: None,
        }
    }

    #[test]
    fn family_names_are_the_serde_names() {
        for f in [
            Family::EpollReactors,
            Family::MnRuntime,
            Family::BlockingPerConnection,
        ] {
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
    }

    #[test]
    fn too_few_calls_is_unknown_with_the_evidence() {
        let v = judge(&results_with(&[("read", 3, 0)]), &Observed::default());
        assert_eq!(v.family, Family::Unknown);
        assert!(v.evidence.iter().any(|e| e.contains("too few")), "{v:?}");
    }

    #[test]
    fn the_sample_with_the_most_sockets_sets_the_socket_figures() {
        let mut o = Observed::default();
        let busy = Observed {
            sockets: 10,
            nonblocking_sockets: 10,
            threads: 2,
            ..Observed::default()
        };
        let idle = Observed {
            sockets: 1,
            threads: 3,
            waiting_in: [("futex".to_string(), 2)].into(),
            ..Observed::default()
        };
        o.add_sample(&busy);
        o.add_sample(&idle);
        assert_eq!((o.sockets, o.nonblocking_sockets, o.threads), (10, 10, 3));
        assert_eq!(o.waiting_in.get("futex"), Some(&2));
        assert_eq!(o.samples, 2);
    }

    #[test]
    fn an_acceptor_in_poll_beside_threads_blocked_in_reads_is_a_thread_per_connection() {
        // Python's ThreadingHTTPServer, as seen under load.
        let o = Observed {
            threads: 8,
            processes: 1,
            busy_threads: 1,
            waiting_in: [("poll".to_string(), 1), ("recvfrom".to_string(), 7)].into(),
            sockets: 8,
            ..Observed::default()
        };
        let v = judge(
            &results_with(&[("poll", 800, 0), ("recvfrom", 1400, 0)]),
            &o,
        );
        assert_eq!(v.family, Family::BlockingPerConnection, "{v:?}");
    }

    /// `results_with`, the wait rows given `ready` descriptors per wait and `zero` of their
    /// calls with a zero timeout.
    fn with_waits(rows: &[(&str, u64, u64)], ready: u64, zero: u64) -> Results {
        let mut r = results_with(rows);
        for s in &mut r.syscalls {
            if EPOLL.contains(&s.name.as_str()) || POLL.contains(&s.name.as_str()) {
                s.ready_events = crate::Histogram::new(netpoll_ebpf::histogram::READY_BUCKETS);
                s.ready_events.record_n(ready, s.calls);
                s.nonblocking = zero.min(s.calls);
            }
        }
        r
    }

    #[test]
    fn single_threaded_processes_each_polling_one_connection_are_pre_forked() {
        // Apache's prefork under 16 connections: 40 processes, the idle ones in accept.
        let o = Observed {
            threads: 41,
            processes: 41,
            busy_threads: 16,
            waiting_in: [("accept4".to_string(), 24), ("poll".to_string(), 16)].into(),
            sockets: 57,
            nonblocking_sockets: 16,
            ..Observed::default()
        };
        let v = judge(
            &with_waits(&[("poll", 1300, 0), ("read", 8700, 1300)], 1, 0),
            &o,
        );
        assert_eq!(v.family, Family::BlockingPerConnection, "{v:?}");
        assert!(v.name.contains("process per connection"), "{v:?}");
        // Its reads after a poll may find nothing: EAGAIN does not speak against it.
        assert_eq!(v.confidence, Confidence::Medium, "{v:?}");
        // One process polling many sockets is not.
        let one = Observed {
            threads: 1,
            processes: 1,
            ..o
        };
        let v = judge(
            &with_waits(&[("poll", 1300, 0), ("read", 8700, 1300)], 9, 0),
            &one,
        );
        assert_eq!(v.family, Family::Poll, "{v:?}");
    }

    #[test]
    fn go_is_recognised_by_its_zero_timeout_polls_even_with_one_busy_thread() {
        // Go's net/http pinned to one CPU: GOMAXPROCS=1.
        let o = Observed {
            threads: 3,
            processes: 1,
            busy_threads: 1,
            waiting_in: [("epoll_pwait".to_string(), 1), ("futex".to_string(), 2)].into(),
            sockets: 17,
            nonblocking_sockets: 17,
            epoll_instances: 1,
            epoll_registrations: 18,
            edge_triggered: 17,
            ..Observed::default()
        };
        let rows = [("epoll_pwait", 800, 0), ("read", 21000, 10000)];
        let v = judge(&with_waits(&rows, 13, 780), &o);
        assert_eq!(v.family, Family::MnRuntime, "{v:?}");
        assert!(v.name.contains("Go"), "{v:?}");
        // redis: one busy thread, helpers parked, epoll_wait blocking: a single reactor.
        let redis = Observed {
            waiting_in: [("epoll_wait".to_string(), 1), ("futex".to_string(), 4)].into(),
            edge_triggered: 0,
            ..o
        };
        let v = judge(
            &with_waits(&[("epoll_wait", 3500, 0), ("read", 33000, 0)], 9, 0),
            &redis,
        );
        assert_eq!(v.family, Family::EpollReactor, "{v:?}");
        assert!(v.name.contains("level-triggered"), "{v:?}");
    }

    #[test]
    fn reactors_with_worker_pools_and_a_level_triggered_listener_per_reactor() {
        // Apache's event MPM: 2 processes, a listener thread on epoll in each, 50 workers.
        let event = Observed {
            threads: 55,
            processes: 3,
            busy_threads: 40,
            waiting_in: [("epoll_wait".to_string(), 2), ("futex".to_string(), 50)].into(),
            sockets: 19,
            nonblocking_sockets: 19,
            epoll_instances: 2,
            epoll_registrations: 20,
            ..Observed::default()
        };
        let rows = [("epoll_wait", 550, 0), ("read", 9600, 4000)];
        let v = judge(&with_waits(&rows, 7, 0), &event);
        assert_eq!(v.family, Family::EpollReactors, "{v:?}");
        assert!(v.name.contains("worker threads"), "{v:?}");
        // nginx with 2 workers: each leaves its listener and channel level-triggered.
        let nginx = Observed {
            threads: 3,
            waiting_in: [("epoll_wait".to_string(), 2)].into(),
            edge_triggered: 18,
            epoll_registrations: 22,
            ..event
        };
        let v = judge(&with_waits(&rows, 5, 0), &nginx);
        assert_eq!(
            v.name, "epoll, edge-triggered, a reactor per process",
            "{v:?}"
        );
    }

    #[test]
    fn a_reactor_at_a_thousand_connections_waits_rarely_but_is_a_reactor() {
        // epoll-lt at 1000 connections (the scheduling experiment): one epoll_wait returns
        // hundreds of ready sockets, so there is less than one wait per 100 reads.
        let o = Observed {
            threads: 1,
            processes: 1,
            busy_threads: 1,
            sockets: 1001,
            nonblocking_sockets: 1001,
            epoll_instances: 1,
            epoll_registrations: 1001,
            ..Observed::default()
        };
        let rows = [("epoll_wait", 150, 0), ("read", 30000, 14800)];
        let v = judge(&with_waits(&rows, 63, 0), &o);
        assert_eq!(v.family, Family::EpollReactor, "{v:?}");
        // tokio, the same load: its workers parked on futexes.
        let tokio = Observed {
            threads: 3,
            busy_threads: 2,
            waiting_in: [("futex".to_string(), 1)].into(),
            ..o
        };
        let v = judge(&with_waits(&rows, 63, 0), &tokio);
        assert_eq!(v.family, Family::MnRuntime, "{v:?}");
    }

    #[test]
    fn short_lived_handler_threads_beside_an_acceptor_are_a_thread_per_connection() {
        // Python's ThreadingHTTPServer under HTTP/1.0 (a connection, and a thread, per
        // request): the handlers are rarely caught in a read, the acceptor polls rarely.
        let o = Observed {
            threads: 17,
            processes: 1,
            busy_threads: 1,
            waiting_in: [("poll".to_string(), 1)].into(),
            sockets: 17,
            ..Observed::default()
        };
        let v = judge(
            &with_waits(&[("poll", 2, 0), ("recvfrom", 9737, 0)], 1, 0),
            &o,
        );
        assert_eq!(v.family, Family::BlockingPerConnection, "{v:?}");
        assert!(v.name.contains("a thread per connection"), "{v:?}");
        // A single-threaded poll server with the same counts is still poll.
        let one = Observed { threads: 1, ..o };
        let v = judge(
            &with_waits(&[("poll", 9000, 0), ("recvfrom", 9737, 0)], 3, 0),
            &one,
        );
        assert_eq!(v.family, Family::Poll, "{v:?}");
    }

    #[test]
    fn a_forking_server_is_a_process_per_connection() {
        // Python's socketserver.ForkingTCPServer: the parent polls the listener, a child per
        // connection blocks in recv.
        let o = Observed {
            threads: 9,
            processes: 9,
            busy_threads: 8,
            waiting_in: [("poll".to_string(), 1), ("recvfrom".to_string(), 8)].into(),
            sockets: 9,
            ..Observed::default()
        };
        let v = judge(
            &results_with(&[("poll", 800, 0), ("recvfrom", 1400, 0)]),
            &o,
        );
        assert_eq!(v.family, Family::BlockingPerConnection, "{v:?}");
        assert!(v.name.contains("a process per connection"), "{v:?}");
    }

    #[test]
    fn contradicting_evidence_lowers_the_confidence() {
        // No readiness waits and one thread: blocking, iterative; but the sockets are
        // non-blocking and a third of the reads end in EAGAIN.
        let mut o = Observed {
            threads: 1,
            processes: 1,
            sockets: 10,
            nonblocking_sockets: 10,
            ..Observed::default()
        };
        let v = judge(&results_with(&[("read", 1000, 300)]), &o);
        assert_eq!(v.family, Family::BlockingIterative, "{v:?}");
        assert_eq!(v.confidence, Confidence::Low, "{v:?}");
        assert_eq!(
            v.evidence
                .iter()
                .filter(|e| e.starts_with("against it"))
                .count(),
            2,
            "{v:?}"
        );
        // Without the contradictions: high.
        o.nonblocking_sockets = 0;
        let v = judge(&results_with(&[("read", 1000, 0)]), &o);
        assert_eq!(v.confidence, Confidence::High, "{v:?}");
    }

    #[test]
    fn every_rule_stands_alone() {
        // Each rule judged on its own signals: only its own signature matches.
        let r = results_with(&[("read", 1000, 900)]);
        let busy = Observed {
            threads: 1,
            processes: 1,
            ..Observed::default()
        };
        let s = Signals::of(&r, &busy);
        assert!(busy_polling(&s).is_some());
        assert!(kernel_bypass(&s).is_none() && io_uring(&s).is_none());
        let xdp = Observed {
            xdp_programs: 1,
            ..busy.clone()
        };
        assert!(kernel_bypass(&Signals::of(&r, &xdp)).is_some());
        // The last rule always matches: judge never runs out of rules.
        assert!(epoll_reactor(&s).is_some());
        assert!(too_few_calls(&Signals::of(&results_with(&[]), &busy)).is_some());
    }

    #[test]
    fn reads_that_mostly_fail_with_eagain_and_no_waits_are_busy_polling() {
        let o = Observed {
            threads: 1,
            processes: 1,
            ..Observed::default()
        };
        let v = judge(&results_with(&[("read", 1000, 900)]), &o);
        assert_eq!(v.family, Family::BusyPolling, "{v:?}");
    }
}
