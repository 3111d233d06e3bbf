//! The idle connections (`--idle-connections`): opened before the load starts and held silent,
//! the descriptors a readiness loop must scan for nothing and a server must keep memory for.
//!
//! A process may hold only as many descriptors as its open-files limit (20,000 on some
//! machines, where even root cannot raise it): beyond what fits beside the active connections,
//! helper processes (`netpoll hold-connections`, hidden) each open and hold a share, in
//! parallel. A source address reaches one destination from 28,232 ephemeral ports (32768-60999
//! by default): to a loopback target they come from 127.0.0.2, then 127.0.0.3... ([`PER_SOURCE`]
//! each: all of 127.0.0.0/8 is this machine's), from ports netpoll picks.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use socket2::Socket;

use super::Plan;
use crate::system;

/// Connections per loopback source address: from ports 1024-32767, a different stretch of
/// 25,000 each run (one destination address and port can see 28,232 ephemeral ports from one
/// source; here netpoll picks them, below the ephemeral range).
pub const PER_SOURCE: usize = 25_000;

/// Descriptors the load generator's processes keep for themselves beside their connections.
pub const SPARE_DESCRIPTORS: u64 = 64;

/// Descriptors one process may hold: the open-files hard limit, or fs.nr_open where it may be
/// raised (`analysis::models::ProcessLimits`, as the server's check reads it).
fn process_limit() -> u64 {
    analysis::models::ProcessLimits::read().descriptors as u64
}

