//! From results files to a report: charts (SVG + PNG), `index.html` (self-contained, charts
//! inline), `report.md` (the same tables, linking the PNGs) and `results.csv` (one row per run
//! and syscall class).

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use crate::{
    Histogram,
    chart::{self, Chart, Series, color_of},
    png::Renderer,
    results::{LoadError, Results, SyscallStats},
    run::RunInfo,
};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}: no results files (*.json) in this directory")]
    EmptyDirectory(String),
    #[error("no results files given")]
    NoInputs,
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error(transparent)]
    Png(#[from] crate::png::PngError),
    #[error("{path}: cannot write: {error}")]
    Write { path: String, error: std::io::Error },
}

/// A results file and the label its series carry in charts.
#[derive(Debug, Clone)]
pub struct Run {
    pub path: PathBuf,
    pub label: String,
    pub results: Results,
}

/// Loads results files; a directory stands for the `*.json` files in it (sorted).
pub fn load(inputs: &[PathBuf]) -> Result<Vec<Run>, ReportError> {
    if inputs.is_empty() {
        return Err(ReportError::NoInputs);
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = fs::read_dir(input)
                .map_err(|error| LoadError::Io {
                    path: input.display().to_string(),
                    error,
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            if found.is_empty() {
                return Err(ReportError::EmptyDirectory(input.display().to_string()));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    let mut runs = Vec::new();
    for path in files {
        let results = Results::load(&path)?;
        runs.push(Run {
            label: String::new(),
            path,
            results,
        });
    }
    Ok(arrange(runs))
}

/// Puts runs in `netpoll models` order (everything else after, as given) and labels them.
pub fn arrange(mut runs: Vec<Run>) -> Vec<Run> {
    runs.sort_by_key(|r| {
        r.results
            .run
            .as_ref()
            .map_or(chart::MODEL_ORDER.len(), |i| {
                chart::MODEL_ORDER
                    .iter()
                    .position(|m| *m == i.model)
                    .unwrap_or(chart::MODEL_ORDER.len())
            })
    });
    label_runs(&mut runs);
    runs
}

/// Labels: the model (for `netpoll run` results), else what was profiled; made unique with the
/// connection count, then the file name.
fn label_runs(runs: &mut [Run]) {
    for run in runs.iter_mut() {
        run.label = match &run.results.run {
            Some(info) => variant(info),
            None => profile_label(&run.results),
        };
    }
    // Duplicates are found before any is renamed, so that every one of them is.
    let duplicated = |runs: &[Run]| -> Vec<bool> {
        runs.iter()
            .map(|r| runs.iter().filter(|o| o.label == r.label).count() > 1)
            .collect()
    };
    // Name duplicates by what differs among them: connections, idle connections, or both.
    let dups = duplicated(runs);
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let differs = |label: &str, f: fn(&RunInfo) -> usize| {
        runs.iter()
            .filter(|r| r.label == label)
            .filter_map(|r| r.results.run.as_ref().map(f))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    };
    let (by_c, by_idle): (Vec<bool>, Vec<bool>) = labels
        .iter()
        .map(|l| {
            (
                differs(l, |i| i.load.connections),
                differs(l, |i| i.load.idle_connections),
            )
        })
        .unzip();
    for (i, run) in runs.iter_mut().enumerate() {
        if dups[i]
            && let Some(info) = &run.results.run
        {
            let mut label = variant(info);
            if by_c[i] || !by_idle[i] {
                label += &format!(" c={}", info.load.connections);
            }
            if by_idle[i] {
                label += &format!(" idle={}", info.load.idle_connections);
            }
            run.label = label;
        }
    }
    let dups = duplicated(runs);
    for (run, dup) in runs.iter_mut().zip(dups) {
        if dup {
            let stem = run
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            run.label = format!("{} ({stem})", run.label);
        }
    }
}

/// The model, and its variant where the model has one (io-uring with SQPOLL).
pub fn variant(info: &RunInfo) -> String {
    if info.server.sqpoll {
        format!("{} sqpoll", info.model)
    } else {
        info.model.clone()
    }
}

/// The parameter an experiment varies within a model, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Connections,
    IdleConnections,
}

impl Axis {
    pub fn value(self, info: &RunInfo) -> usize {
        match self {
            Axis::Connections => info.load.connections,
            Axis::IdleConnections => info.load.idle_connections,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Axis::Connections => "connections",
            Axis::IdleConnections => "idle connections",
        }
    }

    /// The axis along which some model ran at several values: idle connections first.
    pub fn varied(workloads: &[&Run]) -> Option<Axis> {
        [Axis::IdleConnections, Axis::Connections]
            .into_iter()
            .find(|&axis| {
                let mut seen: Vec<(String, usize)> = Vec::new();
                for info in workloads.iter().filter_map(|r| r.results.run.as_ref()) {
                    let v = (variant(info), axis.value(info));
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                seen.iter()
                    .any(|(m, v)| seen.iter().any(|(m2, v2)| m == m2 && v != v2))
            })
    }
}

/// Runs at the largest value of `axis` for their model: one run per model for the charts that
/// compare models.
pub fn at_largest<'a>(workloads: &[&'a Run], axis: Axis) -> Vec<&'a Run> {
    workloads
        .iter()
        .filter(|r| {
            let Some(info) = &r.results.run else {
                return false;
            };
            let largest = workloads
                .iter()
                .filter_map(|o| o.results.run.as_ref())
                .filter(|o| variant(o) == variant(info))
                .map(|o| axis.value(o))
                .max();
            Some(axis.value(info)) == largest
        })
        .copied()
        .collect()
}

fn profile_label(r: &Results) -> String {
    let t = &r.target;
    match t.kind.as_str() {
        "comm" => t.comm.clone().unwrap_or_default(),
        "cgroup" => t.cgroup.clone().unwrap_or_default(),
        "command" => t.command.first().cloned().unwrap_or_default(),
        "all" => "every process".into(),
        _ => format!(
            "PID {}",
            t.pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn series(run: &Run) -> Series {
    Series {
        label: run.label.clone(),
        color: color_of(&run.label),
    }
}

/// Parameters that differ between `netpoll run` results: charts that compare runs say so.
pub fn mixed_parameters(runs: &[&Run], skip: Option<Axis>) -> Option<String> {
    let mut differ = Vec::new();
    let mut check = |name: &str, values: BTreeSet<String>| {
        if values.len() > 1 {
            differ.push(format!(
                "{name} {}",
                values.into_iter().collect::<Vec<_>>().join("/")
            ));
        }
    };
    let infos: Vec<_> = runs.iter().filter_map(|r| r.results.run.as_ref()).collect();
    if skip != Some(Axis::Connections) {
        check(
            "connections",
            infos
                .iter()
                .map(|i| i.load.connections.to_string())
                .collect(),
        );
    }
    check(
        "payload (B)",
        infos.iter().map(|i| i.server.payload.to_string()).collect(),
    );
    check(
        "think (µs)",
        infos
            .iter()
            .map(|i| i.server.think_us.to_string())
            .collect(),
    );
    check(
        "disk read (B)",
        infos
            .iter()
            .map(|i| i.server.disk_read.to_string())
            .collect(),
    );
    check(
        "rate",
        infos
            .iter()
            .map(|i| {
                i.load
                    .rate
                    .map_or("closed loop".into(), |r| format!("{r}/s"))
            })
            .collect(),
    );
    if skip != Some(Axis::IdleConnections) {
        check(
            "idle connections",
            infos
                .iter()
                .map(|i| i.load.idle_connections.to_string())
                .collect(),
        );
    }
    (!differ.is_empty()).then(|| format!("mixed parameters: {}", differ.join("; ")))
}

/// The class a run waits in: epoll, else poll/select, else io_uring (blocking models: none).
fn wait_class(r: &Results) -> Option<&SyscallStats> {
    ["epoll", "poll_select", "io_uring"]
        .iter()
        .find_map(|c| r.class(c))
}

/// Every chart for these runs.
pub fn charts(runs: &[Run]) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    let every: Vec<&Run> = runs.iter().filter(|r| r.results.run.is_some()).collect();
    let axis = Axis::varied(&every);
    // Charts that compare models show one run per model: at the largest value swept.
    let workloads = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    let all: Vec<&Run> = workloads
        .iter()
        .copied()
        .chain(runs.iter().filter(|r| r.results.run.is_none()))
        .collect();
    let note = match axis {
        Some(axis) => {
            let largest: BTreeSet<usize> = workloads
                .iter()
                .filter_map(|r| Some(axis.value(r.results.run.as_ref()?)))
                .collect();
            let values: Vec<String> = largest.iter().map(|v| v.to_string()).collect();
            let mut note = format!("at {} {}", values.join("/"), axis.name());
            if let Some(mixed) = mixed_parameters(&workloads, Some(axis)) {
                note = format!("{note}; {mixed}");
            }
            Some(note)
        }
        None => mixed_parameters(&workloads, None),
    };
    let note = note.as_deref();
    if !workloads.is_empty() {
        let pct: Vec<(Series, Vec<f64>)> = workloads
            .iter()
            .filter_map(|r| {
                let p = r.results.run.as_ref()?.load.latency_percentiles;
                Some((
                    series(r),
                    [p.p50, p.p90, p.p99, p.p999, p.max]
                        .iter()
                        .map(|v| *v as f64)
                        .collect(),
                ))
            })
            .collect();
        charts.push(chart::percentiles(
            "request_latency",
            "End-to-end request latency by I/O model (client side)",
            note,
            &["p50", "p90", "p99", "p99.9", "max"],
            &pct,
        )?);
        for f in &FIGURES {
            let bars: Vec<(Series, f64)> = workloads
                .iter()
                .filter_map(|r| Some((series(r), (f.value)(r.results.run.as_ref()?))))
                .collect();
            charts.push(chart::bars(f.name, f.title, note, f.unit, &bars)?);
        }
        charts.extend(versus(&every, axis.unwrap_or(Axis::Connections))?);
    }
    let reads: Vec<(Series, &Histogram)> = all
        .iter()
        .filter_map(|r| Some((series(r), &r.results.class("socket_read")?.latency_ns)))
        .collect();
    let waits: Vec<(Series, &Histogram)> = all
        .iter()
        .filter_map(|r| {
            let class = wait_class(&r.results)?;
            let s = series(r);
            Some((
                Series {
                    label: format!("{} ({})", s.label, class.name),
                    color: s.color,
                },
                &class.latency_ns,
            ))
        })
        .collect();
    if all.len() > 1 || !workloads.is_empty() {
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
        // Reads of files (and pipes): readiness APIs cannot multiplex them, so whoever makes
        // them waits. Only drawn when some run made them.
        let files: Vec<(Series, &Histogram)> = all
            .iter()
            .filter_map(|r| Some((series(r), &r.results.class("other_read")?.latency_ns)))
            .collect();
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
                Some((series(r), &class.ready_events))
            })
            .collect();
        charts.push(chart::ready_events(
            "ready_events",
            "Ready descriptors per epoll/poll/select call: what one wait-up batches",
            note,
            &ready,
        )?);
    }
    for (i, run) in runs.iter().enumerate() {
        if run.results.run.is_none() {
            charts.push(chart::profile_card(
                &format!("profile_{}", i + 1),
                &run.label,
                &run.results,
            )?);
        }
    }
    Ok(charts)
}

/// A per-run figure that charts compare across models: bars, and lines along a sweep.
struct Figure {
    name: &'static str,
    title: &'static str,
    unit: &'static str,
    value: fn(&RunInfo) -> f64,
}

const FIGURES: [Figure; 6] = [
    Figure {
        name: "throughput",
        title: "Requests per second",
        unit: "requests/s",
        value: |i| i.load.throughput_rps,
    },
    Figure {
        name: "p99",
        title: "p99 request latency",
        unit: "p99 request latency (µs)",
        value: |i| i.load.latency_percentiles.p99 as f64 / 1e3,
    },
    Figure {
        name: "syscalls_per_request",
        title: "Server syscalls per request",
        unit: "syscalls per request",
        value: |i| i.per_request.syscalls,
    },
    Figure {
        name: "switches_per_request",
        title: "Server context switches per request",
        unit: "context switches per request",
        value: |i| i.per_request.context_switches,
    },
    Figure {
        name: "cpu_per_request",
        title: "Server CPU time per request (user + system)",
        unit: "CPU µs per request",
        value: |i| i.per_request.cpu_us,
    },
    Figure {
        name: "threads",
        title: "Server threads (peak)",
        unit: "threads",
        value: |i| i.server_process.peak_threads as f64,
    },
];

/// Key figures against the swept parameter, one line per model.
fn versus(workloads: &[&Run], axis: Axis) -> Result<Vec<Chart>, ReportError> {
    // Runs are in model order already: group them, keeping it.
    let mut by_model: Vec<(String, Vec<&RunInfo>)> = Vec::new();
    for info in workloads.iter().filter_map(|r| r.results.run.as_ref()) {
        let key = variant(info);
        match by_model.iter_mut().find(|(m, _)| *m == key) {
            Some((_, infos)) => infos.push(info),
            None => by_model.push((key, vec![info])),
        }
    }
    let several = by_model.iter().any(|(_, infos)| {
        infos
            .iter()
            .map(|i| axis.value(i))
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
        let lines: Vec<(Series, Vec<(f64, f64)>)> = by_model
            .iter()
            .map(|(model, infos)| {
                let points = infos
                    .iter()
                    .map(|i| (axis.value(i) as f64, (f.value)(i)))
                    .collect();
                (
                    Series {
                        label: model.clone(),
                        color: color_of(model),
                    },
                    points,
                )
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

fn ns(v: f64) -> String {
    chart::fmt_ns(v)
}

fn quantile(h: &Histogram, q: f64) -> String {
    h.quantile(q)
        .map_or("-".into(), |x| ns(x.estimate() as f64))
}

/// The key figures of each workload run: (header, rows).
fn run_table(runs: &[Run]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
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
    ];
    let rows = runs
        .iter()
        .filter_map(|r| {
            let i = r.results.run.as_ref()?;
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
    (header, rows)
}

/// Syscall classes of every run: (header, rows).
fn class_table(runs: &[Run]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "run", "class", "calls", "errors", "EAGAIN", "bytes", "p50", "p99", "max",
    ];
    let mut rows = Vec::new();
    for r in runs {
        for c in &r.results.classes {
            rows.push(vec![
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
    (header, rows)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(out: &mut String, (header, rows): (Vec<&str>, Vec<Vec<String>>)) {
    out.push_str("<div class=\"wide\"><table>\n<tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", html_escape(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", html_escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
}

fn md_table(out: &mut String, (header, rows): (Vec<&str>, Vec<Vec<String>>)) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | ").replace('\n', " "));
    }
    out.push('\n');
}

/// What each run was: file, target, parameters, machine.
fn runs_table(runs: &[Run]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "run",
        "file",
        "what",
        "parameters",
        "measured",
        "host",
        "kernel",
        "hook",
        "started",
    ];
    let rows = runs
        .iter()
        .map(|r| {
            let res = &r.results;
            let (what, params) = match &res.run {
                Some(i) => (
                    format!("netpoll run --model {}", i.model),
                    format!(
                        "payload {} B, think {} µs, disk read {} B, {} connections + {} idle, {} client thread(s), {}, warm-up {:.1} s",
                        i.server.payload,
                        i.server.think_us,
                        i.server.disk_read,
                        i.load.connections,
                        i.load.idle_connections,
                        i.load.threads,
                        i.load.rate.map_or("closed loop".into(), |rate| format!("open loop {rate}/s")),
                        i.load.warmup_ns as f64 / 1e9
                    ),
                ),
                None => (
                    format!("netpoll profile ({})", res.target.kind),
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
                format!("{} ({} CPUs, {})", res.host.hostname, res.host.cpus, res.host.arch),
                res.host.kernel.clone(),
                res.hook.clone(),
                res.started_at.clone(),
            ]
        })
        .collect();
    (header, rows)
}

/// One CSV row per run and syscall class.
pub fn csv(runs: &[Run]) -> String {
    let mut out = String::from(
        "run,file,model,connections,rate,throughput_rps,request_p50_ns,request_p99_ns,class,calls,errors,eagain,bytes,zero_ready,nonblocking,mean_ns,p50_ns,p99_ns,max_ns\n",
    );
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for r in runs {
        let info = r.results.run.as_ref();
        let q = |h: &Histogram, q: f64| {
            h.quantile(q)
                .map_or(String::new(), |x| x.estimate().to_string())
        };
        for c in &r.results.classes {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                field(&r.label),
                field(&r.path.display().to_string()),
                info.map_or(String::new(), |i| i.model.clone()),
                info.map_or(String::new(), |i| i.load.connections.to_string()),
                info.and_then(|i| i.load.rate)
                    .map_or(String::new(), |rate| rate.to_string()),
                info.map_or(String::new(), |i| format!("{:.1}", i.load.throughput_rps)),
                info.map_or(String::new(), |i| i
                    .load
                    .latency_percentiles
                    .p50
                    .to_string()),
                info.map_or(String::new(), |i| i
                    .load
                    .latency_percentiles
                    .p99
                    .to_string()),
                c.name,
                c.calls,
                c.errors,
                c.eagain,
                c.bytes,
                c.zero_ready,
                c.nonblocking,
                c.mean_ns().map_or(String::new(), |m| format!("{m:.0}")),
                q(&c.latency_ns, 0.5),
                q(&c.latency_ns, 0.99),
                c.latency_ns
                    .max()
                    .map_or(String::new(), |m| m.high.to_string()),
            );
        }
    }
    out
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}.wide{overflow-x:auto}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}\
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}figure{margin:2em 0}\
figcaption{color:#555;font-size:14px}.note{color:#a33c00}svg{max-width:100%;height:auto}";

/// Writes every chart (SVG and PNG), index.html, report.md and results.csv into `dir`.
/// Returns the paths written.
/// What a report says above its charts. Empty fields are left out; without a sentence, one is
/// generated from the data ([`summary`]).
#[derive(Debug, Clone, Default)]
pub struct Heading {
    pub title: String,
    pub question: Option<String>,
    pub sentence: Option<String>,
    /// Warnings and failures, one line each.
    pub notes: Vec<String>,
    /// Extra tables: (title, header, rows).
    pub tables: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
}

/// One plain sentence (or two) stating what was measured, generated from the runs.
pub fn summary(runs: &[Run]) -> Option<String> {
    let every: Vec<&Run> = runs.iter().filter(|r| r.results.run.is_some()).collect();
    let axis = Axis::varied(&every);
    let focus = match axis {
        Some(axis) => at_largest(&every, axis),
        None => every.clone(),
    };
    let infos: Vec<(&str, &RunInfo)> = focus
        .iter()
        .filter_map(|r| Some((r.label.as_str(), r.results.run.as_ref()?)))
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
        let _ = write!(
            text,
            "{at}, {} served {:.0} requests/s (p99 {})",
            fast.0,
            fast.1,
            ns(p99(fast.0))
        );
    } else {
        let _ = write!(
            text,
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
        let _ = write!(text, "; {}", parts.join(", "));
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
        let _ = write!(text, " Requests failed in {}.", failing.join(", "));
    }
    // Along the sweep: which model lost the most throughput from its best value to the largest.
    if let Some(axis) = axis {
        let mut worst: Option<(String, f64, usize)> = None;
        let mut models: Vec<String> = every
            .iter()
            .filter_map(|r| Some(variant(r.results.run.as_ref()?)))
            .collect();
        models.dedup();
        let largest = every
            .iter()
            .filter_map(|r| Some(axis.value(r.results.run.as_ref()?)))
            .max()
            .unwrap_or(0);
        for model in models {
            let points: Vec<(usize, f64)> = every
                .iter()
                .filter_map(|r| r.results.run.as_ref())
                .filter(|i| variant(i) == model)
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
                let _ = write!(
                    text,
                    " At {largest} {}, {model} had lost the most throughput from its best (at {at}): {:+.0}%.",
                    axis.name(),
                    change * 100.0
                );
            }
            _ => {
                let _ = write!(
                    text,
                    " No model's throughput at {largest} {} was more than 5% below its best.",
                    axis.name()
                );
            }
        }
    }
    Some(text)
}

/// Writes every chart (SVG and PNG), index.html, report.md and results.csv into `dir`.
/// Returns the paths written.
pub fn write(dir: &Path, runs: &[Run], heading: &Heading) -> Result<Vec<PathBuf>, ReportError> {
    let written = |path: &Path| {
        let path = path.display().to_string();
        move |error| ReportError::Write { path, error }
    };
    fs::create_dir_all(dir).map_err(written(dir))?;
    let charts = charts(runs)?;
    let renderer = Renderer::new()?;
    let mut paths = Vec::new();
    for chart in &charts {
        let svg = dir.join(format!("{}.svg", chart.name));
        fs::write(&svg, &chart.svg).map_err(written(&svg))?;
        let png = dir.join(format!("{}.png", chart.name));
        fs::write(&png, renderer.png(&chart.name, &chart.svg)?).map_err(written(&png))?;
        paths.push(svg);
        paths.push(png);
    }

    let title = if heading.title.is_empty() {
        "netpoll report"
    } else {
        &heading.title
    };
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = html_escape(title)
    );
    let mut md = format!("# {title}\n\n");
    if let Some(q) = &heading.question {
        let _ = writeln!(html, "<p><b>Question.</b> {}</p>", html_escape(q));
        let _ = writeln!(md, "**Question.** {q}\n");
    }
    if let Some(sentence) = heading.sentence.clone().or_else(|| summary(runs)) {
        let _ = writeln!(html, "<p><b>Measured.</b> {}</p>", html_escape(&sentence));
        let _ = writeln!(md, "**Measured.** {sentence}\n");
    }
    for note in &heading.notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", html_escape(note));
        let _ = writeln!(md, "> {note}\n");
    }
    let _ = writeln!(
        html,
        "<p>{} result file(s). Latencies are measured in the kernel per call (server side) and \
         per request by the load generator (client side); see docs/results-format.md.</p>",
        runs.len()
    );
    let _ = writeln!(md, "{} result file(s).\n", runs.len());
    for (title, header, rows) in &heading.tables {
        let _ = writeln!(html, "<h2>{}</h2>", html_escape(title));
        let _ = writeln!(md, "## {title}\n");
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        html_table(&mut html, (header.clone(), rows.clone()));
        md_table(&mut md, (header, rows.clone()));
    }
    let (header, rows) = run_table(runs);
    if !rows.is_empty() {
        html.push_str("<h2>Workloads</h2>\n");
        md.push_str("## Workloads\n\n");
        html_table(&mut html, (header.clone(), rows.clone()));
        md_table(&mut md, (header, rows));
    }
    html.push_str("<h2>Charts</h2>\n");
    md.push_str("## Charts\n\n");
    for chart in &charts {
        // Inline, so the page opens from disk with nothing beside it.
        let svg = chart
            .svg
            .trim_start_matches(|c| c != '<')
            .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
            .trim();
        let _ = writeln!(
            html,
            "<figure id=\"{name}\">{svg}<figcaption>{title} (<a href=\"{name}.svg\">SVG</a>, \
             <a href=\"{name}.png\">PNG</a>)</figcaption></figure>",
            name = chart.name,
            title = html_escape(&chart.title),
        );
        let _ = writeln!(
            md,
            "### {}\n\n![{}]({}.png)\n",
            chart.title, chart.name, chart.name
        );
    }
    html.push_str("<h2>Syscall classes</h2>\n");
    md.push_str("## Syscall classes\n\n");
    html_table(&mut html, class_table(runs));
    md_table(&mut md, class_table(runs));
    html.push_str("<h2>Runs</h2>\n");
    md.push_str("## Runs\n\n");
    html_table(&mut html, runs_table(runs));
    md_table(&mut md, runs_table(runs));
    html.push_str("</body></html>\n");

    for (name, text) in [
        ("index.html", html),
        ("report.md", md),
        ("results.csv", csv(runs)),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).map_err(written(&path))?;
        paths.push(path);
    }
    Ok(paths)
}
