//! `results.csv`: one row per run and syscall class, with its configuration's medians and
//! intervals over the repeats, written by the `csv` crate from a serde row type (the columns are
//! documented in docs/results-format.md).

use std::io::Write;

use serde::Serialize;

use super::runs::{Run, cells};
use crate::stats::Estimate;

#[derive(Debug, Serialize)]
struct ClassRow<'a> {
    run: &'a str,
    file: String,
    model: Option<&'a str>,
    connections: Option<usize>,
    rate: Option<f64>,
    throughput_rps: Option<f64>,
    request_p50_ns: Option<u64>,
    request_p99_ns: Option<u64>,
    /// Runs of this run's configuration, and their medians with 95 % intervals.
    runs: usize,
    throughput_median: Option<f64>,
    throughput_low: Option<f64>,
    throughput_high: Option<f64>,
    request_p99_median_ns: Option<f64>,
    request_p99_low_ns: Option<f64>,
    request_p99_high_ns: Option<f64>,
    class: &'a str,
    calls: u64,
    errors: u64,
    eagain: u64,
    bytes: u64,
    zero_ready: u64,
    nonblocking: u64,
    mean_ns: Option<u64>,
    p50_ns: Option<u64>,
    p99_ns: Option<u64>,
    max_ns: Option<u64>,
}

pub fn write(w: impl Write, runs: &[Run]) -> csv::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    let cells = cells(runs);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    for r in runs {
        let info = r.info();
        let cell = cells
            .iter()
            .find(|c| c.runs.iter().any(|o| std::ptr::eq(*o, r)));
        let figure = |f: fn(&crate::run::RunInfo) -> f64| -> Option<Estimate> {
            cell.filter(|c| c.info().is_some()).map(|c| c.estimate(f))
        };
        let throughput = figure(|i| i.load.throughput_rps);
        let p99 = figure(|i| i.load.latency_percentiles.p99 as f64);
        let low = |e: Option<Estimate>| e.and_then(|e| e.interval).map(|i| round(i.0));
        let high = |e: Option<Estimate>| e.and_then(|e| e.interval).map(|i| round(i.1));
        for c in &r.results.classes {
            let quantile = |q| c.latency_ns.quantile(q).map(|x| x.estimate());
            out.serialize(ClassRow {
                run: &r.label,
                file: r.path.display().to_string(),
                model: info.map(|i| i.workload.model.as_str()),
                connections: info.map(|i| i.load.connections),
                rate: info.and_then(|i| i.load.rate),
                throughput_rps: info.map(|i| (i.load.throughput_rps * 10.0).round() / 10.0),
                request_p50_ns: info.map(|i| i.load.latency_percentiles.p50),
                request_p99_ns: info.map(|i| i.load.latency_percentiles.p99),
                runs: cell.map_or(1, |c| c.runs.len()),
                throughput_median: throughput.map(|e| round(e.median)),
                throughput_low: low(throughput),
                throughput_high: high(throughput),
                request_p99_median_ns: p99.map(|e| round(e.median)),
                request_p99_low_ns: low(p99),
                request_p99_high_ns: high(p99),
                class: &c.name,
                calls: c.calls,
                errors: c.errors,
                eagain: c.eagain,
                bytes: c.bytes,
                zero_ready: c.zero_ready,
                nonblocking: c.nonblocking,
                mean_ns: c.mean_ns().map(|m| m.round() as u64),
                p50_ns: quantile(0.5),
                p99_ns: quantile(0.99),
                max_ns: c.latency_ns.max().map(|m| m.high),
            })?;
        }
    }
    out.flush()?;
    Ok(())
}
