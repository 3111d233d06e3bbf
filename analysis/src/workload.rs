//! What a `netpoll run` runs, defined once: the server ([`Workload`]: a model of the catalogue and
//! its options) and the load ([`LoadOptions`]). The command line parses these types (`serve`,
//! `load`, `run`), [`Workload::args`] and [`LoadOptions::args`] turn them back into its options
//! (for the server process `run` starts, and for the runs of the experiment suite), and results
//! files carry them (`run.model`, `run.server`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::models;

/// The echo server: which I/O model, with which options; or a third-party server.
#[derive(clap::Args, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// I/O model to run (see `netpoll models`).
    #[arg(short, long)]
    pub model: String,
    #[command(flatten)]
    pub server: ServerConfig,
    /// A server netpoll did not write (`netpoll run --server-cmd`); `model` is then its name.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalServer>,
}

/// A third-party server: the command that started it and where the load went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalServer {
    /// The shell command (`sh -c`), run in a process group of its own.
    pub command: String,
    /// `host:port` (netpoll's echo protocol), or an `http://`, `redis://` or `memcached://` URL
    /// as `netpoll load` takes it.
    pub target: String,
}

/// The server's options, the same for every model.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// The address the server listened on (set by `run`; not an option).
    #[arg(skip)]
    pub listen: String,
    /// Bytes per request and per reply.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// CPU work per request, in microseconds (spinning).
    #[arg(long, default_value_t = 0)]
    pub think_us: u64,
    /// Do the --think-us work on one request in N only (per connection, its Nth, 2Nth...): a
    /// handler that is sometimes slow, which every other ready socket of its event loop waits
    /// behind.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(default = "every_request", skip_serializing_if = "is_every_request")]
    pub think_every: u64,
    /// Bytes read from a file per request (file I/O, which epoll cannot multiplex).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub disk_read: usize,
    /// Make every --disk-read go to the disk: the file's pages are dropped from the page cache
    /// (posix_fadvise DONTNEED) before each read. Without it the 8 MiB file stays cached and a
    /// "disk" read is a memory copy.
    #[arg(long, requires = "disk_read")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cold_disk: bool,
    /// Threads for epoll-reactors and tokio (default: one per CPU the server may run on).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// io-uring: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL).
    #[arg(long)]
    pub sqpoll: bool,
    /// af-xdp: spin on the rings instead of sleeping in poll when idle.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy_poll: bool,
    /// Worker processes, each serving the model on a listening socket of its own bound to the
    /// same port (SO_REUSEPORT: the kernel spreads new connections over them; nginx's shape
    /// with `listen ... reuseport`). A process holds at most the open-files limit's descriptors
    /// (20,000 on some machines, unraisable there): more connections need more processes.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_WORKERS))]
    #[serde(default = "one_worker", skip_serializing_if = "is_one_worker")]
    pub workers: u64,
}

/// The most `--workers` takes.
pub const MAX_WORKERS: u64 = 64;

fn one_worker() -> u64 {
    1
}

fn is_one_worker(n: &u64) -> bool {
    *n <= 1
}

impl ServerConfig {
    /// Processes serving the model (`--workers`; a default-made config has 0: one).
    pub fn processes(&self) -> usize {
        self.workers.max(1) as usize
    }
}

fn every_request() -> u64 {
    1
}

fn is_every_request(n: &u64) -> bool {
    *n <= 1
}

impl Workload {
    /// A workload of the model or variant called `name`, with default options.
    pub fn of(name: &str) -> Workload {
        Workload {
            model: name.into(),
            server: ServerConfig {
                payload: 64,
                think_every: 1,
                workers: 1,
                ..ServerConfig::default()
            },
            external: None,
        }
    }

    /// A third-party server called `name`, started by `command`, loaded through `target`.
    pub fn external(name: &str, command: &str, target: &str) -> Workload {
        Workload {
            external: Some(ExternalServer {
                command: command.into(),
                target: target.into(),
            }),
            ..Workload::of(name)
        }
    }

    /// Checks the model and the options; a variant name (`io-uring+sqpoll`) becomes its model
    /// with the variant's option set.
    pub fn resolve(mut self) -> Result<(Workload, &'static models::Model), String> {
        if let Some(v) = models::variant(&self.model) {
            self.model = v.model.into();
            self.server.sqpoll |= v.sqpoll;
            self.server.busy_poll |= v.busy_poll;
        }
        let model = models::model(&self.model).ok_or_else(|| models::unknown(&self.model))?;
        if self.server.payload == 0 {
            return Err("--payload must be at least 1 byte".into());
        }
        if self.server.workers > 1 && model.transport == models::Transport::Udp {
            return Err(format!(
                "--workers: {} is a UDP model; worker processes share a TCP port",
                model.name
            ));
        }
        Ok((self, model))
    }

    /// How reports and experiments name it: the variant when an option makes one
    /// (`io-uring+sqpoll`), else the model.
    pub fn label(&self) -> String {
        match models::variant_of(&self.model, self.server.sqpoll, self.server.busy_poll) {
            Some(v) => v.name.into(),
            None => self.model.clone(),
        }
    }

