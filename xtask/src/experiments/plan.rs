//! The plan: every run of the chosen experiments, each a `netpoll run` command line built from
//! the shared definition of a run (`analysis::workload`), repeats interleaved.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use analysis::{
    models::{ProcessLimits, Stop},
    servers::Prepared,
    workload::{LoadOptions, Workload, format_cpu_list},
};
use serde::Serialize;

use super::suite::Experiment;

/// Start-up, probe loading, draining, shut-down and the suite's own work between runs: a full
/// suite of 618 runs took 1018 s, 0.8 s per run beyond its measured time, on 2 cores (a server
/// that leaves requests unanswered adds up to the 2 s timeout).
const OVERHEAD_SECONDS: f64 = 0.8;
/// What a third-party server adds: starting until it accepts connections, and stopping.
const SERVER_OVERHEAD_SECONDS: f64 = 0.6;
/// What `--netns` adds: the namespace and veth pair made and removed (and af-xdp's program
/// loaded): measured at about 0.5 s per run.
const NETNS_OVERHEAD_SECONDS: f64 = 0.5;

/// Where servers and load generators run: disjoint CPUs, so that neither takes the other's
/// time slices (less noise), when the machine has at least 2.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Placement {
    pub server_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
}

impl Placement {
    /// The load generator on the first CPUs (one per client thread), the server on the rest.
    pub fn disjoint(cpus: &[usize], client_threads: usize) -> Placement {
        if cpus.len() < 2 {
            return Placement::default();
        }
        let k = client_threads.clamp(1, cpus.len() - 1);
        Placement {
            client_cpus: Some(cpus[..k].to_vec()),
            server_cpus: Some(cpus[k..].to_vec()),
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (option, cpus) in [
            ("--server-cpus", &self.server_cpus),
            ("--client-cpus", &self.client_cpus),
        ] {
            if let Some(cpus) = cpus {
                args.extend([option.to_string(), format_cpu_list(cpus)]);
            }
        }
        args
    }

    /// `server on CPUs 1, load generator on CPU 0`.
    pub fn describe(&self) -> String {
        match (&self.server_cpus, &self.client_cpus) {
            (Some(s), Some(c)) => format!(
                "server pinned to CPUs {}, load generator to CPUs {}",
                format_cpu_list(s),
                format_cpu_list(c)
            ),
            _ => "server and load generator not pinned".into(),
        }
    }
}

/// What became of a planned run (`manifest.json` carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Interrupted,
    #[serde(rename = "not run")]
    NotRun,
    /// Past a limit of the model (its `error` names it): the limit is the finding.
    #[serde(rename = "beyond limit")]
    BeyondLimit,
}

/// One planned `netpoll run`.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub experiment: String,
    /// The model or variant (`io-uring+sqpoll`), or the third-party server.
    pub model: String,
    pub connections: usize,
    pub idle_connections: usize,
    /// Open-loop rate; absent: closed loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub repeat: usize,
    pub file: PathBuf,
    #[serde(skip)]
    pub args: Vec<String>,
    /// Expected wall time.
    #[serde(skip)]
    pub seconds: f64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Planned {
    /// The configuration, without the repeat: `epoll-lt c=10 idle=0`.
    pub fn config(&self) -> String {
        let rate = self.rate.map_or(String::new(), |r| format!(" rate={r}"));
        format!(
            "{} c={} idle={}{rate}",
            self.model, self.connections, self.idle_connections
        )
    }
}

