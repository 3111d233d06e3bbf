//! UDP, blocking: one thread in `recvfrom` for every client at once. There is no connection to
//! wait on, so one socket and one thread serve everyone, a datagram at a time, with two
//! syscalls per request (recvfrom, sendto) and no readiness wait.

use std::{net::UdpSocket, sync::Arc};

use anyhow::Result;

use super::{Config, Handler};

pub fn serve(socket: UdpSocket, config: Arc<Config>) -> Result<()> {
    let mut handler = Handler::new(config)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        handler.handle()?;
        // A client that went away makes the send fail; the others are still served.
        let _ = socket.send_to(&buf[..n], from);
    }
}
