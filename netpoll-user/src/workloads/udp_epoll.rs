//! UDP with epoll and batching: a non-blocking socket, `epoll_wait` for readiness, then
//! `recvmmsg` takes up to BATCH datagrams in one syscall and `sendmmsg` returns all their
//! replies in another. Under load a wait finds many datagrams queued, so the syscalls per
//! request fall well below the blocking loop's two.

use std::{
    io,
    mem::zeroed,
    net::UdpSocket,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
};

use anyhow::Result;

use super::{Config, Handler};

/// Datagrams per recvmmsg/sendmmsg.
const BATCH: usize = 64;
const DATAGRAM: usize = 65536;

/// The arrays recvmmsg and sendmmsg work on: a buffer, an address and headers per datagram.
struct Batch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new() -> Box<Batch> {
        let mut b = Box::new(Batch {
            bufs: vec![0; BATCH * DATAGRAM],
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
            addrs: vec![unsafe { zeroed() }; BATCH],
            // SAFETY: all-zero is a valid iovec (null base, zero length), set before use.
            iovecs: vec![unsafe { zeroed() }; BATCH],
            // SAFETY: all-zero is a valid iovec (null base, zero length), set before use.
            headers: vec![unsafe { zeroed() }; BATCH],
        });
        for i in 0..BATCH {
            b.iovecs[i].iov_base = b.bufs[i * DATAGRAM..].as_mut_ptr().cast();
            let (iov, addr) = (&raw mut b.iovecs[i], &raw mut b.addrs[i]);
            let h = &mut b.headers[i].msg_hdr;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_name = addr.cast();
        }
        b
    }

    /// Ready to receive: every buffer and address at full size.
    fn reset(&mut self) {
        for i in 0..BATCH {
            self.iovecs[i].iov_len = DATAGRAM;
            self.headers[i].msg_hdr.msg_namelen =
                size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
    }
}

pub fn serve(socket: UdpSocket, config: Arc<Config>) -> Result<()> {
    socket.set_nonblocking(true)?;
    let mut handler = Handler::new(config)?;
    // SAFETY: plain syscalls; results checked, the new descriptor owned.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: epoll_create1 just returned this descriptor (checked >= 0): we own it.
    let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
    let fd = socket.as_raw_fd();
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: epoll_ctl on our epoll descriptor with a valid event.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    let mut batch = Batch::new();
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    loop {
        // SAFETY: a valid epoll descriptor and event buffer.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), 1, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        // Drain: batch after batch until the queue is empty.
        loop {
            batch.reset();
            // SAFETY: the headers point into `batch`, which outlives the call.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    batch.headers.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                break;
            }
            let got = got as usize;
            for i in 0..got {
                handler.handle()?;
                // The reply is the datagram itself, to where it came from.
                batch.iovecs[i].iov_len = batch.headers[i].msg_len as usize;
            }
            let mut sent = 0;
            while sent < got {
                // SAFETY: the headers point at the batch's own iovecs, buffers and addresses,
                // alive for the call; only the `got - sent` received ones are passed.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        batch.headers[sent..].as_mut_ptr(),
                        (got - sent) as u32,
                        0,
                    )
                };
                if n <= 0 {
                    // A full send buffer drops the rest, as the network would.
                    break;
                }
                sent += n as usize;
            }
            if got < BATCH {
                break;
            }
        }
    }
}
