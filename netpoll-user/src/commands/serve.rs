//! `netpoll serve` and `netpoll models`: run one workload server alone, list the models.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::fd::{BorrowedFd, FromRawFd as _},
    sync::Arc,
};

use analysis::{models, workload::Workload};
use anyhow::{Context as _, Result, anyhow, bail};
use nix::{
    fcntl::{FcntlArg, fcntl},
    sys::socket::{SockType, getsockopt, sockopt},
};

use crate::workloads::{self, Config, Serve};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    workload: Workload,
    /// Address to listen on (TCP, or UDP for the udp-* models); port 0 picks a free one
    /// (printed on start).
    #[arg(short, long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Serve on this inherited socket instead, already listening (TCP) or bound (UDP) (used by
    /// `netpoll run`).
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
        server: workload.server.clone(),
        disk_file: disk.as_ref().map(workloads::disk_path),
    });
    let announce = |addr: SocketAddr, what: &str| -> Result<()> {
        println!("netpoll serve: {} {what} {addr}", model.name);
        Ok(std::io::stdout().flush()?)
    };
    let result = match serve {
        Serve::Tcp(serve) => {
            let workers = config.server.processes();
            let listener = match args.listen_fd {
                // SAFETY: an open stream socket handed to us to own (checked).
                Some(fd) => unsafe { TcpListener::from_raw_fd(inherited(fd, SockType::Stream)?) },
                None => {
                    let listener = workloads::workers::listen(args.listen, workers > 1)?;
                    announce(listener.local_addr()?, "listening on")?;
                    listener
                }
            };
            if workers > 1 {
                // Each worker serves one share, as a one-process server of the same model.
                let mut one = workload.clone();
                one.server.workers = 1;
                workloads::workers::serve(listener, workers, &one.args())
            } else {
                serve(listener, config)
            }
        }
        Serve::Udp(serve) => {
            let socket = match args.listen_fd {
                // SAFETY: an open datagram socket handed to us to own (checked).
                Some(fd) => unsafe { UdpSocket::from_raw_fd(inherited(fd, SockType::Datagram)?) },
                None => {
                    let socket = UdpSocket::bind(args.listen)
                        .with_context(|| format!("cannot bind UDP {}", args.listen))?;
                    announce(socket.local_addr()?, "receiving UDP on")?;
                    socket
                }
            };
            workloads::size_udp_buffers(&socket);
            serve(socket, config)
        }
    };
    drop(disk);
    result.map(|()| 0)
}

/// An inherited descriptor, checked to be an open socket of the model's type.
fn inherited(fd: i32, want: SockType) -> Result<i32> {
    if fcntl(fd, FcntlArg::F_GETFD).is_err() {
        bail!("--listen-fd {fd}: not an open descriptor");
    }
    // SAFETY: checked open just above; only borrowed for the query.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match getsockopt(&borrowed, sockopt::SockType) {
        Ok(t) if t == want => Ok(fd),
        _ => bail!("--listen-fd {fd}: not a {want:?} socket, as this model needs"),
    }
}
