//! The report's generated sentence: what was measured, in plain words, from the data.

use std::collections::BTreeSet;

use super::{
    figures::ns,
    runs::{Axis, Run, at_largest},
};
use crate::run::RunInfo;

/// One plain sentence (or two) stating what was measured, generated from the runs.
pub fn summary(runs: &[Run]) -> Option<String> {
    let every: Vec<&Run> = runs.iter().filter(|r| r.info().is_some()).collect();
    let axis = Axis::varied(&every);
    let focus = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    let infos: Vec<(&str, &RunInfo)> = focus
        .iter()
        .filter_map(|r| Some((r.label.as_str(), r.info()?)))
        .collect();
    if infos.is_empty() {
        return None;
    }
    let extreme = |f: fn(&RunInfo) -> f64| {
        let by = |a: &&(&str, &RunInfo), b: &&(&str, &RunInfo)| f(a.1).total_cmp(&f(b.1));
        let min = infos.iter().min_by(by).map(|(l, i)| (*l, f(i)));
        let max = infos.iter().max_by(by).map(|(l, i)| (*l, f(i)));
        (min, max)
    };
    let at = match axis {
        Some(axis) => {
            let values: BTreeSet<usize> = infos.iter().map(|(_, i)| axis.value(i)).collect();
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            format!("At {} {}", values.join("/"), axis.name())
        }
        None => {
            let c: BTreeSet<usize> = infos.iter().map(|(_, i)| i.load.connections).collect();
            let c: Vec<String> = c.iter().map(|v| v.to_string()).collect();
            format!("At {} connections", c.join("/"))
        }
    };
    let mut text = String::new();
    let (Some(slow), Some(fast)) = extreme(|i| i.load.throughput_rps) else {
        return None;
    };
    let p99 = |label: &str| {
        infos
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0.0, |(_, i)| i.load.latency_percentiles.p99 as f64)
    };
    if infos.len() == 1 {
        text += &format!(
            "{at}, {} served {:.0} requests/s (p99 {})",
            fast.0,
            fast.1,
            ns(p99(fast.0))
        );
    } else {
        text += &format!(
            "{at}, {} served the most requests ({:.0}/s, p99 {}) and {} the fewest ({:.0}/s, p99 {})",
            fast.0,
            fast.1,
            ns(p99(fast.0)),
            slow.0,
            slow.1,
            ns(p99(slow.0))
        );
    }
    type Figure = fn(&RunInfo) -> f64;
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
    let mut parts = Vec::new();
    for (what, f, digits) in ranges {
        if let (Some(lo), Some(hi)) = extreme(f)
            && infos.len() > 1
        {
            if format!("{:.digits$}", lo.1) == format!("{:.digits$}", hi.1) {
                parts.push(format!("{what} {:.digits$} for every model", lo.1));
            } else {
                parts.push(format!(
                    "{what} from {:.digits$} ({}) to {:.digits$} ({})",
                    lo.1, lo.0, hi.1, hi.0
                ));
            }
        }
    }
    if !parts.is_empty() {
        text += &format!("; {}", parts.join(", "));
    }
    text.push('.');
    // Failed requests change what the latencies mean (a server that serves one connection and
    // lets the others time out has fine latencies): name them.
    let failing: Vec<String> = infos
        .iter()
        .filter(|(_, i)| i.load.errors.total() > 0)
        .map(|(l, i)| {
            format!(
                "{l} ({} errors, {} of them timeouts)",
                i.load.errors.total(),
                i.load.errors.timeouts
            )
        })
        .collect();
    if !failing.is_empty() {
        text += &format!(" Requests failed in {}.", failing.join(", "));
    }
    // Along the sweep: which model lost the most throughput from its best value to the largest.
    if let Some(axis) = axis {
        let mut worst: Option<(String, f64, usize)> = None;
        let mut models: Vec<String> = every
            .iter()
            .filter_map(|r| Some(r.info()?.workload.label()))
            .collect();
        models.dedup();
        let largest = every
            .iter()
            .filter_map(|r| Some(axis.value(r.info()?)))
            .max()
            .unwrap_or(0);
        for model in models {
            let points: Vec<(usize, f64)> = every
                .iter()
                .filter_map(|r| r.info())
                .filter(|i| i.workload.label() == model)
                .map(|i| (axis.value(i), i.load.throughput_rps))
                .collect();
            let best = points.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
            let last = points.iter().copied().max_by_key(|p| p.0);
            if let (Some(best), Some(last)) = (best, last)
                && best.1 > 0.0
                && last.0 != best.0
            {
                let change = last.1 / best.1 - 1.0;
                if worst.as_ref().is_none_or(|w| change < w.1) {
                    worst = Some((model, change, best.0));
                }
            }
        }
        match worst {
            Some((model, change, at)) if change < -0.05 => {
                text += &format!(
                    " At {largest} {}, {model} had lost the most throughput from its best (at {at}): {:+.0}%.",
                    axis.name(),
                    change * 100.0
                );
            }
            _ => {
                text += &format!(
                    " No model's throughput at {largest} {} was more than 5% below its best.",
                    axis.name()
                );
            }
        }
    }
    Some(text)
}
