//! The TCP load worker: one load-generator thread, its share of the connections on one edge-triggered epoll instance,
//! each connection with at most one request outstanding (like wrk2; no pipelining).
//!
//! Open loop: connection `g` of `C` sends its k-th request at `g/rate + k*C/rate` after the start;
//! if the previous reply is late, the request goes out as soon as it arrives, and its latency is
//! still measured from the scheduled time, so waiting behind a slow reply is counted rather than
//! omitted. Closed loop: the next request goes out when the reply arrives.
//!
//! Longer than most files: it is one state machine (a connection's states and the events that
//! move it: schedule, write, read, reply, failure, timeout, reconnect), read best in one place.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    sync::{Barrier, OnceLock},
    time::{Duration, Instant},
};

use analysis::run::LoadErrors;
use anyhow::{Context as _, Result};

use super::{
    Plan,
    protocol::{Progress, Reply, ReplyParser},
    timeline::{self, Epoll, Schedule, Shared, Slots, Timeline, WorkerResults},
};

/// Pause before reopening a connection that could not be opened.
const RECONNECT_DELAY_NS: u64 = 100_000_000;

enum State {
    /// Waiting for its next request's time (open loop) or for the run to start.
    Idle,
    /// Request `written` bytes out; reply being parsed.
    Busy {
        intended: u64,
        sent: u64,
        written: usize,
    },
    /// The connection failed and could not be reopened yet.
    Disconnected,
    /// A new connection is being opened (non-blocking connect, so that one slow connect does
    /// not stall every other connection of this thread).
    Connecting { since: u64 },
}

enum Outcome {
    Pending,
    Connected,
    ConnectFailed,
    /// Turn write-space events on (the request is stuck) or off (it went out).
    Watch {
        write: bool,
    },
    Failed {
        intended: u64,
        failure: Failure,
    },
    Replied {
        intended: u64,
        sent: u64,
        reply: Reply,
    },
    IdleClosed,
    IdleJunk,
}

#[derive(Clone, Copy)]
enum Failure {
    Connect,
    Io,
    Closed,
    BadResponse,
    Timeout,
}

impl Failure {
    fn count(self, errors: &mut LoadErrors) {
        match self {
            Failure::Connect => errors.connect += 1,
            Failure::Io => errors.io += 1,
            Failure::Closed => errors.closed += 1,
            Failure::BadResponse => errors.bad_response += 1,
            Failure::Timeout => errors.timeouts += 1,
        }
    }
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    parser: ReplyParser,
    /// Index of the next request in this connection's open-loop schedule.
    next: u64,
    /// When the connection last became free to send (its previous reply arrived).
    free_at: u64,
    /// Write-space events are on (a request is stuck half-written).
    watching_write: bool,
    /// Open loop: when its requests are due.
    schedule: Schedule,
    /// Replies to requests measured in the window (a connection with none was starved).
    measured_replies: u64,
}

struct Worker<'a> {
    plan: &'a Plan,
    epoll: Epoll,
    conns: Vec<Conn>,
    /// The run's phases; idle or disconnected connections by the time they act next.
    t: Timeline,
    results: WorkerResults,
    buf: Vec<u8>,
    replies: u64,
}

/// A non-blocking connect: the stream, and whether it is already open.
fn start_connect(addr: SocketAddr) -> io::Result<(TcpStream, bool)> {
    let socket = super::client_socket(addr)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    let open = match socket.connect(&addr.into()) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => return Err(e),
    };
    Ok((socket.into(), open))
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = super::client_socket(addr)?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs worker `index`: connects, waits at `start` for the others, loads until the end of the
/// measurement window (or `shared.stop`), then waits up to the timeout for outstanding replies.
pub fn run(
    plan: &Plan,
    index: usize,
    shared: &Shared,
    start: &Barrier,
    origin: &OnceLock<Instant>,
) -> Result<WorkerResults> {
    timeline::worker_life(
        shared,
        start,
        origin,
        setup(plan, index),
        |(epoll, conns), origin| {
            let mut worker = Worker {
                plan,
                epoll,
                conns,
                t: Timeline::new(plan, origin),
                results: WorkerResults::new(),
                buf: vec![0; 64 * 1024],
                replies: 0,
            };
            (worker.load(shared), worker)
        },
    )
    .map(|worker| worker.results)
}

fn setup(plan: &Plan, index: usize) -> Result<(Epoll, Vec<Conn>)> {
    let epoll = Epoll::new()?;
    let mut conns = Vec::new();
    for g in (index..plan.options.connections).step_by(plan.options.threads) {
        let stream = connect(plan.addr, plan.options.timeout)
            .with_context(|| format!("cannot connect to {}", plan.addr))?;
        epoll.add(stream.as_raw_fd(), conns.len() as u64)?;
        conns.push(Conn {
            stream: Some(stream),
            state: State::Idle,
            parser: ReplyParser::default(),
            next: 0,
            free_at: 0,
            watching_write: false,
            schedule: Schedule::of(plan, g),
            measured_replies: 0,
        });
    }
    Ok((epoll, conns))
}

