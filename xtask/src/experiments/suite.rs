//! The suite's declaration: experiments read from a TOML file (`xtask/experiments.toml`), each a
//! question with the runs that answer it, checked before anything runs.

use std::{fs, path::Path};

use analysis::{models, servers::Server};
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

/// A suite file: the A/A calibration, then the experiments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub calibration: Calibration,
    pub experiment: Vec<Experiment>,
    /// Third-party servers experiments may run (`analysis::servers`).
    #[serde(default)]
    pub server: Vec<Server>,
}

/// The A/A calibration: one configuration run several times against itself, to learn the
/// noise floor (the spread of identical runs) before the experiments.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub model: String,
    pub connections: usize,
    pub duration: f64,
    pub warmup: f64,
    /// Runs of the configuration (at least 3).
    pub runs: usize,
    #[serde(default, skip_serializing)]
    quick: Option<CalibrationQuick>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalibrationQuick {
    runs: Option<usize>,
    duration: Option<f64>,
    warmup: Option<f64>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            model: "epoll-lt".into(),
            connections: 10,
            duration: 1.0,
            warmup: 0.3,
            runs: 10,
            quick: None,
        }
    }
}

impl Calibration {
    pub fn quick(mut self) -> Calibration {
        if let Some(q) = self.quick.take() {
            self.runs = q.runs.unwrap_or(self.runs);
            self.duration = q.duration.unwrap_or(self.duration);
            self.warmup = q.warmup.unwrap_or(self.warmup);
        }
        self
    }

    /// The calibration as an experiment of one configuration, its runs as repeats.
    pub fn as_experiment(&self) -> Experiment {
        Experiment {
            name: CALIBRATION.into(),
            question: "How much do identical runs differ on this machine, and so how small a difference can the suite tell from noise?".into(),
            models: vec![self.model.clone()],
            servers: Vec::new(),
            connections: vec![self.connections],
            idle_connections: vec![0],
            duration: self.duration,
            warmup: self.warmup,
            payload: default_payload(),
            think_us: 0,
            think_every: 1,
            disk_read: 0,
            cold_disk: false,
            rate: None,
            rates: Vec::new(),
            client_threads: 1,
            netns: false,
            go: false,
            go_exact: false,
            ready: false,
            uring: false,
            threads: 0,
            note: None,
            scale_out: Vec::new(),
            workers: eight(),
            long: false,
            quick: None,
        }
    }

    fn check(&self) -> Result<()> {
        self.as_experiment().check(&[])?;
        if self.runs < 3 {
            bail!("calibration: runs must be at least 3 to measure a spread");
        }
        Ok(())
    }
}

/// The name under which the calibration's runs and report are written.
pub const CALIBRATION: &str = "calibration";

/// One experiment: every model at every value of its sweep, each a `netpoll run`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub question: String,
    /// Models or variants of the catalogue (`netpoll models`).
    #[serde(default)]
    pub models: Vec<String>,
    /// Third-party servers, by their `[[server]]` names.
    #[serde(default)]
    pub servers: Vec<String>,
    pub connections: Vec<usize>,
    #[serde(default = "no_idle")]
    pub idle_connections: Vec<usize>,
    pub duration: f64,
    pub warmup: f64,
    #[serde(default = "default_payload")]
    pub payload: usize,
    #[serde(default)]
    pub think_us: u64,
    /// The think_us work on one request in N only (`--think-every`).
    #[serde(default = "one_u64")]
    pub think_every: u64,
    #[serde(default)]
    pub disk_read: usize,
    /// Every `disk_read` from the disk: the file's pages dropped from the cache before each
    /// read (`netpoll run --cold-disk`).
    #[serde(default)]
    pub cold_disk: bool,
    #[serde(default)]
    pub rate: Option<f64>,
    /// Open-loop rates swept (requests/s), each a configuration; instead of `rate`.
    #[serde(default)]
    pub rates: Vec<f64>,
    #[serde(default = "one")]
    pub client_threads: usize,
    /// Servers in a network namespace behind a veth pair (`netpoll run --netns`).
    #[serde(default)]
    pub netns: bool,
    /// The Go view of Go servers (`netpoll run --go`).
    #[serde(default)]
    pub go: bool,
    /// The exact Go view (`netpoll run --go-exact`: uprobes, which slow the server down).
    #[serde(default)]
    pub go_exact: bool,
    /// The readiness-to-service view (`netpoll run --ready`).
    #[serde(default)]
    pub ready: bool,
    /// The io_uring view (`netpoll run --uring`).
    #[serde(default)]
    pub uring: bool,
    /// Reactors, workers or GOMAXPROCS of the models that take `--threads` (0: one per CPU
    /// the server may use).
    #[serde(default)]
    pub threads: usize,
    /// A caveat the report states under its question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Models that go past one process's descriptor limit as `workers` processes sharing the
    /// port (`netpoll run --workers`); the others stop at the limit, which the report names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_out: Vec<String>,
    /// Worker processes of the `scale_out` models where one process cannot hold the
    /// connections.
    #[serde(default = "eight")]
    pub workers: u64,
    /// Too long for the suite: run only by `--only NAME`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub long: bool,
    #[serde(default, skip_serializing)]
    quick: Option<Quick>,
}

fn eight() -> u64 {
    8
}

/// What `--quick` changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quick {
    models: Option<Vec<String>>,
    rates: Option<Vec<f64>>,
    servers: Option<Vec<String>>,
    connections: Option<Vec<usize>>,
    idle_connections: Option<Vec<usize>>,
    duration: Option<f64>,
    warmup: Option<f64>,
}

fn no_idle() -> Vec<usize> {
    vec![0]
}
fn one_u64() -> u64 {
    1
}

