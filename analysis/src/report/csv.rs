//! `results.csv`: one row per run and syscall class, written by the `csv` crate from a serde row
//! type (the columns are documented in docs/results-format.md).

use std::io::Write;

use serde::Serialize;

use super::runs::Run;

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
    for r in runs {
        let info = r.info();
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
