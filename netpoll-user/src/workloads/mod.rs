//! The same tiny service written in each I/O model, one short file per model.
//!
//! The protocol is a fixed-size echo: the client sends `payload` bytes, the server reads all of
//! them, does the configured per-request work (`think_us` of CPU, `disk_read` bytes read from a
//! file), and sends the same bytes back. Everything models share is here: the request handler
//! and, for the non-blocking models, a connection state machine that makes as much progress as it
//! can without blocking.

pub mod af_xdp;
mod blocking_iterative;
mod blocking_threads;
mod epoll;
mod epoll_reactors;
pub mod go_netpoller;
mod io_uring;
mod nonblocking_spin;
mod poll;
mod select;
mod sigio;
mod tokio_tasks;
mod udp_blocking;
mod udp_epoll;
mod udp_io_uring;
pub mod workers;

use std::{
    fs::File,
    io::{self, Read, Seek, Write},
    net::{TcpListener, UdpSocket},
    os::fd::AsRawFd as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use analysis::{
    models::{self, Model},
    workload::ServerConfig,
};
use anyhow::{Context as _, Result, anyhow};

/// What a model's server runs with: the options (the same for every model) and the file
/// `--disk-read` reads from.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub disk_file: Option<PathBuf>,
}

impl Config {
    /// Threads for models that use several (epoll-reactors, tokio): as asked, or one per CPU.
    pub fn threads(&self) -> usize {
        if self.server.threads > 0 {
            self.server.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    pub fn payload(&self) -> usize {
        self.server.payload
    }
}

/// A model's server: serves on its listening TCP socket, or its bound UDP socket, until killed.
#[derive(Clone, Copy)]
pub enum Serve {
    Tcp(fn(TcpListener, Arc<Config>) -> Result<()>),
    Udp(fn(UdpSocket, Arc<Config>) -> Result<()>),
}

/// The implementation of each model of the catalogue (`analysis::models`).
fn implementation(model: &str) -> Option<Serve> {
    use Serve::{Tcp, Udp};
    Some(match model {
        "blocking-threads" => Tcp(blocking_threads::serve),
        "blocking-iterative" => Tcp(blocking_iterative::serve),
        "nonblocking-spin" => Tcp(nonblocking_spin::serve),
        "select" => Tcp(select::serve),
        "poll" => Tcp(poll::serve),
        "epoll-lt" => Tcp(epoll::serve_level_triggered),
        "epoll-et" => Tcp(epoll::serve_edge_triggered),
        "epoll-reactors" => Tcp(epoll_reactors::serve),
        "tokio" => Tcp(tokio_tasks::serve),
        "io-uring" => Tcp(io_uring::serve),
        "sigio" => Tcp(sigio::serve),
        "go-netpoller" => Tcp(go_netpoller::serve),
        "udp-blocking" => Udp(udp_blocking::serve),
        "udp-epoll" => Udp(udp_epoll::serve),
        "udp-io-uring" => Udp(udp_io_uring::serve),
        "af-xdp" => Udp(af_xdp::serve),
        _ => return None,
    })
}

/// Whatever a model needs before its server can start (go-netpoller: its binary, built once).
pub fn prepare(model: &str) -> Result<()> {
    if model == "go-netpoller" {
        go_netpoller::binary()?;
    }
    Ok(())
}

/// The model called `name` and its server, or an error listing the valid names.
pub fn find(name: &str) -> Result<(&'static Model, Serve)> {
    let model = models::model(name).ok_or_else(|| anyhow!(models::unknown(name)))?;
    let serve = implementation(name)
        .ok_or_else(|| anyhow!("model {name} has no implementation in this netpoll"))?;
    Ok((model, serve))
}

/// Receive buffer of every UDP model's socket. The default (net.core.rmem_default, 208 KiB)
/// holds only a few 64 KiB datagrams, each charged at twice its size or more: a burst from a
/// few clients would be dropped before any model could read it. Servers that take UDP seriously
/// raise it; all models get the same.
const UDP_RECEIVE_BUFFER: usize = 8 << 20;

/// Sets the UDP socket's receive buffer (beyond net.core.rmem_max with CAP_NET_ADMIN, which
/// `netpoll run` has; else as large as that allows).
pub fn size_udp_buffers(socket: &UdpSocket) {
    let size = UDP_RECEIVE_BUFFER as libc::c_int;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with an int option on an open socket.
        let ok = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if ok {
            return;
        }
    }
}

/// The per-request work, whatever the I/O model. Each thread owns one (the file offset is its own).
pub struct Handler {
    config: Arc<Config>,
    disk: Option<File>,
    /// Requests handled (for --think-every).
    handled: u64,
}

impl Handler {
    pub fn new(config: Arc<Config>) -> io::Result<Handler> {
        let disk = match (&config.disk_file, config.server.disk_read) {
            (Some(path), n) if n > 0 => Some(File::open(path)?),
            _ => None,
        };
        Ok(Handler {
            config,
            disk,
            handled: 0,
        })
    }

