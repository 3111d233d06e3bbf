//! `cargo xtask bench load`: is netpoll's load generator a trustworthy driver? Its requests/s
//! against wrk's, on the same nginx (one worker, a small static file, loopback), with the same
//! threads and connections, interleaved round by round. The generator must not be the
//! bottleneck: the target is at least wrk's rate.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use analysis::stats::median;
use xtask::{release_netpoll, workspace_root};

use super::servers::{Nginx, netpoll_load, pin};

/// nginx and the generators on different CPUs: neither steals the other's time.
const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
use crate::setup;

fn wrk(url: &str, threads: usize, connections: usize, seconds: u64) -> Result<f64> {
    let out = pin(&mut Command::new("wrk"), Some(CLIENT_CPU))
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            url.to_string(),
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk failed or saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

pub fn load(rounds: usize, seconds: u64, threads: usize, connections: usize) -> Result<()> {
    setup::test_prerequisites()?;
    setup::apt_install(&["nginx-light", "wrk"])?;
    let netpoll = release_netpoll()?;
    let root = workspace_root()?;
    let dir = root.join("target/bench-load");
    let nginx = Nginx::start(&dir, Some(SERVER_CPU))?;
    let url = format!("http://127.0.0.1:{}/index.html", nginx.port);
    eprintln!(
        "xtask: nginx (1 worker, CPU {SERVER_CPU}) on {url}, generators on CPU {CLIENT_CPU}; {rounds} rounds of {seconds}s each for wrk and \
         netpoll load, {threads} thread(s), {connections} connections"
    );
    // Alternating which goes first, so drift does not favour one.
    let samples = super::interleaved(rounds, 2, |round, which| {
        let rps = if which == 0 {
            wrk(&url, threads, connections, seconds)?
        } else {
            netpoll_load(
                &netpoll,
                &url,
                threads,
                connections,
                seconds,
                Some(CLIENT_CPU),
                &dir.join("load.json"),
            )?
            .throughput_rps
        };
        let name = ["wrk", "netpoll load"][which];
        eprintln!("xtask: round {}/{rounds}: {name} {rps:.0} req/s", round + 1);
        Ok(rps)
    })?;
    let (wrk_rps, netpoll_rps) = (&samples[0], &samples[1]);
    let ratios = super::paired(netpoll_rps, wrk_rps, |n, w| n / w);
    drop(nginx);
    println!(
        "\nrequests/s against nginx, median of {rounds} interleaved rounds ({threads} thread(s), \
         {connections} connections, {seconds}s):"
    );
    println!("wrk            {:>10.0}", median(wrk_rps));
    println!("netpoll load   {:>10.0}", median(netpoll_rps));
    // Per-round ratios pair each round's two runs, cancelling drift between rounds.
    let ratio = analysis::stats::estimate(&ratios);
    println!(
        "netpoll load / wrk: median of the per-round ratios {} (95 % interval; per round {}) \
         (target >= 1.0)",
        ratio.display(|v| format!("{v:.3}")),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
