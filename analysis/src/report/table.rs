//! The report's tables, as data: each writer (HTML, Markdown) renders a [`Table`] its own way.

use super::{
    figures::ns,
    runs::{Cell, Run},
};
use crate::{
    Histogram,
    go::GoRuntime,
    results::{Class, TargetKind},
    run::{RunInfo, SchedPerRequest},
    stats,
    verdict::Family,
};

/// A titled table of text cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }
}

fn quantile(h: &Histogram, q: f64) -> String {
    h.quantile(q)
        .map_or("-".into(), |x| ns(x.estimate() as f64))
}

/// The key figures of each configuration: medians of its repeats, with their intervals.
pub fn workloads(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Workloads",
        &[
            "configuration",
            "connections",
            "mode",
            "runs",
            "requests/s",
            "p50",
            "p99",
            "p99.9",
            "errors",
            "syscalls/req",
            "epoll waits/req",
            "EAGAIN/req",
            "switches/req",
            "CPU µs/req",
            "threads",
        ],
    );
    let two = |v: f64| format!("{v:.2}");
    let time = |v: f64| ns(v);
    table.rows = cells
        .iter()
        .filter_map(|c| {
            let i = c.info()?;
            let e =
                |f: fn(&RunInfo) -> f64, fmt: &dyn Fn(f64) -> String| c.estimate(f).display(fmt);
            Some(vec![
                c.label.clone(),
                i.load.connections.to_string(),
                i.load
                    .rate
                    .map_or("closed".into(), |rate| format!("open {rate}/s")),
                c.runs.len().to_string(),
                e(|i| i.load.throughput_rps, &|v| format!("{v:.0}")),
                e(|i| i.load.latency_percentiles.p50 as f64, &time),
                e(|i| i.load.latency_percentiles.p99 as f64, &time),
                e(|i| i.load.latency_percentiles.p999 as f64, &time),
                c.failed_requests().to_string(),
                e(|i| i.per_request.syscalls, &two),
                e(|i| i.per_request.epoll_waits, &two),
                e(|i| i.per_request.eagain, &two),
                e(|i| i.per_request.context_switches, &two),
                e(|i| i.per_request.cpu_us, &|v| format!("{v:.1}")),
                e(|i| i.server_process.peak_threads as f64, &|v| {
                    format!("{v:.0}")
                }),
            ])
        })
        .collect();
    table
}

/// The scheduler view per configuration (`--sched`): where a request's server thread time
/// goes; empty when no run has it.
pub fn scheduler(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Server thread time per request (scheduler view)",
        &[
            "configuration",
            "running in calls µs",
            "running elsewhere µs",
            "waiting for a CPU µs",
            "asleep µs",
            "wakeups",
            "by interrupts",
            "by own threads",
            "by others",
            "preemptions",
        ],
    );
    type Field = fn(&SchedPerRequest) -> f64;
    let fields: [Field; 9] = [
        |s| s.on_cpu_in_calls_us,
        |s| s.on_cpu_elsewhere_us,
        |s| s.runq_us,
        |s| s.blocked_us,
        |s| s.wakeups,
        |s| s.wakeups_by_interrupt,
        |s| s.wakeups_by_same_process,
        |s| s.wakeups_by_other_process,
        |s| s.preemptions,
    ];
    for cell in cells {
        if cell.info().is_none_or(|i| i.per_request.sched.is_none()) {
            continue;
        }
        let mut row = vec![cell.label.clone()];
        for f in fields {
            let e =
                stats::estimate(&cell.values(|i| i.per_request.sched.as_ref().map_or(f64::NAN, f)));
            row.push(e.display(|v| format!("{v:.2}")));
        }
        table.rows.push(row);
    }
    table
}

