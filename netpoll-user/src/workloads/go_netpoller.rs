//! Go's netpoller itself: go_netpoller.go, a goroutine per connection in blocking style, with
//! Go's runtime doing epoll + non-blocking I/O + scheduling underneath. netpoll carries the
//! source, builds it with the Go toolchain (Debian's golang-go) on first use into its cache
//! (keyed by the source's hash), and execs it in place of `netpoll serve`: same PID, same
//! inherited listener, so `netpoll run` profiles it like any model.

use std::{
    net::TcpListener,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::Command,
    sync::Arc,
};

use anyhow::{Context as _, Result, bail};
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::Config;
use crate::probes::target::resolve;

const SOURCE: &str = include_str!("go_netpoller.go");

/// The directory netpoll caches built servers in: $XDG_CACHE_HOME/netpoll or ~/.cache/netpoll.
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("netpoll")
}

/// FNV-1a of the source: a new source gets a new binary.
fn source_hash() -> u64 {
    SOURCE.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The built server, built now if it is not yet.
pub fn binary() -> Result<PathBuf> {
    let dir = cache_dir().join(format!("go-netpoller-{:016x}", source_hash()));
    let binary = dir.join("go-netpoller");
    if binary.is_file() {
        return Ok(binary);
    }
    let go = which_go().context(
        "model go-netpoller is written in Go and needs the Go toolchain to build: install \
         golang-go (apt install golang-go; cargo xtask test and experiments install it)",
    )?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("main.go"), SOURCE)?;
    eprintln!(
        "netpoll: building the go-netpoller server with {} (once)",
        go.display()
    );
    // Built under another name and renamed: two netpolls building at once never run a
    // half-written binary.
    let partial = dir.join(format!("go-netpoller.{}", std::process::id()));
    let out = Command::new(&go)
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .arg("main.go")
        .current_dir(&dir)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .output()
        .context("running go build")?;
    if !out.status.success() {
        bail!(
            "go build of go-netpoller failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&partial, &binary)?;
    Ok(binary)
}

/// `go` in PATH, or where Debian's golang-go puts it.
fn which_go() -> Option<PathBuf> {
    resolve("go").or_else(|| resolve("/usr/lib/go/bin/go"))
}

/// Replaces this process with the Go server on the same listener.
pub fn serve(listener: TcpListener, config: Arc<Config>) -> Result<()> {
    let binary = binary()?;
    let fd = listener.as_raw_fd();
    // Kept across exec: Rust opens descriptors close-on-exec.
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).context("clearing FD_CLOEXEC")?;
    let s = &config.server;
    let mut cmd = Command::new(&binary);
    cmd.arg(format!("-fd={fd}"))
        .arg(format!("-payload={}", s.payload))
        .arg(format!("-think-us={}", s.think_us))
        .arg(format!("-think-every={}", s.think_every.max(1)))
        .arg(format!("-disk-read={}", s.disk_read));
    if let Some(path) = &config.disk_file {
        // /proc/self/fd/N of the unlinked file: N must survive the exec too.
        if let Some(disk_fd) = path
            .file_name()
            .and_then(|n| n.to_str()?.parse::<i32>().ok())
        {
            fcntl(disk_fd, FcntlArg::F_SETFD(FdFlag::empty())).context("clearing FD_CLOEXEC")?;
        }
        cmd.arg(format!("-disk-file={}", path.display()));
    }
    // --threads sets GOMAXPROCS; otherwise Go uses the CPUs the server may run on.
    if s.threads > 0 {
        cmd.env("GOMAXPROCS", s.threads.to_string());
    }
    let err = cmd.exec();
    Err(anyhow::Error::from(err).context(format!("executing {}", binary.display())))
}
