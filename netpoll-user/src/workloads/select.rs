//! select(2): one thread asks the kernel which of its sockets are ready. The kernel scans every
//! descriptor in the sets on every call, and the sets cannot hold a descriptor >= FD_SETSIZE.

use std::{collections::BTreeMap, io, net::TcpListener, os::fd::AsRawFd, sync::Arc};

use anyhow::Result;

use super::{Config, Conn, Handler, Want, is_transient_accept_error};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    listener.set_nonblocking(true)?;
    let mut handler = Handler::new(config.clone())?;
    let mut conns = BTreeMap::new();
    let mut wants: BTreeMap<i32, Want> = BTreeMap::new();
    let lfd = listener.as_raw_fd();
    let mut refused = 0u64;
    loop {
        // SAFETY: fd_set is plain data; FD_SET is given descriptors < FD_SETSIZE only.
        let (mut readable, mut writable): (libc::fd_set, libc::fd_set) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: `lfd` < FD_SETSIZE (checked when the listener was taken), `readable` is ours.
        unsafe { libc::FD_SET(lfd, &mut readable) };
        let mut max_fd = lfd;
        for (&fd, &want) in &wants {
            let set = if want == Want::Write {
                &mut writable
            } else {
                &mut readable
            };
            // SAFETY: `fd` < FD_SETSIZE (the accept loop refuses larger ones), `set` is one of our fd_sets.
            unsafe { libc::FD_SET(fd, set) };
            max_fd = max_fd.max(fd);
        }
        // SAFETY: valid sets, no timeout (block until something is ready).
        let n = unsafe {
            libc::select(
                max_fd + 1,
                &mut readable,
                &mut writable,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        // SAFETY: FD_ISSET reads our own fd_set; `lfd` < FD_SETSIZE.
        if unsafe { libc::FD_ISSET(lfd, &readable) } {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let fd = stream.as_raw_fd();
                        if fd >= libc::FD_SETSIZE as i32 {
                            // Said once: a client that keeps reconnecting would flood stderr.
                            if refused == 0 {
                                eprintln!(
                                    "netpoll serve: select cannot watch descriptor {fd} (FD_SETSIZE is {}): refusing connections beyond it",
                                    libc::FD_SETSIZE
                                );
                            }
                            refused += 1;
                            continue;
                        }
                        stream.set_nonblocking(true)?;
                        conns.insert(fd, Conn::new(stream, config.payload()));
                        wants.insert(fd, Want::Read);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_transient_accept_error(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let ready: Vec<i32> = wants
            .keys()
            .copied()
            // SAFETY: FD_ISSET reads our own fd_sets; every watched fd is < FD_SETSIZE.
            .filter(|&fd| unsafe { libc::FD_ISSET(fd, &readable) || libc::FD_ISSET(fd, &writable) })
            .collect();
        for fd in ready {
            let Some(conn) = conns.get_mut(&fd) else {
                continue;
            };
            match conn.progress(&mut handler) {
                Ok(Want::Closed) | Err(_) => {
                    conns.remove(&fd);
                    wants.remove(&fd);
                }
                Ok(want) => {
                    wants.insert(fd, want);
                }
            }
        }
    }
}
