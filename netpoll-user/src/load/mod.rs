//! The load generator: `netpoll load`, and the client side of `netpoll run`.
//!
//! Worker threads (`tcp.rs`, `udp.rs`) each drive a share of the connections from one epoll loop; this
//! module plans the run, opens the idle connections, times the warm-up and measurement phases
//! (calling a [`Watcher`] at each boundary so that `run` can snapshot the probes there), shows
//! progress, and merges the workers' HdrHistograms into [`LoadResults`].

mod idle;
mod plan;
mod protocol;
mod tcp;
mod timeline;
mod udp;

use std::{
    sync::{Barrier, OnceLock, atomic::Ordering},
    time::{Duration, Instant},
};

use analysis::{
    Histogram,
    run::{LoadErrors, LoadMode, LoadResults, Percentiles},
};
use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use netpoll_ebpf::histogram::LATENCY_BUCKETS;

pub use idle::{HoldArgs, hold};
pub use plan::Plan;
pub use protocol::Protocol;
use timeline::{Shared, WorkerResults};

/// A TCP socket of the load generator, to `addr`'s family. With SO_REUSEADDR: a closed client
/// socket waits in TIME_WAIT for a minute on its local port, and unless it had SO_REUSEADDR no
/// listener may bind that port meanwhile, SO_REUSEADDR or not (the kernel's rule). Ephemeral
/// ports are a server's ports too: 19,000 connections took nginx's port (fixed for a suite)
/// often enough that it could not start in the next run.
fn client_socket(addr: std::net::SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Why a run ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM; the exit code to use (130 or 143).
    Signal(i32),
    /// The server process died (`run`), described.
    ServerDied(String),
}

/// Sees the run's phases: `run` snapshots probes and the server process at the boundaries.
pub trait Watcher {
    /// The idle connections are open and the load has not started: a moment for readings too
    /// slow for the window's edges (reading 100,000 descriptors from /proc takes seconds, on
    /// the load generator's CPU).
    fn connections_opened(&mut self) -> Result<()> {
        Ok(())
    }
    /// The warm-up is over: measurement begins.
    fn measurement_started(&mut self) -> Result<()> {
        Ok(())
    }
    /// The measurement window closed (at its planned end, or early when stopped).
    fn measurement_ended(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called every 50 ms; a reason to stop the run early.
    fn check(&mut self) -> Option<StopReason>;
}

/// The outcome of a load run.
pub struct Outcome {
    pub results: LoadResults,
    pub stopped: Option<StopReason>,
}

const TICK: Duration = Duration::from_millis(50);

/// Runs the plan; `progress`: draw a progress bar on stderr (when it is a terminal).
pub fn run(plan: &Plan, watcher: &mut dyn Watcher, progress: bool) -> Result<Outcome> {
    plan.protocol.prepare(plan.addr, plan.options.timeout)?;
    // Opened first and kept silent: the descriptors a readiness loop must scan for nothing.
    let (idle, idle_opened) = match idle::open(plan) {
        Ok(opened) => opened,
        // Ctrl-C, or the server dying, while they opened: the run's end, not a failure.
        Err(e) => match watcher.check() {
            Some(stopped) => {
                return Ok(Outcome {
                    results: merge(plan, Vec::new(), Duration::ZERO, true, Duration::ZERO),
                    stopped: Some(stopped),
                });
            }
            None => return Err(e),
        },
    };
    watcher.connections_opened()?;
    let shared = Shared::default();
    let start = Barrier::new(plan.options.threads + 1);
    let origin = OnceLock::new();
    let mut bar = ProgressBar::hidden();
    let (workers, timing, stopped) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.options.threads)
            .map(|i| {
                let (shared, start, origin) = (&shared, &start, &origin);
                scope.spawn(move || match plan.protocol {
                    Protocol::Udp { .. } => udp::run(plan, i, shared, start, origin),
                    _ => tcp::run(plan, i, shared, start, origin),
                })
            })
            .collect();
        start.wait();
        let origin = *origin.get_or_init(Instant::now);
        let phases = if shared.setup_failed.load(Ordering::Relaxed) {
            // The failed worker's own error is reported below.
            Err(anyhow::anyhow!("a load thread could not connect"))
        } else {
            announce(plan);
            bar = progress_bar(plan, progress);
            drive(plan, watcher, &shared, &handles, origin, &bar)
        };
        // Whatever happened, the workers stop and are joined before results are merged.
        if phases.as_ref().map_or(true, |p| p.stopped.is_some()) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        shared.may_close.store(true, Ordering::Relaxed);
        let mut workers = Vec::new();
        let mut first_error = None;
        for h in handles {
            match h.join() {
                Ok(Ok(w)) => workers.push(w),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow::anyhow!("a load thread panicked"));
                }
            }
        }
        // A worker's error says what went wrong; the driver's only that something did.
        if let Some(e) = first_error {
            return Err(e);
        }
        let phases = phases?;
        Ok((workers, phases.measured, phases.stopped))
    })?;
    bar.finish_and_clear();
    drop(idle);
    Ok(Outcome {
        results: merge(plan, workers, timing, stopped.is_some(), idle_opened),
        stopped,
    })
}

struct Phases {
    /// Length of the measurement window actually run.
    measured: Duration,
    stopped: Option<StopReason>,
}

