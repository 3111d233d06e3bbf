//! `netpoll export`: the probes attached to the targets, their figures served to Prometheus on
//! `/metrics` (read from the maps at each scrape) until stopped. In steps: check, listen,
//! attach, serve.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result, bail};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header};
use hyper_util::rt::TokioIo;
use netpoll_ebpf::abi::HookKind;

use super::targets::{TargetArgs, Targets};
use crate::{
    go,
    metrics::{self, Naming},
    probes::{BpfStats, GoProbes, Probes, target::CommandState},
    system,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    targets: TargetArgs,
    /// Address to serve /metrics (and /healthz) on.
    #[arg(short, long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Prefix of every metric name.
    #[arg(long, default_value = "netpoll", value_name = "PREFIX")]
    metrics_prefix: String,
    /// With --per-pid: processes labelled on their own (the busiest); the rest are summed
    /// under pid="other", so that the number of series stays bounded.
    #[arg(long, default_value_t = 50, value_name = "N")]
    max_processes: usize,
    /// Hook kind to use (default: the cheapest the kernel accepts).
    #[arg(long, value_parser = super::hook_kind())]
    hook: Option<HookKind>,
    /// The Go view: for a Go process (the first --pid, or the command), its runtime's scheduler
    /// read from its memory at each scrape (netpoll_go_*: goroutines by state and wait reason,
    /// run queues, Ps, threads, the netpoller). Needs the binary's symbol table.
    #[arg(long)]
    go: bool,
}

/// The shared state of the HTTP handlers: the probes, read at each scrape.
struct Exporter {
    probes: Mutex<Probes>,
    naming: Naming,
    /// BPF statistics stay on while exporting, when asked.
    stats: BpfStats,
    /// `--go`: the Go process, read at each scrape.
    go: Option<go::Live>,
}

pub fn run(args: Args) -> Result<i32> {
    // Handlers before anything starts: Ctrl-C at any moment detaches cleanly.
    let signals = system::Signals::install()?;
    args.targets.check()?;
    check_prefix(&args.metrics_prefix)?;
    if args.max_processes == 0 {
        bail!("--max-processes must be at least 1");
    }
    system::check_privileges()?;
    // Listening first: a port in use is a clear error before anything is attached.
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let mut targets = args.targets.resolve()?;
    let go_pid = targets.go_target(args.go);
    let probes = targets.attach(
        &args.targets,
        args.hook,
        None,
        go_pid.map(|pid| GoProbes { pid, exact: false }),
        None,
    )?;
    let stats = BpfStats::enable(args.targets.bpf_stats);
    eprintln!(
        "netpoll: attached {} hooks to {}; serving http://{}/metrics (Ctrl-C to stop)",
        probes.describe_hooks(),
        targets.describe(),
        listener.local_addr()?
    );
    targets.release()?;
    // After the release: a command is read once it has exec'd its binary.
    let go = go_pid.and_then(|pid| {
        go::Live::open(pid, &std::sync::atomic::AtomicBool::new(false))
            .inspect_err(|e| eprintln!("netpoll: note: --go: {e:#}"))
            .ok()
    });
    let exporter = Arc::new(Exporter {
        probes: Mutex::new(probes),
        naming: Naming {
            prefix: args.metrics_prefix.clone(),
            per_pid: args.targets.per_pid,
            max_processes: args.max_processes,
        },
        stats,
        go,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stopped = runtime.block_on(serve(listener, exporter.clone(), &targets, &signals))?;
    eprintln!("netpoll: {stopped}; probes detached");
    if let Some(c) = &targets.command {
        c.stop();
    }
    Ok(0)
}

/// Metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn check_prefix(prefix: &str) -> Result<()> {
    let mut chars = prefix.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !ok {
        bail!("--metrics-prefix {prefix:?}: not a metric name (letters, digits, _ and :)");
    }
    Ok(())
}

/// Accepts connections until a signal, or the targets are gone; returns why it stopped.
async fn serve(
    listener: std::net::TcpListener,
    exporter: Arc<Exporter>,
    targets: &Targets,
    signals: &system::Signals,
) -> Result<String> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(code) = signals.received() {
                    return Ok(if code == 130 { "interrupted" } else { "terminated" }.into());
                }
                if let Some(c) = &targets.command
                    && let CommandState::Exited(code) = c.poll()
                {
                    return Ok(format!("the command exited ({code})"));
                }
                if !targets.given_pids.is_empty()
                    && !targets.given_pids.iter().any(|&p| crate::procfs::process_alive(p))
                {
                    return Ok("every --pid target exited".into());
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let exporter = exporter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let exporter = exporter.clone();
                        async move { Ok::<_, std::convert::Infallible>(respond(req, exporter).await) }
                    });
                    // A client that goes away mid-request is its own business.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    exporter: Arc<Exporter>,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/metrics" => {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            // Reading the maps is a few syscalls: off the async thread.
            let scraped = tokio::task::spawn_blocking(move || exporter.scrape(&accept)).await;
            match scraped {
                Ok(Ok((content_type, body))) => {
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(content_type),
                    );
                    response
                }
                Ok(Err(e)) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}\n")),
                Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            }
        }
        "/" => plain(
            StatusCode::OK,
            "netpoll exporter: see /metrics and /healthz\n",
        ),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: see /metrics and /healthz\n",
        ),
    }
}

impl Exporter {
    /// One read of the maps, encoded as the scraper asked: (content type, body).
    fn scrape(&self, accept: &str) -> Result<(&'static str, Vec<u8>)> {
        let (snapshot, programs, polls) = {
            let probes = self
                .probes
                .lock()
                .map_err(|_| anyhow::anyhow!("the probes' lock is poisoned"))?;
            let polls = if probes.go_polls {
                probes.go_polls()?
            } else {
                Vec::new()
            };
            (probes.snapshot()?, probes.program_costs(), polls)
        };
        let mut families =
            metrics::families(&snapshot, &programs, self.stats.enabled, &self.naming);
        // A Go process that exited has nothing to say: its families are left out.
        if let Some(go) = &self.go
            && let Some(sample) = go.sample(system::monotonic_ns())
        {
            families.extend(metrics::go_families(
                &self.naming.prefix,
                &go.binary.version,
                &sample,
            ));
        }
        if let Some(go) = &self.go
            && !polls.is_empty()
        {
            let polls = go::polls::by_caller(&polls, &go.inspected);
            families.extend(metrics::go_poll_families(&self.naming.prefix, &polls));
        }
        if metrics::wants_protobuf(accept) {
            return Ok((
                metrics::PROTOBUF_CONTENT_TYPE,
                metrics::encode_protobuf(&families),
            ));
        }
        let mut text = String::with_capacity(256 * 1024);
        metrics::text::encode(&families, &mut text)?;
        Ok((metrics::text::CONTENT_TYPE, text.into_bytes()))
    }
}
