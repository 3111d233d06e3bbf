//! The report's generated sentence: what was measured, in plain words, from the data.
//!
//! Noise-aware: with repeated runs, a sentence says that one configuration beats another, or
//! that a figure fell, only when the interval of the ratio of their medians excludes 1, and then
//! says by how much with that interval; otherwise it says the difference is within the noise,
//! and it never ranks configurations that noise cannot tell apart. With one run per
//! configuration it reports the figures and says that they were not tested against noise.

use std::collections::BTreeSet;

use super::{
    figures::ns,
    runs::{Axis, Cell, Run, at_largest, cells},
};
use crate::{
    run::RunInfo,
    stats::{self, Verdict},
};

type Figure = fn(&RunInfo) -> f64;

const THROUGHPUT: Figure = |i| i.load.throughput_rps;
const P99: Figure = |i| i.load.latency_percentiles.p99 as f64;

/// One plain sentence (or a few) stating what was measured, generated from the runs.
pub fn summary(runs: &[Run]) -> Option<String> {
    let all = cells(runs);
    let every: Vec<Cell> = all.iter().filter(|c| c.info().is_some()).cloned().collect();
    let axis = Axis::varied(&every);
    let mut focus = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    if focus.is_empty() {
        return None;
    }
    // The sentence starts with the parameters ("At 100 connections"): when that is one value
    // and makes each model's configuration unique, name it by its model alone.
    let models: Vec<String> = focus
        .iter()
        .filter_map(|c| Some(c.info()?.workload.label()))
        .collect();
    let one_value = !at(&focus, axis).contains('/');
    if one_value && models.iter().collect::<BTreeSet<_>>().len() == focus.len() {
        for (cell, model) in focus.iter_mut().zip(models) {
            cell.label = model;
        }
    }
    // Intervals need repeats: with a single run anywhere, figures are stated, not compared.
    let repeated = focus.iter().all(|c| c.runs.len() >= 2);
    let mut text = format!("{}, {}", at(&focus, axis), throughput(&focus, repeated));
    let ranges = per_request_ranges(&focus, repeated);
    if !ranges.is_empty() {
        text += &format!("; {}", ranges.join(", "));
    }
    text.push('.');
    if !repeated {
        text += " (One run per configuration: differences are not tested against noise.)";
    }
    text += &failures(&focus);
    if let Some(axis) = axis {
        text += &sweep_loss(&every, axis, repeated);
    }
    Some(text)
}

/// `At 100 connections`, `At 0/1000 idle connections`.
fn at(cells: &[Cell], axis: Option<Axis>) -> String {
    let (values, name): (BTreeSet<usize>, &str) = match axis {
        Some(axis) => (
            cells
                .iter()
                .filter_map(|c| Some(axis.value(c.info()?)))
                .collect(),
            axis.name(),
        ),
        None => (
            cells
                .iter()
                .filter_map(|c| Some(c.info()?.load.connections))
                .collect(),
            "connections",
        ),
    };
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("At {} {name}", values.join("/"))
}

