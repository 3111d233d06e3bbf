//! One epoll reactor per core, all watching the same listening socket (nginx's worker shape).
//! EPOLLEXCLUSIVE wakes one reactor per new connection instead of all of them.

use std::{net::TcpListener, sync::Arc};

use anyhow::{Result, anyhow};

use super::{
    Config,
    epoll::{Trigger, reactor},
};

pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let threads: Vec<_> = (0..config.threads())
        .map(|_| {
            let listener = listener.try_clone()?;
            let config = config.clone();
            Ok(std::thread::spawn(move || {
                reactor(&listener, config, Trigger::Edge, true)
            }))
        })
        .collect::<Result<_>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("a reactor thread panicked"))??;
    }
    Ok(())
}
