//! `cargo xtask experiments`: the experiment suite declared in `xtask/experiments.toml`.
//!
//! Each experiment is a question with parameters; each of its runs is one `netpoll run` (server,
//! probes and load generator) writing a results file. Runs are interleaved across repeats, so
//! drift on a noisy machine spreads over every configuration. A run that fails is recorded with
//! its error and the suite goes on; Ctrl-C stops after the current run and still writes the
//! reports of what finished. Every experiment gets a report (charts, tables, a sentence
//! generated from the data), and the suite an index and a manifest of everything needed to
//! reproduce it.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use analysis::report::{self, Heading, Run};
use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::{bench::workspace_root, cargo, run, setup};

/// io-uring with --sqpoll, as experiments name it beside the models of `netpoll models`.
const SQPOLL: &str = "io-uring+sqpoll";

fn known_model(name: &str) -> bool {
    name == SQPOLL || analysis::chart::MODEL_ORDER.contains(&name)
}

#[derive(Debug, Deserialize)]
struct Suite {
    experiment: Vec<Experiment>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub question: String,
    pub models: Vec<String>,
    pub connections: Vec<usize>,
    #[serde(default = "no_idle")]
    pub idle_connections: Vec<usize>,
    pub duration: f64,
    pub warmup: f64,
    #[serde(default = "default_payload")]
    pub payload: usize,
    #[serde(default)]
    pub think_us: u64,
    #[serde(default)]
    pub disk_read: usize,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default = "one")]
    pub client_threads: usize,
    #[serde(default, skip_serializing)]
    quick: Option<Quick>,
}

/// What `--quick` changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quick {
    models: Option<Vec<String>>,
    connections: Option<Vec<usize>>,
    idle_connections: Option<Vec<usize>>,
    duration: Option<f64>,
    warmup: Option<f64>,
}

fn no_idle() -> Vec<usize> {
    vec![0]
}
fn default_payload() -> usize {
    64
}
fn one() -> usize {
    1
}

impl Experiment {
    fn quick(mut self) -> Experiment {
        if let Some(q) = self.quick.take() {
            self.models = q.models.unwrap_or(self.models);
            self.connections = q.connections.unwrap_or(self.connections);
            self.idle_connections = q.idle_connections.unwrap_or(self.idle_connections);
            self.duration = q.duration.unwrap_or(self.duration);
            self.warmup = q.warmup.unwrap_or(self.warmup);
        }
        self
    }

    fn check(&self) -> Result<()> {
        for model in &self.models {
            if !known_model(model) {
                bail!(
                    "experiment {}: unknown model {model:?}; the models are: {}, {SQPOLL}",
                    self.name,
                    analysis::chart::MODEL_ORDER.join(", ")
                );
            }
        }
        if self.models.is_empty() || self.connections.is_empty() || self.idle_connections.is_empty()
        {
            bail!(
                "experiment {}: models, connections and idle_connections must not be empty",
                self.name
            );
        }
        if self.duration <= 0.0 || self.warmup < 0.0 {
            bail!(
                "experiment {}: duration must be > 0, warmup >= 0",
                self.name
            );
        }
        Ok(())
    }
}

/// The suite file, checked.
pub fn load_suite(path: &Path) -> Result<Vec<Experiment>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let suite: Suite = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    for (i, e) in suite.experiment.iter().enumerate() {
        e.check()?;
        if suite.experiment[..i].iter().any(|o| o.name == e.name) {
            bail!(
                "{}: experiment {} is declared twice",
                path.display(),
                e.name
            );
        }
    }
    Ok(suite.experiment)
}