impl Worker<'_> {
    fn now(&self) -> u64 {
        self.t.now()
    }

    fn measured(&self, intended: u64) -> bool {
        self.t.measured(intended)
    }

    fn load(&mut self, shared: &Shared) -> Result<()> {
        for slot in 0..self.conns.len() {
            let at = self.conns[slot].schedule.at(0);
            self.t.at(at, slot);
        }
        timeline::run(self, shared)?;
        self.count_unsent();
        self.results.starved = self
            .conns
            .iter()
            .filter(|c| c.measured_replies == 0)
            .count() as u64;
        Ok(())
    }

    fn busy(&self) -> bool {
        self.conns
            .iter()
            .any(|c| matches!(c.state, State::Busy { .. }))
    }

    /// A connection's time came: reopen it if it failed, then send its request.
    fn act(&mut self, slot: usize, now: u64) {
        let reopen = match self.conns[slot].state {
            State::Connecting { .. } => return,
            State::Disconnected => true,
            _ => false,
        };
        if reopen && !self.reopen(slot, now) {
            return;
        }
        let conn = &mut self.conns[slot];
        let intended = if self.plan.options.rate.is_some() {
            conn.schedule.at(conn.next)
        } else {
            now
        };
        conn.next += 1;
        conn.parser.reset();
        if self.plan.options.rate.is_some() && self.t.measured(intended) {
            let lag = now.saturating_sub(intended.max(conn.free_at));
            self.results.send_lag.saturating_record(lag.max(1));
        }
        conn.state = State::Busy {
            intended,
            sent: now,
            written: 0,
        };
        // Just sent: the reply cannot be there yet, and its arrival will be signalled.
        self.on_ready(slot, false);
    }

    /// Makes what progress the socket allows, then acts on the outcome. `readable`: the event
    /// said there is something to read (otherwise only writing is tried).
    fn on_ready(&mut self, slot: usize, readable: bool) {
        match self.progress(slot, readable) {
            Outcome::Pending => {}
            Outcome::Connected => {
                let now = self.now();
                let conn = &mut self.conns[slot];
                let unwatched = conn.stream.as_ref().map(|stream| {
                    self.epoll
                        .ctl(libc::EPOLL_CTL_MOD, stream.as_raw_fd(), slot as u64, false)
                });
                if let Some(Err(_)) = unwatched {
                    return self.connect_failed(slot, now);
                }
                conn.watching_write = false;
                conn.state = State::Idle;
                conn.free_at = now;
                self.schedule_next(slot, now);
            }
            Outcome::ConnectFailed => self.connect_failed(slot, self.now()),
            Outcome::Watch { write } => {
                let watched = self.conns[slot].stream.as_ref().map(|stream| {
                    self.epoll
                        .ctl(libc::EPOLL_CTL_MOD, stream.as_raw_fd(), slot as u64, write)
                });
                match watched {
                    Some(Err(_)) => {
                        let intended = self.intended_of(slot);
                        self.fail(slot, intended, Failure::Io);
                    }
                    // Done writing: the reply may already be in; read it now.
                    _ if !write => self.on_ready(slot, true),
                    _ => {}
                }
            }
            Outcome::Failed { intended, failure } => self.fail(slot, intended, failure),
            Outcome::Replied {
                intended,
                sent,
                reply,
            } => {
                let done = self.now();
                if self.measured(intended) {
                    self.conns[slot].measured_replies += 1;
                    let r = &mut self.results;
                    r.requests += 1;
                    r.latency.saturating_record((done - intended).max(1));
                    if self.plan.options.rate.is_some() {
                        // Closed loop: the same as the latency, merged from it at the end.
                        r.service_time.saturating_record((done - sent).max(1));
                    }
                    if !(200..400).contains(&reply.status) {
                        r.errors.http_status += 1;
                    }
                }
                self.replies += 1;
                self.conns[slot].state = State::Idle;
                self.conns[slot].free_at = done;
                if reply.close {
                    self.reopen_later(slot, done);
                } else {
                    self.schedule_next(slot, done);
                }
            }
            // A server may close an idle keep-alive connection: reopen it quietly.
            Outcome::IdleClosed => self.reopen_later(slot, self.now()),
            Outcome::IdleJunk => self.fail(slot, self.now(), Failure::BadResponse),
        }
    }

    /// Writes the rest of the request and reads what the reply has so far.
    fn progress(&mut self, slot: usize, readable: bool) -> Outcome {
        let request = self.plan.protocol.request();
        let conn = &mut self.conns[slot];
        let Some(stream) = conn.stream.as_mut() else {
            return Outcome::Pending;
        };
        if let State::Connecting { .. } = conn.state {
            return match stream.take_error() {
                Ok(None) if stream.peer_addr().is_ok() => Outcome::Connected,
                Ok(None) => Outcome::Pending,
                _ => Outcome::ConnectFailed,
            };
        }
        let State::Busy {
            intended,
            sent,
            written,
        } = &mut conn.state
        else {
            if !readable {
                return Outcome::Pending;
            }
            // Idle: only an EOF or bytes nobody asked for can be pending.
            return match stream.read(&mut self.buf) {
                Ok(0) => Outcome::IdleClosed,
                Ok(_) => Outcome::IdleJunk,
                Err(_) => Outcome::Pending,
            };
        };
        let (intended, sent) = (*intended, *sent);
        let failed = |failure| Outcome::Failed { intended, failure };
        while *written < request.len() {
            match stream.write(&request[*written..]) {
                Ok(n) => {
                    *written += n;
                    self.results.bytes_sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if conn.watching_write {
                        return Outcome::Pending;
                    }
                    conn.watching_write = true;
                    return Outcome::Watch { write: true };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return failed(Failure::Io),
            }
        }
        if conn.watching_write {
            conn.watching_write = false;
            return Outcome::Watch { write: false };
        }
        if !readable {
            // A write-space event: nothing to read (reading would only return EAGAIN).
            return Outcome::Pending;
        }
        loop {
            match stream.read(&mut self.buf) {
                Ok(0) => return failed(Failure::Closed),
                Ok(n) => {
                    self.results.bytes_received += n as u64;
                    match conn.parser.feed(&self.plan.protocol, &self.buf[..n]) {
                        Progress::NeedMore => {}
                        Progress::Bad => return failed(Failure::BadResponse),
                        Progress::Done(reply) => {
                            return Outcome::Replied {
                                intended,
                                sent,
                                reply,
                            };
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return failed(Failure::Io),
            }
        }
    }

    fn intended_of(&self, slot: usize) -> u64 {
        match self.conns[slot].state {
            State::Busy { intended, .. } => intended,
            _ => self.now(),
        }
    }

    /// After a reply: the next request now (closed loop) or at its scheduled time (open loop).
    fn schedule_next(&mut self, slot: usize, now: u64) {
        let conn = &self.conns[slot];
        let at = if self.plan.options.rate.is_some() {
            conn.schedule.at(conn.next)
        } else {
            now
        };
        if at <= now && now < self.t.end_ns {
            self.act(slot, now);
        } else {
            self.t.at(at, slot);
        }
    }

    fn count_error(&mut self, failure: Failure, at: u64) {
        if self.measured(at) {
            failure.count(&mut self.results.errors);
        }
    }

    /// The request failed: count it, drop the connection, open another.
    fn fail(&mut self, slot: usize, intended: u64, failure: Failure) {
        self.count_error(failure, intended);
        let now = self.now();
        self.reopen_later(slot, now);
    }

    fn reopen_later(&mut self, slot: usize, now: u64) {
        let conn = &mut self.conns[slot];
        conn.stream = None;
        conn.state = State::Disconnected;
        self.t.at(now, slot);
    }

    /// Starts opening a new connection for `slot`: true when it is open at once, false when it
    /// is on its way (its writability will say) or failed (a retry is queued).
    fn reopen(&mut self, slot: usize, now: u64) -> bool {
        let started = start_connect(self.plan.addr).and_then(|(stream, open)| {
            self.epoll
                .ctl(libc::EPOLL_CTL_ADD, stream.as_raw_fd(), slot as u64, !open)?;
            Ok((stream, open))
        });
        let conn = &mut self.conns[slot];
        match started {
            Ok((stream, open)) => {
                conn.stream = Some(stream);
                conn.watching_write = !open;
                if open {
                    conn.state = State::Idle;
                    conn.free_at = now;
                } else {
                    conn.state = State::Connecting { since: now };
                }
                open
            }
            Err(_) => {
                self.connect_failed(slot, now);
                false
            }
        }
    }

    fn connect_failed(&mut self, slot: usize, now: u64) {
        self.count_error(Failure::Connect, now);
        let conn = &mut self.conns[slot];
        conn.stream = None;
        conn.state = State::Disconnected;
        self.t.at(now + RECONNECT_DELAY_NS, slot);
    }

    /// Requests outstanding longer than the timeout are counted and their connections reopened.
    fn expire(&mut self, now: u64) {
        let timeout = self.plan.options.timeout.as_nanos() as u64;
        for slot in 0..self.conns.len() {
            match self.conns[slot].state {
                State::Busy { intended, sent, .. } if now.saturating_sub(sent) > timeout => {
                    self.fail(slot, intended, Failure::Timeout);
                }
                State::Connecting { since } if now.saturating_sub(since) > timeout => {
                    self.connect_failed(slot, now);
                }
                _ => {}
            }
        }
    }

    /// Open loop: requests scheduled in the window that never went out.
    fn count_unsent(&mut self) {
        self.results.unsent = self
            .conns
            .iter()
            .map(|c| c.schedule.unsent_from(c.next, &self.t))
            .sum();
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
        Worker::act(self, slot, now);
    }

    fn expire(&mut self, now: u64) {
        Worker::expire(self, now);
    }

    fn on_ready(&mut self, slot: usize, events: u32) {
        let readable = events & !(libc::EPOLLOUT as u32) != 0;
        Worker::on_ready(self, slot, readable);
    }

    fn outstanding(&self) -> bool {
        self.busy()
    }

    fn take_replies(&mut self) -> u64 {
        std::mem::take(&mut self.replies)
    }
}
