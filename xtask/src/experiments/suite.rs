//! The suite's declaration: experiments read from a TOML file (`xtask/experiments.toml`), each a
//! question with the runs that answer it, checked before anything runs.

use std::{fs, path::Path};

use analysis::models;
use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    experiment: Vec<Experiment>,
}

/// One experiment: every model at every value of its sweep, each a `netpoll run`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub question: String,
    /// Models or variants of the catalogue (`netpoll models`).
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
    /// The experiment as `--quick` runs it.
    pub fn quick(mut self) -> Experiment {
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
            if models::model(model).is_none() && models::variant(model).is_none() {
                bail!("experiment {}: {}", self.name, models::unknown(model));
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
pub fn load(path: &Path) -> Result<Vec<Experiment>> {
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
            load(&p).map(|_| ()).unwrap_err().to_string()
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
}
