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
//! price of a mode whose cost for other processes is one per-CPU lookup per socket transfer and
//! one array read per context switch.

use aya_ebpf::{
    helpers::{bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_task_pt_regs},
    macros::map,
    maps::{Array, PerCpuArray},
};
use netpoll_ebpf::{
    abi::{EAGAIN, LITE_SLOTS, LiteAsleep, LiteStats, counter},
    histogram::{SCHED_BUCKETS, bucket_index},
    syscalls::NUM_SYSCALLS,
};

use crate::probe::{bump, caller, current, lookup_syscall};

/// Lite mode is on: every `if lite()` block is pruned by the verifier otherwise.
#[unsafe(no_mangle)]
static LITE: u8 = 0;

#[map]
static LITE_STATS: PerCpuArray<LiteStats> = PerCpuArray::with_max_entries(NUM_SYSCALLS as u32, 0);
/// Target threads asleep inside a measured syscall, in slot `tid % LITE_SLOTS`. An array, not
/// a hash map: every context switch of the machine asks it about the task coming in, and an
/// array read is an address computation where a hash lookup hashes, walks a bucket, and
/// (insert, delete) takes the bucket's lock and the free list's.
#[map]
static LITE_ASLEEP: Array<LiteAsleep> = Array::with_max_entries(LITE_SLOTS, 0);

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
    if !caller(current).1 {
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

/// The slot of thread `tid` in `LITE_ASLEEP`.
#[inline(always)]
fn asleep_slot(tid: u32) -> Option<&'static mut LiteAsleep> {
    // SAFETY: array values live as long as the map; a slot is written only by the CPU switching
    // its thread out and read by the one switching it in, which the scheduler orders.
    LITE_ASLEEP
        .get_ptr_mut(tid & (LITE_SLOTS - 1))
        .map(|s| unsafe { &mut *s })
}

/// `sched_switch`: the thread leaving (the current task) may go to sleep in a syscall; the one
/// coming in (`next_tid`) may wake from one.
#[inline(always)]
pub fn on_switch(runnable: bool, next_tid: u32) {
    if !runnable && let Some(current) = current() {
        let (pid_tgid, target) = caller(current);
        if target
            && let Some(info) = lookup_syscall(current_syscall_nr())
            && let Some(slot) = asleep_slot(pid_tgid as u32)
        {
            let tid = pid_tgid as u32;
            if slot.tid == 0 || slot.tid == tid {
                // SAFETY: helper without arguments.
                slot.since_ns = unsafe { bpf_ktime_get_ns() };
                slot.index = (info.index_plus_one - 1) as u32;
                slot.tid = tid;
            } else {
                // Another target thread, with the same id modulo LITE_SLOTS, is asleep there:
                // this sleep is lost, counted with the full mode's lost calls (the two modes
                // never run together).
                bump(counter::IN_FLIGHT_FULL);
            }
        }
    }
    let Some(slot) = asleep_slot(next_tid) else {
        return;
    };
    if next_tid == 0 || slot.tid != next_tid {
        return;
    }
    let asleep = *slot;
    slot.tid = 0;
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

/// A thread exits: free its slot.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    if let Some(slot) = asleep_slot(tid)
        && slot.tid == tid
    {
        slot.tid = 0;
    }
}
