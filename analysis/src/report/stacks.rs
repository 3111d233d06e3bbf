//! The stacks view in a report (`--stacks`): for each run that has it, the heaviest stacks of
//! each class as a table, and links to the flame graphs and folded stacks written beside the
//! report (`stacks/`, or `stacks/<run>/` when several runs have stacks).

use std::path::{Path, PathBuf};

use super::{Block, Link, ReportError, Run, Table};
use crate::{chart::fmt_ns, stacks::Weight};

/// Stacks listed per class, and frames shown per stack (innermost first).
const STACKS_PER_CLASS: usize = 5;
const FRAMES_SHOWN: usize = 8;

/// The runs with stacks and the directory (relative to the report) of each one's files.
fn with_stacks(runs: &[Run]) -> Vec<(&Run, String)> {
    let runs: Vec<&Run> = runs.iter().filter(|r| r.results.stacks.is_some()).collect();
    let several = runs.len() > 1;
    runs.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let dir = if several {
                format!("stacks/{}", i + 1)
            } else {
                "stacks".to_string()
            };
            (r, dir)
        })
        .collect()
}

fn title(run: &Run) -> String {
    if run.label.is_empty() {
        run.path.display().to_string()
    } else {
        run.label.clone()
    }
}

/// Writes every run's folded stacks and flame graphs under `dir`.
pub fn write(dir: &Path, runs: &[Run]) -> Result<Vec<PathBuf>, ReportError> {
    let mut paths = Vec::new();
    for (run, sub) in with_stacks(runs) {
        let Some(stacks) = &run.results.stacks else {
            continue;
        };
        let into = dir.join(&sub);
        let written = stacks
            .write(&into, &title(run))
            .map_err(|error| ReportError::Write {
                path: into.display().to_string(),
                error,
            })?;
        paths.extend(written.into_iter().map(|f| into.join(f)));
    }
    Ok(paths)
}

/// The report's blocks: per run, per class, a linked heading and the top stacks.
pub fn blocks(runs: &[Run]) -> Vec<Block> {
    let mut blocks = Vec::new();
    for (run, dir) in with_stacks(runs) {
        let Some(stacks) = &run.results.stacks else {
            continue;
        };
        blocks.push(Block::Heading {
            text: format!("Call stacks: {}", title(run)),
            link: None,
        });
        blocks.push(Block::Paragraph {
            lead: None,
            text: format!(
                "Where the measured calls were made (--stacks): per syscall class, the stacks with \
                 the most time inside the calls, innermost frame first. The flame graphs (SVG, \
                 interactive: click to zoom, Ctrl-F to search) and the folded stacks for \
                 flamegraph.pl, inferno, speedscope and Grafana are in {dir}/: \
                 CLASS.WEIGHT.svg and .folded, weighed by {}.",
                stacks
                    .weights()
                    .iter()
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        for note in &stacks.notes {
            blocks.push(Block::Note(note.clone()));
        }
        if stacks.lost.total() > 0 {
            blocks.push(Block::Note(format!(
                "{} calls have no stack ({} stack map collisions, {} not walked, {} with the \
                 stack table full)",
                stacks.lost.total(),
                stacks.lost.collisions,
                stacks.lost.unwalked,
                stacks.lost.table_full
            )));
        }
        for class in stacks.classes() {
            let svg = format!("{dir}/{class}.{}.svg", Weight::LatencyNs.name());
            blocks.push(Block::Heading {
                text: format!("{class}: flame graph of the time inside the calls"),
                link: Some(Link {
                    html: svg.clone(),
                    markdown: svg,
                }),
            });
            blocks.push(Block::Table(class_table(stacks, &class)));
        }
    }
    blocks
}

fn class_table(stacks: &crate::stacks::Stacks, class: &str) -> Table {
    let mut header = vec!["time inside", "calls", "mean", "errors"];
    if stacks.sched {
        header.extend(["on CPU", "blocked", "waiting for a CPU"]);
    }
    header.push("stack (innermost first)");
    let mut table = Table::new(&format!("Top stacks of {class}"), &header);
    let of_class: Vec<_> = stacks.stacks.iter().filter(|s| s.class == class).collect();
    for s in of_class.iter().take(STACKS_PER_CLASS) {
        let mut row = vec![
            fmt_ns(s.latency_sum_ns as f64),
            s.calls.to_string(),
            fmt_ns(s.latency_sum_ns as f64 / s.calls.max(1) as f64),
            if s.eagain > 0 {
                format!("{} ({} EAGAIN)", s.errors, s.eagain)
            } else {
                s.errors.to_string()
            },
        ];
        if let Some(x) = s.sched {
            row.extend([x.on_cpu_ns, x.blocked_ns, x.runq_ns].map(|v| fmt_ns(v as f64)));
        }
        let mut frames: Vec<&str> = crate::stacks::innermost_first(s)
            .take(FRAMES_SHOWN)
            .collect();
        if s.frames.len() > FRAMES_SHOWN {
            frames.push("…");
        }
        row.push(frames.join(" ← "));
        table.rows.push(row);
    }
    if of_class.len() > STACKS_PER_CLASS {
        table.title = format!(
            "Top stacks of {class} ({} of {}; all in the flame graph)",
            STACKS_PER_CLASS,
            of_class.len()
        );
    }
    table
}
