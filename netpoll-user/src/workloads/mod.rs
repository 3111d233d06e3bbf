//! The same tiny service written in each I/O model, one short file per model.
//!
//! The protocol is a fixed-size echo: the client sends `payload` bytes, the server reads all of
//! them, does the configured per-request work (`think_us` of CPU, `disk_read` bytes read from a
//! file), and sends the same bytes back. Everything models share is here: the request handler
//! and, for the non-blocking models, a connection state machine that makes as much progress as it
//! can without blocking.

mod blocking_iterative;
mod blocking_threads;
mod epoll;
mod epoll_reactors;
mod io_uring;
mod nonblocking_spin;
mod poll;
mod select;
mod sigio;
mod tokio_tasks;

use std::{
    fs::File,
    io::{self, Read, Seek, Write},
    net::TcpListener,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Server parameters, the same for every model.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes per request and per reply.
    pub payload: usize,
    /// CPU work per request, spinning (not sleeping), in microseconds.
    pub think_us: u64,
    /// Bytes read from `disk_file` per request: file I/O, which readiness APIs cannot multiplex.
    pub disk_read: usize,
    pub disk_file: Option<PathBuf>,
    /// Threads for models that use several (epoll-reactors, tokio); 0 means one per CPU.
    pub threads: usize,
    /// io-uring: let a kernel thread poll the submission queue (IORING_SETUP_SQPOLL).
    pub sqpoll: bool,
}

impl Config {
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// An I/O model: how one server waits for and moves bytes.
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
    pub serve: fn(TcpListener, Arc<Config>) -> Result<()>,
    /// Highest descriptor number the model can watch, plus one (select: FD_SETSIZE).
    pub descriptor_limit: Option<usize>,
}

/// Every model, in the order the lecture introduces them.
pub const MODELS: &[Model] = &[
    Model {
        name: "blocking-threads",
        about: "a thread per connection, blocking sockets",
        serve: blocking_threads::serve,
        descriptor_limit: None,
    },
    Model {
        name: "blocking-iterative",
        about: "one thread serving one connection at a time (head-of-line blocking)",
        serve: blocking_iterative::serve,
        descriptor_limit: None,
    },
    Model {
        name: "nonblocking-spin",
        about: "one thread looping over non-blocking sockets (an EAGAIN storm, a burning CPU)",
        serve: nonblocking_spin::serve,
        descriptor_limit: None,
    },
    Model {
        name: "select",
        about: "one thread waiting in select(2) (at most FD_SETSIZE descriptors)",
        serve: select::serve,
        descriptor_limit: Some(libc::FD_SETSIZE),
    },
    Model {
        name: "poll",
        about: "one thread waiting in poll(2)",
        serve: poll::serve,
        descriptor_limit: None,
    },
    Model {
        name: "epoll-lt",
        about: "one thread, an epoll reactor, level-triggered",
        serve: epoll::serve_level_triggered,
        descriptor_limit: None,
    },
    Model {
        name: "epoll-et",
        about: "one thread, an epoll reactor, edge-triggered",
        serve: epoll::serve_edge_triggered,
        descriptor_limit: None,
    },
    Model {
        name: "epoll-reactors",
        about: "one epoll reactor per core sharing the listener (the nginx shape)",
        serve: epoll_reactors::serve,
        descriptor_limit: None,
    },
    Model {
        name: "tokio",
        about: "tokio's multi-threaded runtime, a task per connection (Go's netpoller, in Rust)",
        serve: tokio_tasks::serve,
        descriptor_limit: None,
    },
    Model {
        name: "io-uring",
        about: "io_uring: queue reads and writes, collect completions (--sqpoll: no syscalls when busy)",
        serve: io_uring::serve,
        descriptor_limit: None,
    },
    Model {
        name: "sigio",
        about: "signal-driven I/O: the kernel signals which socket is ready (O_ASYNC, F_SETSIG)",
        serve: sigio::serve,
        descriptor_limit: None,
    },
];

/// The model called `name`, or an error listing the valid names.
pub fn find(name: &str) -> Result<&'static Model> {
    match MODELS.iter().find(|m| m.name == name) {
        Some(model) => Ok(model),
        None => {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            bail!(
                "unknown model {name:?}; the models are: {}",
                names.join(", ")
            )
        }
    }
}

/// The per-request work, whatever the I/O model. Each thread owns one (the file offset is its own).
pub struct Handler {
    config: Arc<Config>,
    disk: Option<File>,
}

impl Handler {
    pub fn new(config: Arc<Config>) -> io::Result<Handler> {
        let disk = match (&config.disk_file, config.disk_read) {
            (Some(path), n) if n > 0 => Some(File::open(path)?),
            _ => None,
        };
        Ok(Handler { config, disk })
    }

    /// Does a request's work. The reply is the request itself (an echo), so it needs no input.
    pub fn handle(&mut self) -> io::Result<()> {
        if self.config.think_us > 0 {
            // Spin rather than sleep: the point is CPU the I/O model cannot overlap.
            let until = Instant::now() + Duration::from_micros(self.config.think_us);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        if let Some(file) = &mut self.disk {
            let mut buf = vec![0u8; self.config.disk_read];
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

/// Creates the file that `--disk-read` reads from: 8 MiB of data in the temp directory.
pub fn create_disk_file() -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("netpoll-disk-{}", std::process::id()));
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block: Vec<u8> = (0..1024 * 1024).map(|i| i as u8).collect();
    for _ in 0..8 {
        file.write_all(&block)?;
    }
    Ok(path)
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
        let err = find("carrier-pigeon").err().expect("unknown");
        assert!(
            err.to_string().contains("epoll-lt") && err.to_string().contains("blocking-threads")
        );
        assert!(find("epoll-et").is_ok());
    }

    #[test]
    fn charts_know_every_model_in_this_order() {
        // analysis colours models by this list; the tests iterate it.
        let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        assert_eq!(names, analysis::chart::MODEL_ORDER);
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
            payload: 100,
            think_us: 0,
            disk_read: 0,
            disk_file: None,
            threads: 1,
            sqpoll: false,
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
