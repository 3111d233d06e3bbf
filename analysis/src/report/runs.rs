//! Results files as runs of a report: loading them, putting them in catalogue order, labelling
//! them, and the parameter an experiment swept.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use super::ReportError;
use crate::{
    chart::{Series, color_of},
    models,
    results::{LoadError, Results, TargetKind},
    run::RunInfo,
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

    /// The run as a chart series: its label, marked when requests failed (a server that serves
    /// one connection and lets the others time out has fine latencies), in its model's colour.
    pub fn series(&self) -> Series {
        let label = match self.failed_requests() {
            0 => self.label.clone(),
            n => format!("{} ({n} failed requests)", self.label),
        };
        let color = match self.info() {
            Some(info) => color_of(&info.workload.label()),
            None => color_of(&self.label),
        };
        Series { label, color }
    }
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
/// connection counts, then the file name.
fn label_runs(runs: &mut [Run]) {
    for run in runs.iter_mut() {
        run.label = match run.info() {
            Some(info) => info.workload.label(),
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
    let differs = |label: &str, axis: Axis| {
        runs.iter()
            .filter(|r| r.label == label)
            .filter_map(|r| r.info().map(|i| axis.value(i)))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    };
    let (by_c, by_idle): (Vec<bool>, Vec<bool>) = labels
        .iter()
        .map(|l| {
            (
                differs(l, Axis::Connections),
                differs(l, Axis::IdleConnections),
            )
        })
        .unzip();
    for (i, run) in runs.iter_mut().enumerate() {
        if dups[i]
            && let Some(info) = run.info()
        {
            let mut label = info.workload.label();
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
                for info in workloads.iter().filter_map(|r| r.info()) {
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

/// Runs at the largest value of `axis` for their model: one run per model for the charts that
/// compare models.
pub fn at_largest<'a>(workloads: &[&'a Run], axis: Axis) -> Vec<&'a Run> {
    workloads
        .iter()
        .filter(|r| {
            let Some(info) = r.info() else {
                return false;
            };
            let largest = workloads
                .iter()
                .filter_map(|o| o.info())
                .filter(|o| o.workload.label() == info.workload.label())
                .map(|o| axis.value(o))
                .max();
            Some(axis.value(info)) == largest
        })
        .copied()
        .collect()
}

/// Parameters that differ between `netpoll run` results: charts that compare runs say so.
pub fn mixed_parameters(runs: &[&Run], skip: Option<Axis>) -> Option<String> {
    let infos: Vec<&RunInfo> = runs.iter().filter_map(|r| r.info()).collect();
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
            i.workload.server.disk_read.to_string()
        }),
        ("rate", None, |i| {
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
