//! `netpoll load`: drive a server (netpoll's echo, or any HTTP/1.1 server) and report latency.

use std::path::PathBuf;

use analysis::{
    results::Tool,
    run::{LOAD_SCHEMA, LoadFile},
};
use anyhow::Result;

use super::{LoadOptions, Plan, StopReason, Watcher};
use crate::{output, system};

pub struct Request {
    pub target: String,
    pub payload: usize,
    pub options: LoadOptions,
    pub json: Option<PathBuf>,
    pub quiet: bool,
}

/// Stops the load on SIGINT/SIGTERM.
struct SignalWatcher<'a>(&'a system::Signals);

impl Watcher for SignalWatcher<'_> {
    fn check(&mut self) -> Option<StopReason> {
        self.0.received().map(StopReason::Signal)
    }
}

/// Runs `netpoll load`; returns the exit code.
pub fn run(req: Request, signals: &system::Signals) -> Result<i32> {
    let plan = Plan::new(&req.target, req.payload, &req.options)?;
    let mut json = req
        .json
        .as_deref()
        .map(|p| output::JsonFile::create(p, "--json"))
        .transpose()?;
    system::ensure_fd_limit(plan.descriptors(), "the connections")?;
    let started_at = system::utc_now_rfc3339();
    let outcome = super::run(&plan, &mut SignalWatcher(signals), !req.quiet)?;
    let load = outcome.results;
    if !req.quiet {
        print!("{}", output::load_report(&load));
    }
    if let Some(json) = json.as_mut() {
        json.write(&LoadFile {
            schema: LOAD_SCHEMA.into(),
            tool: Tool {
                name: "netpoll".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            host: system::host(),
            started_at,
            ended_at: system::utc_now_rfc3339(),
            load,
        })?;
    }
    Ok(match outcome.stopped {
        Some(StopReason::Signal(code)) => code,
        Some(StopReason::ServerDied(_)) => 1,
        None => 0,
    })
}
