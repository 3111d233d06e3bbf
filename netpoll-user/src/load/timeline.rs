//! What both load workers share (TCP connections in `tcp.rs`, UDP sockets in `udp.rs`): the
//! state shared with the driver, a worker's results, its epoll instance, the run's timeline as
//! a worker sees it, each slot's open-loop schedule, and the event loop that makes due slots
//! send, expires requests past the timeout and hands readiness to the worker.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Barrier, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use analysis::run::LoadErrors;
use anyhow::Result;
use hdrhistogram::Histogram;

use super::Plan;

/// How often outstanding requests are checked against the timeout.
const TIMEOUT_SCAN_NS: u64 = 10_000_000;
/// Longest epoll wait, so that a stop request is noticed promptly.
const MAX_WAIT_NS: u64 = 50_000_000;
/// Below this, wait for the next request's time by polling rather than sleeping.
const SPIN_NS: u64 = 100_000;

/// Open loop: slot `g` of `C` sends its k-th request at `g/rate + k*C/rate` after the start.
#[derive(Clone, Copy)]
pub struct Schedule {
    first: f64,
    period: f64,
}

impl Schedule {
    /// Slot `g`'s schedule (all zero in closed loop).
    pub fn of(plan: &Plan, g: usize) -> Schedule {
        match plan.options.rate {
            Some(r) => Schedule {
                first: g as f64 * 1e9 / r,
                period: plan.options.connections as f64 * 1e9 / r,
            },
            None => Schedule {
                first: 0.0,
                period: 0.0,
            },
        }
    }

    /// When request `k` is due, nanoseconds after the start.
    pub fn at(&self, k: u64) -> u64 {
        (self.first + k as f64 * self.period) as u64
    }

    /// Requests from the `k`-th on that were due in the measurement window: never sent.
    pub fn unsent_from(&self, mut k: u64, t: &Timeline) -> u64 {
        let mut unsent = 0;
        while self.period > 0.0 && self.at(k) < t.end_ns {
            unsent += u64::from(self.at(k) >= t.warmup_ns);
            k += 1;
        }
        unsent
    }
}

/// The run's phases as nanoseconds since the common start, and the slots due to act next.
pub struct Timeline {
    pub origin: Instant,
    pub warmup_ns: u64,
    pub end_ns: u64,
    /// After the window, outstanding requests get up to the timeout to be answered.
    pub drain_end_ns: u64,
    /// Slots by the time they act next.
    pub due: BinaryHeap<Reverse<(u64, usize)>>,
}

impl Timeline {
    pub fn new(plan: &Plan, origin: Instant) -> Timeline {
        let end_ns = (plan.options.warmup + plan.options.duration).as_nanos() as u64;
        Timeline {
            origin,
            warmup_ns: plan.options.warmup.as_nanos() as u64,
            end_ns,
            drain_end_ns: end_ns + plan.options.timeout.as_nanos() as u64,
            due: BinaryHeap::new(),
        }
    }

    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// A request intended at this time counts: it is in the measurement window.
    pub fn measured(&self, intended: u64) -> bool {
        intended >= self.warmup_ns && intended < self.end_ns
    }

    pub fn at(&mut self, at: u64, slot: usize) {
        self.due.push(Reverse((at, slot)));
    }
}

/// A worker's slots, as the event loop drives them.
pub trait Slots {
    fn timeline(&mut self) -> &mut Timeline;
    fn epoll(&self) -> &Epoll;
    /// The slot's time came: send (or reopen).
    fn act(&mut self, slot: usize, now: u64);
    /// Requests outstanding longer than the timeout fail.
    fn expire(&mut self, now: u64);
    /// The slot's descriptor is ready (`events`: epoll's bits).
    fn on_ready(&mut self, slot: usize, events: u32);
    /// Some request is still waiting for its reply.
    fn outstanding(&self) -> bool;
    /// Replies since the last call, for the progress bar.
    fn take_replies(&mut self) -> u64;
}

