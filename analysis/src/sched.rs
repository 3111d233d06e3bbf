//! The scheduler view (`--sched`) in results files: where the time of calls and threads goes.
//! Documented in docs/results-format.md.

use serde::{Deserialize, Serialize};

use crate::Histogram;

/// Wakeups by who woke the thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Wakers {
    /// An interrupt, softirq or timer (a packet arriving, a timeout expiring).
    pub interrupt: u64,
    /// Another thread of the same process (a worker pool, a futex, Go's netpoller).
    pub same_process: u64,
    /// A thread of another process.
    pub other_process: u64,
}

impl Wakers {
    pub fn from_array(a: [u64; 3]) -> Wakers {
        Wakers {
            interrupt: a[0],
            same_process: a[1],
            other_process: a[2],
        }
    }

    pub fn total(&self) -> u64 {
        self.interrupt + self.same_process + self.other_process
    }

    fn add(&mut self, o: &Wakers) {
        self.interrupt += o.interrupt;
        self.same_process += o.same_process;
        self.other_process += o.other_process;
    }

    fn since(&self, e: &Wakers) -> Wakers {
        Wakers {
            interrupt: self.interrupt.saturating_sub(e.interrupt),
            same_process: self.same_process.saturating_sub(e.same_process),
            other_process: self.other_process.saturating_sub(e.other_process),
        }
    }
}

/// One syscall's (or class's) latency split: for every call, on_cpu + blocked + runq =
/// latency, so the sums add up to `latency_sum_ns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallSched {
    /// Time the thread ran (in the kernel, doing the call's work).
    pub on_cpu_ns: Histogram,
    pub on_cpu_sum_ns: u64,
    /// Time the thread was asleep inside the call: waiting for data, a timeout, a lock.
    pub blocked_ns: Histogram,
    pub blocked_sum_ns: u64,
    /// Time the thread was runnable but not running: woken or preempted, waiting for a CPU.
    pub runq_ns: Histogram,
    pub runq_sum_ns: u64,
    /// Calls woken inside the call, by who woke them.
    pub wakeups: Wakers,
    /// Of those, the time from the wakeup to the call's return, summed by waker.
    pub wake_to_exit_sum_ns: Wakers,
}

impl CallSched {
    pub fn merge(&mut self, o: &CallSched) {
        self.on_cpu_ns.merge(&o.on_cpu_ns);
        self.blocked_ns.merge(&o.blocked_ns);
        self.runq_ns.merge(&o.runq_ns);
        self.on_cpu_sum_ns += o.on_cpu_sum_ns;
        self.blocked_sum_ns += o.blocked_sum_ns;
        self.runq_sum_ns += o.runq_sum_ns;
        self.wakeups.add(&o.wakeups);
        self.wake_to_exit_sum_ns.add(&o.wake_to_exit_sum_ns);
    }

    pub fn since(&self, e: &CallSched) -> CallSched {
        CallSched {
            on_cpu_ns: self.on_cpu_ns.since(&e.on_cpu_ns),
            on_cpu_sum_ns: self.on_cpu_sum_ns.saturating_sub(e.on_cpu_sum_ns),
            blocked_ns: self.blocked_ns.since(&e.blocked_ns),
            blocked_sum_ns: self.blocked_sum_ns.saturating_sub(e.blocked_sum_ns),
            runq_ns: self.runq_ns.since(&e.runq_ns),
            runq_sum_ns: self.runq_sum_ns.saturating_sub(e.runq_sum_ns),
            wakeups: self.wakeups.since(&e.wakeups),
            wake_to_exit_sum_ns: self.wake_to_exit_sum_ns.since(&e.wake_to_exit_sum_ns),
        }
    }
}

/// The target threads' time, in and outside measured calls (`--sched`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scheduler {
    /// Time asleep, summed over the threads.
    pub blocked_ns: u64,
    /// Time runnable but waiting for a CPU, summed over the threads.
    pub runq_ns: u64,
    /// Switches out while runnable (involuntary: preempted).
    pub preemptions: u64,
    /// Switches out asleep (voluntary).
    pub sleeps: u64,
    pub wakeups: Wakers,
    /// Run-queue delay after every wakeup or preemption.
    pub runq_delay_ns: Histogram,
}

impl Scheduler {
    pub fn since(&self, e: &Scheduler) -> Scheduler {
        Scheduler {
            blocked_ns: self.blocked_ns.saturating_sub(e.blocked_ns),
            runq_ns: self.runq_ns.saturating_sub(e.runq_ns),
            preemptions: self.preemptions.saturating_sub(e.preemptions),
            sleeps: self.sleeps.saturating_sub(e.sleeps),
            wakeups: self.wakeups.since(&e.wakeups),
            runq_delay_ns: self.runq_delay_ns.since(&e.runq_delay_ns),
        }
    }
}
