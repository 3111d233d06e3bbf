//! Micro-benchmarks of the hot path's parts, never attached: `netpoll primitive-costs` has the
//! kernel run each of these socket filters a million times (`BPF_PROG_TEST_RUN`, which reports
//! the mean time per run) and subtracts `micro_empty`. Each calls the code the hooks call, on
//! the same maps, so what a clock read, a lookup or a histogram update costs per measured call
//! is measured on the machine, not guessed. Inputs come from the packet's length (64 bytes),
//! which the compiler cannot fold; results go through `black_box` so nothing is optimised away.

use core::hint::black_box;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::socket_filter,
    programs::SkBuffContext,
};

use crate::probe::{TARGETS, add_latency, caller, current, lookup_syscall, stats_for};

/// The run itself: what the others are measured against.
#[socket_filter]
pub fn micro_empty(ctx: SkBuffContext) -> i64 {
    black_box(ctx.len()) as i64 & 0
}

/// One `bpf_ktime_get_ns` (a timed call reads it twice).
#[socket_filter]
pub fn micro_clock(ctx: SkBuffContext) -> i64 {
    // SAFETY: helper without arguments.
    black_box(unsafe { bpf_ktime_get_ns() } + ctx.len() as u64) as i64 & 0
}

/// `bpf_get_current_pid_tgid`: who is calling.
#[socket_filter]
pub fn micro_pid_tgid(ctx: SkBuffContext) -> i64 {
    black_box(bpf_get_current_pid_tgid() + ctx.len() as u64) as i64 & 0
}

/// The syscall table's entry for a syscall number (an array lookup and a check), at every
/// `sys_enter` of every process.
#[socket_filter]
pub fn micro_syscall_table(ctx: SkBuffContext) -> i64 {
    // 64 - 64 = 0, `read`: a measured syscall.
    let nr = ctx.len() as i64 - 64;
    black_box(lookup_syscall(nr).map_or(0, |i| i.index_plus_one)) as i64 & 0
}

/// This CPU's slot for the call in progress (a per-CPU array lookup), at every hook.
#[socket_filter]
pub fn micro_current(ctx: SkBuffContext) -> i64 {
    let _ = black_box(ctx.len());
    black_box(current().map_or(0, |c| c.pid_tgid)) as i64 & 0
}

/// Who runs and whether it is a target, as every hook asks it (both cached: a hit, as for
/// every hook after the first since the last context switch).
#[socket_filter]
pub fn micro_verdict(ctx: SkBuffContext) -> i64 {
    let _ = black_box(ctx.len());
    let Some(current) = current() else { return 0 };
    black_box(caller(current).1) as i64 & 0
}

/// A lookup in the `TARGETS` hash map (what a verdict costs when it is not cached).
#[socket_filter]
pub fn micro_targets_hash(ctx: SkBuffContext) -> i64 {
    let tgid = black_box(ctx.len());
    // SAFETY: the reference is only tested, never held.
    black_box(unsafe { TARGETS.get(&tgid) }.is_some()) as i64 & 0
}

/// A call into its slot: the per-CPU stats lookup, count, sum and histogram bucket.
#[socket_filter]
pub fn micro_account(ctx: SkBuffContext) -> i64 {
    // 64 << 7: 8 µs, a bucket of the log-linear part.
    let latency = black_box(ctx.len() as u64) << 7;
    let Some(stats) = stats_for(0, 0) else {
        return 0;
    };
    // SAFETY: a per-CPU map value: only this CPU writes it, and the program is not re-entered.
    add_latency(unsafe { &mut *stats }, latency);
    0
}