/// The Go view per configuration (`--go`): the medians over its repeats of each run's mean;
/// empty when no run has it.
pub fn go_runtime(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Go runtime, sampled (mean goroutines and threads over each run)",
        &[
            "configuration",
            "goroutines",
            "parked on the network",
            "running",
            "runnable",
            "in system calls",
            "waiting otherwise",
            "Ps",
            "idle Ps",
            "threads",
            "netpoller blocked",
            "since last poll p50",
            "polls per s",
            "polls by sysmon",
        ],
    );
    for cell in cells {
        if cell.go_values(|_| 0.0).is_empty() {
            continue;
        }
        let e = |f: fn(&GoRuntime) -> f64, fmt: &dyn Fn(f64) -> String| {
            stats::estimate(&cell.go_values(f)).display(fmt)
        };
        let one = |v: f64| format!("{v:.1}");
        table.rows.push(vec![
            cell.label.clone(),
            e(|g| g.goroutines.mean, &one),
            e(|g| g.network_waiters.mean, &one),
            e(|g| g.running.mean, &|v| format!("{v:.2}")),
            e(|g| g.runnable.mean, &|v| format!("{v:.2}")),
            e(|g| g.in_syscall.mean, &|v| format!("{v:.2}")),
            e(GoRuntime::waiting_otherwise, &one),
            e(|g| g.procs.mean, &|v| format!("{v:.0}")),
            e(|g| g.idle_procs.mean, &|v| format!("{v:.2}")),
            e(|g| g.threads.mean, &one),
            e(|g| 100.0 * g.polling_share, &|v| format!("{v:.0} %")),
            e(
                |g| {
                    g.since_last_poll_ns
                        .quantile(0.5)
                        .map_or(f64::NAN, |q| q.estimate() as f64)
                },
                &|v| ns(v),
            ),
            e(
                |g| {
                    let calls: u64 = g.polls.iter().map(|p| p.calls).sum();
                    calls as f64 / (g.interval_ns * g.samples).max(1) as f64 * 1e9
                },
                &|v| format!("{v:.0}"),
            ),
            e(
                |g| g.sysmon_poll_share().map_or(f64::NAN, |s| 100.0 * s),
                &|v| format!("{v:.1} %"),
            ),
        ]);
    }
    table
}

/// The readiness view per configuration (`--ready`): medians over its repeats; empty when no
/// run has it.
pub fn ready(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Readiness to service (a ready descriptor's wait for the server to touch it) and event-loop turns",
        &[
            "configuration",
            "readable until read, mean",
            "readable until read, p99",
            "turns per request",
            "turn, mean",
            "ready events per turn",
        ],
    );
    for cell in cells {
        let per = |f: fn(&crate::run::ReadyPerRequest) -> f64| -> Vec<f64> {
            cell.runs
                .iter()
                .filter_map(|r| r.results.run.as_ref()?.per_request.ready.as_ref())
                .map(f)
                .collect()
        };
        if per(|r| r.turns).is_empty() {
            continue;
        }
        let e =
            |values: Vec<f64>, fmt: &dyn Fn(f64) -> String| stats::estimate(&values).display(fmt);
        table.rows.push(vec![
            cell.label.clone(),
            e(per(|r| r.delay_mean_us), &|v| ns(v * 1e3)),
            e(per(|r| r.delay_p99_us), &|v| ns(v * 1e3)),
            e(per(|r| r.turns), &|v| format!("{v:.3}")),
            e(per(|r| r.turn_mean_us), &|v| ns(v * 1e3)),
            e(per(|r| r.events_per_turn), &|v| format!("{v:.1}")),
        ]);
    }
    table
}

/// The io_uring view per configuration: io_uring requests per request and the share of each
/// path, medians over its repeats; empty when no run has it.
pub fn uring(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "io_uring requests by path (inline; waited for readiness, then task work; io-wq; deferred)",
        &[
            "configuration",
            "io_uring requests per request",
            "inline",
            "poll",
            "poll: wait for readiness",
            "poll: task work",
            "io-wq",
            "deferred",
        ],
    );
    for cell in cells {
        let per = |f: fn(&crate::run::UringPerRequest) -> f64| -> Vec<f64> {
            cell.runs
                .iter()
                .filter_map(|r| r.results.run.as_ref()?.per_request.uring.as_ref())
                .map(f)
                .collect()
        };
        if per(|u| u.uring_requests).is_empty() {
            continue;
        }
        let e =
            |values: Vec<f64>, fmt: &dyn Fn(f64) -> String| stats::estimate(&values).display(fmt);
        let pct = |v: f64| format!("{v:.1}%");
        table.rows.push(vec![
            cell.label.clone(),
            e(per(|u| u.uring_requests), &|v| format!("{v:.2}")),
            e(per(|u| u.inline_pct), &pct),
            e(per(|u| u.poll_pct), &pct),
            e(per(|u| u.poll_wait_us), &|v| ns(v * 1e3)),
            e(per(|u| u.task_work_us), &|v| ns(v * 1e3)),
            e(per(|u| u.io_wq_pct), &pct),
            e(per(|u| u.deferred_pct), &pct),
        ]);
    }
    table
}

