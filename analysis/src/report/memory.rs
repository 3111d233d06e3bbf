//! What a connection costs, fitted over the runs: the slope of memory against connections held
//! (the server's own pages, and the kernel's socket and epoll objects), and of the time inside
//! each waiting call against connections held (select and poll scan every descriptor they
//! are given; epoll_wait's work is the ready ones), with their intervals; and charts of both.

use super::{ReportError, table::Table};
use crate::{
    chart::{self, Point, Series},
    memory::format_bytes,
    results::{Class, Results, SyscallStats},
    stats::{self, Slope},
};

/// One model's runs (those that recorded memory).
struct Model<'a> {
    label: String,
    runs: Vec<&'a Results>,
}

/// Runs with a memory section, grouped by model (`workload.label()`), in the order given.
fn models(runs: &[super::Run]) -> Vec<Model<'_>> {
    let mut out: Vec<Model> = Vec::new();
    for run in runs {
        let Some(info) = run.info() else { continue };
        if info.memory.is_none() {
            continue;
        }
        let label = info.workload.label();
        match out.iter_mut().find(|m| m.label == label) {
            Some(m) => m.runs.push(&run.results),
            None => out.push(Model {
                label,
                runs: vec![&run.results],
            }),
        }
    }
    // A slope needs the model at two numbers of connections at least.
    out.retain(|m| m.runs.iter().any(|r| held(r) != held(m.runs[0])));
    out
}

/// Connections held (active + idle) in a run.
fn held(r: &Results) -> f64 {
    r.run
        .as_ref()
        .and_then(|i| i.memory.as_ref())
        .map_or(f64::NAN, |m| m.connections as f64)
}

/// The server's resident anonymous memory (heaps, thread stacks) at the window's end.
fn anon(r: &Results) -> f64 {
    memory(r, |m| m.after.server.anon_bytes as f64)
}

fn rss(r: &Results) -> f64 {
    memory(r, |m| m.after.server.rss_bytes as f64)
}

/// The kernel's socket, file and epoll objects (the slab caches netpoll reads).
fn slab(r: &Results) -> f64 {
    memory(r, |m| m.slab_bytes() as f64)
}

fn memory(r: &Results, f: impl Fn(&crate::memory::RunMemory) -> f64) -> f64 {
    r.run
        .as_ref()
        .and_then(|i| i.memory.as_ref())
        .map_or(f64::NAN, f)
}

/// The server's readiness wait (epoll_wait, poll, select...) and its calls.
fn readiness_wait(r: &Results) -> Option<(Class, &SyscallStats)> {
    Class::ALL
        .into_iter()
        .filter(|c| c.is_readiness_wait())
        .filter_map(|c| Some((c, r.class(c)?)))
        .find(|(_, s)| s.calls > 0)
}

/// The mean time inside the server's readiness wait, ns.
fn wait_mean_ns(r: &Results) -> f64 {
    readiness_wait(r).map_or(f64::NAN, |(_, s)| s.latency_sum_ns as f64 / s.calls as f64)
}

fn fit(m: &Model, y: fn(&Results) -> f64) -> Option<Slope> {
    let points: Vec<(f64, f64)> = m.runs.iter().map(|r| (held(r), y(r))).collect();
    stats::slope(&points)
}

fn display(s: Option<Slope>, unit: impl Fn(f64) -> String) -> String {
    match s {
        None => "-".into(),
        Some(Slope {
            slope,
            interval: Some((low, high)),
            ..
        }) => format!("{} ({} to {})", unit(slope), unit(low), unit(high)),
        Some(s) => unit(s.slope),
    }
}

/// What one more connection costs each model: slopes over every run of the model.
pub fn table(runs: &[super::Run]) -> Table {
    let mut table = Table::new(
        "What one more connection costs (slopes over each model's runs, 95 % intervals)",
        &[
            "model",
            "runs",
            "connections held",
            "server anonymous memory per connection",
            "server resident memory per connection",
            "kernel sockets and epoll items per connection (both ends)",
            "time per wait call per connection",
            "largest run: resident (peak), threads, mappings, idle connections opened in",
        ],
    );
    for m in models(runs) {
        let held_range = m
            .runs
            .iter()
            .map(|r| held(r))
            .fold((f64::MAX, 0.0f64), |a, x| (a.0.min(x), a.1.max(x)));
        let largest_run = m.runs.iter().max_by(|a, b| held(a).total_cmp(&held(b)));
        let largest = largest_run.and_then(|r| r.run.as_ref()?.memory.clone());
        let opened_ns = largest_run
            .and_then(|r| r.run.as_ref())
            .map_or(0, |i| i.load.idle_open_ns);
        let per_conn = |v: f64| format_bytes(v);
        table.rows.push(vec![
            m.label.clone(),
            m.runs.len().to_string(),
            format!("{:.0}-{:.0}", held_range.0, held_range.1),
            display(fit(&m, anon), per_conn),
            display(fit(&m, rss), per_conn),
            display(fit(&m, slab), per_conn),
            display(fit(&m, wait_mean_ns), |v| format!("{v:.2} ns")),
            largest.map_or("-".into(), |l| {
                format!(
                    "{} ({}), {}, {}, {:.2} s",
                    format_bytes(l.after.server.rss_bytes as f64),
                    format_bytes(l.peak_rss_bytes as f64),
                    l.after.server.threads,
                    l.after.server.mappings,
                    opened_ns as f64 / 1e9
                )
            }),
        ]);
    }
    table
}

