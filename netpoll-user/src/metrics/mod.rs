//! netpoll's figures as Prometheus metrics: one read of the probes' maps becomes metric families
//! ([`families`]), exposed as text ([`text`]) or as protobuf with native histograms (when the
//! scraper asks for it). The names follow Prometheus conventions (base units, `_total` for
//! counters) and are documented in docs/metrics.md.

pub mod buckets;
pub mod model;
pub mod text;

use std::collections::BTreeMap;

use analysis::{
    Histogram,
    results::{CounterKind, LiteSyscall, SyscallStats},
};
use model::{Counter, Gauge, Metric, MetricFamily, MetricType, labels};
use prost::Message as _;

use crate::probes::snapshot::Snapshot;
use analysis::results::ProgramCost;

/// The protobuf exposition Prometheus asks for when it wants native histograms.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// How the metrics are named and labelled.
#[derive(Debug, Clone)]
pub struct Naming {
    /// Prefix of every name (`netpoll`).
    pub prefix: String,
    /// Label series by process (`pid`, `comm`).
    pub per_pid: bool,
    /// Most processes labelled on their own; the rest are summed under `pid="other"`.
    pub max_processes: usize,
}

/// A row of the probes: its labels and its figures.
struct Row<'a> {
    labels: Vec<(&'static str, String)>,
    stats: &'a SyscallStats,
}

/// Rows of one snapshot, labelled by syscall, fd, class and (per process) pid and comm.
fn rows<'a>(
    snapshot: &'a Snapshot,
    naming: &Naming,
    merged: &'a mut Vec<SyscallStats>,
) -> Vec<Row<'a>> {
    let label = |s: &SyscallStats| {
        let mut l = vec![("syscall", s.name.clone())];
        if let Some(fd) = s.fd {
            l.push(("fd", fd.name().to_string()));
        }
        l.push((
            "class",
            s.class().map(|c| c.name().to_string()).unwrap_or_default(),
        ));
        l
    };
    let mut out = Vec::new();
    if !naming.per_pid {
        for s in snapshot.measured_since(None).into_iter() {
            merged.push(s);
        }
        return merged
            .iter()
            .map(|s| Row {
                labels: label(s),
                stats: s,
            })
            .collect();
    }
    // Per process: the busiest keep their labels, the rest (and calls without a process) are
    // summed under pid="other", so that the number of series stays bounded.
    let mut by_calls: Vec<(u32, u64)> = snapshot
        .per_pid
        .iter()
        .map(|(pid, rows)| (*pid, rows.iter().map(|r| r.calls).sum()))
        .collect();
    by_calls.sort_by_key(|p| std::cmp::Reverse(p.1));
    let kept: Vec<u32> = by_calls
        .iter()
        .take(naming.max_processes)
        .map(|p| p.0)
        .collect();
    let mut other: BTreeMap<(String, Option<&'static str>), SyscallStats> = BTreeMap::new();
    let mut add_other = |s: &SyscallStats| {
        let key = (s.name.clone(), s.fd.map(|f| f.name()));
        other
            .entry(key)
            .or_insert_with(|| SyscallStats {
                name: s.name.clone(),
                fd: s.fd,
                ..SyscallStats::default()
            })
            .merge(s);
    };
    let measured = |rows: &'a [SyscallStats]| {
        rows.iter()
            .enumerate()
            .filter(|(slot, r)| r.calls > 0 && !crate::probes::snapshot::slot_parts(*slot).2)
            .map(|(_, r)| r)
    };
    for (pid, slots) in &snapshot.per_pid {
        if !kept.contains(pid) {
            measured(slots).for_each(&mut add_other);
            continue;
        }
        let comm = snapshot.comms.get(pid).cloned().unwrap_or_default();
        for s in measured(slots) {
            let mut l = label(s);
            l.push(("pid", pid.to_string()));
            l.push(("comm", comm.clone()));
            out.push(Row {
                labels: l,
                stats: s,
            });
        }
    }
    measured(&snapshot.slots).for_each(&mut add_other);
    merged.extend(other.into_values());
    for s in merged.iter() {
        let mut l = label(s);
        l.push(("pid", "other".into()));
        l.push(("comm", "other".into()));
        out.push(Row {
            labels: l,
            stats: s,
        });
    }
    out
}

/// A metric of one row.
fn metric(row: &Row) -> Metric {
    let pairs: Vec<(&str, &str)> = row.labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
    Metric {
        label: labels(&pairs),
        ..Metric::default()
    }
}