/// Times the warm-up and measurement phases, calling the watcher at each boundary.
fn drive(
    plan: &Plan,
    watcher: &mut dyn Watcher,
    shared: &Shared,
    workers: &[std::thread::ScopedJoinHandle<'_, Result<WorkerResults>>],
    origin: Instant,
    bar: &ProgressBar,
) -> Result<Phases> {
    let end = plan.options.warmup + plan.options.duration;
    let mut measuring = false;
    let mut last = (Duration::ZERO, 0u64, 0.0);
    if plan.options.warmup.is_zero() {
        watcher.measurement_started()?;
        measuring = true;
    }
    loop {
        let elapsed = origin.elapsed();
        let boundary = if measuring { end } else { plan.options.warmup };
        std::thread::sleep(boundary.saturating_sub(elapsed).min(TICK));
        let elapsed = origin.elapsed();
        if let Some(reason) = watcher.check() {
            shared.stop.store(true, Ordering::Relaxed);
            if measuring {
                watcher.measurement_ended()?;
            }
            return Ok(Phases {
                measured: elapsed.saturating_sub(plan.options.warmup),
                stopped: Some(reason),
            });
        }
        if workers.iter().any(|w| w.is_finished()) && elapsed < end {
            // A worker failed (its error is reported when joined).
            shared.stop.store(true, Ordering::Relaxed);
            bail!("the load stopped early");
        }
        if !measuring && elapsed >= plan.options.warmup {
            watcher.measurement_started()?;
            measuring = true;
            bar.set_prefix("measuring");
        }
        if elapsed >= end {
            watcher.measurement_ended()?;
            return Ok(Phases {
                measured: plan.options.duration,
                stopped: None,
            });
        }
        let replies = shared.replies.load(Ordering::Relaxed);
        if elapsed - last.0 >= Duration::from_millis(500) {
            last = (
                elapsed,
                replies,
                (replies - last.1) as f64 / (elapsed - last.0).as_secs_f64(),
            );
        }
        bar.set_message(format!(
            "{:.1}/{:.1}s  {:.0} replies/s",
            elapsed.as_secs_f64(),
            end.as_secs_f64(),
            last.2
        ));
        bar.set_position(elapsed.as_millis() as u64);
    }
}

fn progress_bar(plan: &Plan, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let total = (plan.options.warmup + plan.options.duration).as_millis() as u64;
    // Hidden by indicatif itself when stderr is not a terminal.
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:32}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(if plan.options.warmup.is_zero() {
        "measuring"
    } else {
        "warm-up"
    });
    bar
}

fn merge(
    plan: &Plan,
    workers: Vec<WorkerResults>,
    measured: Duration,
    partial: bool,
    idle_opened: Duration,
) -> LoadResults {
    let mut latency = timeline::new_histogram();
    let mut service_time = timeline::new_histogram();
    let mut send_lag = timeline::new_histogram();
    let mut errors = LoadErrors::default();
    let (mut requests, mut sent, mut received, mut unsent, mut starved) = (0, 0, 0, 0, 0);
    for w in &workers {
        // Same bounds on every worker: adding cannot fail.
        let _ = latency.add(&w.latency);
        // Closed loop: service time is the latency (workers record it once).
        let _ = service_time.add(if plan.options.rate.is_some() {
            &w.service_time
        } else {
            &w.latency
        });
        let _ = send_lag.add(&w.send_lag);
        errors.add(&w.errors);
        requests += w.requests;
        sent += w.bytes_sent;
        received += w.bytes_received;
        unsent += w.unsent;
        starved += w.starved;
    }
    let seconds = measured.as_secs_f64();
    LoadResults {
        target: plan.target.clone(),
        protocol: plan.protocol.name().into(),
        payload: plan.payload,
        mode: if plan.options.rate.is_some() {
            LoadMode::Open
        } else {
            LoadMode::Closed
        },
        rate: plan.options.rate,
        connections: plan.options.connections,
        idle_connections: plan.options.idle_connections,
        threads: plan.options.threads,
        warmup_ns: plan.options.warmup.as_nanos() as u64,
        idle_open_ns: idle_opened.as_nanos() as u64,
        duration_ns: measured.as_nanos() as u64,
        partial,
        requests,
        throughput_rps: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        bytes_sent: sent,
        bytes_received: received,
        errors,
        unsent,
        starved_connections: starved,
        latency_ns: to_buckets(&latency),
        service_time_ns: to_buckets(&service_time),
        latency_percentiles: percentiles(&latency),
        send_lag: plan.options.rate.map(|_| percentiles(&send_lag)),
    }
}

/// Re-buckets an HdrHistogram into the results file's log-linear layout (3.1 % buckets).
fn to_buckets(h: &hdrhistogram::Histogram<u64>) -> Histogram {
    let mut out = Histogram::new(LATENCY_BUCKETS);
    for v in h.iter_recorded() {
        out.record_n(
            h.median_equivalent(v.value_iterated_to()),
            v.count_at_value(),
        );
    }
    out
}

fn percentiles(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        min: h.min(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

/// Prints the plan being run, on stderr, like the other commands' "attached" line.
fn announce(plan: &Plan) {
    let warmup = if plan.options.warmup.is_zero() {
        String::new()
    } else {
        format!("{:.1}s warm-up, then ", plan.options.warmup.as_secs_f64())
    };
    eprintln!(
        "netpoll: loading {}; {warmup}{:.1}s measured",
        plan.describe(),
        plan.options.duration.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebucketing_keeps_counts_and_percentiles() {
        let mut h = timeline::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let b = to_buckets(&h);
        assert_eq!(b.total(), 10_000);
        let p50 = b.quantile(0.5).unwrap().estimate() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "{p50}");
        let p = percentiles(&h);
        assert!(
            (p.p99 as f64 / 9_900_000.0 - 1.0).abs() < 0.002,
            "{}",
            p.p99
        );
    }
}
