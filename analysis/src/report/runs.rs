//! Results files as runs of a report: loading them, putting them in catalogue order, labelling
//! them, and the parameter an experiment swept.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use super::ReportError;
use crate::{
    Histogram,
    chart::{Series, color_of},
    go::GoRuntime,
    models,
    results::{Class, LoadError, Results, SyscallStats, TargetKind},
    run::RunInfo,
    stats::{self, Estimate},
};

/// A results file and the label its series carry in charts.
#[derive(Debug, Clone)]
pub struct Run {
    pub path: PathBuf,
    pub label: String,
    pub results: Results,
}

impl Run {
    /// A run of results already in memory (`path`: where they were, or will be, written).
    pub fn new(path: &Path, results: Results) -> Run {
        Run {
            path: path.to_path_buf(),
            label: String::new(),
            results,
        }
    }

    pub fn info(&self) -> Option<&RunInfo> {
        self.results.run.as_ref()
    }

    /// Requests that failed (errors and timeouts), for `netpoll run` results.
    pub fn failed_requests(&self) -> u64 {
        self.info().map_or(0, |i| i.load.errors.total())
    }

    /// Connections that got no reply in the window.
    pub fn starved_connections(&self) -> u64 {
        self.info().map_or(0, |i| i.load.starved_connections)
    }

    /// What makes runs repeats of one configuration: the workload and the load, not the
    /// address, the times or the outcome. A profile is a configuration of its own.
    pub fn config_key(&self) -> String {
        match self.info() {
            Some(i) => {
                let s = &i.workload.server;
                let l = &i.load;
                format!(
                    "{} payload={} think={} disk={}{} threads={} workers={} c={} idle={} rate={:?} t={}",
                    i.workload.label(),
                    s.payload,
                    s.think_us,
                    s.disk_read,
                    if s.cold_disk { " cold" } else { "" },
                    s.threads,
                    s.processes(),
                    l.connections,
                    l.idle_connections,
                    l.rate,
                    l.threads
                )
            }
            None => format!("profile {}", self.path.display()),
        }
    }
}

/// One configuration and its repeated runs: what charts, tables and sentences compare.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    pub label: String,
    pub runs: Vec<&'a Run>,
}

impl<'a> Cell<'a> {
    /// The configuration's parameters (the same in every repeat), for `netpoll run` results.
    pub fn info(&self) -> Option<&'a RunInfo> {
        self.runs.first()?.info()
    }

    /// A figure of every repeat.
    pub fn values(&self, f: impl Fn(&RunInfo) -> f64) -> Vec<f64> {
        self.runs.iter().filter_map(|r| r.info()).map(f).collect()
    }

    /// A figure's median over the repeats, with its interval.
    pub fn estimate(&self, f: impl Fn(&RunInfo) -> f64) -> Estimate {
        stats::estimate(&self.values(f))
    }

    /// Requests that failed, over every repeat.
    pub fn failed_requests(&self) -> u64 {
        self.runs.iter().map(|r| r.failed_requests()).sum()
    }

    /// Most connections starved in one repeat.
    pub fn starved_connections(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.starved_connections())
            .max()
            .unwrap_or(0)
    }

    /// What went wrong for the clients, for legends: `(30 failed requests, 99 connections
    /// starved)`, or nothing.
    pub fn trouble(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.failed_requests() {
            0 => {}
            n => parts.push(format!("{n} failed requests")),
        }
        match self.starved_connections() {
            0 => {}
            n => parts.push(format!("{n} connections starved")),
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// A syscall class over every repeat (histograms merged).
    pub fn class(&self, class: Class) -> Option<SyscallStats> {
        let mut rows = self.runs.iter().filter_map(|r| r.results.class(class));
        let mut total = rows.next()?.clone();
        rows.for_each(|r| total.merge(r));
        Some(total)
    }

    /// A figure of the Go view (`--go`) of every repeat that has one.
    pub fn go_values(&self, f: impl Fn(&GoRuntime) -> f64) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.results.go.as_ref())
            .map(f)
            .collect()
    }

    /// Client-side request latency over every repeat.
    pub fn request_latency(&self) -> Option<Histogram> {
        let mut hs = self
            .runs
            .iter()
            .filter_map(|r| Some(&r.info()?.load.latency_ns));
        let mut total = hs.next()?.clone();
        hs.for_each(|h| total.merge(h));
        Some(total)
    }

    /// The configuration as a chart series: its label, marked when requests failed (a server
    /// that serves one connection and lets the others time out has fine latencies), in its
    /// model's colour.
    pub fn series(&self) -> Series {
        let label = match self.trouble() {
            None => self.label.clone(),
            Some(trouble) => format!("{} ({trouble})", self.label),
        };
        let color = match self.info() {
            Some(info) => color_of(&info.workload.label()),
            None => color_of(&self.label),
        };
        Series { label, color }
    }

    /// `5 runs`, `1 run`.
    pub fn repeats(&self) -> String {
        match self.runs.len() {
            1 => "1 run".into(),
            n => format!("{n} runs"),
        }
    }
}

