//! One thread, one connection at a time: while it blocks on one client, every other client waits
//! in the accept queue (head-of-line blocking, made visible).

use std::{net::TcpListener, sync::Arc};

use anyhow::Result;

use super::{Config, Handler, is_transient_accept_error, serve_blocking};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let mut handler = Handler::new(config.clone())?;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if is_transient_accept_error(&e) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = serve_blocking(stream, &mut handler, config.payload()) {
            eprintln!("netpoll serve: connection failed: {e}");
        }
    }
}
