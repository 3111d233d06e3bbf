//! The scheduler view (`--sched`): where a call's time goes. Every target thread's state is kept
//! in `THREADS` (by thread id) as the scheduler moves it: switched out runnable (preempted) or
//! asleep (blocked), woken (by an interrupt, a thread of its own process, or another process),
//! switched back in. Each off-CPU period is split into blocked time (until the wakeup) and
//! run-queue time (from the wakeup, or the preemption, until it runs again), added to the
//! thread's totals. A call parked in `IN_FLIGHT` carries the totals of the moment it left the
//! CPU, so at exit the differences are its own blocked and run-queue time, and its on-CPU time is
//! the rest: on + blocked + runq = latency for every call, by construction.
//!
//! These hooks run per context switch and wakeup of every task on the machine (a lookup in
//! `THREADS` for the task coming in); without `--sched`, none of this code runs.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use netpoll_ebpf::{
    abi::{
        Current, MAX_THREADS, NUM_SLOTS, Parked, SchedTotals, SlotSched, ThreadSched, counter,
        thread_state, waker,
    },
    histogram::{SCHED_BUCKETS, bucket_index},
};

use crate::probe::{bump, caller};

/// Scheduler state of every target thread seen leaving a CPU.
#[map]
static THREADS: HashMap<u32, ThreadSched> = HashMap::with_max_entries(MAX_THREADS, 0);
/// Per slot: measured calls' latency split into on CPU, blocked and run-queue time.
#[map]
static SCHED_STATS: PerCpuArray<SlotSched> = PerCpuArray::with_max_entries(NUM_SLOTS as u32, 0);
/// Over every target thread: totals and the run-queue delay histogram.
#[map]
static SCHED_TOTALS: PerCpuArray<SchedTotals> = PerCpuArray::with_max_entries(1, 0);
/// Interrupt, softirq and timer handlers running on this CPU (a wakeup from them is an
/// interrupt's).
#[map]
static IRQ_DEPTH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// How a call's latency splits. `ON_CPU`: it never left the CPU.
#[derive(Clone, Copy)]
pub struct Split {
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// [`waker`] of a wakeup during the call, or `waker::NONE`.
    pub waker: u8,
    pub wake_to_exit_ns: u64,
}

impl Split {
    pub const ON_CPU: Split = Split {
        blocked_ns: 0,
        runq_ns: 0,
        waker: waker::NONE,
        wake_to_exit_ns: 0,
    };
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn totals() -> Option<&'static mut SchedTotals> {
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    SCHED_TOTALS.get_ptr_mut(0).map(|t| unsafe { &mut *t })
}

#[inline(always)]
pub fn record_hist(hist: &mut [u64; SCHED_BUCKETS], value: u64) {
    let i = bucket_index(value);
    let i = if i < SCHED_BUCKETS {
        i
    } else {
        SCHED_BUCKETS - 1
    };
    if let Some(bucket) = hist.get_mut(i) {
        *bucket += 1;
    }
}

/// The thread leaving the CPU, if it is a target: its state and totals now, and the totals a
/// call it is in starts from (0 when it is not a target).
#[inline(always)]
pub fn thread_left_cpu(current: &mut Current, runnable: bool) -> (u64, u64) {
    // A thread inside a measured call is a target; otherwise ask (cached per CPU).
    let pid_tgid = if current.call.start_ns != 0 {
        current.pid_tgid
    } else {
        let (pid_tgid, target) = caller(current);
        if !target {
            return (0, 0);
        }
        pid_tgid
    };
    let tid = pid_tgid as u32;
    if THREADS.get_ptr(&tid).is_none() {
        let fresh = ThreadSched {
            tgid: (pid_tgid >> 32) as u32,
            ..ThreadSched::default()
        };
        if THREADS.insert(&tid, &fresh, 0).is_err() {
            bump(counter::THREADS_FULL);
            return (0, 0);
        }
    }
    let Some(t) = THREADS.get_ptr_mut(&tid) else {
        return (0, 0);
    };
    // SAFETY: this thread's own entry: its wakeup cannot run before it has left the CPU.
    let t = unsafe { &mut *t };
    t.off_ns = now();
    t.state = if runnable {
        thread_state::PREEMPTED
    } else {
        thread_state::BLOCKED
    };
    if let Some(totals) = totals() {
        if runnable {
            totals.preemptions += 1;
        } else {
            totals.sleeps += 1;
        }
    }
    (t.blocked_ns, t.runq_ns)
}