/// One planned `netpoll run`.
#[derive(Debug, Clone, Serialize)]
struct Planned {
    experiment: String,
    model: String,
    connections: usize,
    idle_connections: usize,
    repeat: usize,
    file: PathBuf,
    #[serde(skip)]
    args: Vec<String>,
    #[serde(skip)]
    seconds: f64,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Planned {
    fn config(&self) -> String {
        format!(
            "{} c={} idle={}",
            self.model, self.connections, self.idle_connections
        )
    }
}

fn plan(experiments: &[Experiment], repeat: usize, out: &Path) -> Vec<Planned> {
    let mut runs = Vec::new();
    for r in 0..repeat {
        for e in experiments {
            for idle in &e.idle_connections {
                for c in &e.connections {
                    for model in &e.models {
                        let (name, sqpoll) = match model.strip_suffix("+sqpoll") {
                            Some(base) => (base, true),
                            None => (model.as_str(), false),
                        };
                        let file = out
                            .join(&e.name)
                            .join("runs")
                            .join(format!("{model}-c{c}-idle{idle}-r{}.json", r + 1));
                        let mut args: Vec<String> = [
                            "run",
                            "--model",
                            name,
                            "--quiet",
                            "--connections",
                            &c.to_string(),
                            "--idle-connections",
                            &idle.to_string(),
                            "--duration",
                            &e.duration.to_string(),
                            "--warmup",
                            &e.warmup.to_string(),
                            "--payload",
                            &e.payload.to_string(),
                            "--think-us",
                            &e.think_us.to_string(),
                            "--disk-read",
                            &e.disk_read.to_string(),
                            "--client-threads",
                            &e.client_threads.to_string(),
                            "--json",
                            &file.display().to_string(),
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                        if sqpoll {
                            args.push("--sqpoll".into());
                        }
                        if let Some(rate) = e.rate {
                            args.extend(["--rate".into(), rate.to_string()]);
                        }
                        runs.push(Planned {
                            experiment: e.name.clone(),
                            model: model.clone(),
                            connections: *c,
                            idle_connections: *idle,
                            repeat: r + 1,
                            file,
                            args,
                            // Start-up, probe loading, draining and shut-down: measured
                            // at about 1.7 s per run on 2 cores.
                            seconds: e.duration + e.warmup + 1.7,
                            status: "not run".into(),
                            error: None,
                        });
                    }
                }
            }
        }
    }
    runs
}

pub struct Options {
    pub quick: bool,
    pub only: Option<String>,
    pub out: Option<PathBuf>,
    pub repeat: usize,
}

/// Runs the suite; returns the output directory.
pub fn experiments(opts: Options) -> Result<PathBuf> {
    let root = workspace_root()?;
    let suite_file = root.join("xtask/experiments.toml");
    let mut experiments = load_suite(&suite_file)?;
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
        experiments = experiments.into_iter().map(Experiment::quick).collect();
    }
    setup::test_prerequisites()?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the experiments load BPF programs: run as root (e.g. `sudo -E cargo xtask experiments`)"
        );
    }
    run(cargo().args(["build", "--release", "--package", "netpoll-user"]))?;
    let netpoll = root.join("target/release/netpoll");
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

    let mut runs = plan(&experiments, opts.repeat, &out);
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;
    let total: f64 = runs.iter().map(|r| r.seconds).sum();
    eprintln!(
        "xtask: {} experiment(s), {} runs, about {:.0} s{}; results in {}",
        experiments.len(),
        runs.len(),
        total,
        if opts.quick { " (--quick)" } else { "" },
        out.display()
    );
    let bar = ProgressBar::new(total.ceil() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos:>4}/{len}s eta {eta:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let count = runs.len();
    for (i, planned) in runs.iter_mut().enumerate() {
        if interrupted.load(Ordering::Relaxed) {
            planned.status = "not run (interrupted)".into();
            continue;
        }
        bar.set_message(format!(
            "{} {} ({}/{count})",
            planned.experiment,
            planned.config(),
            i + 1
        ));
        let output = Command::new(&netpoll)
            .args(&planned.args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", netpoll.display()))?;
        let last_error = String::from_utf8_lossy(&output.stderr)
            .lines()
            .rfind(|l| l.contains("error"))
            .map(str::to_string);
        (planned.status, planned.error) = match output.status.code() {
            Some(0) => ("ok".into(), None),
            Some(130 | 143) => ("interrupted".into(), None),
            _ => (
                "failed".into(),
                Some(last_error.unwrap_or_else(|| format!("netpoll run: {}", output.status))),
            ),
        };
        if planned.status == "failed" {
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
    let summaries = write_reports(&experiments, &runs, &out, opts.quick, opts.repeat)?;
    println!();
    for (name, sentence) in &summaries {
        println!("{name}: {sentence}\n");
    }
    println!("xtask: report: {}", out.join("index.html").display());
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted: the report covers the runs that finished");
    }
    Ok(out)
}

/// Spread of repeated runs above which a figure is flagged as untrustworthy.
const MAX_SPREAD: f64 = 0.10;

/// Per experiment: the report of its runs (repeats reduced to the median-throughput one, spread
/// tabled); then the suite's index and manifest. Returns each experiment's sentence.
fn write_reports(
    experiments: &[Experiment],
    planned: &[Planned],
    out: &Path,
    quick: bool,
    repeat: usize,
) -> Result<Vec<(String, String)>> {
    let mut summaries = Vec::new();
    let mut index = String::new();
    let mut rows = Vec::new();
    for e in experiments {
        let mine: Vec<&Planned> = planned.iter().filter(|p| p.experiment == e.name).collect();
        let mut notes: Vec<String> = mine
            .iter()
            .filter(|p| p.status == "failed")
            .map(|p| {
                format!(
                    "failed: {} (repeat {}): {}",
                    p.config(),
                    p.repeat,
                    p.error.as_deref().unwrap_or("unknown error")
                )
            })
            .collect();
        let not_run = mine
            .iter()
            .filter(|p| p.status.starts_with("not run"))
            .count();
        if not_run > 0 {
            notes.push(format!(
                "{not_run} run(s) not made: the suite was interrupted"
            ));
        }
        // Results by configuration; repeats reduced to the median by throughput.
        let mut by_config: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        for p in mine.iter().filter(|p| p.status == "ok") {
            match report::load(std::slice::from_ref(&p.file)) {
                Ok(mut loaded) => by_config.entry(p.config()).or_default().append(&mut loaded),
                Err(err) => notes.push(format!("{}: {err}", p.config())),
            }
        }
        let mut spread_rows = Vec::new();
        let mut chosen = Vec::new();
        for (config, mut reps) in by_config {
            reps.sort_by(|a, b| throughput(a).total_cmp(&throughput(b)));
            if reps.len() > 1 {
                let t: Vec<f64> = reps.iter().map(throughput).collect();
                let mut p99: Vec<f64> = reps.iter().map(p99_ns).collect();
                p99.sort_by(f64::total_cmp);
                let median = |v: &[f64]| v[v.len() / 2];
                let spread = |v: &[f64]| (v[v.len() - 1] - v[0]) / median(v).max(1e-9);
                let flag = spread(&t) > MAX_SPREAD;
                if flag {
                    notes.push(format!(
                        "{config}: throughput varied by {:.0}% over {} repeats: do not trust small differences",
                        spread(&t) * 100.0,
                        reps.len()
                    ));
                }
                spread_rows.push(vec![
                    config.clone(),
                    format!("{:.0}", t[0]),
                    format!("{:.0}", median(&t)),
                    format!("{:.0}", t[t.len() - 1]),
                    format!("{:.1}%", spread(&t) * 100.0),
                    format!("{:.0}", p99[0] / 1e3),
                    format!("{:.0}", median(&p99) / 1e3),
                    format!("{:.0}", p99[p99.len() - 1] / 1e3),
                    if flag {
                        "spread too large".into()
                    } else {
                        "ok".into()
                    },
                ]);
            }
            let mid = reps.len() / 2;
            chosen.push(reps.swap_remove(mid));
        }
        // The same order and labels as `netpoll report` gives them.
        let runs = report::arrange(chosen);
        let mut heading = Heading {
            title: format!("Experiment: {}", e.name),
            question: Some(e.question.clone()),
            notes,
            ..Heading::default()
        };
        if !spread_rows.is_empty() {
            heading.tables.push((
                format!("Spread over {repeat} repeats (the report shows the median run)"),
                [
                    "configuration",
                    "req/s min",
                    "median",
                    "max",
                    "spread",
                    "p99 µs min",
                    "median",
                    "max",
                    "",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                spread_rows,
            ));
        }
        let dir = out.join(&e.name);
        let sentence = if runs.is_empty() {
            "no run of this experiment finished.".to_string()
        } else {
            report::summary(&runs).unwrap_or_default()
        };
        heading.sentence = Some(sentence.clone());
        if runs.is_empty() {
            fs::write(
                dir.join("index.html"),
                format!(
                    "<!DOCTYPE html><html><body><h1>Experiment: {}</h1><p>No run finished.</p><ul>{}</ul></body></html>\n",
                    e.name,
                    heading
                        .notes
                        .iter()
                        .map(|n| format!("<li>{}</li>", html(n)))
                        .collect::<String>()
                ),
            )?;
        } else {
            report::write(&dir, &runs, &heading)?;
        }
        let ok = mine.iter().filter(|p| p.status == "ok").count();
        let _ = writeln!(
            index,
            "<h2><a href=\"{n}/index.html\">{n}</a></h2>\n<p><b>Question.</b> {}</p>\n<p><b>Measured.</b> {}</p>\n<p>{ok} of {} runs finished{}.</p>",
            html(&e.question),
            html(&sentence),
            mine.len(),
            if ok < mine.len() {
                " (see the experiment's report for what failed)"
            } else {
                ""
            },
            n = e.name,
        );
        rows.push((e.name.clone(), sentence.clone()));
        summaries.push((e.name.clone(), sentence));
    }
    let facts = Facts::gather();
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>netpoll experiments</title>\
         <style>body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;color:#222}}</style></head><body>\n\
         <h1>netpoll experiments{}</h1>\n<p>netpoll {} at commit {}; kernel {}; {} ({} CPUs); {} repeat(s). \
         The parameters are in <a href=\"manifest.json\">manifest.json</a>.</p>\n{index}</body></html>\n",
        if quick { " (--quick)" } else { "" },
        env!("CARGO_PKG_VERSION"),
        html(&facts.commit),
        html(&facts.kernel),
        html(&facts.cpu_model),
        facts.cpus,
        repeat,
    );
    fs::write(out.join("index.html"), page)?;
    let mut md = format!(
        "# netpoll experiments{}\n\nnetpoll {} at commit {}; kernel {}; {} ({} CPUs).\n\n",
        if quick { " (--quick)" } else { "" },
        env!("CARGO_PKG_VERSION"),
        facts.commit,
        facts.kernel,
        facts.cpu_model,
        facts.cpus
    );
    for (name, sentence) in &rows {
        let _ = writeln!(md, "## [{name}]({name}/report.md)\n\n{sentence}\n");
    }
    fs::write(out.join("README.md"), md)?;
    let manifest = serde_json::json!({
        "schema": "netpoll-experiments/1",
        "netpoll_version": env!("CARGO_PKG_VERSION"),
        "git_commit": facts.commit,
        "kernel": facts.kernel,
        "cpu_model": facts.cpu_model,
        "cpus": facts.cpus,
        "quick": quick,
        "repeat": repeat,
        "experiments": experiments,
        "runs": planned,
    });
    fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    Ok(summaries)
}

fn throughput(r: &Run) -> f64 {
    r.results
        .run
        .as_ref()
        .map_or(0.0, |i| i.load.throughput_rps)
}

fn p99_ns(r: &Run) -> f64 {
    r.results
        .run
        .as_ref()
        .map_or(0.0, |i| i.load.latency_percentiles.p99 as f64)
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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

/// Checks a `--quick` suite's output, for `cargo xtask test`: every experiment finished runs and
/// wrote charts and a report, and the figures are plausible.
pub fn check_quick(out: &Path) -> Result<()> {
    let root = workspace_root()?;
    let experiments: Vec<Experiment> = load_suite(&root.join("xtask/experiments.toml"))?
        .into_iter()
        .map(Experiment::quick)
        .collect();
    let mut loaded = BTreeMap::new();
    for e in &experiments {
        let dir = out.join(&e.name);
        let runs = report::load(&[dir.join("runs")])
            .with_context(|| format!("experiment {}: no results", e.name))?;
        let expected = e.models.len() * e.connections.len() * e.idle_connections.len();
        if runs.len() != expected {
            bail!(
                "experiment {}: {} results, expected {expected}",
                e.name,
                runs.len()
            );
        }
        for file in [
            "index.html",
            "report.md",
            "results.csv",
            "request_latency.svg",
            "request_latency.png",
        ] {
            if !dir.join(file).is_file() {
                bail!("experiment {}: no {file}", e.name);
            }
        }
        for r in &runs {
            let Some(info) = &r.results.run else {
                bail!("{}: not a `netpoll run` result", r.path.display());
            };
            if info.load.requests == 0 || info.load.errors.total() > 0 {
                bail!(
                    "{}: {} requests, {} errors",
                    r.path.display(),
                    info.load.requests,
                    info.load.errors.total()
                );
            }
        }
        loaded.insert(e.name.clone(), runs);
    }
    // Plausibility: at 100 connections, a thread per connection means far more threads, and a
    // blocked thread per request far more context switches, than one epoll reactor.
    let concurrency = loaded
        .get("concurrency")
        .context("no concurrency experiment")?;
    let at_100 = |model: &str| {
        concurrency
            .iter()
            .filter_map(|r| r.results.run.as_ref())
            .find(|i| i.model == model && i.load.connections == 100)
            .cloned()
            .with_context(|| format!("no {model} run at 100 connections"))
    };
    let (threads, epoll) = (at_100("blocking-threads")?, at_100("epoll-lt")?);
    if threads.server_process.peak_threads <= 100 || epoll.server_process.peak_threads != 1 {
        bail!(
            "implausible: blocking-threads peaked at {} threads, epoll-lt at {}",
            threads.server_process.peak_threads,
            epoll.server_process.peak_threads
        );
    }
    if threads.per_request.context_switches <= 10.0 * epoll.per_request.context_switches {
        bail!(
            "implausible: context switches per request: blocking-threads {}, epoll-lt {}",
            threads.per_request.context_switches,
            epoll.per_request.context_switches
        );
    }
    eprintln!(
        "xtask: experiments --quick: every experiment produced results, charts and a report; \
         at 100 connections blocking-threads ran {} threads and epoll-lt {}",
        threads.server_process.peak_threads, epoll.server_process.peak_threads
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_suite_is_valid_and_fits_the_time_limits() {
        let root = workspace_root().expect("root");
        let suite = load_suite(&root.join("xtask/experiments.toml")).expect("suite");
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
        let seconds = |experiments: &[Experiment]| -> f64 {
            plan(experiments, 1, Path::new("/x"))
                .iter()
                .map(|p| p.seconds)
                .sum()
        };
        let full = seconds(&suite);
        let quick: Vec<Experiment> = suite.into_iter().map(Experiment::quick).collect();
        assert!(full <= 10.0 * 60.0, "full suite planned at {full} s");
        assert!(
            seconds(&quick) <= 120.0,
            "quick suite planned at {} s",
            seconds(&quick)
        );
    }

    #[test]
    fn bad_suites_are_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-suite-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let write = |text: &str| {
            let p = dir.join("s.toml");
            fs::write(&p, text).expect("write");
            load_suite(&p).map(|_| ()).unwrap_err().to_string()
        };
        let base =
            "name = \"a\"\nquestion = \"q\"\nconnections = [1]\nduration = 1.0\nwarmup = 0.0\n";
        let err = write(&format!(
            "[[experiment]]\n{base}models = [\"carrier-pigeon\"]\n"
        ));
        assert!(err.contains("unknown model \"carrier-pigeon\""), "{err}");
        let err = write(&format!(
            "[[experiment]]\n{base}models = [\"poll\"]\n[[experiment]]\n{base}models = [\"poll\"]\n"
        ));
        assert!(err.contains("declared twice"), "{err}");
        let err = write(&format!(
            "[[experiment]]\n{base}models = [\"poll\"]\nconection = 3\n"
        ));
        assert!(err.contains("s.toml"), "{err}");
    }

    #[test]
    fn plans_interleave_repeats_and_map_sqpoll() {
        let e = Experiment {
            name: "x".into(),
            question: "q".into(),
            models: vec!["epoll-lt".into(), "io-uring+sqpoll".into()],
            connections: vec![1, 10],
            idle_connections: vec![0],
            duration: 1.0,
            warmup: 0.5,
            payload: 64,
            think_us: 0,
            disk_read: 0,
            rate: None,
            client_threads: 1,
            quick: None,
        };
        let runs = plan(&[e], 2, Path::new("/out"));
        assert_eq!(runs.len(), 8);
        // Every configuration once, then again: drift spreads over all of them.
        assert_eq!(runs[0].repeat, 1);
        assert_eq!(runs[4].repeat, 2);
        let sq = &runs[1];
        assert_eq!(sq.model, "io-uring+sqpoll");
        assert!(sq.args.contains(&"--sqpoll".to_string()));
        assert_eq!(sq.args[2], "io-uring");
        assert_eq!(
            sq.file,
            Path::new("/out/x/runs/io-uring+sqpoll-c1-idle0-r1.json")
        );
    }
}
