//! One load-generator thread for UDP echo (`udp://HOST:PORT`): its share of the "connections",
//! each a connected UDP socket with at most one datagram outstanding, on one epoll instance.
//!
//! Every request carries its socket's sequence number in its first 8 bytes, so a reply is
//! matched to its request (a late reply to a request already given up is not counted twice,
//! and a reply that differs in any byte is a bad response). A datagram without a reply within
//! `--timeout` is lost: counted as a timeout, and the socket moves on. Open and closed loop are
//! as in the TCP worker (`worker.rs`): in open loop, latency runs from the intended send time.

use std::{
    io,
    net::UdpSocket,
    os::fd::AsRawFd as _,
    sync::{Barrier, OnceLock},
    time::Instant,
};

use anyhow::{Context as _, Result};

use super::{
    Plan,
    timeline::{self, Schedule, Slots, Timeline},
    timeline::{Epoll, Shared, WorkerResults},
};

/// Bytes of a request that carry its sequence number.
pub const SEQUENCE_BYTES: usize = 8;

struct Socket {
    socket: UdpSocket,
    /// The request outstanding: its sequence number, intended and actual send times.
    outstanding: Option<(u64, u64, u64)>,
    /// Sequence number of the next request.
    next: u64,
    /// When the socket last became free to send (its previous reply arrived, or was given up).
    free_at: u64,
    schedule: Schedule,
    measured_replies: u64,
}

struct Worker<'a> {
    plan: &'a Plan,
    epoll: Epoll,
    sockets: Vec<Socket>,
    /// The run's phases; free sockets by the time they send next.
    t: Timeline,
    request: Vec<u8>,
    buf: Vec<u8>,
    results: WorkerResults,
    replies: u64,
}

/// Runs worker `index` (the UDP counterpart of `tcp::run`).
pub fn run(
    plan: &Plan,
    index: usize,
    shared: &Shared,
    start: &Barrier,
    origin: &OnceLock<Instant>,
) -> Result<WorkerResults> {
    let setup = setup(plan, index);
    timeline::worker_life(shared, start, origin, setup, |(epoll, sockets), origin| {
        let mut worker = Worker {
            plan,
            epoll,
            sockets,
            t: Timeline::new(plan, origin),
            request: plan.protocol.request().to_vec(),
            buf: vec![0; 65536],
            results: WorkerResults::new(),
            replies: 0,
        };
        (worker.load(shared), worker)
    })
    .map(|worker| worker.results)
}

fn setup(plan: &Plan, index: usize) -> Result<(Epoll, Vec<Socket>)> {
    let epoll = Epoll::new()?;
    let any = if plan.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let mut sockets = Vec::new();
    for g in (index..plan.options.connections).step_by(plan.options.threads) {
        let socket = UdpSocket::bind(any).context("cannot open a UDP socket")?;
        socket
            .connect(plan.addr)
            .with_context(|| format!("cannot address {}", plan.addr))?;
        socket.set_nonblocking(true)?;
        epoll.add(socket.as_raw_fd(), sockets.len() as u64)?;
        sockets.push(Socket {
            socket,
            outstanding: None,
            next: 0,
            free_at: 0,
            schedule: Schedule::of(plan, g),
            measured_replies: 0,
        });
    }
    Ok((epoll, sockets))
}

