//! poll(2): like select, without the FD_SETSIZE limit, but the whole array of descriptors still
//! crosses into the kernel and is scanned on every call.

use std::{io, net::TcpListener, os::fd::AsRawFd, sync::Arc};

use anyhow::Result;

use super::{Config, Conn, Handler, Want, is_transient_accept_error};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    listener.set_nonblocking(true)?;
    let mut handler = Handler::new(config.clone())?;
    // fds[0] is the listener; fds[i + 1] watches conns[i].
    let mut fds = vec![libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut conns: Vec<Conn<std::net::TcpStream>> = Vec::new();
    loop {
        // SAFETY: a valid array of pollfd; -1: wait without limit.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        // Connections first (indices shift when one closes), walking backwards.
        for i in (0..conns.len()).rev() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            match conns[i].progress(&mut handler) {
                Ok(Want::Closed) | Err(_) => {
                    conns.swap_remove(i);
                    fds.swap_remove(i + 1);
                }
                Ok(want) => {
                    fds[i + 1].events = if want == Want::Write {
                        libc::POLLOUT
                    } else {
                        libc::POLLIN
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(true)?;
                        fds.push(libc::pollfd {
                            fd: stream.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        });
                        conns.push(Conn::new(stream, config.payload()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_transient_accept_error(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}