/// `a, b and c`.
fn list(labels: &[&str]) -> String {
    match labels {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn by_median<'c, 'a>(cells: &'c [Cell<'a>], f: Figure, largest: bool) -> &'c Cell<'a> {
    let pick = cells.iter().max_by(|a, b| {
        let (x, y) = (a.estimate(f).median, b.estimate(f).median);
        if largest {
            x.total_cmp(&y)
        } else {
            y.total_cmp(&x)
        }
    });
    pick.unwrap_or(&cells[0])
}

/// `1010/s (980-1050)`.
fn per_second(e: &stats::Estimate) -> String {
    match e.interval {
        Some((low, high)) => format!("{:.0}/s ({low:.0}-{high:.0})", e.median),
        None => format!("{:.0}/s", e.median),
    }
}

/// Who served the most requests, and by how much, as far as the noise allows.
fn throughput(cells: &[Cell], repeated: bool) -> String {
    let rps = |c: &Cell| c.estimate(THROUGHPUT);
    let p99 = |c: &Cell| ns(c.estimate(P99).median);
    let best = by_median(cells, THROUGHPUT, true);
    let worst = by_median(cells, THROUGHPUT, false);
    if cells.len() == 1 {
        return format!(
            "{} served {} (p99 {})",
            best.label,
            per_second(&rps(best)),
            p99(best)
        );
    }
    if !repeated {
        return format!(
            "{} served the most requests ({:.0}/s, p99 {}) and {} the fewest ({:.0}/s, p99 {})",
            best.label,
            rps(best).median,
            p99(best),
            worst.label,
            rps(worst).median,
            p99(worst)
        );
    }
    let values = |c: &Cell| c.values(THROUGHPUT);
    // Configurations the noise cannot tell from the best: none of them is ranked above another.
    let top: Vec<&Cell> = cells
        .iter()
        .filter(|c| stats::compare(&values(best), &values(c)) != Verdict::Larger)
        .collect();
    if top.len() == cells.len() {
        let (low, high) = (rps(worst).median, rps(best).median);
        return format!(
            "all {} configurations served requests within noise of each other ({low:.0} to {high:.0}/s)",
            cells.len()
        );
    }
    // The slowest of those the noise does tell from the best, and those it cannot tell from it.
    let rest: Vec<&Cell> = cells
        .iter()
        .filter(|c| !top.iter().any(|t| t.label == c.label))
        .collect();
    let slowest = rest
        .iter()
        .copied()
        .min_by(|a, b| rps(a).median.total_cmp(&rps(b).median))
        .unwrap_or(worst);
    let near_slowest: Vec<&str> = rest
        .iter()
        .filter(|c| c.label != slowest.label)
        .filter(|c| stats::compare(&values(c), &values(slowest)) != Verdict::Larger)
        .map(|c| c.label.as_str())
        .collect();
    let top_labels: Vec<&str> = top.iter().map(|c| c.label.as_str()).collect();
    let ratio = stats::ratio(&values(best), &values(slowest));
    format!(
        "{} served the most requests ({}, p99 {}{}), {} the requests of {} ({}{})",
        list(&top_labels),
        per_second(&rps(best)),
        p99(best),
        if top.len() > 1 {
            "; within noise of each other"
        } else {
            ""
        },
        ratio.display(),
        slowest.label,
        per_second(&rps(slowest)),
        if near_slowest.is_empty() {
            String::new()
        } else {
            format!("; {} within noise of it", list(&near_slowest))
        }
    )
}

/// `context switches per request from 0.00 (epoll-lt) to 1.02 (blocking-threads)`, when the
/// extremes differ beyond the noise.
fn per_request_ranges(cells: &[Cell], repeated: bool) -> Vec<String> {
    if cells.len() < 2 {
        return Vec::new();
    }
    let ranges: [(&str, Figure, usize); 3] = [
        (
            "server threads",
            |i| i.server_process.peak_threads as f64,
            0,
        ),
        (
            "context switches per request",
            |i| i.per_request.context_switches,
            2,
        ),
        ("syscalls per request", |i| i.per_request.syscalls, 2),
    ];
    let mut ranges = ranges.to_vec();
    if cells
        .iter()
        .all(|c| c.info().is_some_and(|i| i.per_request.sched.is_some()))
    {
        ranges.push((
            "µs waiting for a CPU per request",
            |i| i.per_request.sched.map_or(0.0, |s| s.runq_us),
            1,
        ));
    }
    ranges
        .into_iter()
        .map(|(what, f, digits)| {
            let (lo, hi) = (by_median(cells, f, false), by_median(cells, f, true));
            let (a, b) = (lo.estimate(f).median, hi.estimate(f).median);
            let same_digits = format!("{a:.digits$}") == format!("{b:.digits$}");
            let verdict = stats::compare(&hi.values(f), &lo.values(f));
            match (same_digits, repeated, verdict) {
                (true, _, _) => format!("{what} {a:.digits$} for every model"),
                (false, true, Verdict::WithinNoise) => {
                    format!("{what} from {a:.digits$} to {b:.digits$}, within noise")
                }
                _ => format!(
                    "{what} from {a:.digits$} ({}) to {b:.digits$} ({})",
                    lo.label, hi.label
                ),
            }
        })
        .collect()
}

/// Failed requests change what the latencies mean (a server that serves one connection and
/// lets the others time out has fine latencies): name them.
fn failures(cells: &[Cell]) -> String {
    let failing: Vec<String> = cells
        .iter()
        .filter(|c| c.failed_requests() > 0)
        .map(|c| {
            let timeouts: u64 = c
                .values(|i| i.load.errors.timeouts as f64)
                .iter()
                .sum::<f64>() as u64;
            format!(
                "{} ({} errors, {timeouts} of them timeouts)",
                c.label,
                c.failed_requests()
            )
        })
        .collect();
    if failing.is_empty() {
        String::new()
    } else {
        format!(" Requests failed in {}.", failing.join(", "))
    }
}

/// A model's throughput at the sweep's largest value against its best.
struct Loss {
    model: String,
    /// last / best - 1.
    change: f64,
    /// Of last / best.
    interval: Option<(f64, f64)>,
    /// The axis value of the best.
    best_at: usize,
}

/// Along the sweep: which model lost the most throughput from its best value to the largest.
fn sweep_loss(every: &[Cell], axis: Axis, repeated: bool) -> String {
    let largest = every
        .iter()
        .filter_map(|c| Some(axis.value(c.info()?)))
        .max()
        .unwrap_or(0);
    let mut models: Vec<String> = every
        .iter()
        .filter_map(|c| Some(c.info()?.workload.label()))
        .collect();
    models.dedup();
    let mut worst: Option<Loss> = None;
    for model in models {
        let points: Vec<&Cell> = every
            .iter()
            .filter(|c| c.info().is_some_and(|i| i.workload.label() == model))
            .collect();
        let best = points.iter().copied().max_by(|a, b| {
            a.estimate(THROUGHPUT)
                .median
                .total_cmp(&b.estimate(THROUGHPUT).median)
        });
        let last = points
            .iter()
            .copied()
            .max_by_key(|c| c.info().map_or(0, |i| axis.value(i)));
        let (Some(best), Some(last)) = (best, last) else {
            continue;
        };
        let (best_at, last_at) = (
            best.info().map_or(0, |i| axis.value(i)),
            last.info().map_or(0, |i| axis.value(i)),
        );
        if best_at == last_at {
            continue;
        }
        let r = stats::ratio(&last.values(THROUGHPUT), &best.values(THROUGHPUT));
        let counts = if repeated {
            r.verdict() == Verdict::Smaller
        } else {
            r.ratio < 0.95
        };
        if counts && worst.as_ref().is_none_or(|w| r.ratio - 1.0 < w.change) {
            worst = Some(Loss {
                model,
                change: r.ratio - 1.0,
                interval: r.interval,
                best_at,
            });
        }
    }
    let name = axis.name();
    match worst {
        Some(Loss {
            model,
            change,
            interval,
            best_at: at,
        }) => {
            let interval = interval
                .filter(|_| repeated)
                .map_or(String::new(), |(low, high)| {
                    format!(
                        " ({:+.0}% to {:+.0}%)",
                        (low - 1.0) * 100.0,
                        (high - 1.0) * 100.0
                    )
                });
            format!(
                " At {largest} {name}, {model} had lost the most throughput from its best (at {at}): {:+.0}%{interval}.",
                change * 100.0
            )
        }
        None if repeated => format!(
            " No model's throughput at {largest} {name} was below its best beyond the noise."
        ),
        None => {
            format!(" No model's throughput at {largest} {name} was more than 5% below its best.")
        }
    }
}