/// The runs of `experiments`, repeats interleaved (every configuration once, then again), so
/// that drift on a noisy machine spreads over every configuration.
pub fn plan(
    experiments: &[Experiment],
    repeat: usize,
    out: &Path,
    placement: &Placement,
    servers: Option<&Prepared>,
) -> Vec<Planned> {
    let mut runs = Vec::new();
    let limits = analysis::models::ProcessLimits::read();
    for r in 1..=repeat {
        for e in experiments {
            for rate in e.load_rates() {
                for &idle in &e.idle_connections {
                    for &c in &e.connections {
                        for model in e.entries() {
                            let limit = Limit::of(e, model, c + idle, &limits);
                            let at = rate.map_or(String::new(), |r| format!("-rate{r}"));
                            let file = out
                                .join(&e.name)
                                .join("runs")
                                .join(format!("{model}-c{c}-idle{idle}{at}-r{r}.json"));
                            let point = SweepPoint {
                                connections: c,
                                idle,
                                rate,
                                workers: match limit {
                                    Limit::ScaledOut(w) => w,
                                    _ => 1,
                                },
                            };
                            runs.push(Planned {
                                experiment: e.name.clone(),
                                model: model.clone(),
                                connections: c,
                                idle_connections: idle,
                                rate,
                                repeat: r,
                                args: run_args(e, model, &point, &file, placement, servers),
                                file,
                                seconds: if matches!(limit, Limit::Stops(_)) {
                                    0.0
                                } else {
                                    e.duration
                                        + e.warmup
                                        + OVERHEAD_SECONDS
                                        + if e.servers.contains(model) {
                                            SERVER_OVERHEAD_SECONDS
                                        } else {
                                            0.0
                                        }
                                        + if e.netns { NETNS_OVERHEAD_SECONDS } else { 0.0 }
                                        + (c + idle) as f64 * OPEN_SECONDS_PER_CONNECTION
                                },
                                status: match limit {
                                    Limit::Stops(_) => Status::BeyondLimit,
                                    _ => Status::NotRun,
                                },
                                error: match limit {
                                    Limit::Stops(why) => Some(why),
                                    _ => None,
                                },
                            });
                        }
                    }
                }
            }
        }
    }
    runs
}

/// Opening and closing the connections, and the server's accepting them: 100,000 took about
/// 9 s in all (2.1 s to open) on 2 cores.
const OPEN_SECONDS_PER_CONNECTION: f64 = 70e-6;

/// Where a model stands at a number of connections.
enum Limit {
    Within,
    /// Past one process's descriptors, as this many worker processes (`scale_out`).
    ScaledOut(u64),
    /// Past a limit it cannot go beyond: the finding, in one line.
    Stops(String),
}

impl Limit {
    /// A model of the catalogue against the limits of one process (`analysis::models::Model::
    /// stops`, as `netpoll run` checks them); third-party servers bring their own processes
    /// and limits.
    fn of(e: &Experiment, model: &str, held: usize, limits: &ProcessLimits) -> Limit {
        let name = analysis::models::variant(model).map_or(model, |v| v.model);
        let Some(m) = analysis::models::model(name) else {
            return Limit::Within;
        };
        match m.stops(held, limits) {
            None => Limit::Within,
            Some(Stop::Descriptors(_)) if e.scale_out.iter().any(|s| s == model) => {
                Limit::ScaledOut(e.workers)
            }
            Some(Stop::Descriptors(why)) => {
                Limit::Stops(format!("{why}, and it does not spread over processes"))
            }
            Some(Stop::Model(why)) => Limit::Stops(why),
        }
    }
}

/// `netpoll run ...` for one configuration of an experiment.
/// One point of an experiment's sweep.
struct SweepPoint {
    connections: usize,
    idle: usize,
    rate: Option<f64>,
    /// Server processes (`--workers`).
    workers: u64,
}