impl Worker<'_> {
    fn now(&self) -> u64 {
        self.t.now()
    }

    fn measured(&self, intended: u64) -> bool {
        self.t.measured(intended)
    }

    fn load(&mut self, shared: &Shared) -> Result<()> {
        for slot in 0..self.sockets.len() {
            let at = self.sockets[slot].schedule.at(0);
            self.t.at(at, slot);
        }
        timeline::run(self, shared)?;
        self.results.unsent = self
            .sockets
            .iter()
            .map(|s| s.schedule.unsent_from(s.next, &self.t))
            .sum();
        self.results.starved = self
            .sockets
            .iter()
            .filter(|s| s.measured_replies == 0)
            .count() as u64;
        Ok(())
    }

    /// Sends socket `slot`'s next request: its sequence number, then the payload pattern.
    fn send(&mut self, slot: usize, now: u64) {
        let socket = &mut self.sockets[slot];
        let k = socket.next;
        socket.next += 1;
        let intended = if self.plan.options.rate.is_some() {
            socket.schedule.at(k)
        } else {
            now
        };
        self.request[..SEQUENCE_BYTES].copy_from_slice(&k.to_le_bytes());
        let lag = now.saturating_sub(intended.max(socket.free_at));
        match socket.socket.send(&self.request) {
            Ok(n) => {
                socket.outstanding = Some((k, intended, now));
                if self.measured(intended) {
                    self.results.bytes_sent += n as u64;
                    let _ = self.results.send_lag.record(lag.max(1));
                }
            }
            Err(_) => {
                // A full socket buffer or an ICMP error queued from an earlier datagram: the
                // request is lost here rather than on the wire.
                if self.measured(intended) {
                    self.results.errors.io += 1;
                }
                self.free(slot, now);
            }
        }
    }

    /// Reads every datagram waiting on socket `slot` (the epoll instance is edge-triggered).
    fn receive(&mut self, slot: usize) {
        loop {
            let n = match self.sockets[slot].socket.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // ECONNREFUSED: nothing listens (an ICMP port unreachable came back).
                    let now = self.now();
                    if let Some((_, intended, _)) = self.sockets[slot].outstanding
                        && self.measured(intended)
                    {
                        self.results.errors.connect += 1;
                    }
                    if self.sockets[slot].outstanding.is_some() {
                        self.free(slot, now);
                    }
                    return;
                }
            };
            let now = self.now();
            let Some((k, intended, sent)) = self.sockets[slot].outstanding else {
                // A late reply to a request already counted as lost.
                continue;
            };
            let reply = &self.buf[..n];
            let seq = reply
                .get(..SEQUENCE_BYTES)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
            if seq.is_some_and(|s| s < k) {
                continue;
            }
            let measured = self.measured(intended);
            // The shared request buffer holds whichever socket sent last: compare past the
            // sequence number, which is checked on its own.
            let intact = reply.len() == self.request.len()
                && reply[SEQUENCE_BYTES..] == self.request[SEQUENCE_BYTES..];
            if !intact || seq != Some(k) {
                if measured {
                    self.results.errors.bad_response += 1;
                }
            } else if measured {
                self.results.requests += 1;
                self.results.bytes_received += n as u64;
                let _ = self
                    .results
                    .latency
                    .record(now.saturating_sub(intended).max(1));
                let _ = self
                    .results
                    .service_time
                    .record(now.saturating_sub(sent).max(1));
                self.sockets[slot].measured_replies += 1;
            }
            self.replies += 1;
            self.free(slot, now);
        }
    }

    /// The socket's request is over: schedule its next one.
    fn free(&mut self, slot: usize, now: u64) {
        let socket = &mut self.sockets[slot];
        socket.outstanding = None;
        socket.free_at = now;
        let at = if self.plan.options.rate.is_some() {
            socket.schedule.at(socket.next).max(now)
        } else {
            now
        };
        self.t.at(at, slot);
    }

    /// Datagrams without a reply within the timeout are lost.
    fn expire(&mut self, now: u64) {
        let timeout = self.plan.options.timeout.as_nanos() as u64;
        for slot in 0..self.sockets.len() {
            if let Some((_, intended, sent)) = self.sockets[slot].outstanding
                && now.saturating_sub(sent) > timeout
            {
                if self.measured(intended) {
                    self.results.errors.timeouts += 1;
                }
                self.free(slot, now);
            }
        }
    }
}

impl Slots for Worker<'_> {
    fn timeline(&mut self) -> &mut Timeline {
        &mut self.t
    }

    fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    fn act(&mut self, slot: usize, now: u64) {
        self.send(slot, now);
    }

    fn expire(&mut self, now: u64) {
        Worker::expire(self, now);
    }

    fn on_ready(&mut self, slot: usize, _events: u32) {
        self.receive(slot);
    }

    fn outstanding(&self) -> bool {
        self.sockets.iter().any(|s| s.outstanding.is_some())
    }

    fn take_replies(&mut self) -> u64 {
        std::mem::take(&mut self.replies)
    }
}