    /// The options of `netpoll serve` / `netpoll run` that give this workload.
    pub fn args(&self) -> Vec<String> {
        let s = &self.server;
        if let Some(e) = &self.external {
            return vec![
                "--server-cmd".into(),
                e.command.clone(),
                "--connect".into(),
                e.target.clone(),
                "--name".into(),
                self.model.clone(),
                "--payload".into(),
                s.payload.to_string(),
            ];
        }
        let mut args = vec![
            "--model".into(),
            self.model.clone(),
            "--payload".into(),
            s.payload.to_string(),
            "--think-us".into(),
            s.think_us.to_string(),
            "--disk-read".into(),
            s.disk_read.to_string(),
            "--threads".into(),
            s.threads.to_string(),
        ];
        if s.think_every > 1 {
            args.extend(["--think-every".into(), s.think_every.to_string()]);
        }
        if s.cold_disk {
            args.push("--cold-disk".into());
        }
        if s.sqpoll {
            args.push("--sqpoll".into());
        }
        if s.busy_poll {
            args.push("--busy-poll".into());
        }
        if s.workers > 1 {
            args.extend(["--workers".into(), s.workers.to_string()]);
        }
        args
    }
}

/// The load generator's options (`netpoll load` and `netpoll run`).
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Connections sending requests (one outstanding request each).
    #[arg(short, long, default_value_t = 16)]
    pub connections: usize,
    /// Load-generator threads, each driving a share of the connections from one epoll loop.
    #[arg(
        id = "client_threads",
        short = 't',
        long = "client-threads",
        default_value_t = 1
    )]
    pub threads: usize,
    /// Measured time, after the warm-up.
    #[arg(short, long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Time loaded but not measured first (connections warm, caches and thread pools filled).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_seconds_or_zero)]
    pub warmup: Duration,
    /// Open loop: requests per second over all connections, on a fixed schedule.
    #[arg(short = 'R', long, value_name = "REQ/S", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Extra connections opened first and left silent (select and poll scan them every call).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle_connections: usize,
    /// A request without a reply after this long counts as a timeout; its connection is reopened.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    pub timeout: Duration,
}

impl LoadOptions {
    /// The options of `netpoll load` / `netpoll run` that give this load.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--connections".into(),
            self.connections.to_string(),
            "--client-threads".into(),
            self.threads.to_string(),
            "--duration".into(),
            self.duration.as_secs_f64().to_string(),
            "--warmup".into(),
            self.warmup.as_secs_f64().to_string(),
            "--idle-connections".into(),
            self.idle_connections.to_string(),
            "--timeout".into(),
            self.timeout.as_secs_f64().to_string(),
        ];
        if let Some(rate) = self.rate {
            args.extend(["--rate".into(), rate.to_string()]);
        }
        args
    }
}

impl Default for LoadOptions {
    /// The command line's defaults.
    fn default() -> Self {
        LoadOptions {
            connections: 16,
            threads: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            rate: None,
            idle_connections: 0,
            timeout: Duration::from_secs(2),
        }
    }
}

/// CPUs, as a command-line value (`--server-cpus 1`, `--client-cpus 0,2-3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a `CpuList` (clap's value parser).
pub fn cpu_list(s: &str) -> Result<CpuList, String> {
    parse_cpu_list(s).map(CpuList)
}

/// A list of CPUs as `taskset -c` and cpusets write it: `1`, `0-3`, `0,2-3`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let bad = || format!("{s:?} is not a CPU list (like 1, 0-3 or 0,2-3)");
        let number = |n: &str| n.trim().parse::<usize>().map_err(|_| bad());
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The CPUs this process may run on (its affinity, as /proc/self/status lists it); all the
/// machine's when that cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let list = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            parse_cpu_list(list.trim()).ok()
        })
        .filter(|cpus| !cpus.is_empty())
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        })
}

/// The other way: `0-3,5`.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        parts.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    parts.join(",")
}

/// A positive number of seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Zero, or a positive number of seconds.
pub fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    if s.parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_seconds(s)
}

/// A positive number of requests per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s} is not a positive number of requests per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        workload: Workload,
        #[command(flatten)]
        load: LoadOptions,
    }

    fn parse(args: &[String]) -> Cli {
        let argv = std::iter::once("netpoll".to_string()).chain(args.iter().cloned());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn arguments_parse_back_to_the_same_run() {
        let workload = Workload {
            model: "io-uring".into(),
            server: ServerConfig {
                listen: String::new(),
                payload: 512,
                think_us: 7,
                think_every: 5,
                disk_read: 4096,
                cold_disk: true,
                threads: 3,
                sqpoll: true,
                busy_poll: true,
                workers: 4,
            },
            external: None,
        };
        let load = LoadOptions {
            connections: 100,
            threads: 2,
            duration: Duration::from_millis(2500),
            warmup: Duration::ZERO,
            rate: Some(1234.5),
            idle_connections: 900,
            timeout: Duration::from_millis(300),
        };
        let mut args = workload.args();
        args.extend(load.args());
        let back = parse(&args);
        assert_eq!(back.workload, workload);
        assert_eq!(back.load, load);
        assert_eq!(
            parse(&["--model".into(), "poll".into()]).load,
            LoadOptions::default()
        );
        assert_eq!(
            parse(&["-m".into(), "poll".into()]).workload,
            Workload::of("poll")
        );
    }

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_cpu_list("3,0-1,1"), Ok(vec![0, 1, 3]));
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").unwrap_err().contains("not a CPU list"));
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn variants_resolve_to_their_model_and_label_back() {
        let (w, model) = Workload::of("io-uring+sqpoll").resolve().expect("known");
        assert_eq!((w.model.as_str(), w.server.sqpoll), ("io-uring", true));
        assert_eq!(model.name, "io-uring");
        assert_eq!(w.label(), "io-uring+sqpoll");
        assert_eq!(Workload::of("poll").label(), "poll");
        let err = Workload::of("carrier-pigeon").resolve().unwrap_err();
        assert!(err.contains("the models are: blocking-threads"), "{err}");
        let mut empty = Workload::of("poll");
        empty.server.payload = 0;
        assert!(empty.resolve().unwrap_err().contains("--payload"));
    }
}