fn run_args(
    e: &Experiment,
    model: &str,
    point: &SweepPoint,
    file: &Path,
    placement: &Placement,
    servers: Option<&Prepared>,
) -> Vec<String> {
    let mut workload = match servers.and_then(|s| s.get(model)) {
        Some(s) => Workload::external(&s.name, &s.command, &s.target),
        None => Workload::of(model),
    };
    workload.server.payload = e.payload;
    workload.server.think_us = e.think_us;
    workload.server.think_every = e.think_every.max(1);
    workload.server.disk_read = e.disk_read;
    workload.server.cold_disk = e.cold_disk;
    if servers.and_then(|s| s.get(model)).is_none() {
        workload.server.threads = e.threads;
        workload.server.workers = point.workers;
    }
    let load = LoadOptions {
        connections: point.connections,
        idle_connections: point.idle,
        threads: e.client_threads,
        rate: point.rate,
        duration: Duration::from_secs_f64(e.duration),
        warmup: Duration::from_secs_f64(e.warmup),
        ..LoadOptions::default()
    };
    let mut args = vec!["run".to_string()];
    args.extend(workload.args());
    args.extend(load.args());
    args.extend(placement.args());
    if e.netns {
        args.push("--netns".into());
    }
    // The scheduler view in every run: where each request's server time goes.
    args.push("--sched".into());
    if e.ready {
        args.push("--ready".into());
    }
    if e.uring {
        args.push("--uring".into());
    }
    if e.go_exact {
        args.push("--go-exact".into());
    } else if e.go {
        args.push("--go".into());
    }
    args.extend([
        "--quiet".into(),
        "--json".into(),
        file.display().to_string(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_interleave_repeats_and_name_variants() {
        let e: Experiment = toml::from_str(
            "name = \"x\"\nquestion = \"q\"\nmodels = [\"epoll-lt\", \"io-uring+sqpoll\"]\n\
             connections = [1, 10]\nduration = 1.0\nwarmup = 0.5\n",
        )
        .expect("experiment");
        let placement = Placement::disjoint(&[0, 1], 1);
        let runs = plan(&[e], 2, Path::new("/out"), &placement, None);
        assert_eq!(runs.len(), 8);
        // Every configuration once, then again: drift spreads over all of them.
        assert_eq!(runs[0].repeat, 1);
        assert_eq!(runs[4].repeat, 2);
        let sq = &runs[1];
        assert_eq!(sq.model, "io-uring+sqpoll");
        // The variant's name is a model name `netpoll run` accepts.
        assert_eq!(sq.args[..3], ["run", "--model", "io-uring+sqpoll"]);
        assert_eq!(
            sq.file,
            Path::new("/out/x/runs/io-uring+sqpoll-c1-idle0-r1.json")
        );
        assert!(sq.args.windows(2).any(|w| w == ["--duration", "1"]));
        assert!(sq.args.windows(2).any(|w| w == ["--server-cpus", "1"]));
        assert!(sq.args.windows(2).any(|w| w == ["--client-cpus", "0"]));
        assert_eq!(Placement::disjoint(&[0], 1), Placement::default());
        let four = Placement::disjoint(&[0, 1, 2, 3], 2);
        assert_eq!(four.server_cpus, Some(vec![2, 3]));
    }

    #[test]
    fn runs_past_a_limit_are_findings_or_scale_out() {
        // 2,000,000 connections: past any process's open-files limit (fs.nr_open is at most
        // 1,048,576 by default), whether netpoll may raise it or not.
        let e: Experiment = toml::from_str(
            "name = \"c\"\nquestion = \"q\"\nmodels = [\"select\", \"poll\", \"epoll-lt\"]\n\
             connections = [10]\nidle_connections = [100, 2000, 2000000]\nscale_out = [\"epoll-lt\"]\n\
             workers = 64\nduration = 1.0\nwarmup = 0.5\n",
        )
        .expect("experiment");
        let runs = plan(&[e], 1, Path::new("/out"), &Placement::default(), None);
        let find = |model: &str, idle: usize| {
            runs.iter()
                .find(|r| r.model == model && r.idle_connections == idle)
                .expect("planned")
        };
        assert_eq!(find("select", 100).status, Status::NotRun);
        let select = find("select", 2000);
        assert_eq!(select.status, Status::BeyondLimit);
        assert!(select.error.as_deref().unwrap().contains("FD_SETSIZE"));
        assert_eq!(select.seconds, 0.0);
        let poll = find("poll", 2_000_000);
        assert_eq!(poll.status, Status::BeyondLimit);
        assert!(
            poll.error
                .as_deref()
                .unwrap()
                .contains("does not spread over processes"),
            "{:?}",
            poll.error
        );
        let epoll = find("epoll-lt", 2_000_000);
        assert_eq!(epoll.status, Status::NotRun);
        assert!(epoll.args.windows(2).any(|w| w == ["--workers", "64"]));
        assert!(
            !find("epoll-lt", 100)
                .args
                .contains(&"--workers".to_string())
        );
    }
}
