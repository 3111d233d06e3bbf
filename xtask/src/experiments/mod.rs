//! `cargo xtask experiments`: the experiment suite declared in `xtask/experiments.toml`.
//!
//! Each experiment is a question with parameters ([`suite`]); each of its runs is one
//! `netpoll run` writing a results file ([`plan`], [`runner`]). Every experiment gets a report
//! (charts, tables, a sentence generated from the data), and the suite an index and a manifest
//! of everything needed to reproduce it ([`report`]).

mod calibration;
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

/// Runs per configuration when `--repeat` is not given. Chosen from measurements on 2 cores:
/// at an equal time budget, 8 runs of 0.5 s gave tighter intervals than 5 of 1 s (and 3 of
/// 2 s cannot give a 95 % interval at all: bootstrap intervals need about 5 samples to cover
/// the truth at their nominal rate); with 6, the full suite takes about 18 minutes.
pub const DEFAULT_REPEAT: usize = 6;
/// The same for `--quick`, which must finish within 4 minutes.
pub const QUICK_REPEAT: usize = 5;

#[derive(clap::Args)]
pub struct Options {
    /// The short suite CI runs (at most 4 minutes): fewer models and values, shorter runs.
    #[arg(long)]
    pub quick: bool,
    /// Run only this experiment (after the calibration).
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Where to write results (default: target/experiments/<unix time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Runs per configuration, interleaved (A B C A B C ...); figures are their medians with
    /// 95 % intervals, and findings are stated only beyond the noise [default: 6, --quick: 5].
    #[arg(long, value_name = "N")]
    pub repeat: Option<usize>,
    /// Run only the A/A calibration: one configuration against itself, the noise floor.
    #[arg(long)]
    pub calibrate: bool,
    /// Run the suite declared in this file (same format as xtask/experiments.toml).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Do not pin servers and load generators to disjoint CPUs.
    #[arg(long)]
    pub no_pin: bool,
}

/// Runs the suite; returns the output directory.
pub fn experiments(opts: Options) -> Result<PathBuf> {
    let root = workspace_root()?;
    let file = opts
        .file
        .clone()
        .unwrap_or_else(|| root.join("xtask/experiments.toml"));
    let mut suite = suite::load(&file)?;
    if let Some(only) = &opts.only {
        let names: Vec<&str> = suite.experiment.iter().map(|e| e.name.as_str()).collect();
        if !names.contains(&only.as_str()) {
            bail!(
                "unknown experiment {only:?}; the experiments are: {}",
                names.join(", ")
            );
        }
        suite.experiment.retain(|e| &e.name == only);
    } else {
        // Long experiments run only when named.
        suite = suite.without_long();
    }
    if opts.calibrate {
        suite.experiment.clear();
    }
    let repeat = opts.repeat.unwrap_or(if opts.quick {
        QUICK_REPEAT
    } else {
        DEFAULT_REPEAT
    });
    if repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if opts.quick {
        suite = suite.quick();
    }
    setup::test_prerequisites()?;
    let servers = suite.servers_used();
    let mut packages: Vec<&str> = servers.iter().map(|s| s.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    setup::apt_install(&packages)?;
    if !is_root() {
        bail!(
            "the experiments load BPF programs: run as root (e.g. `sudo -E cargo xtask experiments`)"
        );
    }
    let netpoll = release_netpoll()?;
    let out = match &opts.out {
        Some(out) => out.clone(),
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            root.join("target/experiments").join(stamp.to_string())
        }
    };
    // Third-party servers' files rendered (each with a free port) and built once; removed at
    // the end. In the temporary directory: some servers read them as an unprivileged user.
    let prepared = analysis::servers::prepare(
        &root.join("xtask/servers"),
        &std::env::temp_dir().join(format!("netpoll-servers-{}", std::process::id())),
        &servers,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let calibration = suite.calibration.as_experiment();
    let all: Vec<&suite::Experiment> = std::iter::once(&calibration)
        .chain(&suite.experiment)
        .collect();
    for e in &all {
        let dir = out.join(&e.name).join("runs");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let placement = if opts.no_pin {
        plan::Placement::default()
    } else {
        let threads = suite
            .experiment
            .iter()
            .map(|e| e.client_threads)
            .max()
            .unwrap_or(1);
        plan::Placement::disjoint(&analysis::workload::allowed_cpus(), threads)
    };
    // The calibration first (its runs are its repeats), then the experiments, interleaved.
    let mut planned = plan::plan(
        std::slice::from_ref(&calibration),
        suite.calibration.runs,
        &out,
        &placement,
        None,
    );
    planned.extend(plan::plan(
        &suite.experiment,
        repeat,
        &out,
        &placement,
        Some(&prepared),
    ));
    eprintln!(
        "xtask: A/A calibration ({} runs) and {} experiment(s), {} runs in all ({} per configuration), about {:.0} s{}; {}; results in {}",
        suite.calibration.runs,
        suite.experiment.len(),
        planned.len(),
        repeat,
        planned.iter().map(|r| r.seconds).sum::<f64>(),
        if opts.quick { " (--quick)" } else { "" },
        placement.describe(),
        out.display()
    );
    let interrupted = runner::run_all(&netpoll, &mut planned)?;
    let sentences = report::write(
        &netpoll,
        &report::Suite {
            calibration: &suite.calibration,
            experiments: &suite.experiment,
            servers: &servers,
            planned: &planned,
            out: &out,
            quick: opts.quick,
            repeat,
            placement: &placement,
            file: &file,
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
    fn every_declared_server_is_installed_for_the_tests() {
        let root = workspace_root().expect("root");
        let suite = suite::load(&root.join("xtask/experiments.toml")).expect("suite");
        for s in &suite.server {
            assert!(
                setup::TEST_PACKAGES.contains(&s.package.as_str()),
                "{}: package {} is not in TEST_PACKAGES",
                s.name,
                s.package
            );
        }
    }

    #[test]
    fn the_checked_in_suite_is_valid_and_fits_the_time_limits() {
        let root = workspace_root().expect("root");
        let suite = suite::load(&root.join("xtask/experiments.toml")).expect("suite");
        let names: Vec<&str> = suite.experiment.iter().map(|e| e.name.as_str()).collect();
        for expected in [
            "concurrency",
            "idle-connections",
            "disk-io",
            "completion-vs-readiness",
            "go-style-scheduling",
            "scheduling",
            "third-party",
            "kernel-bypass",
            "kernel-bypass-rates",
            "go-inside",
            "go-inside-2p",
            "go-inside-disk",
            "go-inside-exact",
            "event-loop",
            "event-loop-servers",
            "uring-paths",
            "disk-io-cold",
        ] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        // Runs, and the reports (about 1 s per experiment), within the limits with room to
        // spare for the build: 23 minutes in all, 5 for --quick (measured with the three
        // go-inside experiments: 17.8 and about 4; go-inside-exact and the two event-loop
        // experiments add 84 and 20 runs, planned at 1.9 and 0.4 minutes).
        let seconds = |suite: &suite::Suite, repeat: usize| -> f64 {
            let placement = plan::Placement::default();
            let calibration = suite.calibration.as_experiment();
            let mut runs = plan::plan(
                &[calibration],
                suite.calibration.runs,
                Path::new("/x"),
                &placement,
                None,
            );
            runs.extend(plan::plan(
                &suite.experiment,
                repeat,
                Path::new("/x"),
                &placement,
                None,
            ));
            runs.iter().map(|p| p.seconds).sum::<f64>() + suite.experiment.len() as f64
        };
        let suite = suite.without_long();
        let full = seconds(&suite, DEFAULT_REPEAT);
        let quick = seconds(&suite.clone().quick(), QUICK_REPEAT);
        eprintln!("planned: full {full:.0} s, quick {quick:.0} s");
        // disk-io-cold and uring-paths add 24 + 12 runs (10 + 6 quick).
        assert!(full <= 23.0 * 60.0, "full suite planned at {full} s");
        assert!(quick <= 300.0, "quick suite planned at {quick} s");
    }
}