/// Every metric family of one read of the probes.
pub fn families(
    snapshot: &Snapshot,
    programs: &[ProgramCost],
    stats_enabled: bool,
    naming: &Naming,
) -> Vec<MetricFamily> {
    let p = &naming.prefix;
    let mut merged = Vec::new();
    let rows = rows(snapshot, naming, &mut merged);
    let mut out = Vec::new();
    type Field = fn(&SyscallStats) -> Option<u64>;
    let counters: [(&str, &str, Field); 6] = [
        (
            "syscall_calls_total",
            "Calls that returned (a call blocked across the probes' attach is not counted).",
            |s| Some(s.calls),
        ),
        (
            "syscall_errors_total",
            "Calls that returned an error, EAGAIN included.",
            |s| Some(s.errors),
        ),
        (
            "syscall_eagain_total",
            "Calls that returned EAGAIN (a non-blocking call that would have blocked).",
            |s| Some(s.eagain),
        ),
        (
            "syscall_bytes_total",
            "Bytes moved by read and write calls.",
            |s| s.fd.map(|_| s.bytes),
        ),
        (
            "syscall_zero_ready_total",
            "Waiting calls (epoll, poll, select) that returned no ready descriptor.",
            |s| is_wait(s).then_some(s.zero_ready),
        ),
        (
            "syscall_nonblocking_total",
            "Waiting calls made with a zero timeout (polls that could not block).",
            |s| is_wait(s).then_some(s.nonblocking),
        ),
    ];
    for (name, help, field) in counters {
        let mut f = MetricFamily::new(format!("{p}_{name}"), help, MetricType::Counter);
        for row in &rows {
            if let Some(v) = field(row.stats) {
                f.metric.push(Metric {
                    counter: Some(Counter { value: v as f64 }),
                    ..metric(row)
                });
            }
        }
        out.push(f);
    }
    let bounds = buckets::latency_bounds_ns();
    let mut latency = MetricFamily::new(
        format!("{p}_syscall_latency_seconds"),
        "Time from syscall entry to exit, measured in the kernel.",
        MetricType::Histogram,
    );
    let ready_bounds = buckets::ready_bounds();
    let mut ready = MetricFamily::new(
        format!("{p}_syscall_ready_events"),
        "Ready descriptors returned per successful waiting call (epoll, poll, select).",
        MetricType::Histogram,
    );
    for row in &rows {
        latency.metric.push(Metric {
            histogram: Some(buckets::histogram(
                &row.stats.latency_ns,
                &bounds,
                1e9,
                Some(row.stats.latency_sum_ns),
            )),
            ..metric(row)
        });
        if is_wait(row.stats) {
            ready.metric.push(Metric {
                histogram: Some(buckets::histogram(
                    &row.stats.ready_events,
                    &ready_bounds,
                    1.0,
                    None,
                )),
                ..metric(row)
            });
        }
    }
    out.push(latency);
    out.push(ready);
    for (def, value) in snapshot.counters.values() {
        let (name, kind) = match def.kind {
            CounterKind::Total => (format!("{p}_{}_total", def.name), MetricType::Counter),
            CounterKind::Level => (format!("{p}_{}", def.name), MetricType::Gauge),
        };
        let mut f = MetricFamily::new(name, def.help, kind);
        f.metric.push(match def.kind {
            CounterKind::Total => Metric {
                counter: Some(Counter {
                    value: value as f64,
                }),
                ..Metric::default()
            },
            CounterKind::Level => Metric {
                gauge: Some(Gauge {
                    value: value as f64,
                }),
                ..Metric::default()
            },
        });
        out.push(f);
    }
    if let Some(lite) = &snapshot.lite {
        out.extend(lite_families(p, lite));
    }
    if let Some(ready) = &snapshot.ready {
        out.extend(ready_families(p, ready));
    }
    if let Some(uring) = &snapshot.uring {
        out.extend(uring_families(p, uring));
    }
    out.extend(program_families(p, programs, stats_enabled));
    out
}

