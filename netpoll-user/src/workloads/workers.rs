//! `--workers N`: any TCP model served by N processes, each on a listening socket of its own
//! bound to the same address with SO_REUSEPORT, so that the kernel spreads new connections over
//! them by a hash of each connection's addresses (nginx's `listen ... reuseport`). The shape a
//! multiplexing server takes beyond one process's descriptor limit: each worker holds about
//! 1/N of the connections, and nothing is shared between them.
//!
//! The parent opens every listener before it starts a worker (no connection can reach a
//! socket that does not exist yet), starts each worker as `netpoll serve ... --listen-fd` with
//! its own, and waits: the workers die with it (PR_SET_PDEATHSIG), and it exits when one does.

use std::{
    net::{SocketAddr, TcpListener},
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    process::{Child, Command},
};

use anyhow::{Context as _, Result};
use socket2::{Domain, Socket, Type};

/// Pending connections a listener queues before the server accepts them. The kernel's default
/// for std's listeners is 128: 100,000 connections opened by several processes at once would
/// overflow it, and every dropped SYN waits a second to be sent again.
const BACKLOG: i32 = 4096;

/// A listening TCP socket on `addr`; with `reuse_port`, one that other sockets may bind too.
pub fn listen(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Serves with `workers` processes, the first on `listener` (which must have SO_REUSEPORT),
/// the others on new sockets bound to its address; returns when one of them exits.
/// `worker_args`: `netpoll serve`'s options for one worker, without --listen-fd.
pub fn serve(listener: TcpListener, workers: usize, worker_args: &[String]) -> Result<()> {
    let addr = listener.local_addr()?;
    let mut listeners: Vec<OwnedFd> = vec![listener.into()];
    for _ in 1..workers {
        listeners.push(listen(addr, true)?.into());
    }
    let exe = std::env::current_exe().context("cannot find the netpoll executable")?;
    let mut children: Vec<Child> = Vec::new();
    for fd in &listeners {
        let fd = fd.as_raw_fd();
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .args(worker_args)
            .args(["--listen-fd", &fd.to_string()]);
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, fcntl).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                    || libc::fcntl(fd, libc::F_SETFD, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        children.push(command.spawn().context("cannot start a worker process")?);
    }
    // The workers hold the sockets now.
    drop(listeners);
    let mut status = 0;
    // SAFETY: waits for any child, writing its status into a local.
    let pid = unsafe { libc::wait(&raw mut status) };
    for child in &mut children {
        if child.id() as i32 != pid {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    anyhow::bail!("worker process {pid} ended (wait status {status:#x}); the others were stopped")
}
