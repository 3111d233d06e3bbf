//! The check `cargo xtask test` makes of a `--quick` suite's output: every experiment finished
//! its runs and wrote charts and a report, and the figures are plausible.

use std::{collections::BTreeMap, path::Path};

use analysis::report;
use anyhow::{Context as _, Result, bail};

use super::suite::{self, Experiment};
use xtask::workspace_root;

pub fn check_quick(out: &Path) -> Result<()> {
    let root = workspace_root()?;
    let experiments: Vec<Experiment> = suite::load(&root.join("xtask/experiments.toml"))?
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
            .find(|i| i.workload.model == model && i.load.connections == 100)
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
