//! Thread per connection, blocking sockets: simple code, one kernel thread parked in `read` per
//! idle client, and the scheduler (context switches) does the multiplexing.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use analysis::models::ProcessLimits;
use anyhow::Result;

use super::{Config, Handler, is_transient_accept_error, serve_blocking};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    // The model's limit is the machine's: past it, a new thread would abort the whole server
    // (its signal stack cannot be mapped, inside the thread, where nothing can catch it). So a
    // connection past it, or one whose thread cannot start, is closed instead, and said once.
    let (most, why) = ProcessLimits::read().threads();
    let live = Arc::new(AtomicUsize::new(0));
    let mut said = false;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        if live.load(Ordering::Relaxed) >= most {
            if !std::mem::replace(&mut said, true) {
                eprintln!(
                    "netpoll serve: closing new connections while {most} are open (a thread each, {why})"
                );
            }
            continue;
        }
        let thread = Live::count(&live);
        let config = config.clone();
        let started = std::thread::Builder::new().spawn(move || {
            let _thread = thread;
            let payload = config.payload();
            let result =
                Handler::new(config).and_then(|mut h| serve_blocking(stream, &mut h, payload));
            if let Err(e) = result {
                eprintln!("netpoll serve: connection failed: {e}");
            }
        });
        // On failure the closure is dropped: its connection closed, its count given back.
        if let Err(e) = started
            && !std::mem::replace(&mut said, true)
        {
            eprintln!("netpoll serve: closing new connections: cannot start a thread ({e})");
        }
    }
}

/// One connection's thread, counted while it lives.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn count(live: &Arc<AtomicUsize>) -> Live {
        live.fetch_add(1, Ordering::Relaxed);
        Live(live.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
