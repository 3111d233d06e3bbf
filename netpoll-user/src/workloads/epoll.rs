//! An epoll reactor: one thread registers its sockets once and asks the kernel only for those
//! that are ready. Level-triggered: epoll reports a socket for as long as it is ready, so the
//! reactor switches its interest between reading and writing. Edge-triggered: epoll reports
//! changes only, so the reactor registers both once and must drain each socket to EAGAIN
//! (which `Conn::progress` does).

use std::{collections::HashMap, io, net::TcpListener, os::fd::AsRawFd, sync::Arc};

use anyhow::Result;

use super::{Config, Conn, Handler, Want, is_transient_accept_error};

const LISTENER: u64 = u64::MAX;

pub fn serve_level_triggered(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    reactor(&listener, config, Trigger::Level, false)
}

pub fn serve_edge_triggered(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    reactor(&listener, config, Trigger::Edge, false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}

fn ctl(ep: i32, op: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: valid epoll and descriptor, event on the stack.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs one reactor. `exclusive`: several reactors share the listener, and EPOLLEXCLUSIVE wakes
/// only one of them per new connection.
pub fn reactor(
    listener: &TcpListener,
    config: Arc<Config>,
    trigger: Trigger,
    exclusive: bool,
) -> Result<()> {
    listener.set_nonblocking(true)?;
    let mut handler = Handler::new(config.clone())?;
    // SAFETY: plain syscall; the descriptor is closed when `_guard` drops.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: we own `ep`.
    let _guard = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
    let listen_events = libc::EPOLLIN as u32
        | if exclusive {
            libc::EPOLLEXCLUSIVE as u32
        } else {
            0
        };
    ctl(
        ep,
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        listen_events,
        LISTENER,
    )?;
    let mut conns: HashMap<i32, (Conn<std::net::TcpStream>, Want)> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: a valid buffer of `events.len()` entries; -1: wait without limit.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in &events[..n as usize] {
            if ev.u64 == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            let fd = stream.as_raw_fd();
                            let interest = match trigger {
                                Trigger::Level => libc::EPOLLIN as u32,
                                Trigger::Edge => {
                                    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32
                                }
                            };
                            ctl(ep, libc::EPOLL_CTL_ADD, fd, interest, fd as u64)?;
                            conns.insert(fd, (Conn::new(stream, config.payload()), Want::Read));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if is_transient_accept_error(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let fd = ev.u64 as i32;
            let Some((conn, interest)) = conns.get_mut(&fd) else {
                continue;
            };
            match conn.progress(&mut handler) {
                Ok(Want::Closed) | Err(_) => {
                    // Closing the socket removes it from the epoll set.
                    conns.remove(&fd);
                }
                Ok(want) if trigger == Trigger::Level && want != *interest => {
                    let events = if want == Want::Write {
                        libc::EPOLLOUT
                    } else {
                        libc::EPOLLIN
                    } as u32;
                    ctl(ep, libc::EPOLL_CTL_MOD, fd, events, fd as u64)?;
                    *interest = want;
                }
                Ok(_) => {}
            }
        }
    }
}
