//! Which charts a report draws, and from what: the per-run figures compared across models, and
//! the distributions of request and syscall latency.

use std::collections::BTreeSet;

use super::{
    ReportError,
    runs::{Axis, Run, at_largest, mixed_parameters},
};
use crate::{
    Histogram,
    chart::{self, Bar, Chart, Point, Series, fmt_ns, style::fmt_number},
    results::{CLASS_ORDER, Results, SyscallStats},
    run::RunInfo,
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

/// The class a run waits in: epoll, else poll/select, else io_uring (blocking models: none).
fn wait_class(r: &Results) -> Option<&SyscallStats> {
    ["epoll", "poll_select", "io_uring"]
        .iter()
        .find_map(|c| r.class(c))
}

/// The charts' note: which value of the swept axis they show, and parameters that differ.
fn note_for(workloads: &[&Run], axis: Option<Axis>) -> Option<String> {
    let Some(axis) = axis else {
        return mixed_parameters(workloads, None);
    };
    let largest: BTreeSet<usize> = workloads
        .iter()
        .filter_map(|r| Some(axis.value(r.info()?)))
        .collect();
    let values: Vec<String> = largest.iter().map(|v| v.to_string()).collect();
    let mut note = format!("at {} {}", values.join("/"), axis.name());
    if let Some(mixed) = mixed_parameters(workloads, Some(axis)) {
        note = format!("{note}; {mixed}");
    }
    Some(note)
}

/// Every chart for these runs.
pub fn charts(runs: &[Run]) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    let every: Vec<&Run> = runs.iter().filter(|r| r.info().is_some()).collect();
    let axis = Axis::varied(&every);
    // Charts that compare models show one run per model: at the largest value swept.
    let workloads = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    let all: Vec<&Run> = workloads
        .iter()
        .copied()
        .chain(runs.iter().filter(|r| r.info().is_none()))
        .collect();
    let note = note_for(&workloads, axis);
    let note = note.as_deref();
    if !workloads.is_empty() {
        charts.extend(request_charts(&workloads, note)?);
        for f in &FIGURES {
            let bars: Vec<Bar> = workloads
                .iter()
                .filter_map(|r| {
                    let value = (f.value)(r.info()?);
                    Some(Bar {
                        series: r.series(),
                        value,
                        interval: None,
                        text: (f.text)(value),
                    })
                })
                .collect();
            charts.push(chart::bars(f.name, f.title, note, f.unit, &bars)?);
        }
        charts.extend(versus(&every, axis.unwrap_or(Axis::Connections))?);
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

/// Client-side request latency: percentiles, and the full percentile distribution.
fn request_charts(workloads: &[&Run], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let pct: Vec<(Series, Vec<f64>)> = workloads
        .iter()
        .filter_map(|r| {
            let p = r.info()?.load.latency_percentiles;
            let values = [p.p50, p.p90, p.p99, p.p999, p.max];
            Some((r.series(), values.iter().map(|v| *v as f64).collect()))
        })
        .collect();
    let distributions: Vec<(Series, &Histogram)> = workloads
        .iter()
        .filter_map(|r| Some((r.series(), &r.info()?.load.latency_ns)))
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
            &distributions,
        )?,
    ])
}

/// Server-side syscall latency: socket reads, file reads, the waiting call, ready events, and
/// each class's percentile distribution.
fn syscall_charts(all: &[&Run], note: Option<&str>) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    let class_series = |class: &str| -> Vec<(Series, &Histogram)> {
        all.iter()
            .filter_map(|r| Some((r.series(), &r.results.class(class)?.latency_ns)))
            .collect()
    };
    let reads = class_series("socket_read");
    let waits: Vec<(Series, &Histogram)> = all
        .iter()
        .filter_map(|r| {
            let class = wait_class(&r.results)?;
            let s = r.series();
            let label = format!("{} ({})", s.label, class.name);
            Some((Series { label, ..s }, &class.latency_ns))
        })
        .collect();
    charts.push(chart::latency_overlay(
        "socket_read_latency",
        "Time inside socket reads: a blocking read waits for data, a ready read does not",
        note,
        &reads,
    )?);
    charts.push(chart::latency_cdf(
        "socket_read_cdf",
        "Socket read latency, cumulative",
        note,
        &reads,
    )?);
    // Reads of files (and pipes): readiness APIs cannot multiplex them, so whoever makes them
    // waits. Only drawn when some run made them.
    let files = class_series("other_read");
    if !files.is_empty() {
        charts.push(chart::latency_overlay(
            "file_read_latency",
            "Time inside non-socket reads (files, pipes), which readiness APIs cannot multiplex",
            note,
            &files,
        )?);
    }
    charts.push(chart::latency_overlay(
        "wait_latency",
        "Time inside the waiting call (epoll_wait, poll/select, io_uring_enter)",
        note,
        &waits,
    )?);
    charts.push(chart::latency_cdf(
        "wait_cdf",
        "Waiting-call latency, cumulative",
        note,
        &waits,
    )?);
    let ready: Vec<(Series, &Histogram)> = all
        .iter()
        .filter_map(|r| {
            let class = ["epoll", "poll_select"]
                .iter()
                .find_map(|c| r.results.class(c))?;
            Some((r.series(), &class.ready_events))
        })
        .collect();
    charts.push(chart::ready_events(
        "ready_events",
        "Ready descriptors per epoll/poll/select call: what one wake-up batches",
        note,
        &ready,
    )?);
    for class in CLASS_ORDER {
        let series = class_series(class);
        if !series.is_empty() {
            charts.push(chart::percentile_distribution(
                &format!("{class}_latency_distribution"),
                &format!("{class} latency by percentile (server side, in the kernel)"),
                note,
                "latency per call (log scale)",
                &series,
            )?);
        }
    }
    Ok(charts)
}

/// Key figures against the swept parameter, one line per model.
fn versus(workloads: &[&Run], axis: Axis) -> Result<Vec<Chart>, ReportError> {
    // Runs are in model order already: group them, keeping it.
    let mut by_model: Vec<(String, Vec<&Run>)> = Vec::new();
    for run in workloads {
        let Some(info) = run.info() else { continue };
        let key = info.workload.label();
        match by_model.iter_mut().find(|(m, _)| *m == key) {
            Some((_, runs)) => runs.push(run),
            None => by_model.push((key, vec![run])),
        }
    }
    let several = by_model.iter().any(|(_, runs)| {
        runs.iter()
            .filter_map(|r| Some(axis.value(r.info()?)))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    });
    let note = match (several, mixed_parameters(workloads, Some(axis))) {
        (false, _) => Some(format!(
            "each model ran at one value of {}: run it at several for a curve",
            axis.name()
        )),
        (true, mixed) => mixed,
    };
    let slug = axis.name().replace(' ', "_");
    let mut out = Vec::new();
    for f in &FIGURES {
        let lines: Vec<(Series, Vec<Point>)> = by_model
            .iter()
            .map(|(model, runs)| {
                let points = runs
                    .iter()
                    .filter_map(|r| r.info())
                    .map(|i| Point {
                        x: axis.value(i) as f64,
                        y: (f.value)(i),
                        interval: None,
                    })
                    .collect();
                // A model is marked when any of its runs had failed requests.
                let failed: u64 = runs.iter().map(|r| r.failed_requests()).sum();
                let mut series = Series::named(model);
                if failed > 0 {
                    series.label = format!("{model} ({failed} failed requests)");
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
