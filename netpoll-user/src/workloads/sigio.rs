//! Signal-driven I/O, the remaining Unix model: the kernel sends a (real-time) signal naming the
//! descriptor whenever a socket becomes readable or writable (O_ASYNC + F_SETSIG). The server
//! blocks the signal and collects it with sigwaitinfo. If the signal queue overflows, the kernel
//! sends a plain SIGIO instead and the server must try every socket.

use std::{collections::HashMap, io, net::TcpListener, os::fd::AsRawFd, sync::Arc};

use anyhow::Result;

use super::{Config, Conn, Handler, Want, is_transient_accept_error};

/// The SIGPOLL part of `siginfo_t` (include/uapi/asm-generic/siginfo.h), which `libc` does not
/// expose: after si_signo, si_errno, si_code and padding come `long si_band; int si_fd;`.
#[repr(C)]
struct SigPollInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    band: i64,
    fd: i32,
}

/// fcntl command to choose the signal (linux/fcntl.h); `libc` does not export it.
const F_SETSIG: i32 = 10;

/// Asks the kernel to signal `signal` to this process when `fd` becomes ready.
fn enable_signals(fd: i32, signal: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        if libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) < 0
            || libc::fcntl(fd, F_SETSIG, signal) < 0
            || libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_ASYNC | libc::O_NONBLOCK,
            ) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let signal = libc::SIGRTMIN() + 1;
    // SAFETY: building and installing a signal mask for this (only) thread.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset/sigaddset/pthread_sigmask on a sigset_t of our own.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigaddset(&mut set, libc::SIGIO);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut handler = Handler::new(config.clone())?;
    let lfd = listener.as_raw_fd();
    enable_signals(lfd, signal)?;
    let mut conns: HashMap<i32, Conn<std::net::TcpStream>> = HashMap::new();
    // Connections that arrived before signals were enabled.
    let mut pending: Vec<i32> = vec![lfd];
    loop {
        for fd in pending.drain(..) {
            if fd == lfd {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let cfd = stream.as_raw_fd();
                            enable_signals(cfd, signal)?;
                            conns.insert(cfd, Conn::new(stream, config.payload()));
                            // Data may have arrived before O_ASYNC was set: try it once now.
                            if matches!(
                                conns.get_mut(&cfd).map(|c| c.progress(&mut handler)),
                                Some(Ok(Want::Closed) | Err(_))
                            ) {
                                conns.remove(&cfd);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if is_transient_accept_error(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            } else if let Some(conn) = conns.get_mut(&fd)
                && matches!(conn.progress(&mut handler), Ok(Want::Closed) | Err(_))
            {
                conns.remove(&fd);
            }
        }
        // SAFETY: a valid set; `info` is a siginfo_t, of which SigPollInfo is a prefix.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigwaitinfo with a valid set and a siginfo_t to fill.
        let got = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if got < 0 {
            continue; // EINTR
        }
        if got == signal {
            // SAFETY: the kernel filled `info` for a SIGIO-style signal, whose layout starts with SigPollInfo (#[repr(C)], checked against siginfo_t above).
            let poll = unsafe { &*(&raw const info).cast::<SigPollInfo>() };
            pending.push(poll.fd);
        } else {
            // SIGIO: the real-time queue overflowed, readiness was lost: try everything.
            pending.push(lfd);
            pending.extend(conns.keys().copied());
        }
    }
}
