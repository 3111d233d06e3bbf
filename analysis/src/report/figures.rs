//! Which charts a report draws, and from what: the per-run figures compared across models, and
//! the distributions of request and syscall latency.

use std::collections::BTreeSet;

use plotters::style::RGBColor;

use super::{
    ReportError,
    runs::{Axis, Cell, Run, at_largest, cells, mixed_parameters},
};
use crate::{
    Histogram,
    chart::{self, Bar, Chart, Point, Series, Stacked, fmt_ns, style::fmt_number},
    go::GoRuntime,
    results::{Class, SyscallStats},
    run::{RunInfo, SchedPerRequest},
    stats::{self, Estimate},
};

/// A per-run figure that charts compare across models: bars, and lines along a sweep.
pub struct Figure {
    pub name: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub value: fn(&RunInfo) -> f64,
    /// The value as a bar's label, with its unit.
    pub text: fn(f64) -> String,
}

pub const FIGURES: [Figure; 6] = [
    Figure {
        name: "throughput",
        title: "Requests per second",
        unit: "requests/s",
        value: |i| i.load.throughput_rps,
        text: |v| format!("{v:.0}/s"),
    },
    Figure {
        name: "p99",
        title: "p99 request latency",
        unit: "p99 request latency (µs)",
        value: |i| i.load.latency_percentiles.p99 as f64 / 1e3,
        text: |v| format!("{} µs", fmt_number(v)),
    },
    Figure {
        name: "syscalls_per_request",
        title: "Server syscalls per request",
        unit: "syscalls per request",
        value: |i| i.per_request.syscalls,
        text: fmt_number,
    },
    Figure {
        name: "switches_per_request",
        title: "Server context switches per request",
        unit: "context switches per request",
        value: |i| i.per_request.context_switches,
        text: fmt_number,
    },
    Figure {
        name: "cpu_per_request",
        title: "Server CPU time per request (user + system)",
        unit: "CPU µs per request",
        value: |i| i.per_request.cpu_us,
        text: |v| format!("{} µs", fmt_number(v)),
    },
    Figure {
        name: "threads",
        title: "Server threads (peak)",
        unit: "threads",
        value: |i| i.server_process.peak_threads as f64,
        text: |v| format!("{v:.0}"),
    },
];

/// Figures of the scheduler view (`--sched`): drawn for the configurations that have it.
pub struct SchedFigure {
    pub name: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub value: fn(&SchedPerRequest) -> f64,
    pub text: fn(f64) -> String,
}

pub const SCHED_FIGURES: [SchedFigure; 3] = [
    SchedFigure {
        name: "runq_per_request",
        title: "Server thread time waiting for a CPU, per request",
        unit: "µs runnable but not running, per request (all threads)",
        value: |s| s.runq_us,
        text: |v| format!("{} µs", fmt_number(v)),
    },
    SchedFigure {
        name: "asleep_per_request",
        title: "Server thread time asleep, per request",
        unit: "µs asleep per request (all threads, idle ones too)",
        value: |s| s.blocked_us,
        text: |v| format!("{} µs", fmt_number(v)),
    },
    SchedFigure {
        name: "wakeups_per_request",
        title: "Server thread wakeups per request",
        unit: "wakeups per request",
        value: |s| s.wakeups,
        text: fmt_number,
    },
];

/// The Go view's chart (`--go`): where a Go server's goroutines are, on average, stacked by
/// state: the lecture's M:N picture, measured.
fn go_charts(cells: &[Cell], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let with: Vec<&Cell> = cells
        .iter()
        .filter(|c| !c.go_values(|_| 0.0).is_empty())
        .collect();
    if with.is_empty() {
        return Ok(Vec::new());
    }
    let segment = |label: &str, color| Series {
        label: label.into(),
        color,
    };
    let segments = [
        segment("running on a thread", RGBColor(31, 119, 180)),
        segment("runnable, waiting for a P", RGBColor(214, 39, 40)),
        segment("in a system call (thread held)", RGBColor(255, 127, 14)),
        segment("parked on the network", RGBColor(44, 160, 44)),
        segment("waiting otherwise", RGBColor(199, 199, 199)),
    ];
    let fields: [fn(&GoRuntime) -> f64; 5] = [
        |g| g.running.mean,
        |g| g.runnable.mean,
        |g| g.in_syscall.mean,
        |g| g.network_waiters.mean,
        GoRuntime::waiting_otherwise,
    ];
    let rows: Vec<Stacked> = with
        .iter()
        .map(|c| Stacked {
            label: c.series().label,
            values: fields
                .iter()
                .map(|f| stats::median(&c.go_values(f)))
                .collect(),
        })
        .collect();
    Ok(vec![chart::stacked_bars(
        "go_goroutines",
        "Where a Go server's goroutines are: running, runnable, in system calls, parked on the network",
        note,
        "goroutines (means over each run, medians of the runs)",
        &segments,
        &rows,
        fmt_number,
    )?])
}