/// `--ready`: readiness-to-service delays by the call that ended them, the fate of reported
/// descriptors, and the event-loop turns.
fn ready_families(p: &str, ready: &analysis::ready::Ready) -> Vec<MetricFamily> {
    let bounds = buckets::latency_bounds_ns();
    let label = |name: &str, value: &str| model::LabelPair {
        name: name.to_string(),
        value: value.to_string(),
    };
    let mut delay = MetricFamily::new(
        format!("{p}_ready_delay_seconds"),
        "From a wait reporting a descriptor ready to the process's next call on it, by that call (ended_by: read, write, accept, close, epoll_ctl).",
        MetricType::Histogram,
    );
    for (name, d) in &ready.delays {
        delay.metric.push(Metric {
            label: vec![label("ended_by", name)],
            histogram: Some(buckets::histogram(
                &d.histogram,
                &bounds,
                1e9,
                Some(d.sum_ns),
            )),
            ..Metric::default()
        });
    }
    let mut reported = MetricFamily::new(
        format!("{p}_ready_descriptors_total"),
        "Descriptors waits reported ready, by what became of the report (stamped: timed until serviced; reported_again: still unserviced; unmapped: epoll data of an unknown registration; not_read: beyond 64 per wait).",
        MetricType::Counter,
    );
    for (outcome, value) in [
        ("stamped", ready.stamped),
        ("reported_again", ready.reported_again),
        ("unmapped", ready.unmapped),
        ("not_read", ready.not_read),
    ] {
        reported.metric.push(Metric {
            label: vec![label("outcome", outcome)],
            counter: Some(Counter {
                value: value as f64,
            }),
            ..Metric::default()
        });
    }
    let mut turns = MetricFamily::new(
        format!("{p}_loop_turn_seconds"),
        "Event-loop turns: from a wait's return to the same thread's next wait.",
        MetricType::Histogram,
    );
    turns.metric.push(Metric {
        histogram: Some(buckets::histogram(
            &ready.turn_ns,
            &bounds,
            1e9,
            Some(ready.turn_sum_ns),
        )),
        ..Metric::default()
    });
    vec![delay, reported, turns]
}

/// `--uring`: io_uring requests by operation and path: counts, latency and phases.
fn uring_families(p: &str, uring: &analysis::uring::Uring) -> Vec<MetricFamily> {
    let bounds = buckets::latency_bounds_ns();
    let labels = |r: &analysis::uring::UringRequests| {
        vec![
            model::LabelPair {
                name: "op".into(),
                value: r.op.clone(),
            },
            model::LabelPair {
                name: "path".into(),
                value: r.path.clone(),
            },
        ]
    };
    type Count = fn(&analysis::uring::UringRequests) -> u64;
    let counters: [(&str, &str, Count); 3] = [
        (
            "uring_requests_total",
            "io_uring requests finished, by operation and path (inline: completed within the submission; poll: waited for its file's readiness; io-wq: handed to a worker).",
            |r| r.requests,
        ),
        (
            "uring_completions_total",
            "io_uring completions posted (several per multishot request), by operation and path.",
            |r| r.completions,
        ),
        (
            "uring_errors_total",
            "io_uring completions with a negative result, by operation and path.",
            |r| r.errors,
        ),
    ];
    let mut out = Vec::new();
    for (name, help, count) in counters {
        let mut f = MetricFamily::new(format!("{p}_{name}"), help, MetricType::Counter);
        for r in &uring.requests {
            f.metric.push(Metric {
                label: labels(r),
                counter: Some(Counter {
                    value: count(r) as f64,
                }),
                ..Metric::default()
            });
        }
        out.push(f);
    }
    type Phase = fn(&analysis::uring::UringRequests) -> (&Histogram, u64, u64);
    let histograms: [(&str, &str, Phase); 3] = [
        (
            "uring_request_seconds",
            "io_uring requests from submission to completion (a multishot request's later completions: from the one before), by operation and path.",
            |r| (&r.latency_ns, r.latency_sum_ns, r.completions),
        ),
        (
            "uring_wait_seconds",
            "io_uring requests' wait: poll path, from arming to the file's readiness; io-wq path, from being queued to completion.",
            |r| (&r.wait_ns, r.wait_sum_ns, r.waits),
        ),
        (
            "uring_task_work_seconds",
            "io_uring poll requests from their file's readiness to completion (the task work waiting for its thread, then running).",
            |r| (&r.task_work_ns, r.task_work_sum_ns, r.task_works),
        ),
    ];
    for (name, help, phase) in histograms {
        let mut f = MetricFamily::new(format!("{p}_{name}"), help, MetricType::Histogram);
        for r in &uring.requests {
            let (h, sum, n) = phase(r);
            if n == 0 {
                continue;
            }
            f.metric.push(Metric {
                label: labels(r),
                histogram: Some(buckets::histogram(h, &bounds, 1e9, Some(sum))),
                ..Metric::default()
            });
        }
        out.push(f);
    }
    out
}