    /// Does a request's work. The reply is the request itself (an echo), so it needs no input.
    pub fn handle(&mut self) -> io::Result<()> {
        self.think();
        if let Some(file) = &mut self.disk {
            if self.config.server.cold_disk {
                evict(file);
            }
            let mut buf = vec![0u8; self.config.server.disk_read];
            let mut got = 0;
            while got < buf.len() {
                match file.read(&mut buf[got..])? {
                    0 => {
                        file.rewind()?;
                    }
                    n => got += n,
                }
            }
        }
        Ok(())
    }
}

impl Handler {
    /// The CPU part of a request's work (`--think-us`, on one request in `--think-every`).
    fn think(&mut self) {
        self.handled += 1;
        let s = &self.config.server;
        if s.think_us > 0 && self.handled.is_multiple_of(s.think_every.max(1)) {
            // Spin rather than sleep: the point is CPU the I/O model cannot overlap.
            let until = Instant::now() + Duration::from_micros(s.think_us);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }

    /// A request's work but its file read, which the caller makes itself (io-uring: through
    /// its ring): the think time, then where the read goes (with --cold-disk, the file's pages
    /// dropped from the cache first). `None` without --disk-read.
    pub fn handle_leaving_disk(&mut self) -> Option<DiskRead> {
        self.think();
        let file = self.disk.as_mut()?;
        if self.config.server.cold_disk {
            evict(file);
        }
        let len = self.config.server.disk_read;
        // Whole reads within the file: from the start again when the next would pass its end.
        let offset = file.stream_position().ok()?;
        let offset = if offset + len as u64 > DISK_FILE_BYTES {
            0
        } else {
            offset
        };
        file.seek(io::SeekFrom::Start(offset + len as u64)).ok()?;
        Some(DiskRead {
            fd: file.as_raw_fd(),
            offset,
            len,
        })
    }
}

/// A file read for the caller to make: `len` bytes at `offset` of descriptor `fd`.
#[derive(Clone, Copy, Debug)]
pub struct DiskRead {
    pub fd: std::os::fd::RawFd,
    pub offset: u64,
    pub len: usize,
}

/// Drops the file's pages from the page cache (they are clean: the file was synced), so that
/// the next read goes to the disk.
fn evict(file: &File) {
    // SAFETY: posix_fadvise on an open descriptor; advice only.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Size of the file `--disk-read` reads.
const DISK_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Creates the file `--disk-read` reads from (8 MiB) and unlinks it at once: it lives as long as
/// the returned descriptor, so a server killed by a signal leaves nothing behind. Threads open
/// it anew (each its own offset) through `disk_path`.
pub fn create_disk_file() -> Result<File> {
    let path = std::env::temp_dir().join(format!("netpoll-disk-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let block: Vec<u8> = (0..1024 * 1024).map(|i| i as u8).collect();
    for _ in 0..DISK_FILE_BYTES / block.len() as u64 {
        file.write_all(&block)?;
    }
    // On the disk, so that its pages are clean: --cold-disk can drop them from the cache.
    file.sync_all()?;
    Ok(file)
}

/// A path that opens `file` again (a new description, its own offset), unlinked as it is.
pub fn disk_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// What a non-blocking connection needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Read,
    Write,
    Closed,
}

/// One connection of a non-blocking model: reads a request, handles it, writes the reply, and
/// goes on while the socket allows, stopping at EAGAIN.
pub struct Conn<S> {
    pub stream: S,
    buf: Vec<u8>,
    done: usize,
    writing: bool,
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S, payload: usize) -> Self {
        Conn {
            stream,
            buf: vec![0; payload],
            done: 0,
            writing: false,
        }
    }

    /// Progresses as far as possible without blocking.
    pub fn progress(&mut self, handler: &mut Handler) -> io::Result<Want> {
        loop {
            let step = if self.writing {
                self.stream.write(&self.buf[self.done..])
            } else {
                self.stream.read(&mut self.buf[self.done..])
            };
            match step {
                Ok(0) => return Ok(Want::Closed),
                Ok(n) => self.done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if self.writing {
                        Want::Write
                    } else {
                        Want::Read
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_disconnect(&e) => return Ok(Want::Closed),
                Err(e) => return Err(e),
            }
            if self.done == self.buf.len() {
                if !self.writing {
                    handler.handle()?;
                }
                self.writing = !self.writing;
                self.done = 0;
            }
        }
    }
}

/// Errors that only mean the peer went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// Serves one connection with blocking calls until the peer closes it.
pub fn serve_blocking<S: Read + Write>(
    mut stream: S,
    handler: &mut Handler,
    payload: usize,
) -> io::Result<()> {
    let mut buf = vec![0u8; payload];
    loop {
        match stream.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        handler.handle()?;
        match stream.write_all(&buf) {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Accept errors that concern one connection, not the listener: skip them.
pub fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_lists_the_valid_ones() {
        let Err(err) = find("carrier-pigeon") else {
            panic!("carrier-pigeon is not a model")
        };
        assert!(
            err.to_string().contains("epoll-lt") && err.to_string().contains("blocking-threads")
        );
    }

    #[test]
    fn every_model_of_the_catalogue_is_implemented_for_its_transport() {
        for model in models::MODELS {
            let (_, serve) = find(model.name).unwrap_or_else(|_| panic!("{}", model.name));
            let transport = match serve {
                Serve::Tcp(_) => models::Transport::Tcp,
                Serve::Udp(_) => models::Transport::Udp,
            };
            assert_eq!(transport, model.transport, "{}", model.name);
        }
    }

    /// A stream that accepts at most `chunk` bytes per call and says WouldBlock every other call.
    struct Trickle {
        input: Vec<u8>,
        output: Vec<u8>,
        chunk: usize,
        tick: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.tick = !self.tick;
            if self.tick {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if self.input.is_empty() {
                return Ok(0);
            }
            let n = self.chunk.min(buf.len()).min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.tick = !self.tick;
            if self.tick {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.chunk.min(buf.len());
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_reads_and_writes_echo_every_request() {
        let requests: Vec<u8> = (0..3 * 100).map(|i| i as u8).collect();
        let stream = Trickle {
            input: requests.clone(),
            output: Vec::new(),
            chunk: 7,
            tick: false,
        };
        let config = Arc::new(Config {
            server: ServerConfig {
                payload: 100,
                ..ServerConfig::default()
            },
            disk_file: None,
        });
        let mut handler = Handler::new(config).expect("handler");
        let mut conn = Conn::new(stream, 100);
        let mut wants = Vec::new();
        loop {
            let want = conn.progress(&mut handler).expect("progress");
            wants.push(want);
            if want == Want::Closed {
                break;
            }
        }
        assert_eq!(conn.stream.output, requests);
        assert!(wants.contains(&Want::Read) && wants.contains(&Want::Write));
    }
}
