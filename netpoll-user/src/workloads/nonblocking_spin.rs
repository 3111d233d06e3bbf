//! Non-blocking sockets without a readiness API: one thread tries every socket in turn, forever.
//! Nearly every call fails with EAGAIN, and the CPU burns even when nothing happens.

use std::{io, net::TcpListener, sync::Arc};

use anyhow::Result;

use super::{Config, Conn, Handler, Want, is_transient_accept_error};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    listener.set_nonblocking(true)?;
    let mut handler = Handler::new(config.clone())?;
    let mut conns = Vec::new();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                conns.push(Conn::new(stream, config.payload()));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || is_transient_accept_error(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // Try every connection; keep those still open.
        conns.retain_mut(|conn| !matches!(conn.progress(&mut handler), Ok(Want::Closed) | Err(_)));
    }
}