/// The io_uring view's charts (`--uring`): the share of requests by path, and each path's
/// latency distribution (a configuration's repeats merged).
fn uring_charts(cells: &[Cell], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let with: Vec<(&Cell, Vec<&crate::uring::Uring>)> = cells
        .iter()
        .map(|c| {
            let views = c.runs.iter().filter_map(|r| r.results.uring.as_ref());
            (c, views.collect::<Vec<_>>())
        })
        .filter(|(_, views)| views.iter().any(|u| u.finished() > 0))
        .collect();
    if with.is_empty() {
        return Ok(Vec::new());
    }
    let colors = [
        RGBColor(44, 160, 44),
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
    ];
    let segments: Vec<Series> = crate::uring::PATHS
        .iter()
        .zip(colors)
        .map(|(path, color)| Series {
            label: (*path).into(),
            color,
        })
        .collect();
    let rows: Vec<Stacked> = with
        .iter()
        .map(|(c, views)| Stacked {
            label: c.series().label,
            values: (0..crate::uring::PATHS.len())
                .map(|i| {
                    let shares: Vec<f64> = views.iter().map(|u| u.path_shares()[i].1).collect();
                    stats::median(&shares)
                })
                .collect(),
        })
        .collect();
    let mut charts = vec![chart::stacked_bars(
        "uring_paths",
        "How io_uring carried out the requests: inline, after waiting for readiness (poll), on an io-wq worker, retried later (deferred)",
        note,
        "share of io_uring requests, % (medians of the runs)",
        &segments,
        &rows,
        |v| format!("{v:.0}%"),
    )?];
    let mut lines: Vec<(Series, Histogram)> = Vec::new();
    for (c, views) in &with {
        for (path, color) in crate::uring::PATHS.iter().zip(colors) {
            let mut merged = Histogram::default();
            for u in views {
                if let Some(all) = u.path(path) {
                    merged.merge(&all.latency_ns);
                }
            }
            if !merged.is_empty() {
                let label = format!("{} · {path}", c.series().label);
                let color = if with.len() == 1 {
                    color
                } else {
                    c.series().color
                };
                lines.push((Series { label, color }, merged));
            }
        }
    }
    charts.push(chart::latency_overlay(
        "uring_latency",
        "io_uring requests, submission to completion, by path",
        note,
        &refs(&lines),
    )?);
    Ok(charts)
}

/// The scheduler view's charts: where a request's server time goes (stacked), the figures
/// above, and the run-queue delay distributions.
fn sched_charts(cells: &[Cell], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let with: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.info().is_some_and(|i| i.per_request.sched.is_some()))
        .collect();
    if with.is_empty() {
        return Ok(Vec::new());
    }
    let sched = |c: &Cell, f: fn(&SchedPerRequest) -> f64| {
        stats::median(&c.values(|i| i.per_request.sched.as_ref().map_or(f64::NAN, f)))
    };
    let segments = [
        Series {
            label: "running in measured calls".into(),
            color: RGBColor(31, 119, 180),
        },
        Series {
            label: "running elsewhere (user space, other syscalls)".into(),
            color: RGBColor(158, 202, 225),
        },
        Series {
            label: "waiting for a CPU".into(),
            color: RGBColor(214, 39, 40),
        },
    ];
    let rows: Vec<Stacked> = with
        .iter()
        .map(|c| Stacked {
            label: c.series().label,
            values: vec![
                sched(c, |s| s.on_cpu_in_calls_us),
                sched(c, |s| s.on_cpu_elsewhere_us),
                sched(c, |s| s.runq_us),
            ],
        })
        .collect();
    let mut charts = vec![chart::stacked_bars(
        "server_time_per_request",
        "Where a request's server time goes: running, and waiting for a CPU",
        note,
        "µs of server thread time per request (medians)",
        &segments,
        &rows,
        |v| format!("{} µs", fmt_number(v)),
    )?];
    for f in &SCHED_FIGURES {
        let bars: Vec<Bar> = with
            .iter()
            .map(|c| {
                let e = stats::estimate(
                    &c.values(|i| i.per_request.sched.as_ref().map_or(f64::NAN, f.value)),
                );
                Bar {
                    series: c.series(),
                    value: e.median,
                    interval: e.interval,
                    text: (f.text)(e.median),
                }
            })
            .collect();
        charts.push(chart::bars(f.name, f.title, note, f.unit, &bars)?);
    }
    let delays: Vec<(Series, Histogram)> = with
        .iter()
        .filter_map(|c| {
            let mut hs = c
                .runs
                .iter()
                .filter_map(|r| Some(&r.results.scheduler.as_ref()?.runq_delay_ns));
            let mut total = hs.next()?.clone();
            hs.for_each(|h| total.merge(h));
            Some((c.series(), total))
        })
        .collect();
    charts.push(chart::duration_overlay(
        "runq_delay",
        "Run-queue delay of the server's threads after each wakeup or preemption",
        note,
        &refs(&delays),
        (
            "waiting for a CPU (log scale)",
            "share of wakeups and preemptions (%)",
        ),
    )?);
    Ok(charts)
}

