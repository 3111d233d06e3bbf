//! `cargo xtask experiments`: the experiment suite declared in `xtask/experiments.toml`.
//!
//! Each experiment is a question with parameters ([`suite`]); each of its runs is one
//! `netpoll run` writing a results file ([`plan`], [`runner`]). Every experiment gets a report
//! (charts, tables, a sentence generated from the data), and the suite an index and a manifest
//! of everything needed to reproduce it ([`report`]).

mod check;
mod plan;
mod report;
mod runner;
mod suite;

use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, bail};
pub use check::check_quick;
use xtask::{is_root, release_netpoll, workspace_root};

use crate::setup;

pub struct Options {
    pub quick: bool,
    pub only: Option<String>,
    pub out: Option<PathBuf>,
    pub repeat: usize,
}

/// Runs the suite; returns the output directory.
pub fn experiments(opts: Options) -> Result<PathBuf> {
    let root = workspace_root()?;
    let mut experiments = suite::load(&root.join("xtask/experiments.toml"))?;
    if let Some(only) = &opts.only {
        let names: Vec<&str> = experiments.iter().map(|e| e.name.as_str()).collect();
        if !names.contains(&only.as_str()) {
            bail!(
                "unknown experiment {only:?}; the experiments are: {}",
                names.join(", ")
            );
        }
        experiments.retain(|e| &e.name == only);
    }
    if opts.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if opts.quick {
        experiments = experiments
            .into_iter()
            .map(suite::Experiment::quick)
            .collect();
    }
    setup::test_prerequisites()?;
    if !is_root() {
        bail!(
            "the experiments load BPF programs: run as root (e.g. `sudo -E cargo xtask experiments`)"
        );
    }
    let netpoll = release_netpoll()?;
    let out = match opts.out {
        Some(out) => out,
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            root.join("target/experiments").join(stamp.to_string())
        }
    };
    for e in &experiments {
        let dir = out.join(&e.name).join("runs");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut planned = plan::plan(&experiments, opts.repeat, &out);
    eprintln!(
        "xtask: {} experiment(s), {} runs, about {:.0} s{}; results in {}",
        experiments.len(),
        planned.len(),
        planned.iter().map(|r| r.seconds).sum::<f64>(),
        if opts.quick { " (--quick)" } else { "" },
        out.display()
    );
    let interrupted = runner::run_all(&netpoll, &mut planned)?;
    let sentences = report::write(
        &netpoll,
        &report::Suite {
            experiments: &experiments,
            planned: &planned,
            out: &out,
            quick: opts.quick,
            repeat: opts.repeat,
        },
    )?;
    println!();
    for (name, sentence) in &sentences {
        println!("{name}: {sentence}\n");
    }
    println!("xtask: report: {}", out.join("index.html").display());
    if interrupted {
        bail!("interrupted: the report covers the runs that finished");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_checked_in_suite_is_valid_and_fits_the_time_limits() {
        let root = workspace_root().expect("root");
        let suite = suite::load(&root.join("xtask/experiments.toml")).expect("suite");
        let names: Vec<&str> = suite.iter().map(|e| e.name.as_str()).collect();
        for expected in [
            "concurrency",
            "idle-connections",
            "disk-io",
            "completion-vs-readiness",
            "go-style-scheduling",
        ] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        let seconds = |experiments: &[suite::Experiment]| -> f64 {
            plan::plan(experiments, 1, Path::new("/x"))
                .iter()
                .map(|p| p.seconds)
                .sum()
        };
        let full = seconds(&suite);
        let quick: Vec<suite::Experiment> =
            suite.into_iter().map(suite::Experiment::quick).collect();
        assert!(full <= 10.0 * 60.0, "full suite planned at {full} s");
        assert!(
            seconds(&quick) <= 120.0,
            "quick suite planned at {} s",
            seconds(&quick)
        );
    }
}
