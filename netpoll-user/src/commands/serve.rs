//! `netpoll serve` and `netpoll models`: run one workload server alone, list the models.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    os::fd::FromRawFd as _,
    sync::Arc,
};

use analysis::{models, workload::Workload};
use anyhow::{Context as _, Result, anyhow, bail};
use nix::fcntl::{FcntlArg, fcntl};

use crate::workloads::{self, Config};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    workload: Workload,
    /// Address to listen on; port 0 picks a free one (printed on start).
    #[arg(short, long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Serve on this inherited, already listening socket instead (used by `netpoll run`).
    #[arg(long, hide = true, value_name = "FD")]
    listen_fd: Option<i32>,
}

/// `netpoll models`: the catalogue, then the variants.
pub fn list_models() -> Result<i32> {
    let width = models::names().map(str::len).max().unwrap_or(0);
    for model in models::MODELS {
        println!("{:<width$}  {}", model.name, model.about);
    }
    for variant in models::VARIANTS {
        println!("{:<width$}  {}", variant.name, variant.about);
    }
    Ok(0)
}

/// Serves until killed (no signal handlers: a server dies of SIGINT/SIGTERM like any other).
/// Prints the address it listens on first (port 0 picks a free port), unless given an inherited
/// listening socket (`--listen-fd`, from `netpoll run`, which knows the address).
pub fn run(args: Args) -> Result<i32> {
    let (workload, _) = args.workload.resolve().map_err(|e| anyhow!(e))?;
    let (model, serve) = workloads::find(&workload.model)?;
    // Built before listening: a client never waits on a build.
    workloads::prepare(&workload.model)?;
    // Kept open while serving: the file is unlinked already.
    let disk = if workload.server.disk_read > 0 {
        Some(workloads::create_disk_file()?)
    } else {
        None
    };
    let config = Arc::new(Config {
        server: workload.server,
        disk_file: disk.as_ref().map(workloads::disk_path),
    });
    let listener = match args.listen_fd {
        Some(fd) => inherited_listener(fd)?,
        None => {
            let listener = TcpListener::bind(args.listen)
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            println!(
                "netpoll serve: {} listening on {}",
                model.name,
                listener.local_addr()?
            );
            std::io::stdout().flush()?;
            listener
        }
    };
    let result = serve(listener, config);
    drop(disk);
    result.map(|()| 0)
}

fn inherited_listener(fd: i32) -> Result<TcpListener> {
    if fcntl(fd, FcntlArg::F_GETFD).is_err() {
        bail!("--listen-fd {fd}: not an open descriptor");
    }
    // SAFETY: an open descriptor handed to us to own; checked to be a socket below.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener
        .local_addr()
        .with_context(|| format!("--listen-fd {fd}: not a listening TCP socket"))?;
    Ok(listener)
}
