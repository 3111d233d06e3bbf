//! Runs the plan, one `netpoll run` at a time, with a progress bar. A run that fails is recorded
//! with its error and the suite goes on; Ctrl-C stops after the current run.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::plan::{Planned, Status};

/// Runs every planned run with `netpoll`; returns whether the suite was interrupted.
pub fn run_all(netpoll: &Path, runs: &mut [Planned]) -> Result<bool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;
    let total: f64 = runs.iter().map(|r| r.seconds).sum();
    let bar = ProgressBar::new(total.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos:>4}/{len}s eta {eta:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let count = runs.len();
    for (i, planned) in runs.iter_mut().enumerate() {
        if planned.status == Status::BeyondLimit {
            continue;
        }
        if interrupted.load(Ordering::Relaxed) {
            planned.error = Some("the suite was interrupted before this run".into());
            continue;
        }
        bar.set_message(format!(
            "{} {} ({}/{count})",
            planned.experiment,
            planned.config(),
            i + 1
        ));
        run_one(netpoll, planned)?;
        if planned.status == Status::Failed {
            bar.println(format!(
                "xtask: {} {}: {}",
                planned.experiment,
                planned.config(),
                planned.error.as_deref().unwrap_or_default()
            ));
        }
        bar.inc(planned.seconds.round() as u64);
    }
    bar.finish_and_clear();
    eprintln!(
        "xtask: runs took {:.0} s; writing reports",
        started.elapsed().as_secs_f64()
    );
    Ok(interrupted.load(Ordering::Relaxed))
}

fn run_one(netpoll: &Path, planned: &mut Planned) -> Result<()> {
    let output = Command::new(netpoll)
        .args(&planned.args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", netpoll.display()))?;
    let last_error = String::from_utf8_lossy(&output.stderr)
        .lines()
        .rfind(|l| l.contains("error"))
        .map(str::to_string);
    (planned.status, planned.error) = match output.status.code() {
        Some(0) => (Status::Ok, None),
        Some(130 | 143) => (Status::Interrupted, None),
        _ => (
            Status::Failed,
            Some(last_error.unwrap_or_else(|| format!("netpoll run: {}", output.status))),
        ),
    };
    Ok(())
}
