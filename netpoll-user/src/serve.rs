//! `netpoll serve` and `netpoll models`: run one workload server alone.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    sync::Arc,
};

use anyhow::{Context as _, Result, bail};

use crate::workloads::{self, Config, MODELS};

pub struct ServeRequest {
    pub model: String,
    pub listen: SocketAddr,
    pub payload: usize,
    pub think_us: u64,
    pub disk_read: usize,
    pub threads: usize,
    pub sqpoll: bool,
}

pub fn list_models() {
    let width = MODELS.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for model in MODELS {
        println!("{:<width$}  {}", model.name, model.about);
    }
}

/// Serves until killed. Prints the address it listens on first (port 0 picks a free port).
pub fn serve(req: ServeRequest) -> Result<()> {
    let model = workloads::find(&req.model)?;
    if req.payload == 0 {
        bail!("--payload must be at least 1 byte");
    }
    let disk_file = if req.disk_read > 0 {
        Some(workloads::create_disk_file()?)
    } else {
        None
    };
    let config = Arc::new(Config {
        payload: req.payload,
        think_us: req.think_us,
        disk_read: req.disk_read,
        disk_file: disk_file.clone(),
        threads: req.threads,
        sqpoll: req.sqpoll,
    });
    let listener = TcpListener::bind(req.listen)
        .with_context(|| format!("cannot listen on {}", req.listen))?;
    let addr = listener.local_addr()?;
    println!("netpoll serve: {} listening on {addr}", model.name);
    std::io::stdout().flush()?;
    let result = (model.serve)(listener, config);
    if let Some(path) = disk_file {
        let _ = std::fs::remove_file(path);
    }
    result
}