/// The sentence: each model's memory per connection, and the waits' slopes against the shape
/// Gammo et al. measured (OLS 2004): poll's cost grows with idle connections, epoll's does not.
pub fn sentence(runs: &[super::Run]) -> Option<String> {
    let models = models(runs);
    let mut parts = Vec::new();
    for m in &models {
        let Some(s) = fit(m, anon) else { continue };
        parts.push(format!(
            "{} {} of its own memory per connection",
            m.label,
            display(Some(s), format_bytes)
        ));
    }
    if parts.is_empty() {
        return None;
    }
    let mut text = format!("One more connection costs {}", parts.join(", "));
    // The kernel's objects per connection (much the same for every model: the sockets, files
    // and epoll items are the kernel's): the fit of the model that held the most, named.
    let widest = models.iter().max_by(|a, b| {
        let most = |m: &Model| m.runs.iter().map(|r| held(r)).fold(0.0, f64::max);
        most(a).total_cmp(&most(b))
    });
    if let Some((m, s)) = widest.and_then(|m| Some((m, fit(m, slab)?))) {
        text.push_str(&format!(
            "; the kernel's socket, file and epoll objects add {} per connection ({}'s runs; both ends of loopback)",
            display(Some(s), format_bytes),
            m.label
        ));
    }
    text.push('.');
    let waits: Vec<String> = models
        .iter()
        .filter_map(|m| {
            let s = fit(m, wait_mean_ns)?;
            let name = m.runs.iter().find_map(|r| readiness_wait(r))?.0.name();
            Some(format!(
                "{} ({name}) {}",
                m.label,
                display(Some(s), |v| format!("{v:.2} ns"))
            ))
        })
        .collect();
    if !waits.is_empty() {
        text.push_str(&format!(
            " Time inside each wait call per connection held: {}. A scan of every descriptor per call grows with the idle ones (select, poll); a wait that reports only the ready ones (epoll) stays flat: the shape Gammo et al. measured for 10,000 connections on 2004 hardware (OLS 2004), where poll's throughput fell as idle connections rose and epoll's held.",
            waits.join(", ")
        ));
    }
    Some(text)
}

/// Memory and the time per wait call against connections held, a line per model (each point a
/// run: the fit is over runs, not medians).
pub fn charts(runs: &[super::Run]) -> Result<Vec<chart::Chart>, ReportError> {
    let models = models(runs);
    if models.is_empty() {
        return Ok(Vec::new());
    }
    type Pick = fn(&Results) -> f64;
    let figures: [(&str, &str, &str, Pick, f64); 4] = [
        (
            "memory_vs_connections",
            "Server resident memory against connections held",
            "resident memory (MiB)",
            rss,
            1048576.0,
        ),
        (
            "anon_memory_vs_connections",
            "Server anonymous memory (heaps, thread stacks) against connections held",
            "anonymous memory (MiB)",
            anon,
            1048576.0,
        ),
        (
            "kernel_memory_vs_connections",
            "Kernel socket, file and epoll objects against connections held (machine, both ends)",
            "slab memory (MiB)",
            slab,
            1048576.0,
        ),
        (
            "wait_time_vs_connections",
            "Mean time inside each wait call (epoll_wait, poll, select) against connections held",
            "mean time per wait call (µs)",
            wait_mean_ns,
            1000.0,
        ),
    ];
    let mut out = Vec::new();
    for (name, title, unit, pick, scale) in figures {
        let lines: Vec<(Series, Vec<Point>)> = models
            .iter()
            .map(|m| {
                // The median of the repeats at each number held, with its interval.
                let mut xs: Vec<f64> = m
                    .runs
                    .iter()
                    .map(|r| held(r))
                    .filter(|x| x.is_finite())
                    .collect();
                xs.sort_by(f64::total_cmp);
                xs.dedup();
                let points: Vec<Point> = xs
                    .iter()
                    .filter_map(|&x| {
                        let ys: Vec<f64> = m
                            .runs
                            .iter()
                            .filter(|r| held(r) == x)
                            .map(|r| pick(r) / scale)
                            .collect();
                        let e = stats::estimate(&ys);
                        e.median.is_finite().then_some(Point {
                            x,
                            y: e.median,
                            interval: e.interval,
                        })
                    })
                    .collect();
                (Series::named(&m.label), points)
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        out.push(chart::lines(
            name,
            title,
            Some("medians of the repeats at each number of connections, 95 % intervals"),
            ("connections held", unit),
            &lines,
        )?);
    }
    Ok(out)
}