/// The class a configuration waits in: epoll, else poll/select, else io_uring (blocking
/// models: none).
/// The class a configuration waits in: the first waiting class (readiness or completion) it
/// made calls of.
fn wait_class(cell: &Cell) -> Option<SyscallStats> {
    Class::ALL
        .into_iter()
        .filter(|c| c.is_wait())
        .find_map(|c| cell.class(c))
}

/// What the charts of these configurations must say: which value of the swept axis they show,
/// parameters that differ, and how many runs each value is the median of.
fn note_for(cells: &[Cell], axis: Option<Axis>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(axis) = axis {
        let largest: BTreeSet<usize> = cells
            .iter()
            .filter_map(|c| Some(axis.value(c.info()?)))
            .collect();
        let values: Vec<String> = largest.iter().map(|v| v.to_string()).collect();
        parts.push(format!("at {} {}", values.join("/"), axis.name()));
    }
    if let Some(mixed) = mixed_parameters(cells, axis) {
        parts.push(mixed);
    }
    parts.extend(repeats_note(cells));
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// How many runs a figure is the median of, and what its error bar is.
pub fn repeats_note(cells: &[Cell]) -> Option<String> {
    let counts: BTreeSet<usize> = cells
        .iter()
        .filter(|c| c.info().is_some())
        .map(|c| c.runs.len())
        .collect();
    let (min, max) = (*counts.first()?, *counts.last()?);
    let n = if min == max {
        min.to_string()
    } else {
        format!("{min}-{max}")
    };
    Some(match (min, max) {
        (1, 1) => "one run per configuration: no intervals".into(),
        (_, 2) => format!("median of {n} runs, bars from min to max"),
        _ => format!("median of {n} runs, bars: 95 % interval"),
    })
}

/// The same, as a sentence above a table.
pub fn repeats_sentence(cells: &[Cell]) -> Option<String> {
    let max = cells
        .iter()
        .filter(|c| c.info().is_some())
        .map(|c| c.runs.len())
        .max()?;
    Some(match max {
        1 => "One run per configuration: the figures have no intervals and differences are not tested against noise.".into(),
        _ => format!(
            "Each figure is the median of its configuration's runs (column runs); in parentheses, its 95 % interval (bootstrap; the range of the runs when there are 2). {}",
            "Configurations whose intervals overlap are not ranked."
        ),
    })
}

/// Every chart for these runs.
pub fn charts(runs: &[Run]) -> Result<Vec<Chart>, ReportError> {
    let all_cells = cells(runs);
    let every: Vec<Cell> = all_cells
        .iter()
        .filter(|c| c.info().is_some())
        .cloned()
        .collect();
    let axis = Axis::varied(&every);
    // Charts that compare models show one configuration per model: at the largest value swept.
    let workloads = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    let profiles: Vec<Cell> = all_cells
        .iter()
        .filter(|c| c.info().is_none())
        .cloned()
        .collect();
    let all: Vec<Cell> = workloads.iter().chain(&profiles).cloned().collect();
    let note = note_for(&workloads, axis);
    let note = note.as_deref();
    let mut charts = Vec::new();
    if !workloads.is_empty() {
        charts.extend(request_charts(&workloads, note)?);
        for f in &FIGURES {
            let bars: Vec<Bar> = workloads
                .iter()
                .map(|c| {
                    let e = c.estimate(f.value);
                    Bar {
                        series: c.series(),
                        value: e.median,
                        interval: e.interval,
                        text: (f.text)(e.median),
                    }
                })
                .collect();
            charts.push(chart::bars(f.name, f.title, note, f.unit, &bars)?);
        }
        charts.extend(sched_charts(&workloads, note)?);
        charts.extend(go_charts(&workloads, note)?);
        charts.extend(uring_charts(&workloads, note)?);
        charts.extend(versus(&every, axis.unwrap_or(Axis::Connections))?);
        charts.extend(super::memory::charts(runs)?);
    }
    if all.len() > 1 || !workloads.is_empty() {
        charts.extend(syscall_charts(&all, note)?);
    }
    for (i, run) in runs.iter().enumerate() {
        if run.info().is_none() {
            charts.push(chart::profile_card(
                &format!("profile_{}", i + 1),
                &run.label,
                &run.results,
            )?);
        }
    }
    Ok(charts)
}

/// Client-side request latency: percentiles (medians over the repeats), and the full
/// percentile distribution (the repeats' histograms merged).
fn request_charts(cells: &[Cell], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    type Pick = fn(&RunInfo) -> f64;
    let picks: [Pick; 5] = [
        |i| i.load.latency_percentiles.p50 as f64,
        |i| i.load.latency_percentiles.p90 as f64,
        |i| i.load.latency_percentiles.p99 as f64,
        |i| i.load.latency_percentiles.p999 as f64,
        |i| i.load.latency_percentiles.max as f64,
    ];
    let pct: Vec<(Series, Vec<f64>)> = cells
        .iter()
        .map(|c| {
            let values = picks.iter().map(|f| stats::median(&c.values(f))).collect();
            (c.series(), values)
        })
        .collect();
    let merged: Vec<(Series, Histogram)> = cells
        .iter()
        .filter_map(|c| Some((c.series(), c.request_latency()?)))
        .collect();
    Ok(vec![
        chart::percentiles(
            "request_latency",
            "End-to-end request latency by I/O model (client side)",
            note,
            &["p50", "p90", "p99", "p99.9", "max"],
            &pct,
        )?,
        chart::percentile_distribution(
            "request_latency_distribution",
            "Request latency by percentile (client side)",
            note,
            "request latency (log scale)",
            &refs(&merged),
        )?,
    ])
}

/// Server-side syscall latency: socket reads, file reads, the waiting call, ready events, and
/// each class's percentile distribution; each configuration's repeats merged.
fn syscall_charts(cells: &[Cell], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    let class_of = |class: Class| -> Vec<(Series, SyscallStats)> {
        cells
            .iter()
            .filter_map(|c| Some((c.series(), c.class(class)?)))
            .collect()
    };
    let latencies = |rows: &[(Series, SyscallStats)]| -> Vec<(Series, Histogram)> {
        rows.iter()
            .map(|(s, c)| (s.clone(), c.latency_ns.clone()))
            .collect()
    };
    let reads = latencies(&class_of(Class::SocketRead));
    let waits: Vec<(Series, Histogram)> = cells
        .iter()
        .filter_map(|c| {
            let class = wait_class(c)?;
            let s = c.series();
            let label = format!("{} ({})", s.label, class.name);
            Some((Series { label, ..s }, class.latency_ns))
        })
        .collect();
    let files = latencies(&class_of(Class::OtherRead));
    let ready: Vec<(Series, Histogram)> = cells
        .iter()
        .filter_map(|c| {
            let class = Class::ALL
                .into_iter()
                .filter(|class| class.is_readiness_wait())
                .find_map(|class| c.class(class))?;
            Some((c.series(), class.ready_events))
        })
        .collect();
    charts.push(chart::latency_overlay(
        "socket_read_latency",
        "Time inside socket reads: a blocking read waits for data, a ready read does not",
        note,
        &refs(&reads),
    )?);
    charts.push(chart::latency_cdf(
        "socket_read_cdf",
        "Socket read latency, cumulative",
        note,
        &refs(&reads),
    )?);
    // Reads of files (and pipes): readiness APIs cannot multiplex them, so whoever makes them
    // waits. Only drawn when some run made them.
    if !files.is_empty() {
        charts.push(chart::latency_overlay(
            "file_read_latency",
            "Time inside non-socket reads (files, pipes), which readiness APIs cannot multiplex",
            note,
            &refs(&files),
        )?);
    }
    charts.push(chart::latency_overlay(
        "wait_latency",
        "Time inside the waiting call (epoll_wait, poll/select, io_uring_enter)",
        note,
        &refs(&waits),
    )?);
    charts.push(chart::latency_cdf(
        "wait_cdf",
        "Waiting-call latency, cumulative",
        note,
        &refs(&waits),
    )?);
    charts.push(chart::ready_events(
        "ready_events",
        "Ready descriptors per epoll/poll/select call: what one wake-up batches",
        note,
        &refs(&ready),
    )?);
    for class in Class::ALL {
        let rows = latencies(&class_of(class));
        let class = class.name();
        if !rows.is_empty() {
            charts.push(chart::percentile_distribution(
                &format!("{class}_latency_distribution"),
                &format!("{class} latency by percentile (server side, in the kernel)"),
                note,
                "latency per call (log scale)",
                &refs(&rows),
            )?);
        }
    }
    Ok(charts)
}

/// Series borrowing their histograms, as the chart functions take them.
fn refs(v: &[(Series, Histogram)]) -> Vec<(Series, &Histogram)> {
    v.iter().map(|(s, h)| (s.clone(), h)).collect()
}

/// Key figures against the swept parameter, one line per model, error bars from the repeats.
fn versus(cells: &[Cell], axis: Axis) -> Result<Vec<Chart>, ReportError> {
    let mut out = versus_figures(cells, axis, &FIGURES)?;
    // The readiness view, where the runs have it.
    let ready: Vec<Cell> = cells
        .iter()
        .filter(|c| {
            c.runs
                .iter()
                .any(|r| r.info().is_some_and(|i| i.per_request.ready.is_some()))
        })
        .cloned()
        .collect();
    if !ready.is_empty() {
        out.extend(versus_figures(&ready, axis, &READY_FIGURES)?);
    }
    Ok(out)
}

/// The readiness view's figures (`netpoll run --ready`), drawn against the swept value.
pub const READY_FIGURES: [Figure; 2] = [
    Figure {
        name: "ready_delay_p99",
        title: "p99 readiness-to-service delay (a readable socket's wait for the server's read)",
        unit: "p99 delay (µs)",
        value: |i| i.per_request.ready.map_or(f64::NAN, |r| r.delay_p99_us),
        text: |v| format!("{} µs", fmt_number(v)),
    },
    Figure {
        name: "loop_turn",
        title: "Mean event-loop turn (a wait's return to the thread's next wait)",
        unit: "mean turn (µs)",
        value: |i| i.per_request.ready.map_or(f64::NAN, |r| r.turn_mean_us),
        text: |v| format!("{} µs", fmt_number(v)),
    },
];

/// Each figure against the swept value, a line per model.
fn versus_figures(
    cells: &[Cell],
    axis: Axis,
    figures: &[Figure],
) -> Result<Vec<Chart>, ReportError> {
    // Configurations are in model order already: group them, keeping it.
    let mut by_model: Vec<(String, Vec<&Cell>)> = Vec::new();
    for cell in cells {
        let Some(info) = cell.info() else { continue };
        let key = info.workload.label();
        match by_model.iter_mut().find(|(m, _)| *m == key) {
            Some((_, group)) => group.push(cell),
            None => by_model.push((key, vec![cell])),
        }
    }
    let several = by_model.iter().any(|(_, group)| {
        group
            .iter()
            .filter_map(|c| Some(axis.value(c.info()?)))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    });
    let mut notes: Vec<String> = Vec::new();
    if !several {
        notes.push(format!(
            "each model ran at one value of {}: run it at several for a curve",
            axis.name()
        ));
    }
    notes.extend(mixed_parameters(cells, Some(axis)));
    notes.extend(repeats_note(cells));
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    // A file name: "requests/s offered" has a slash.
    let slug = axis
        .name()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let mut out = Vec::new();
    for f in figures {
        let lines: Vec<(Series, Vec<Point>)> = by_model
            .iter()
            .map(|(model, group)| {
                let points = group
                    .iter()
                    .filter_map(|c| {
                        let Estimate {
                            median, interval, ..
                        } = c.estimate(f.value);
                        Some(Point {
                            x: axis.value(c.info()?) as f64,
                            y: median,
                            interval,
                        })
                    })
                    .collect();
                // A model is marked when any of its runs had failed requests.
                let failed: u64 = group.iter().map(|c| c.failed_requests()).sum();
                let starved = group.iter().any(|c| c.starved_connections() > 0);
                let mut series = Series::named(model);
                if failed > 0 || starved {
                    series.label = format!("{model} (requests failed or starved)");
                }
                (series, points)
            })
            .collect();
        out.push(chart::lines(
            &format!("{}_vs_{slug}", f.name),
            &format!("{} against {}", f.title, axis.name()),
            note.as_deref(),
            (axis.name(), f.unit),
            &lines,
        )?);
    }
    Ok(out)
}

/// A duration for tables and sentences.
pub fn ns(v: f64) -> String {
    fmt_ns(v)
}
