//! `netpoll load`: drive a server (netpoll's echo, or any HTTP/1.1 server) and report latency.

use std::path::PathBuf;

use analysis::{
    results::Tool,
    run::{LOAD_SCHEMA, LoadFile},
    workload::LoadOptions,
};
use anyhow::Result;

use crate::{
    load::{self, Plan, StopReason, Watcher},
    output,
    sinks::JsonFile,
    system,
};

#[derive(clap::Args)]
pub struct Args {
    /// HOST:PORT (netpoll's echo), http://HOST[:PORT]/PATH (keep-alive GET),
    /// redis://HOST[:PORT] (RESP GET of a key SET before the run), memcached://HOST[:PORT]
    /// (get of a key set before the run) or udp://HOST[:PORT] (UDP echo: each of -c sockets
    /// has one datagram outstanding, a reply not back within --timeout is lost). Replies are
    /// checked byte for byte.
    target: String,
    /// Echo: bytes per request (the server's --payload; udp: at least 8, for the sequence
    /// number); redis and memcached: the value's size.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[command(flatten)]
    load: LoadOptions,
    /// Write the results as JSON (schema netpoll-load/1, see docs/results-format.md).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bar and no report (with --json).
    #[arg(short, long)]
    quiet: bool,
}

/// Stops the load on SIGINT/SIGTERM.
struct SignalWatcher(system::Signals);

impl Watcher for SignalWatcher {
    fn check(&mut self) -> Option<StopReason> {
        self.0.received().map(StopReason::Signal)
    }
}

/// Runs `netpoll load`; returns the exit code.
pub fn run(args: Args) -> Result<i32> {
    let mut watcher = SignalWatcher(system::Signals::install()?);
    let plan = Plan::new(&args.target, args.payload, &args.load)?;
    let mut json = args
        .json
        .as_deref()
        .map(|p| JsonFile::create(p, "--json"))
        .transpose()?;
    system::ensure_fd_limit(plan.descriptors(), "the connections")?;
    let started_at = system::utc_now_rfc3339();
    let outcome = load::run(&plan, &mut watcher, !args.quiet)?;
    let load = outcome.results;
    if !args.quiet {
        print!("{}", output::load_report(&load));
    }
    if let Some(json) = json.as_mut() {
        json.write(&LoadFile {
            schema: LOAD_SCHEMA.into(),
            tool: Tool::netpoll(),
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
