//! The report's tables, as data: each writer (HTML, Markdown) renders a [`Table`] its own way.

use super::{figures::ns, runs::Run};
use crate::{Histogram, results::TargetKind};

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

/// The key figures of each `netpoll run` result.
pub fn workloads(runs: &[Run]) -> Table {
    let mut table = Table::new(
        "Workloads",
        &[
            "run",
            "connections",
            "mode",
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
    table.rows = runs
        .iter()
        .filter_map(|r| {
            let i = r.info()?;
            let l = &i.load;
            let p = &i.per_request;
            Some(vec![
                r.label.clone(),
                l.connections.to_string(),
                l.rate
                    .map_or("closed".into(), |rate| format!("open {rate}/s")),
                format!("{:.0}", l.throughput_rps),
                ns(l.latency_percentiles.p50 as f64),
                ns(l.latency_percentiles.p99 as f64),
                ns(l.latency_percentiles.p999 as f64),
                l.errors.total().to_string(),
                format!("{:.2}", p.syscalls),
                format!("{:.2}", p.epoll_waits),
                format!("{:.2}", p.eagain),
                format!("{:.2}", p.context_switches),
                format!("{:.1}", p.cpu_us),
                i.server_process.peak_threads.to_string(),
            ])
        })
        .collect();
    table
}

/// Syscall classes of every run.
pub fn classes(runs: &[Run]) -> Table {
    let mut table = Table::new(
        "Syscall classes",
        &[
            "run", "class", "calls", "errors", "EAGAIN", "bytes", "p50", "p99", "max",
        ],
    );
    for r in runs {
        for c in &r.results.classes {
            table.rows.push(vec![
                r.label.clone(),
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
