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

/// Calls of the given syscalls, over both fd kinds.
fn calls(r: &Results, names: &[&str]) -> u64 {
    r.syscalls
        .iter()
        .filter(|s| names.contains(&s.name.as_str()))
        .map(|s| s.calls)
        .sum()
}

fn total<'a>(rows: impl Iterator<Item = &'a SyscallStats>) -> SyscallStats {
    let mut t = SyscallStats::default();
    rows.for_each(|r| t.merge(r));
    t
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

const EPOLL: &[&str] = &["epoll_wait", "epoll_pwait", "epoll_pwait2"];
const POLL: &[&str] = &["poll", "ppoll"];
const SELECT: &[&str] = &["select", "pselect6"];
const READS: &[&str] = &["read", "readv", "recvfrom", "recvmsg", "recvmmsg"];

/// Judges the process from its results and what was observed in /proc.
pub fn judge(r: &Results, o: &Observed) -> IoModel {
    let mut evidence = Vec::new();
    let threads_line = format!(
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
    );
    evidence.push(threads_line);
    let seconds = (r.duration_ns as f64 / 1e9).max(1e-9);
    let per = |n: u64| -> String {
        match r
            .run
            .as_ref()
            .map(|run| run.load.requests)
            .filter(|&q| q > 0)
        {
            Some(requests) => format!("{:.2} per request", n as f64 / requests as f64),
            None => format!("{:.0}/s", n as f64 / seconds),
        }
    };
    let (epoll, poll, select) = (calls(r, EPOLL), calls(r, POLL), calls(r, SELECT));
    let uring = calls(r, &["io_uring_enter"]);
    let socket_reads =
        total(r.syscalls.iter().filter(|s| {
            READS.contains(&s.name.as_str()) && s.fd != Some(crate::results::Fd::Other)
        }));
    let io_calls = epoll + poll + select + uring + socket_reads.calls;
    if socket_reads.calls > 0 {
        evidence.push(format!(
            "socket reads: {} ({}), {:.0}% ended in EAGAIN",
            socket_reads.calls,
            per(socket_reads.calls),
            pct(socket_reads.eagain, socket_reads.calls)
        ));
    }
    if o.sockets > 0 {
        evidence.push(format!(
            "{} sockets open, {} non-blocking, {} with O_ASYNC",
            o.sockets, o.nonblocking_sockets, o.async_sockets
        ));
    }
    let verdict =
        |family: Family, name: &str, confidence: Confidence, evidence: Vec<String>| IoModel {
            family,
            name: name.to_string(),
            confidence,
            evidence,
            observed: o.clone(),
        };
    if o.xdp_programs > 0 {
        let all: u64 = r.syscalls.iter().map(|s| s.calls).sum();
        evidence.push(format!(
            "{} XDP program(s) held by the process; {} measured syscalls in all ({}): packets reach it through AF_XDP rings, not sockets",
            o.xdp_programs,
            all,
            per(all)
        ));
        return verdict(
            Family::KernelBypass,
            "kernel bypass: AF_XDP (an XDP program feeds rings shared with user space)",
            Confidence::High,
            evidence,
        );
    }
    if o.io_urings > 0 && (uring > socket_reads.calls || o.sq_poll_threads > 0) {
        evidence.push(format!(
            "{} io_uring instance(s), {} submission-queue polling thread(s); io_uring_enter: {} ({}), socket reads by syscall: {}",
            o.io_urings,
            o.sq_poll_threads,
            uring,
            per(uring),
            socket_reads.calls
        ));
        let name = if o.sq_poll_threads > 0 {
            "io_uring, SQPOLL (a kernel thread submits)"
        } else {
            "io_uring"
        };
        return verdict(Family::IoUring, name, Confidence::High, evidence);
    }
    // Most sockets with O_ASYNC (nginx sets it on its few master-worker channels only).
    if o.async_sockets * 2 > o.sockets {
        evidence.push(format!(
            "{} of {} sockets with O_ASYNC: the kernel signals readiness; threads waiting for signals: {}",
            o.async_sockets,
            o.sockets,
            o.waiting(&["rt_sigtimedwait", "rt_sigsuspend", "pause"])
        ));
        return verdict(
            Family::SignalDriven,
            "signal-driven I/O (O_ASYNC)",
            Confidence::High,
            evidence,
        );
    }
    if io_calls < MIN_CALLS {
        evidence.push(format!(
            "only {io_calls} reads and waits seen: too few to judge"
        ));
        return verdict(Family::Unknown, "unknown", Confidence::Low, evidence);
    }
    let multiplex = epoll + poll + select;
    // A few stray waits (a library's poll at start-up) do not make a multiplexing server; a
    // thread seen waiting in one, or one wait per 100 reads, does (one wait may return many
    // ready sockets).
    let waits_seen = o.waiting(EPOLL) + o.waiting(POLL) + o.waiting(SELECT);
    if waits_seen == 0 && multiplex * 100 < socket_reads.calls {
        // Reads without readiness waits: blocking, or busy polling.
        let eagain = pct(socket_reads.eagain, socket_reads.calls);
        if eagain >= 50.0 {
            evidence.push(format!(
                "{eagain:.0}% of socket reads returned EAGAIN and there is no readiness wait ({multiplex} calls): polling in a loop"
            ));
            return verdict(
                Family::BusyPolling,
                "non-blocking busy polling",
                Confidence::High,
                evidence,
            );
        }
        let in_reads = o.waiting(READS);
        if o.threads <= 1 && o.processes <= 1 {
            // Mostly UDP sockets: datagrams, each perhaps from another client.
            let unit = if o.udp_sockets > 0 && o.udp_sockets * 2 >= o.sockets {
                "datagram"
            } else {
                "connection"
            };
            evidence.push(format!(
                "one thread, no readiness waits ({multiplex} calls), reads that block: one {unit} at a time"
            ));
            return verdict(
                Family::BlockingIterative,
                &format!("blocking, iterative (one {unit} at a time)"),
                Confidence::High,
                evidence,
            );
        }
        evidence.push(format!(
            "no readiness waits ({multiplex} calls); up to {in_reads} threads at once blocked in reads"
        ));
        let (name, confidence) = if o.processes > 1 && o.processes >= o.threads / 2 {
            ("blocking, a process per connection", Confidence::Medium)
        } else {
            ("blocking, a thread per connection", Confidence::High)
        };
        let confidence = if in_reads >= 2 {
            confidence
        } else {
            Confidence::Low
        };
        return verdict(Family::BlockingPerConnection, name, confidence, evidence);
    }
    // Threads blocked in reads on blocking sockets, beside a thread waiting for readiness on
    // the listener only (Python's ThreadingHTTPServer: an acceptor in poll, a thread per
    // connection in recv).
    let in_reads = o.waiting(READS);
    if in_reads >= 2 && in_reads > waits_seen && o.nonblocking_sockets * 2 < o.sockets {
        evidence.push(format!(
            "{in_reads} threads blocked in reads on blocking sockets ({} of {} non-blocking), {waits_seen} waiting for readiness: an acceptor loop and a thread per connection",
            o.nonblocking_sockets, o.sockets
        ));
        return verdict(
            Family::BlockingPerConnection,
            "blocking, a thread per connection (an acceptor waits for readiness)",
            Confidence::Medium,
            evidence,
        );
    }
    let waits = total(r.syscalls.iter().filter(|s| {
        EPOLL.contains(&s.name.as_str())
            || POLL.contains(&s.name.as_str())
            || SELECT.contains(&s.name.as_str())
    }));
    // Ready events are exact below 64 (the buckets are 1 wide there), which covers most waits.
    let (events, counted) = waits
        .ready_events
        .buckets()
        .fold((0.0, 0), |(sum, n), (low, high, count)| {
            (sum + count as f64 * (low + high) as f64 / 2.0, n + count)
        });
    let ready_per_wait = if counted == 0 {
        String::from("-")
    } else {
        format!("{:.1}", events / counted as f64)
    };
    evidence.push(format!(
        "readiness waits: epoll {epoll}, poll {poll}, select {select} ({} in all); {ready_per_wait} ready descriptors per wait, {:.0}% with a zero timeout",
        per(multiplex),
        pct(waits.nonblocking, waits.calls)
    ));
    // Many single-threaded processes, each waiting on its one connection (one ready descriptor
    // per wait) and the idle ones in accept: pre-forked processes, one per connection (Apache's
    // prefork waits for a keep-alive connection's next request in poll).
    let one_ready = counted > 0 && events / (counted as f64) <= 1.5;
    if o.processes >= 4 && o.threads <= o.processes + 1 && o.epoll_instances <= 1 && one_ready {
        evidence.push(format!(
            "{} single-threaded processes, {} waiting in accept, {} waiting for readiness on about one descriptor each: a process per connection",
            o.processes,
            o.waiting(&["accept", "accept4"]),
            waits_seen
        ));
        return verdict(
            Family::BlockingPerConnection,
            "a process per connection (pre-forked)",
            Confidence::Medium,
            evidence,
        );
    }
    if poll + select > epoll {
        let (family, name) = if select >= poll {
            (Family::Select, "select, one thread")
        } else {
            (Family::Poll, "poll, one thread")
        };
        return verdict(family, name, Confidence::High, evidence);
    }
    // Servers often leave the listener or a wakeup descriptor level-triggered (nginx: the
    // listener and its channel to the master, in each worker): the sockets decide, so a few
    // exceptions per instance do not make it "mixed".
    let level = o.epoll_registrations.saturating_sub(o.edge_triggered);
    let trigger = if o.epoll_registrations == 0 {
        "trigger unknown"
    } else if o.edge_triggered >= level
        && (level * 10 <= o.epoll_registrations || level <= 2 * o.epoll_instances.max(1))
    {
        "edge-triggered"
    } else if o.edge_triggered * 10 <= o.epoll_registrations {
        "level-triggered"
    } else {
        "mixed level- and edge-triggered"
    };
    evidence.push(format!(
        "{} epoll instance(s) with {} registrations: {} edge-triggered, {} one-shot",
        o.epoll_instances, o.epoll_registrations, o.edge_triggered, o.oneshot
    ));
    let in_epoll = o.waiting(EPOLL);
    let in_futex = o.waiting(&["futex"]);
    if o.epoll_instances >= 2 {
        let per = if o.processes >= 2 {
            "process"
        } else {
            "thread"
        };
        // Many more threads parked on futexes than reactors: each reactor (Apache's event MPM:
        // a listener thread per process) hands requests to a pool of worker threads.
        let name = if in_futex > 2 * o.epoll_instances {
            evidence.push(format!(
                "{in_futex} thread(s) parked on futexes beside {in_epoll} waiting in epoll: worker pools behind the reactors"
            ));
            format!("epoll, {trigger}, a reactor per {per} handing requests to worker threads")
        } else {
            format!("epoll, {trigger}, a reactor per {per}")
        };
        return verdict(Family::EpollReactors, &name, Confidence::High, evidence);
    }
    // Go's runtime polls epoll with a zero timeout (epoll_pwait) whenever a scheduler looks for
    // work: its signature, even with GOMAXPROCS=1 and a single busy thread.
    let pwait = calls(r, &["epoll_pwait"]);
    let go = pwait * 2 > epoll && pct(waits.nonblocking, waits.calls) >= 20.0;
    // Several threads doing the work, the idle ones parked on futexes: a runtime's workers
    // (a single busy thread with idle helpers parked, as redis has, is a single reactor).
    if o.threads >= 2 && in_futex >= 1 && (o.busy_threads != 1 || go) {
        evidence.push(format!(
            "{in_futex} thread(s) parked on futexes beside {in_epoll} waiting in epoll: workers woken by the runtime"
        ));
        let name = if go {
            "M:N runtime (Go's netpoller: zero-timeout epoll_pwait polls)"
        } else {
            "M:N runtime (epoll + worker threads)"
        };
        return verdict(Family::MnRuntime, name, Confidence::Medium, evidence);
    }
    let confidence = if o.threads <= 1 || o.busy_threads == 1 {
        Confidence::High
    } else {
        Confidence::Medium
    };
    verdict(
        Family::EpollReactor,
        &format!("epoll, {trigger}, single reactor"),
        confidence,
        evidence,
    )
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
