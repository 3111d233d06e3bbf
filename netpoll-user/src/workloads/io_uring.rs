//! io_uring: completion-based I/O. Instead of asking which sockets are ready and then reading,
//! the server queues the reads, writes and accepts themselves and collects their results. With
//! `--sqpoll` a kernel thread polls the submission queue, so a busy server makes few syscalls.
//! The `--disk-read` of a request goes through the ring too: a file read cannot be polled, and
//! io_uring completes it without blocking the loop (from the page cache at once, or later).

use std::{
    io,
    net::TcpListener,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::Arc,
};

use anyhow::{Context as _, Result};
use io_uring::{IoUring, opcode, squeue, types::Fd};

use super::{Config, DiskRead, Handler};

const ACCEPT: u64 = u64::MAX;

/// A connection's buffer and progress through the current request or reply.
struct Conn {
    fd: OwnedFd,
    buf: Vec<u8>,
    done: usize,
    writing: bool,
    /// The request's file read is in the ring (into `disk`).
    reading_disk: bool,
    disk: Vec<u8>,
}

impl Conn {
    /// The request's file read, into the connection's own buffer.
    fn disk_op(&mut self, read: DiskRead, token: u64) -> squeue::Entry {
        self.disk.resize(read.len, 0);
        self.reading_disk = true;
        opcode::Read::new(Fd(read.fd), self.disk.as_mut_ptr(), read.len as u32)
            .offset(read.offset)
            .build()
            .user_data(token)
    }

    /// The next operation: receive or send the rest of the buffer.
    fn next_op(&mut self, token: u64) -> squeue::Entry {
        let fd = Fd(self.fd.as_raw_fd());
        let rest = &mut self.buf[self.done..];
        let op = if self.writing {
            opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32).build()
        } else {
            opcode::Recv::new(fd, rest.as_mut_ptr(), rest.len() as u32).build()
        };
        op.user_data(token)
    }
}

fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an entry points into lives in a `Conn` that stays in `conns`
        // (its Vec never moves) until the operation's completion has been handled.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let mut builder = IoUring::builder();
    if config.server.sqpoll {
        builder.setup_sqpoll(1000);
    }
    let mut ring = builder
        .build(512)
        .context("io_uring_setup failed (is io_uring enabled?)")?;
    let mut handler = Handler::new(config.clone())?;
    let accept = opcode::Accept::new(
        Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .build()
    .user_data(ACCEPT);
    push(&mut ring, &accept)?;
    // Slot i holds the connection with token i; freed slots are reused.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    loop {
        ring.submit_and_wait(1)?;
        let completions: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (token, res) in completions {
            if token == ACCEPT {
                if res >= 0 {
                    // SAFETY: the kernel returned a new descriptor that we now own.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    let conn = Conn {
                        fd,
                        buf: vec![0; config.payload()],
                        done: 0,
                        writing: false,
                        reading_disk: false,
                        disk: Vec::new(),
                    };
                    let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let conn = conns[slot].insert(conn);
                    push(&mut ring, &conn.next_op(slot as u64))?;
                }
                push(&mut ring, &accept)?;
                continue;
            }
            let slot = token as usize;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if conn.reading_disk {
                // The request's file read is done (its bytes are not sent: the reply is the
                // echo): now the reply.
                if res < 0 {
                    return Err(io::Error::from_raw_os_error(-res).into());
                }
                conn.reading_disk = false;
                conn.writing = true;
                push(&mut ring, &conn.next_op(token))?;
                continue;
            }
            if res <= 0 {
                // EOF or error: closing the descriptor ends the connection.
                conns[slot] = None;
                continue;
            }
            conn.done += res as usize;
            if conn.done == conn.buf.len() {
                conn.done = 0;
                if !conn.writing
                    && let Some(read) = handler.handle_leaving_disk()
                {
                    let op = conn.disk_op(read, token);
                    push(&mut ring, &op)?;
                    continue;
                }
                conn.writing = !conn.writing;
            }
            push(&mut ring, &conn.next_op(token))?;
        }
    }
}