/// `--lite`: socket transfers and sleeps by syscall (the `syscall_*` families stay empty: lite
/// mode times no call).
fn lite_families(p: &str, rows: &[LiteSyscall]) -> Vec<MetricFamily> {
    let rows: Vec<&LiteSyscall> = rows.iter().filter(|r| !r.is_empty()).collect();
    type Field = fn(&LiteSyscall) -> u64;
    let counters: [(&str, &str, Field); 5] = [
        (
            "lite_socket_transfers_total",
            "Socket transfers (one per read/recv/write/send call on a socket), seen without per-syscall hooks.",
            |r| r.socket_transfers,
        ),
        (
            "lite_socket_transfer_errors_total",
            "Socket transfers that failed, EAGAIN included.",
            |r| r.errors,
        ),
        (
            "lite_socket_transfer_eagain_total",
            "Socket transfers that returned EAGAIN.",
            |r| r.eagain,
        ),
        (
            "lite_socket_transfer_bytes_total",
            "Bytes moved by socket transfers.",
            |r| r.bytes,
        ),
        (
            "lite_sleeps_total",
            "Times a call of the syscall put its thread to sleep.",
            |r| r.sleeps,
        ),
    ];
    let label = |r: &LiteSyscall| Metric {
        label: labels(&[("syscall", &r.name)]),
        ..Metric::default()
    };
    let mut out = Vec::new();
    for (name, help, field) in counters {
        let mut f = MetricFamily::new(format!("{p}_{name}"), help, MetricType::Counter);
        for r in &rows {
            f.metric.push(Metric {
                counter: Some(Counter {
                    value: field(r) as f64,
                }),
                ..label(r)
            });
        }
        out.push(f);
    }
    let bounds = buckets::latency_bounds_ns();
    let mut off_cpu = MetricFamily::new(
        format!("{p}_lite_off_cpu_seconds"),
        "Time off CPU per sleep inside the syscall (asleep, then waiting for a CPU).",
        MetricType::Histogram,
    );
    for r in rows.iter().filter(|r| r.sleeps > 0) {
        off_cpu.metric.push(Metric {
            histogram: Some(buckets::histogram(
                &r.off_cpu_ns,
                &bounds,
                1e9,
                Some(r.off_cpu_sum_ns),
            )),
            ..label(r)
        });
    }
    out.push(off_cpu);
    out
}

fn is_wait(s: &SyscallStats) -> bool {
    s.class().is_some_and(|c| c.is_readiness_wait())
}

/// The Go view (`export --go`): a Go process's scheduler, read at the scrape.
/// A counter of the network polls: its name, help, and value per caller and timeout.
type PollCounter = (
    &'static str,
    &'static str,
    fn(&analysis::go::GoPolls) -> f64,
);

/// The Go process's network polls by caller and timeout (`--go`), as counters.
pub fn go_poll_families(prefix: &str, polls: &[analysis::go::GoPolls]) -> Vec<MetricFamily> {
    let counters: [PollCounter; 3] = [
        (
            "network_polls_total",
            "The Go process's network polls (epoll_pwait), by the runtime function that made them (caller: runtime.findRunnable is the scheduler looking for work, runtime.sysmon the monitor) and timeout (blocking, non-blocking, timed).",
            |p| p.calls as f64,
        ),
        (
            "network_poll_events_total",
            "Ready events the Go process's network polls returned, by caller and timeout.",
            |p| p.events as f64,
        ),
        (
            "network_poll_seconds_total",
            "Time inside the Go process's network polls, by caller and timeout.",
            |p| p.time_ns as f64 / 1e9,
        ),
    ];
    counters
        .iter()
        .map(|(name, help, value)| {
            let mut f = MetricFamily::new(format!("{prefix}_go_{name}"), help, MetricType::Counter);
            f.metric = polls
                .iter()
                .map(|p| Metric {
                    label: [("caller", &p.caller), ("timeout", &p.timeout)]
                        .iter()
                        .map(|(name, value)| model::LabelPair {
                            name: name.to_string(),
                            value: value.to_string(),
                        })
                        .collect(),
                    counter: Some(Counter { value: value(p) }),
                    ..Metric::default()
                })
                .collect();
            f
        })
        .collect()
}

