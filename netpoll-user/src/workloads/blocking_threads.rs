//! Thread per connection, blocking sockets: simple code, one kernel thread parked in `read` per
//! idle client, and the scheduler (context switches) does the multiplexing.

use std::{net::TcpListener, sync::Arc};

use anyhow::Result;

use super::{Config, Handler, is_transient_accept_error, serve_blocking};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        let config = config.clone();
        std::thread::spawn(move || {
            let payload = config.payload();
            let result =
                Handler::new(config).and_then(|mut h| serve_blocking(stream, &mut h, payload));
            if let Err(e) = result {
                eprintln!("netpoll serve: connection failed: {e}");
            }
        });
    }
}