/// The configurations of arranged runs, in their order, each with its repeats.
pub fn cells(runs: &[Run]) -> Vec<Cell<'_>> {
    let mut cells: Vec<(String, Cell)> = Vec::new();
    for run in runs {
        let key = run.config_key();
        match cells.iter_mut().find(|(k, _)| *k == key) {
            Some((_, cell)) => cell.runs.push(run),
            None => cells.push((
                key,
                Cell {
                    label: run.label.clone(),
                    runs: vec![run],
                },
            )),
        }
    }
    cells.into_iter().map(|(_, c)| c).collect()
}

/// Loads results files; a directory stands for the `*.json` files in it.
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
        runs.push(Run::new(&path, results));
    }
    Ok(arrange(runs))
}

/// Puts runs in catalogue order, then by connections and idle connections (numerically), the
/// rest after them as given; and labels them.
pub fn arrange(mut runs: Vec<Run>) -> Vec<Run> {
    let key = |r: &Run| match r.info() {
        Some(i) => (
            models::rank(&i.workload.label()).unwrap_or(usize::MAX - 1),
            i.load.connections,
            i.load.idle_connections,
        ),
        None => (usize::MAX, 0, 0),
    };
    // A stable sort: equal keys keep their order (file names, repeats).
    runs.sort_by_key(key);
    label_runs(&mut runs);
    runs
}

