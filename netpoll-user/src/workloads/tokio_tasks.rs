//! tokio: code written as if it blocked (`read_exact`, `write_all`), run as tasks that a
//! user-space scheduler multiplexes over a few threads and one epoll: the same design as Go's
//! netpoller (I/O multiplexing + non-blocking sockets + M:N scheduling).

use std::{net::TcpListener, sync::Arc};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Config, Handler, is_disconnect};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads())
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if super::is_transient_accept_error(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let config = config.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, config).await
                    && !is_disconnect(&e)
                {
                    eprintln!("netpoll serve: connection failed: {e}");
                }
            });
        }
    })
}

async fn connection(mut stream: tokio::net::TcpStream, config: Arc<Config>) -> std::io::Result<()> {
    let mut handler = Handler::new(config.clone())?;
    let mut buf = vec![0u8; config.payload()];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(_) => {}
            Err(e) if is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        if config.server.disk_read > 0 {
            // File reads cannot be multiplexed: tokio (like tokio::fs) hands them to its pool of
            // blocking threads, so the worker goes on serving other tasks meanwhile.
            let (back, done) = tokio::task::spawn_blocking(move || {
                let done = handler.handle();
                (handler, done)
            })
            .await?;
            handler = back;
            done?;
        } else {
            handler.handle()?;
        }
        stream.write_all(&buf).await?;
    }
}
