//! Where `profile`, `run` and `load` write their results: `--json FILE` and `--out DIR`, both
//! opened before any work starts, so that an unusable path fails early and nothing measured is
//! lost to it later.

use std::{
    fs::File,
    io::{Seek as _, Write as _},
    path::{Path, PathBuf},
};

use analysis::{Results, report};
use anyhow::{Context as _, Result};

/// `--json FILE` and `--out DIR` of `profile` and `run`.
pub struct ResultsSinks {
    json: Option<JsonFile>,
    out: Option<ReportDir>,
}

impl ResultsSinks {
    pub fn open(json: Option<&Path>, out: Option<&Path>) -> Result<ResultsSinks> {
        Ok(ResultsSinks {
            json: json.map(|p| JsonFile::create(p, "--json")).transpose()?,
            out: out.map(ReportDir::create).transpose()?,
        })
    }

    pub fn write(&mut self, results: &Results) -> Result<()> {
        if let Some(json) = self.json.as_mut() {
            json.write(results)?;
        }
        if let Some(out) = self.out.as_mut() {
            out.write(results)?;
        }
        Ok(())
    }
}

/// `--out DIR`: results.json and the report beside it, drawn from the results in memory.
pub struct ReportDir {
    dir: PathBuf,
    json: JsonFile,
}

impl ReportDir {
    pub fn create(dir: &Path) -> Result<ReportDir> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: cannot create the directory", dir.display()))?;
        Ok(ReportDir {
            dir: dir.to_path_buf(),
            json: JsonFile::create(&dir.join("results.json"), "--out")?,
        })
    }

    pub fn write(&mut self, results: &Results) -> Result<()> {
        self.json.write(results)?;
        let runs = report::arrange(vec![report::Run::new(&self.json.path, results.clone())]);
        let written = report::write(&self.dir, &runs, &report::Heading::default())?;
        announce_report(written.len(), &self.dir);
        Ok(())
    }
}

/// Says where a report went, on stderr.
pub fn announce_report(files: usize, dir: &Path) {
    eprintln!(
        "netpoll: wrote {files} files into {}; open {}",
        dir.display(),
        dir.join("index.html").display()
    );
}

/// A JSON results file, created before any work starts.
pub struct JsonFile {
    file: File,
    path: PathBuf,
}

impl JsonFile {
    pub fn create(path: &Path, option: &str) -> Result<JsonFile> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("{option} {}: cannot write", path.display()))?;
        Ok(JsonFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Replaces the file's contents with `value`, pretty-printed, and says so on stderr.
    pub fn write(&mut self, value: &impl serde::Serialize) -> Result<()> {
        let mut write = || -> Result<()> {
            self.file.set_len(0)?;
            self.file.rewind()?;
            serde_json::to_writer_pretty(&mut self.file, value)?;
            self.file.write_all(b"\n")?;
            Ok(())
        };
        write().with_context(|| format!("{}: write failed", self.path.display()))?;
        eprintln!("netpoll: wrote {}", self.path.display());
        Ok(())
    }
}