/// Labels: the model (for `netpoll run` results), else what was profiled; made unique with the
/// connection counts, then the file name. Repeats of one configuration share their label.
fn label_runs(runs: &mut [Run]) {
    for run in runs.iter_mut() {
        run.label = match run.info() {
            Some(info) => info.workload.label(),
            None => profile_label(&run.results),
        };
    }
    // Duplicates (other configurations with the same label) are found before any is renamed,
    // so that every one of them is.
    let duplicated = |runs: &[Run]| -> Vec<bool> {
        runs.iter()
            .map(|r| {
                let key = r.config_key();
                runs.iter()
                    .any(|o| o.label == r.label && o.config_key() != key)
            })
            .collect()
    };
    // Name duplicates by what differs among them: connections, idle connections, or both.
    let dups = duplicated(runs);
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    let differs = |label: &str, axis: Axis| {
        runs.iter()
            .filter(|r| r.label == label)
            .filter_map(|r| r.info().map(|i| axis.value(i)))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    };
    let by_c: Vec<bool> = labels
        .iter()
        .map(|l| differs(l, Axis::Connections))
        .collect();
    let by_idle: Vec<bool> = labels
        .iter()
        .map(|l| differs(l, Axis::IdleConnections))
        .collect();
    let by_rate: Vec<bool> = labels.iter().map(|l| differs(l, Axis::Rate)).collect();
    for (i, run) in runs.iter_mut().enumerate() {
        if dups[i]
            && let Some(info) = run.info()
        {
            let mut label = info.workload.label();
            if by_c[i] || !(by_idle[i] || by_rate[i]) {
                label += &format!(" c={}", info.load.connections);
            }
            if by_idle[i] {
                label += &format!(" idle={}", info.load.idle_connections);
            }
            if by_rate[i] {
                label += &match info.load.rate {
                    Some(r) => format!(" {r}/s"),
                    None => " closed".into(),
                };
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

fn profile_label(r: &Results) -> String {
    let t = &r.target;
    match t.kind {
        TargetKind::Comm => t.comm.clone().unwrap_or_default(),
        TargetKind::Cgroup => t.cgroup.clone().unwrap_or_default(),
        TargetKind::Command => t.command.first().cloned().unwrap_or_default(),
        TargetKind::All => "every process".into(),
        TargetKind::Pid | TargetKind::Run => format!(
            "PID {}",
            t.pids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// The parameter an experiment varies within a model, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Connections,
    IdleConnections,
    /// The open-loop rate (0: closed loop).
    Rate,
}

impl Axis {
    pub fn value(self, info: &RunInfo) -> usize {
        match self {
            Axis::Connections => info.load.connections,
            Axis::IdleConnections => info.load.idle_connections,
            Axis::Rate => info.load.rate.map_or(0, |r| r as usize),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Axis::Connections => "connections",
            Axis::IdleConnections => "idle connections",
            Axis::Rate => "requests/s offered",
        }
    }

    /// The axis along which some model ran at several values: idle connections first.
    pub fn varied(cells: &[Cell]) -> Option<Axis> {
        [Axis::IdleConnections, Axis::Rate, Axis::Connections]
            .into_iter()
            .find(|&axis| {
                let mut seen: Vec<(String, usize)> = Vec::new();
                for info in cells.iter().filter_map(|c| c.info()) {
                    let v = (info.workload.label(), axis.value(info));
                    if !seen.contains(&v) {
                        seen.push(v);
                    }
                }
                seen.iter()
                    .any(|(m, v)| seen.iter().any(|(m2, v2)| m == m2 && v != v2))
            })
    }
}

/// Configurations at the largest value of `axis` for their model: one per model for the charts
/// that compare models.
pub fn at_largest<'a>(cells: &[Cell<'a>], axis: Axis) -> Vec<Cell<'a>> {
    cells
        .iter()
        .filter(|c| {
            let Some(info) = c.info() else {
                return false;
            };
            let largest = cells
                .iter()
                .filter_map(|o| o.info())
                .filter(|o| o.workload.label() == info.workload.label())
                .map(|o| axis.value(o))
                .max();
            Some(axis.value(info)) == largest
        })
        .cloned()
        .collect()
}

/// Parameters that differ between configurations: charts that compare them say so.
pub fn mixed_parameters(cells: &[Cell], skip: Option<Axis>) -> Option<String> {
    let infos: Vec<&RunInfo> = cells.iter().filter_map(|c| c.info()).collect();
    type Parameter = (&'static str, Option<Axis>, fn(&RunInfo) -> String);
    let parameters: [Parameter; 6] = [
        ("connections", Some(Axis::Connections), |i| {
            i.load.connections.to_string()
        }),
        ("payload (B)", None, |i| {
            i.workload.server.payload.to_string()
        }),
        ("think (µs)", None, |i| {
            i.workload.server.think_us.to_string()
        }),
        ("disk read (B)", None, |i| {
            let s = &i.workload.server;
            format!("{}{}", s.disk_read, if s.cold_disk { ", cold" } else { "" })
        }),
        ("rate", Some(Axis::Rate), |i| {
            i.load
                .rate
                .map_or("closed loop".into(), |r| format!("{r}/s"))
        }),
        ("idle connections", Some(Axis::IdleConnections), |i| {
            i.load.idle_connections.to_string()
        }),
    ];
    let differ: Vec<String> = parameters
        .iter()
        .filter(|(_, axis, _)| axis.is_none() || *axis != skip)
        .filter_map(|(name, _, value)| {
            let values: BTreeSet<String> = infos.iter().map(|i| value(i)).collect();
            (values.len() > 1).then(|| {
                format!(
                    "{name} {}",
                    values.into_iter().collect::<Vec<_>>().join("/")
                )
            })
        })
        .collect();
    (!differ.is_empty()).then(|| format!("mixed parameters: {}", differ.join("; ")))
}
