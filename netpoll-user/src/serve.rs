//! `netpoll serve` and `netpoll models`: run one workload server alone.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    os::fd::FromRawFd as _,
    sync::Arc,
};

use anyhow::{Context as _, Result, bail};
use nix::fcntl::{FcntlArg, fcntl};

use crate::workloads::{self, Config, MODELS};

#[derive(Clone, Debug)]
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

/// Serves until killed. Prints the address it listens on first (port 0 picks a free port), unless
/// given an inherited listening socket (`listen_fd`, from `netpoll run`, which knows the address).
pub fn serve(req: ServeRequest, listen_fd: Option<i32>) -> Result<()> {
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
    let listener = match listen_fd {
        Some(fd) => {
            if fcntl(fd, FcntlArg::F_GETFD).is_err() {
                bail!("--listen-fd {fd}: not an open descriptor");
            }
            // SAFETY: an open descriptor handed to us to own; checked to be a socket below.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            listener
                .local_addr()
                .with_context(|| format!("--listen-fd {fd}: not a listening TCP socket"))?;
            listener
        }
        None => {
            let listener = TcpListener::bind(req.listen)
                .with_context(|| format!("cannot listen on {}", req.listen))?;
            let addr = listener.local_addr()?;
            println!("netpoll serve: {} listening on {addr}", model.name);
            std::io::stdout().flush()?;
            listener
        }
    };
    let result = (model.serve)(listener, config);
    if let Some(path) = disk_file {
        let _ = std::fs::remove_file(path);
    }
    result
}