/// Where the idle connections are held.
pub enum Idle {
    /// In this process.
    Here(#[expect(dead_code, reason = "held open until dropped")] Vec<TcpStream>),
    /// In helper processes; closing their stdin (dropping them) closes the connections.
    Helpers(Vec<Child>),
}

/// Whether this process holds the idle connections itself: they fit under its descriptor
/// limit beside the active ones.
pub fn fit_here(plan: &Plan) -> bool {
    let o = &plan.options;
    (o.connections + o.idle_connections) as u64 + SPARE_DESCRIPTORS <= process_limit()
}

/// Connections per source address and port chosen by netpoll (`connect`), for a loopback
/// target: the kernel's own choice of an ephemeral port walks the ports in use, so that 19,000
/// connections from one address took 4 s to open, and 100,000 from four 57 s. Elsewhere (a
/// `--netns` path, a remote target) the kernel chooses.
fn per_source(plan: &Plan) -> usize {
    let loopback = matches!(plan.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    if loopback { PER_SOURCE } else { 0 }
}

/// Opens the plan's idle connections; returns them and the time it took.
pub fn open(plan: &Plan) -> Result<(Idle, Duration)> {
    let started = Instant::now();
    let count = plan.options.idle_connections;
    let sources = (per_source(plan), first_port());
    if fit_here(plan) {
        let streams = (0..count)
            .map(|i| connect(plan.addr, i, sources, plan.options.timeout, count))
            .collect::<Result<Vec<_>>>()?;
        return Ok((Idle::Here(streams), started.elapsed()));
    }
    let share = (process_limit() - SPARE_DESCRIPTORS) as usize;
    let exe = std::env::current_exe().context("cannot find the netpoll executable")?;
    let mut helpers: Vec<(Child, BufReader<ChildStdout>)> = Vec::new();
    for first in (0..count).step_by(share) {
        let n = share.min(count - first);
        let mut child = Command::new(&exe)
            .args(["hold-connections", "--to", &plan.addr.to_string()])
            .args(["--first", &first.to_string(), "--count", &n.to_string()])
            .args(["--of", &count.to_string()])
            .args(["--per-source", &sources.0.to_string()])
            .args(["--ports-from", &sources.1.to_string()])
            .args(["--timeout", &plan.options.timeout.as_secs_f64().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start a process to hold idle connections")?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        helpers.push((child, stdout));
    }
    // Every helper opens its share at once; each says `held` when done, or fails.
    let mut failure = None;
    for (child, stdout) in &mut helpers {
        let mut line = String::new();
        if failure.is_none() && (stdout.read_line(&mut line).is_err() || line.trim() != "held") {
            let mut why = String::new();
            let _ = child.wait();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut why);
            }
            let why = why
                .trim()
                .trim_start_matches("netpoll: error: ")
                .to_string();
            failure = Some(if why.is_empty() {
                "a process holding idle connections ended".to_string()
            } else {
                why
            });
        }
    }
    let children = helpers.into_iter().map(|(c, _)| c).collect();
    let idle = Idle::Helpers(children);
    if let Some(why) = failure {
        drop(idle);
        bail!("{why}");
    }
    Ok((idle, started.elapsed()))
}

impl Drop for Idle {
    fn drop(&mut self) {
        if let Idle::Helpers(children) = self {
            // EOF on its stdin ends a helper; it may be slow to close 20,000 sockets.
            for child in children.iter_mut() {
                drop(child.stdin.take());
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for child in children.iter_mut() {
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Idle connection `i` (of `of`) to `addr`: from loopback source address `127.0.0.(2 + i /
/// per_source)`, port `ports_from + i % per_source`, when `per_source` > 0.
fn connect(
    addr: SocketAddr,
    i: usize,
    (per_source, ports_from): (usize, u16),
    timeout: Duration,
    of: usize,
) -> Result<TcpStream> {
    let opened = || -> std::io::Result<TcpStream> {
        let socket = super::client_socket(addr)?;
        if per_source == 0 {
            socket.connect_timeout(&addr.into(), timeout)?;
            return Ok(socket.into());
        }
        let host = 2 + i / per_source;
        let source = Ipv4Addr::new(127, 0, (host >> 8) as u8, host as u8);
        // A port of our choosing: the kernel's search for a free ephemeral port walks the
        // ports in use, and with 25,000 of them 100,000 connects took 57 s instead of 3. These
        // source addresses serve nothing else; a port still held (a connection of an earlier
        // run in TIME_WAIT to the same server port) is left to the kernel's choice.
        let port = ports_from + (i % per_source) as u16;
        let source_port = SocketAddr::new(source.into(), port);
        if socket.bind(&source_port.into()).is_ok() {
            match socket.connect_timeout(&addr.into(), timeout) {
                Ok(()) => return Ok(socket.into()),
                Err(e) if e.raw_os_error() != Some(libc::EADDRNOTAVAIL) => return Err(e),
                Err(_) => {}
            }
        }
        let socket = super::client_socket(addr)?;
        no_port_at_bind(&socket)?;
        socket.bind(&SocketAddr::new(source.into(), 0).into())?;
        socket.connect_timeout(&addr.into(), timeout)?;
        Ok(socket.into())
    };
    opened().with_context(|| format!("cannot open idle connection {} of {of} to {addr}", i + 1))
}

/// The first source port of the connections from extra loopback addresses: below the
/// ephemeral range (32768-60999 by default), because a port bound explicitly is one the
/// kernel's ephemeral choice skips for every address while any socket holds it (TIME_WAIT
/// too, for a minute): chosen there, 100,000 connections left the next run a few hundred
/// ports. Somewhere in 1024-7767, a different place each run: a port held by an earlier
/// run's connection in TIME_WAIT to the same server port could not be used again for a minute.
fn first_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    1024 + (nanos % (32_768 - 1024 - PER_SOURCE as u32)) as u16
}

/// The port is then chosen at connect, per destination (IP_BIND_ADDRESS_NO_PORT), not at bind:
/// a port chosen at bind could not be used again for another destination.
fn no_port_at_bind(socket: &Socket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with an int option on an open socket.
    if unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `netpoll hold-connections`: the helper's side.
#[derive(clap::Args)]
pub struct HoldArgs {
    #[arg(long)]
    to: SocketAddr,
    /// The index of the first connection among all idle ones (for its source address).
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    /// All idle connections of the run (for the error message).
    #[arg(long)]
    of: usize,
    #[arg(long, default_value_t = 0)]
    per_source: usize,
    #[arg(long, default_value_t = 1024)]
    ports_from: u16,
    #[arg(long, value_parser = analysis::workload::parse_seconds)]
    timeout: Duration,
}

/// Opens the connections, says `held`, and holds them until its stdin closes (netpoll dies:
/// the helper too, by PR_SET_PDEATHSIG).
pub fn hold(args: HoldArgs) -> Result<i32> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    system::ensure_fd_limit(
        args.count as u64 + SPARE_DESCRIPTORS,
        "the idle connections",
    )?;
    let held = (args.first..args.first + args.count)
        .map(|i| {
            let sources = (args.per_source, args.ports_from);
            connect(args.to, i, sources, args.timeout, args.of)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = std::io::stdout();
    writeln!(out, "held")?;
    out.flush()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
    Ok(0)
}
