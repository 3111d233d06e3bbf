//! The suite's output: each experiment's report, drawn by the release `netpoll report` (charts
//! take seconds there, minutes in this unoptimised binary), and the suite's index page, README
//! and manifest, written with the same document writers as the reports.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use analysis::report::{self, Block, Document, Link, html, markdown};
use anyhow::{Context as _, Result};

use super::{
    calibration::NoiseFloor,
    plan::{Placement, Planned, Status},
    suite::{CALIBRATION, Calibration, Experiment},
};
use xtask::run;

/// What the suite did, for its index and manifest.
pub struct Suite<'a> {
    pub calibration: &'a Calibration,
    pub experiments: &'a [Experiment],
    /// The third-party servers they ran.
    pub servers: &'a [&'a analysis::servers::Server],
    pub planned: &'a [Planned],
    pub out: &'a Path,
    pub quick: bool,
    pub repeat: usize,
    pub placement: &'a Placement,
    /// The suite file.
    pub file: &'a Path,
}

/// Writes every experiment's report, then the index, README and manifest. Returns each
/// experiment's generated sentence.
pub fn write(netpoll: &Path, suite: &Suite) -> Result<Vec<(String, String)>> {
    let facts = Facts::gather();
    let mut index = Document::new(&format!(
        "netpoll experiments{}",
        if suite.quick { " (--quick)" } else { "" }
    ));
    index.paragraph(
        None,
        &format!(
            "netpoll {} at commit {}; kernel {}; {} ({} CPUs); {} runs per configuration, interleaved; {}. The parameters are in manifest.json.",
            env!("CARGO_PKG_VERSION"),
            facts.commit,
            facts.kernel,
            facts.cpu_model,
            facts.cpus,
            suite.repeat,
            suite.placement.describe(),
        ),
    );
    let noise = calibration_report(netpoll, suite)?;
    index.blocks.push(Block::Heading {
        text: "Noise floor (A/A calibration)".into(),
        link: Some(Link {
            html: format!("{CALIBRATION}/index.html"),
            markdown: format!("{CALIBRATION}/report.md"),
        }),
    });
    match &noise {
        Some(noise) => index.paragraph(Some("Measured."), &noise.sentence()),
        None => index.blocks.push(Block::Note(
            "The calibration did not finish 3 runs: the noise floor is unknown.".into(),
        )),
    }
    let mut sentences = Vec::new();
    for e in suite.experiments {
        let mine: Vec<&Planned> = suite
            .planned
            .iter()
            .filter(|p| p.experiment == e.name)
            .collect();
        let sentence = experiment_report(netpoll, e, &mine, &suite.out.join(&e.name))?;
        let ok = mine.iter().filter(|p| p.status == Status::Ok).count();
        index.blocks.push(Block::Heading {
            text: e.name.clone(),
            link: Some(Link {
                html: format!("{}/index.html", e.name),
                markdown: format!("{}/report.md", e.name),
            }),
        });
        index.paragraph(Some("Question."), &e.question);
        index.paragraph(Some("Measured."), &sentence);
        index.paragraph(
            None,
            &format!(
                "{ok} of {} runs finished{}.",
                mine.len(),
                if ok < mine.len() {
                    " (see the experiment's report for what failed)"
                } else {
                    ""
                }
            ),
        );
        sentences.push((e.name.clone(), sentence));
    }
    report::write_file(&suite.out.join("index.html"), |w| html::write(w, &index))?;
    report::write_file(&suite.out.join("README.md"), |w| markdown::write(w, &index))?;
    let manifest = serde_json::json!({
        "schema": "netpoll-experiments/1",
        "netpoll_version": env!("CARGO_PKG_VERSION"),
        "git_commit": facts.commit,
        "kernel": facts.kernel,
        "cpu_model": facts.cpu_model,
        "cpus": facts.cpus,
        "quick": suite.quick,
        "repeat": suite.repeat,
        "suite_file": suite.file,
        "placement": suite.placement,
        "calibration": suite.calibration,
        "noise_floor": noise,
        "experiments": suite.experiments,
        "servers": suite.servers,
        "runs": suite.planned,
    });
    fs::write(
        suite.out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    Ok(sentences)
}

/// The calibration's report, and the noise floor it measured.
fn calibration_report(netpoll: &Path, suite: &Suite) -> Result<Option<NoiseFloor>> {
    let experiment = suite.calibration.as_experiment();
    let mine: Vec<&Planned> = suite
        .planned
        .iter()
        .filter(|p| p.experiment == CALIBRATION)
        .collect();
    experiment_report(netpoll, &experiment, &mine, &suite.out.join(CALIBRATION))?;
    let files: Vec<&Path> = mine
        .iter()
        .filter(|p| p.status == Status::Ok)
        .map(|p| p.file.as_path())
        .collect();
    NoiseFloor::measure(
        suite.calibration,
        &files,
        suite.repeat,
        suite.placement.describe(),
    )
}

/// One experiment's report in `dir`; returns its sentence.
fn experiment_report(
    netpoll: &Path,
    e: &Experiment,
    mine: &[&Planned],
    dir: &Path,
) -> Result<String> {
    // The experiment's own caveat first, then what went wrong.
    let mut notes: Vec<String> = e.note.iter().cloned().collect();
    notes.extend(mine.iter().filter(|p| p.status == Status::Failed).map(|p| {
        format!(
            "failed: {} (repeat {}): {}",
            p.config(),
            p.repeat,
            p.error.as_deref().unwrap_or("unknown error")
        )
    }));
    // Each limit once: where a model stopped, and why.
    let mut limits: Vec<String> = Vec::new();
    for p in mine.iter().filter(|p| p.status == Status::BeyondLimit) {
        let finding = format!(
            "limit: {} (not run at {} connections)",
            p.error.as_deref().unwrap_or_default(),
            p.connections + p.idle_connections
        );
        let model = format!("limit: {} stops", p.model);
        if !limits.iter().any(|l| l.starts_with(&model)) {
            limits.push(finding);
        }
    }
    notes.extend(limits);
    let not_run = mine.iter().filter(|p| p.status == Status::NotRun).count();
    if not_run > 0 {
        notes.push(format!(
            "{not_run} run(s) not made: the suite was interrupted"
        ));
    }
    let files: Vec<PathBuf> = mine
        .iter()
        .filter(|p| p.status == Status::Ok)
        .map(|p| p.file.clone())
        .collect();
    let title = format!("Experiment: {}", e.name);
    if files.is_empty() {
        let mut doc = Document::new(&title);
        doc.paragraph(Some("Question."), &e.question);
        doc.paragraph(None, "No run of this experiment finished.");
        doc.blocks.extend(notes.into_iter().map(Block::Note));
        report::write_document(dir, &doc)?;
        return Ok("no run of this experiment finished.".into());
    }
    let mut cmd = Command::new(netpoll);
    cmd.arg("report").args(&files).arg("--out").arg(dir).args([
        "--title",
        &title,
        "--question",
        &e.question,
    ]);
    for note in &notes {
        cmd.args(["--note", note]);
    }
    run(&mut cmd).with_context(|| format!("writing the report of {}", e.name))?;
    // The same sentence the report states (the same code, from the same files).
    let runs = report::load(&files)?;
    Ok(report::summary(&runs).unwrap_or_default())
}

/// What reproducing a run needs to know about the machine and the code.
struct Facts {
    commit: String,
    kernel: String,
    cpu_model: String,
    cpus: usize,
}

impl Facts {
    fn gather() -> Facts {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let commit = match git(&["rev-parse", "HEAD"]) {
            Some(c) => {
                let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
                if dirty { format!("{c} (modified)") } else { c }
            }
            None => "unknown (not a git checkout)".into(),
        };
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpu_model = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Facts {
            commit,
            kernel,
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