/// A task coming onto a CPU: if it is a target thread, close its off-CPU period.
#[inline(always)]
pub fn thread_entered_cpu(tid: u32) {
    let Some(t) = THREADS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the entry of the thread being switched in, which runs nowhere else.
    let t = unsafe { &mut *t };
    let since = match t.state {
        thread_state::PREEMPTED => t.off_ns,
        thread_state::WOKEN => t.woken_ns,
        thread_state::BLOCKED => {
            // Its wakeup was not seen (it began before we attached): all of it counts as
            // blocked, none as waiting for a CPU.
            let now = now();
            let blocked = now.saturating_sub(t.off_ns);
            t.blocked_ns += blocked;
            t.state = thread_state::ON_CPU;
            if let Some(totals) = totals() {
                totals.blocked_ns += blocked;
            }
            return;
        }
        _ => return,
    };
    let waited = now().saturating_sub(since);
    t.runq_ns += waited;
    t.state = thread_state::ON_CPU;
    if let Some(totals) = totals() {
        totals.runq_ns += waited;
        record_hist(&mut totals.runq, waited);
    }
}

/// A task woken (`sched_waking`): if it is a target thread asleep, its blocked period ends, and
/// who woke it is noted. `sched_waking` fires in the waker's context; `sched_wakeup`, which
/// this used before, fires where the task is activated, which for a wakee on an idle CPU is
/// that CPU's idle task or IPI handler (the kernel queues the wakeup there): a thread's write
/// then looked like an interrupt's (1 wakeup in 15 runs of the pipe test, once netpoll's own
/// process stopped waking every 20 ms and left the CPUs idle more often).
#[inline(always)]
pub fn on_wakeup(tid: u32) {
    let Some(t) = THREADS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the wakee's entry; its thread is off CPU until it is switched in.
    let t = unsafe { &mut *t };
    if t.state != thread_state::BLOCKED {
        return;
    }
    let now = now();
    let blocked = now.saturating_sub(t.off_ns);
    t.blocked_ns += blocked;
    t.woken_ns = now;
    t.state = thread_state::WOKEN;
    let in_interrupt = IRQ_DEPTH.get(0).is_some_and(|d| *d > 0);
    let waker_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The idle task (tgid 0) wakes nothing itself: an interrupt did, on an idle CPU.
    let kind = if in_interrupt || waker_tgid == 0 {
        waker::INTERRUPT
    } else if waker_tgid == t.tgid {
        waker::SAME_PROCESS
    } else {
        waker::OTHER_PROCESS
    };
    t.waker = kind as u8;
    if let Some(totals) = totals() {
        totals.blocked_ns += blocked;
        if let Some(w) = totals.wakeups.get_mut(kind) {
            *w += 1;
        }
    }
}

/// Interrupt, softirq and timer handlers: entry and exit.
#[inline(always)]
pub fn irq_entered() {
    if let Some(depth) = IRQ_DEPTH.get_ptr_mut(0) {
        // SAFETY: per-CPU; an interrupt nesting here only delays its own update.
        unsafe { *depth += 1 };
    }
}

#[inline(always)]
pub fn irq_left() {
    if let Some(depth) = IRQ_DEPTH.get_ptr_mut(0) {
        // SAFETY: as above; never below zero (an exit whose entry we did not see).
        unsafe { *depth = (*depth).saturating_sub(1) };
    }
}

/// A thread's entry is dropped when it exits.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    let _ = THREADS.remove(&tid);
}

/// How a parked call's latency splits: the thread's totals now minus those it was parked with.
#[inline(always)]
pub fn split(tid: u32, parked: &Parked, now: u64) -> Split {
    // SAFETY: a copy of this thread's own entry is taken at once.
    let Some(t) = (unsafe { THREADS.get(&tid) }).copied() else {
        return Split::ON_CPU;
    };
    let woke_in_call = t.woken_ns >= parked.call.start_ns && t.woken_ns != 0;
    Split {
        blocked_ns: t.blocked_ns.saturating_sub(parked.base_blocked_ns),
        runq_ns: t.runq_ns.saturating_sub(parked.base_runq_ns),
        waker: if woke_in_call { t.waker } else { waker::NONE },
        wake_to_exit_ns: if woke_in_call {
            now.saturating_sub(t.woken_ns)
        } else {
            0
        },
    }
}

/// Records a measured call's split in its slot.
#[inline(always)]
pub fn record(slot: u32, latency: u64, split: &Split) {
    let Some(s) = SCHED_STATS.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a per-CPU map value: only this CPU writes it.
    let s = unsafe { &mut *s };
    // Off-CPU time never exceeds the latency, but clocks read on two CPUs may disagree by a
    // few ns: the parts are clamped so that on + blocked + runq = latency exactly.
    let blocked = split.blocked_ns.min(latency);
    let runq = split.runq_ns.min(latency - blocked);
    let on = latency - blocked - runq;
    s.on_cpu_sum_ns += on;
    s.blocked_sum_ns += blocked;
    s.runq_sum_ns += runq;
    record_hist(&mut s.on_cpu, on);
    record_hist(&mut s.blocked, blocked);
    record_hist(&mut s.runq, runq);
    let kind = split.waker as usize;
    if kind < waker::COUNT {
        if let Some(w) = s.wakeups.get_mut(kind) {
            *w += 1;
        }
        if let Some(w) = s.wake_to_exit_sum_ns.get_mut(kind) {
            *w += split.wake_to_exit_ns;
        }
    }
}
