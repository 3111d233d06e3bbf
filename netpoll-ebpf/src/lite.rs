//! `--lite`: figures without a hook on every syscall. `sys_enter`/`sys_exit` put every syscall
//! of every process on the kernel's tracing path; lite mode leaves them off and learns what it
//! can from rarer events, reading the syscall a thread is in from its saved registers
//! (`orig_ax` of `task_pt_regs`):
//! - `sock_recv_length`/`sock_send_length`: each socket transfer of a target, with its result
//!   (bytes, error, EAGAIN), by syscall;
//! - `sched_switch`: a target thread going to sleep inside a measured syscall is noted in
//!   `LITE_ASLEEP`; when it runs again, its time off CPU is added to that syscall.
//!
//! Calls that neither touch a socket nor sleep are not seen, and nothing is timed on CPU: the
//! price of a mode whose cost for other processes is one per-CPU lookup per context switch and
//! per socket transfer.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_task_pt_regs,
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use netpoll_ebpf::{
    abi::{EAGAIN, LiteAsleep, LiteStats, MAX_THREADS, counter},
    histogram::{SCHED_BUCKETS, bucket_index},
    syscalls::NUM_SYSCALLS,
};

use crate::probe::{bump, current, is_target_cached, lookup_syscall};

/// Lite mode is on: every `if lite()` block is pruned by the verifier otherwise.
#[unsafe(no_mangle)]
static LITE: u8 = 0;

#[map]
static LITE_STATS: PerCpuArray<LiteStats> = PerCpuArray::with_max_entries(NUM_SYSCALLS as u32, 0);
/// Target threads asleep inside a measured syscall, by thread id.
#[map]
static LITE_ASLEEP: HashMap<u32, LiteAsleep> = HashMap::with_max_entries(MAX_THREADS, 0);

/// Whether lite mode is on (a load-time constant).
#[inline(always)]
pub fn lite() -> bool {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load-time value.
    unsafe { core::ptr::read_volatile(&LITE) != 0 }
}

/// The syscall the current task is in, from the registers saved at its entry (-1 outside one).
#[inline(always)]
fn current_syscall_nr() -> i64 {
    // SAFETY: helpers on the current task, which the kernel guarantees valid while we run.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    crate::hooks::regs_nr(regs)
}

#[inline(always)]
fn stats(index: u32) -> Option<&'static mut LiteStats> {
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    LITE_STATS.get_ptr_mut(index).map(|s| unsafe { &mut *s })
}

/// `sock_recv_length`/`sock_send_length(sk, ret, flags)`: a socket transfer.
#[inline(always)]
pub fn on_transfer(ret: i64) {
    let Some(current) = current() else { return };
    if !is_target_cached(current, bpf_get_current_pid_tgid()) {
        return;
    }
    let Some(info) = lookup_syscall(current_syscall_nr()) else {
        return;
    };
    let Some(s) = stats((info.index_plus_one - 1) as u32) else {
        return;
    };
    s.transfers += 1;
    if ret < 0 {
        s.errors += 1;
        if ret == -EAGAIN {
            s.eagain += 1;
        }
    } else {
        s.bytes += ret as u64;
    }
}

/// `sched_switch`: the thread leaving (the current task) may go to sleep in a syscall; the one
/// coming in (`next_tid`) may wake from one.
#[inline(always)]
pub fn on_switch(runnable: bool, next_tid: u32) {
    if !runnable && let Some(current) = current() {
        let pid_tgid = bpf_get_current_pid_tgid();
        if is_target_cached(current, pid_tgid)
            && let Some(info) = lookup_syscall(current_syscall_nr())
        {
            let asleep = LiteAsleep {
                // SAFETY: helper without arguments.
                since_ns: unsafe { bpf_ktime_get_ns() },
                index: (info.index_plus_one - 1) as u32,
                _pad: 0,
            };
            // A full map loses this sleep; it is counted with the full mode's lost calls (the
            // two modes never run together).
            if LITE_ASLEEP.insert(&(pid_tgid as u32), &asleep, 0).is_err() {
                bump(counter::IN_FLIGHT_FULL);
            }
        }
    }
    // SAFETY: the entry of the thread being switched in, copied at once.
    let Some(asleep) = (unsafe { LITE_ASLEEP.get(&next_tid) }).copied() else {
        return;
    };
    let _ = LITE_ASLEEP.remove(&next_tid);
    let Some(s) = stats(asleep.index) else { return };
    // SAFETY: helper without arguments.
    let off = unsafe { bpf_ktime_get_ns() }.saturating_sub(asleep.since_ns);
    s.sleeps += 1;
    s.off_cpu_sum_ns += off;
    let i = bucket_index(off).min(SCHED_BUCKETS - 1);
    if let Some(bucket) = s.off_cpu.get_mut(i) {
        *bucket += 1;
    }
}

/// A thread exits: drop its entry.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    let _ = LITE_ASLEEP.remove(&tid);
}