fn default_payload() -> usize {
    64
}
fn one() -> usize {
    1
}

impl Experiment {
    /// The experiment as `--quick` runs it.
    pub fn quick(mut self) -> Experiment {
        if let Some(q) = self.quick.take() {
            self.models = q.models.unwrap_or(self.models);
            self.servers = q.servers.unwrap_or(self.servers);
            self.rates = q.rates.unwrap_or(self.rates);
            self.connections = q.connections.unwrap_or(self.connections);
            self.idle_connections = q.idle_connections.unwrap_or(self.idle_connections);
            self.duration = q.duration.unwrap_or(self.duration);
            self.warmup = q.warmup.unwrap_or(self.warmup);
        }
        self
    }

    /// The load's rates, one configuration each: the `rates` swept, else `rate` (None: closed
    /// loop).
    pub fn load_rates(&self) -> Vec<Option<f64>> {
        if self.rates.is_empty() {
            vec![self.rate]
        } else {
            self.rates.iter().map(|&r| Some(r)).collect()
        }
    }

    /// What it runs: its models, then its servers.
    pub fn entries(&self) -> impl Iterator<Item = &String> {
        self.models.iter().chain(&self.servers)
    }

    fn check(&self, servers: &[Server]) -> Result<()> {
        for model in &self.models {
            if models::model(model).is_none() && models::variant(model).is_none() {
                bail!("experiment {}: {}", self.name, models::unknown(model));
            }
        }
        if let Some(m) = self.scale_out.iter().find(|m| !self.models.contains(m)) {
            bail!(
                "experiment {}: scale_out model {m} is not among its models",
                self.name
            );
        }
        if self.workers < 2 && !self.scale_out.is_empty() {
            bail!("experiment {}: workers must be at least 2", self.name);
        }
        for server in &self.servers {
            if !servers.iter().any(|s| &s.name == server) {
                bail!(
                    "experiment {}: no [[server]] named {server:?} is declared",
                    self.name
                );
            }
        }
        if self.entries().next().is_none()
            || self.connections.is_empty()
            || self.idle_connections.is_empty()
        {
            bail!(
                "experiment {}: models (or servers), connections and idle_connections must not be empty",
                self.name
            );
        }
        if !self.servers.is_empty() && (self.think_us != 0 || self.disk_read != 0) {
            bail!(
                "experiment {}: think_us and disk_read are options of netpoll's models, not of servers",
                self.name
            );
        }
        if self.cold_disk && self.disk_read == 0 {
            bail!("experiment {}: cold_disk needs disk_read", self.name);
        }
        if !self.rates.is_empty() && self.rate.is_some() {
            bail!("experiment {}: give rate or rates, not both", self.name);
        }
        if self
            .rates
            .iter()
            .chain(&self.rate)
            .any(|r| !(r.is_finite() && *r > 0.0))
        {
            bail!("experiment {}: rates must be positive", self.name);
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

/// A suite file, checked: unknown fields, unknown models, empty sweeps and duplicate names
/// are refused with the file named.
pub fn load(path: &Path) -> Result<Suite> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let suite: Suite = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let named = |e: anyhow::Error| e.context(path.display().to_string());
    analysis::servers::check(&suite.server)
        .map_err(|e| anyhow::anyhow!(e))
        .map_err(named)?;
    suite.calibration.check().map_err(named)?;
    if suite.experiment.is_empty() {
        bail!("{}: no [[experiment]] declared", path.display());
    }
    for (i, e) in suite.experiment.iter().enumerate() {
        e.check(&suite.server).map_err(named)?;
        if e.name == CALIBRATION {
            bail!(
                "{}: {CALIBRATION} is the A/A calibration's name",
                path.display()
            );
        }
        if suite.experiment[..i].iter().any(|o| o.name == e.name) {
            bail!(
                "{}: experiment {} is declared twice",
                path.display(),
                e.name
            );
        }
    }
    Ok(suite)
}

impl Suite {
    /// The suite as `--quick` runs it.
    pub fn quick(self) -> Suite {
        Suite {
            calibration: self.calibration.quick(),
            experiment: self.experiment.into_iter().map(Experiment::quick).collect(),
            server: self.server,
        }
    }

    /// The suite as a run of it without `--only` runs it: long experiments left out.
    pub fn without_long(mut self) -> Suite {
        self.experiment.retain(|e| !e.long);
        self
    }

    /// The declared servers the experiments run, each once.
    pub fn servers_used(&self) -> Vec<&Server> {
        self.server
            .iter()
            .filter(|s| self.experiment.iter().any(|e| e.servers.contains(&s.name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_suites_are_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-suite-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let write = |text: &str| {
            let p = dir.join("s.toml");
            fs::write(&p, text).expect("write");
            format!("{:#}", load(&p).map(|_| ()).unwrap_err())
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
        assert!(
            err.contains("s.toml") && err.contains("conection"),
            "{err:#}"
        );
        let empty = base.replace("connections = [1]", "connections = []");
        let err = write(&format!("[[experiment]]\n{empty}models = [\"poll\"]\n"));
        assert!(err.contains("must not be empty"), "{err}");
        let err = write(&format!("[[experiment]]\n{base}servers = [\"httpd\"]\n"));
        assert!(err.contains("no [[server]] named \"httpd\""), "{err}");
        let err = write(
            "[calibration]\nmodel = \"poll\"\nconnections = 1\nduration = 1.0\nwarmup = 0.0\nruns = 2\n[[experiment]]\nname = \"a\"\nquestion = \"q\"\nmodels = [\"poll\"]\nconnections = [1]\nduration = 1.0\nwarmup = 0.0\n",
        );
        assert!(err.contains("at least 3"), "{err}");
        assert!(write("").contains("experiment"));
    }
}