/// `--go-exact`'s view per configuration, per request: medians over its repeats; empty when no
/// run has it.
pub fn go_exact(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Go runtime, exact (uprobes; per request)",
        &[
            "configuration",
            "network polls",
            "by sysmon",
            "goroutine parks on the network",
            "wake-up to running, mean",
            "wake-up to running, p99",
            "P hand-offs",
            "probes' cost",
        ],
    );
    for cell in cells {
        let per = |f: fn(&crate::run::GoPerRequest) -> Option<f64>| -> Vec<f64> {
            cell.runs
                .iter()
                .filter_map(|r| r.results.run.as_ref()?.per_request.go.as_ref())
                .filter_map(f)
                .collect()
        };
        if per(|g| g.network_parks).is_empty() {
            continue;
        }
        let e =
            |values: Vec<f64>, fmt: &dyn Fn(f64) -> String| stats::estimate(&values).display(fmt);
        let p99: Vec<f64> = cell.go_values(|g| {
            g.exact
                .as_ref()
                .and_then(|e| e.wake_to_run_ns.quantile(0.99))
                .map_or(f64::NAN, |q| q.estimate() as f64)
        });
        table.rows.push(vec![
            cell.label.clone(),
            e(per(|g| Some(g.network_polls)), &|v| format!("{v:.2}")),
            e(per(|g| Some(g.sysmon_polls)), &|v| format!("{v:.3}")),
            e(per(|g| g.network_parks), &|v| format!("{v:.2}")),
            e(per(|g| g.wake_to_run_us), &|v| ns(v * 1e3)),
            e(p99, &|v| ns(v)),
            e(per(|g| g.handoffs), &|v| format!("{v:.3}")),
            e(per(|g| g.probe_cost_us), &|v| ns(v * 1e3)),
        ]);
    }
    table
}

/// The I/O-model verdict of each configuration (`netpoll run` judges every run): the verdict
/// most of its repeats got, how many agree, and that verdict's evidence from one of them; empty
/// when no run has one.
pub fn verdicts(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "I/O model, as the probes see it",
        &[
            "configuration",
            "verdict",
            "confidence",
            "runs agreeing",
            "against the catalogue",
            "evidence",
        ],
    );
    for cell in cells {
        let verdicts: Vec<_> = cell
            .runs
            .iter()
            .filter_map(|r| r.results.io_model.as_ref())
            .collect();
        let Some(most) = verdicts
            .iter()
            .max_by_key(|v| verdicts.iter().filter(|o| o.name == v.name).count())
        else {
            continue;
        };
        let agreeing = verdicts.iter().filter(|o| o.name == most.name).count();
        table.rows.push(vec![
            cell.label.clone(),
            most.name.clone(),
            format!("{:?}", most.confidence).to_lowercase(),
            format!("{agreeing} of {}", cell.runs.len()),
            catalogue_check(cell),
            most.evidence.join("; "),
        ]);
    }
    table
}