pub fn go_families(
    prefix: &str,
    version: &str,
    s: &crate::go::runtime::Sample,
) -> Vec<MetricFamily> {
    let gauge = |labels: &[(&str, &str)], value: f64| Metric {
        label: labels
            .iter()
            .map(|(name, value)| model::LabelPair {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        gauge: Some(Gauge { value }),
        ..Metric::default()
    };
    let family = |name: &str, help: &str, metrics: Vec<Metric>| {
        let mut f = MetricFamily::new(format!("{prefix}_go_{name}"), help, MetricType::Gauge);
        f.metric = metrics;
        f
    };
    let mut goroutines = vec![
        gauge(&[("state", "running")], s.running as f64),
        gauge(&[("state", "runnable")], s.runnable as f64),
        gauge(&[("state", "syscall")], s.in_syscall as f64),
    ];
    goroutines.extend(
        s.waiting
            .iter()
            .map(|(reason, n)| gauge(&[("state", "waiting"), ("reason", reason)], *n as f64)),
    );
    let mut out = vec![
        family(
            "info",
            "The Go process sampled: its Go version (label version), always 1.",
            vec![gauge(&[("version", version)], 1.0)],
        ),
        family(
            "goroutines",
            "Goroutines by state (running, runnable, syscall, waiting by the runtime's reason: \"IO wait\" is parked on the network).",
            goroutines,
        ),
        family(
            "runnable_queued",
            "Runnable goroutines in the global queue and in the Ps' local queues (with runnext).",
            vec![
                gauge(&[("queue", "global")], s.global_runnable as f64),
                gauge(&[("queue", "local")], s.local_runnable as f64),
            ],
        ),
        family(
            "procs",
            "Ps (GOMAXPROCS).",
            vec![gauge(&[], s.procs as f64)],
        ),
        family(
            "idle_procs",
            "Idle Ps.",
            vec![gauge(&[], s.idle_procs as f64)],
        ),
        family(
            "threads",
            "The runtime's threads (Ms) by state: all, spinning (looking for work), idle.",
            vec![
                gauge(&[("state", "all")], s.threads as f64),
                gauge(&[("state", "spinning")], s.spinning_threads as f64),
                gauge(&[("state", "idle")], s.idle_threads as f64),
            ],
        ),
        family(
            "netpoller_blocked",
            "1 when a thread is blocked in netpoll (sched.lastpoll is 0), else 0.",
            vec![gauge(&[], f64::from(u8::from(s.polling_now)))],
        ),
    ];
    if let Some(age) = s.since_last_poll_ns {
        out.push(family(
            "since_last_poll_seconds",
            "Since the network was last polled, when no thread is blocked polling it.",
            vec![gauge(&[], age as f64 / 1e9)],
        ));
    }
    out
}

/// netpoll's own cost: run time and runs of each of its BPF programs (kernel.bpf_stats_enabled).
fn program_families(p: &str, programs: &[ProgramCost], enabled: bool) -> Vec<MetricFamily> {
    let mut on = MetricFamily::new(
        format!("{p}_bpf_stats_enabled"),
        "1 when the kernel counts the run time of BPF programs (kernel.bpf_stats_enabled, or --bpf-stats).",
        MetricType::Gauge,
    );
    on.metric.push(Metric {
        gauge: Some(Gauge {
            value: f64::from(u8::from(enabled)),
        }),
        ..Metric::default()
    });
    let mut time = MetricFamily::new(
        format!("{p}_bpf_program_run_seconds_total"),
        "Time netpoll's BPF programs ran (their cost, paid by the processes they run in).",
        MetricType::Counter,
    );
    let mut runs = MetricFamily::new(
        format!("{p}_bpf_program_runs_total"),
        "Runs of netpoll's BPF programs.",
        MetricType::Counter,
    );
    if enabled {
        for prog in programs {
            let label = labels(&[("program", &prog.program)]);
            time.metric.push(Metric {
                label: label.clone(),
                counter: Some(Counter {
                    value: prog.run_time_ns as f64 / 1e9,
                }),
                ..Metric::default()
            });
            runs.metric.push(Metric {
                label,
                counter: Some(Counter {
                    value: prog.runs as f64,
                }),
                ..Metric::default()
            });
        }
    }
    vec![on, time, runs]
}

/// The families as the protobuf exposition: each length-delimited.
pub fn encode_protobuf(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families.iter().filter(|f| !f.metric.is_empty()) {
        // Writing into a Vec cannot fail.
        let _ = f.encode_length_delimited(&mut out);
    }
    out
}

/// Whether an Accept header asks for the protobuf exposition (Prometheus with native
/// histograms enabled puts it first).
pub fn wants_protobuf(accept: &str) -> bool {
    accept.split(',').any(|media| {
        media.contains("application/vnd.google.protobuf")
            && media.contains("proto=io.prometheus.client.MetricFamily")
            && !media.contains("q=0,")
            && !media.trim_end().ends_with("q=0")
    })
}