/// Drives `w` until the window ends and its outstanding requests are answered or time out
/// (or the run is stopped).
pub fn run(w: &mut impl Slots, shared: &Shared) -> Result<()> {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut next_timeout_scan = 0;
    loop {
        let t = w.timeline();
        let (now, end, drain_end) = (t.now(), t.end_ns, t.drain_end_ns);
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let sending = now < end;
        if !sending && (now >= drain_end || !w.outstanding()) {
            return Ok(());
        }
        while sending
            && let Some(&Reverse((at, slot))) = w.timeline().due.peek()
            && at <= now
        {
            w.timeline().due.pop();
            w.act(slot, now);
        }
        if now >= next_timeout_scan {
            w.expire(now);
            next_timeout_scan = now + TIMEOUT_SCAN_NS;
        }
        let mut wake = next_timeout_scan.min(now + MAX_WAIT_NS);
        if sending {
            wake = wake.min(end);
            if let Some(&Reverse((at, _))) = w.timeline().due.peek() {
                // Waking from a sleep takes tens of µs, which would be counted against the
                // server: sleep until shortly before a request's time, then poll.
                wake = wake.min(at.saturating_sub(SPIN_NS));
            }
        } else {
            wake = wake.min(drain_end);
        }
        let n = w.epoll().wait(&mut events, wake.saturating_sub(now))?;
        for ev in &events[..n] {
            w.on_ready(ev.u64 as usize, ev.events);
        }
        let replies = w.take_replies();
        if replies > 0 {
            shared.replies.fetch_add(replies, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_loop_schedule_spreads_slots_and_counts_what_was_never_sent() {
        let s = Schedule {
            first: 250.0,
            period: 1000.0,
        };
        assert_eq!((s.at(0), s.at(3)), (250, 3250));
        let t = Timeline {
            origin: Instant::now(),
            warmup_ns: 1000,
            end_ns: 5000,
            drain_end_ns: 6000,
            due: BinaryHeap::new(),
        };
        // Due at 1250, 2250, 3250, 4250 in the window; 250 was in the warm-up.
        assert_eq!(s.unsent_from(0, &t), 4);
        assert_eq!(s.unsent_from(3, &t), 2);
        let closed = Schedule {
            first: 0.0,
            period: 0.0,
        };
        assert_eq!(closed.unsent_from(0, &t), 0);
    }
}

/// A load worker's life, the same for TCP and UDP: set up (its connections or sockets), wait
/// at `start` for the others, run `work` from the common origin, then keep everything open
/// until the driver has seen the window end (closing, and the server's reaction to it, stays
/// out of the window). `work` returns the worker itself, which owns the connections: it is
/// dropped, and they are closed, only after that wait.
pub fn worker_life<S, W>(
    shared: &Shared,
    start: &Barrier,
    origin: &OnceLock<Instant>,
    setup: Result<S>,
    work: impl FnOnce(S, Instant) -> (Result<()>, W),
) -> Result<W> {
    // Timers fire up to the thread's timer slack late (50 µs by default); that lateness would be
    // counted as latency of every open-loop request, so ask for none.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    if setup.is_err() {
        shared.setup_failed.store(true, Ordering::Relaxed);
    }
    start.wait();
    let origin = *origin.get_or_init(Instant::now);
    let (loaded, worker) = work(setup?, origin);
    while !shared.may_close.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    loaded?;
    Ok(worker)
}

/// State shared by the driver and the workers.
#[derive(Default)]
pub struct Shared {
    /// Set by the driver to end the run early.
    pub stop: AtomicBool,
    /// Replies received so far (warm-up included), for the progress bar.
    pub replies: AtomicU64,
    /// A worker could not open its connections (it says why when joined).
    pub setup_failed: AtomicBool,
    /// Set by the driver once the measurement window's end has been observed: until then the
    /// workers keep their connections open, so that closing them (and the server's reaction,
    /// say its threads exiting) stays out of the window.
    pub may_close: AtomicBool,
}

/// What one worker measured.
pub struct WorkerResults {
    pub latency: Histogram<u64>,
    pub service_time: Histogram<u64>,
    pub requests: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: LoadErrors,
    pub unsent: u64,
    /// Connections that got no reply to a request measured in the window.
    pub starved: u64,
    /// How late the generator itself sent requests: send time minus the later of the intended
    /// time and the moment the connection was free.
    pub send_lag: Histogram<u64>,
}

/// Largest latency recorded exactly: an hour, in nanoseconds.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("static bounds are valid")
}

impl WorkerResults {
    pub fn new() -> WorkerResults {
        WorkerResults {
            latency: new_histogram(),
            service_time: new_histogram(),
            requests: 0,
            bytes_sent: 0,
            bytes_received: 0,
            errors: LoadErrors::default(),
            unsent: 0,
            starved: 0,
            send_lag: new_histogram(),
        }
    }
}

/// An epoll instance, edge-triggered, with nanosecond timeouts (epoll_pwait2).
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked and owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn add(&self, fd: i32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, false)
    }

    /// Watches `fd` for readability, and for write space too when `write` (only while a request
    /// is stuck half-written: write-space events on every reply would cost both sides).
    pub fn ctl(&self, op: i32, fd: i32, token: u64, write: bool) -> io::Result<()> {
        let out = if write { libc::EPOLLOUT } else { 0 };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET | out) as u32,
            u64: token,
        };
        // SAFETY: valid descriptors, event on the stack.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ns: u64) -> io::Result<usize> {
        let timeout = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: a valid buffer of `events.len()` entries and a timespec on the stack.
        let n = unsafe {
            libc::epoll_pwait2(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                &timeout,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}