/// The suite checks itself: a built-in model's runs should all be judged the family the
/// catalogue gives the model. "as catalogued" when they are; otherwise how many were not, and
/// why when the reason is known; empty for servers that are not built-in models.
fn catalogue_check(cell: &Cell) -> String {
    let Some(info) = cell.info() else {
        return String::new();
    };
    let base = info.workload.model.split('+').next().unwrap_or_default();
    let Some(model) = crate::models::model(base).filter(|_| info.workload.external.is_none())
    else {
        return String::new();
    };
    let judged: Vec<Family> = cell
        .runs
        .iter()
        .filter_map(|r| Some(r.results.io_model.as_ref()?.family))
        .collect();
    let off: Vec<&Family> = judged.iter().filter(|f| **f != model.family).collect();
    if off.is_empty() {
        return "as catalogued".into();
    }
    let mut text = format!(
        "{} of {} runs not judged {} (the catalogue's family): {}",
        off.len(),
        judged.len(),
        model.family.name(),
        off.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    );
    // A model whose threads default to one per CPU runs one when the server is pinned to one.
    let pinned_to_one = info
        .environment
        .as_ref()
        .and_then(|e| e.server_cpus.as_ref())
        .is_some_and(|cpus| cpus.len() == 1);
    let one_per_cpu = matches!(model.family, Family::EpollReactors | Family::MnRuntime);
    if one_per_cpu && pinned_to_one && info.workload.server.threads == 0 {
        text.push_str(
            "; the server was pinned to one CPU, so it ran one reactor or worker thread (one per CPU; --threads N runs more)",
        );
    }
    text
}

/// Syscall classes of every configuration, its repeats merged.
pub fn classes(cells: &[Cell]) -> Table {
    let mut table = Table::new(
        "Syscall classes",
        &[
            "configuration",
            "class",
            "calls",
            "errors",
            "EAGAIN",
            "bytes",
            "p50",
            "p99",
            "max",
        ],
    );
    for cell in cells {
        for class in Class::ALL {
            let Some(c) = cell.class(class) else { continue };
            table.rows.push(vec![
                cell.label.clone(),
                c.name.clone(),
                c.calls.to_string(),
                c.errors.to_string(),
                c.eagain.to_string(),
                c.bytes.to_string(),
                quantile(&c.latency_ns, 0.5),
                quantile(&c.latency_ns, 0.99),
                c.latency_ns.max().map_or("-".into(), |m| ns(m.high as f64)),
            ]);
        }
    }
    table
}

/// What each run was: file, target, parameters, machine.
pub fn runs(runs: &[Run]) -> Table {
    let mut table = Table::new(
        "Runs",
        &[
            "run",
            "file",
            "what",
            "parameters",
            "measured",
            "host",
            "kernel",
            "hook",
            "started",
        ],
    );
    table.rows = runs
        .iter()
        .map(|r| {
            let res = &r.results;
            let (what, params) = match r.info() {
                Some(i) => {
                    let s = &i.workload.server;
                    (
                        format!("netpoll run --model {}", i.workload.model),
                        format!(
                            "payload {} B, think {} µs, disk read {} B, {} connections + {} idle, {} client thread(s), {}, warm-up {:.1} s",
                            s.payload,
                            s.think_us,
                            s.disk_read,
                            i.load.connections,
                            i.load.idle_connections,
                            i.load.threads,
                            i.load
                                .rate
                                .map_or("closed loop".into(), |rate| format!("open loop {rate}/s")),
                            i.load.warmup_ns as f64 / 1e9
                        ),
                    )
                }
                None => (
                    format!("netpoll profile ({})", target_kind(res.target.kind)),
                    String::new(),
                ),
            };
            vec![
                r.label.clone(),
                r.path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                what,
                params,
                format!(
                    "{:.2} s{}",
                    res.duration_ns as f64 / 1e9,
                    if res.partial { " (partial)" } else { "" }
                ),
                format!(
                    "{} ({} CPUs, {})",
                    res.host.hostname, res.host.cpus, res.host.arch
                ),
                res.host.kernel.clone(),
                res.hook.name().into(),
                res.started_at.clone(),
            ]
        })
        .collect();
    table
}

fn target_kind(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Pid => "pid",
        TargetKind::Comm => "comm",
        TargetKind::Cgroup => "cgroup",
        TargetKind::Command => "command",
        TargetKind::All => "all",
        TargetKind::Run => "run",
    }
}
