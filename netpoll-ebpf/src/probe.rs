//! What every hook does, whatever kind of hook carries it: filter, time, classify, aggregate.
//!
//! A measured call is timed from `sys_enter` to `sys_exit` of the same thread. While the thread
//! runs, its call lives in the per-CPU `CURRENT` slot: no hash lookup on the hot path. If the
//! thread is switched out mid-call (it blocks, or is preempted), `sched_switch` parks the call in
//! `IN_FLIGHT` (keyed by thread id), where its exit finds it on whatever CPU it resumes. So a call
//! in `CURRENT` always belongs to the thread running on that CPU: the hooks need not ask who runs. Socket
//! tracepoints that fire in between mark the call as socket I/O. At exit the call lands in one
//! per-CPU slot of `STATS` (or of `PID_STATS` with `--per-pid`): counters plus log-linear
//! histograms, so nothing is copied to user space per event. The scheduler view (`--sched`,
//! [`crate::sched`]) splits each call's latency further; without it none of its code runs.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::tracing::StackIdContext,
};
use netpoll_ebpf::{
    abi::{
        Current, EAGAIN, IORING_ENTER_GETEVENTS, InFlight, MAX_PID_SLOTS, MAX_TARGETS, MAX_THREADS,
        NUM_SLOTS, Parked, PidSlot, SlotStats, SyscallInfo, counter, filter, slot, stacks,
    },
    histogram::{READY_MAX, bucket_index},
    syscalls::{Kind, MAX_SYSCALL_NR, Wait},
};

use crate::sched::{self, Split};

// Load-time configuration (names in `abi::globals`), set by the loader. Read-only after load,
// so the verifier treats them as constants and prunes the filter branches not taken.
#[unsafe(no_mangle)]
static FILTER_MODE: u8 = filter::ALL;
#[unsafe(no_mangle)]
static FILTER_COMM: [u8; 16] = [0; 16];
#[unsafe(no_mangle)]
static FILTER_CGROUP: u64 = 0;
#[unsafe(no_mangle)]
static VERDICT_CACHE: u8 = 0;
#[unsafe(no_mangle)]
static PER_PID: u8 = 0;
/// The scheduler view is on: every `if sched_view()` block is pruned by the verifier otherwise.
#[unsafe(no_mangle)]
static SCHED: u8 = 0;

#[map]
static SYSCALL_TABLE: Array<SyscallInfo> = Array::with_max_entries(MAX_SYSCALL_NR, 0);
/// Calls whose thread was switched out before they returned, by thread id.
#[map]
static IN_FLIGHT: HashMap<u32, Parked> = HashMap::with_max_entries(MAX_THREADS, 0);
/// The call of the thread running on this CPU, and this CPU's cached target verdict.
#[map]
static CURRENT: PerCpuArray<Current> = PerCpuArray::with_max_entries(1, 0);
/// Bumped whenever `TARGETS` grows, so cached "not a target" verdicts expire.
#[map]
static TARGETS_GEN: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<SlotStats> = PerCpuArray::with_max_entries(NUM_SLOTS as u32, 0);
/// Preallocated (allocation on demand fails for values this large); the loader sizes it to 1
/// entry unless `--per-pid` asks for it.
#[map]
static PID_STATS: PerCpuHashMap<PidSlot, SlotStats> =
    PerCpuHashMap::with_max_entries(MAX_PID_SLOTS, 0);
/// Name of each process in `PID_STATS`, taken at its first measured call.
#[map]
static PID_COMM: HashMap<u32, [u8; 16]> = HashMap::with_max_entries(MAX_PID_SLOTS, 0);
/// Processes (tgids) being profiled in PID mode, with everything they spawn.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TARGETS, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Monotonic time at which the entry hook was attached (start of lower-bound latencies).
#[map]
static ATTACH_NS: Array<u64> = Array::with_max_entries(1, 0);
/// One zeroed `SlotStats`, the initial value of new `PID_STATS` entries (too big for the stack).
#[map]
static ZERO_STATS: Array<SlotStats> = Array::with_max_entries(1, 0);

#[inline(always)]
fn global<T: Copy>(value: &T) -> T {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load-time value.
    unsafe { core::ptr::read_volatile(value) }
}

/// Whether the scheduler view is on (a load-time constant).
#[inline(always)]
pub fn sched_view() -> bool {
    global(&SCHED) != 0
}

#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU value, only this CPU writes it.
        unsafe { *c += 1 };
    }
}

/// Whether the current task is one we profile. First check of every program that records.
#[inline(always)]
pub fn is_target(pid_tgid: u64) -> bool {
    match global(&FILTER_MODE) {
        filter::PIDS => {
            // SAFETY: the reference is only tested, never held.
            unsafe { TARGETS.get(&((pid_tgid >> 32) as u32)) }.is_some()
        }
        filter::COMM => match bpf_get_current_comm() {
            // Compare as two words: BPF has no memcmp.
            Ok(comm) => as_words(&comm) == as_words(&global(&FILTER_COMM)),
            Err(_) => false,
        },
        // SAFETY: helper without arguments.
        filter::CGROUP => (unsafe { bpf_get_current_cgroup_id() }) == global(&FILTER_CGROUP),
        _ => true,
    }
}

#[inline(always)]
fn as_words(bytes: &[u8; 16]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&bytes[..8]);
    hi.copy_from_slice(&bytes[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

#[inline(always)]
pub fn lookup_syscall(nr: i64) -> Option<SyscallInfo> {
    if !(0..MAX_SYSCALL_NR as i64).contains(&nr) {
        return None;
    }
    let info = *SYSCALL_TABLE.get(nr as u32)?;
    (info.index_plus_one != 0).then_some(info)
}

/// Reads syscall argument `n` (0-based) of the call being entered.
pub trait SyscallArgs {
    fn arg(&self, n: u8) -> u64;
}

/// Whether a waiting call was asked not to block, from its arguments.
#[inline(always)]
fn is_nonblocking<A: SyscallArgs>(info: &SyscallInfo, args: &A) -> bool {
    match info.wait {
        w if w == Wait::MillisArg as u8 => args.arg(info.wait_arg) as i32 == 0,
        w if w == Wait::TimePtrArg as u8 => {
            let ptr = args.arg(info.wait_arg);
            // NULL waits forever; an unreadable pointer fails with EFAULT: count neither.
            // SAFETY: bpf_probe_read_user checks the address.
            ptr != 0 && unsafe { bpf_probe_read_user(ptr as *const [u64; 2]) } == Ok([0, 0])
        }
        w if w == Wait::UringGetEvents as u8 => {
            args.arg(info.wait_arg) & IORING_ENTER_GETEVENTS == 0 || args.arg(2) as u32 == 0
        }
        _ => false,
    }
}

/// The thread running on this CPU (its pid_tgid) and whether it is a target, both cached per
/// CPU. Who runs is asked of the kernel at the first hook after a context switch and kept
/// until the next one ([`forget_running`], from `sched_switch`). Only hooks attached after
/// `sched_switch` may keep it ([`caller`]); the others ([`caller_seen`]) use it when kept and
/// ask the kernel otherwise. The verdict is kept by thread, across switches: the thread on a CPU
/// changes far less often than it makes syscalls, and an uncached verdict costs a hash lookup
/// (`--pid`), a copy of the task's name (`--comm`) or a walk to its cgroup (`--cgroup`); it
/// expires when `TARGETS_GEN` moves: a target added, a task renamed (`--comm`) or moved to
/// another cgroup (`--cgroup`), so a task that becomes a target is counted from its next call.
#[inline(always)]
pub fn caller(current: &mut Current) -> (u64, bool) {
    caller_keeping(current, true)
}

/// [`caller`] for hooks that may run before `sched_switch` is attached (the socket
/// tracepoints of the full mode, attached before the syscall hooks): who runs is used when a
/// later hook kept it, never kept from here (no switch would forget it).
#[inline(always)]
pub fn caller_seen(current: &mut Current) -> (u64, bool) {
    caller_keeping(current, false)
}

#[inline(always)]
fn caller_keeping(current: &mut Current, keep: bool) -> (u64, bool) {
    let mut pid_tgid = current.running;
    if pid_tgid == 0 {
        pid_tgid = bpf_get_current_pid_tgid();
        if keep {
            current.running = pid_tgid;
        }
    }
    if global(&VERDICT_CACHE) == 0 {
        return (pid_tgid, is_target(pid_tgid));
    }
    let generation = TARGETS_GEN.get(0).copied().unwrap_or(0);
    if current.verdict_for == pid_tgid && current.verdict_generation == generation {
        return (pid_tgid, current.verdict != 0);
    }
    let verdict = is_target(pid_tgid);
    current.verdict_for = pid_tgid;
    current.verdict_generation = generation;
    current.verdict = verdict as u64;
    (pid_tgid, verdict)
}

/// `sched_switch`, last: another thread is about to run on this CPU.
#[inline(always)]
pub fn forget_running() {
    if let Some(current) = current() {
        current.running = 0;
    }
}

/// Expires every CPU's cached verdict (the targets may have changed).
#[inline(always)]
pub fn expire_verdicts() {
    if let Some(generation) = TARGETS_GEN.get_ptr_mut(0) {
        // SAFETY: any change invalidates the cached verdicts; a lost race still changes it.
        unsafe { *generation += 1 };
    }
}

#[inline(always)]
pub fn current() -> Option<&'static mut Current> {
    // SAFETY: a per-CPU value; tracepoint programs do not migrate while they run.
    CURRENT.get_ptr_mut(0).map(|c| unsafe { &mut *c })
}

/// `sys_enter`: start timing a measured call of a target thread.
#[inline(always)]
pub fn on_sys_enter<A: SyscallArgs>(nr: i64, args: &A) {
    let ready_fd_plus_one = if crate::ready::on() {
        crate::ready::enter(nr, args)
    } else {
        0
    };
    let Some(info) = lookup_syscall(nr) else {
        return;
    };
    let Some(current) = current() else { return };
    let (pid_tgid, target) = caller(current);
    if !target {
        return;
    }
    current.pid_tgid = pid_tgid;
    current.call = InFlight {
        index: info.index_plus_one - 1,
        socket: 0,
        nonblocking: is_nonblocking(&info, args) as u8,
        kind: info.kind,
        ready_fd_plus_one,
        // SAFETY: helper without arguments. Taken last so the probe's own work is not timed.
        start_ns: unsafe { bpf_ktime_get_ns() },
    };
}

/// `sched_switch`, in the context of the task leaving the CPU (`runnable`: it was preempted
/// rather than put to sleep, read only by the scheduler view): park its unfinished call; with
/// the scheduler view, note where the thread went.
#[inline(always)]
pub fn on_switch_out<C: StackIdContext>(ctx: &C, runnable: impl FnOnce() -> bool) {
    let Some(current) = current() else { return };
    let (base_blocked_ns, base_runq_ns) = if sched_view() {
        sched::thread_left_cpu(current, runnable())
    } else {
        (0, 0)
    };
    if current.call.start_ns == 0 {
        return;
    }
    // The call belongs to the thread leaving the CPU (see the module comment).
    let tid = current.pid_tgid as u32;
    let parked = Parked {
        call: current.call,
        base_blocked_ns,
        base_runq_ns,
        kernel_stack: crate::stacks::kernel_stack_at_switch(ctx),
        _pad: 0,
    };
    if IN_FLIGHT.insert(&tid, &parked, 0).is_err() {
        bump(counter::IN_FLIGHT_FULL);
    }
    current.call.start_ns = 0;
}

/// `sys_exit`: account a measured call. `nr` is read only off the fast path. `ctx` and `regs`
/// (the user registers, or null) are for `--stacks`.
#[inline(always)]
pub fn on_sys_exit<C: StackIdContext>(
    ctx: &C,
    regs: *const u8,
    ret: i64,
    nr: impl FnOnce() -> i64,
) {
    let Some(current) = current() else { return };
    if current.call.start_ns != 0 {
        // Fast path: this thread's call ran on this CPU without being switched out. The clock
        // is read after the slot lookup, not first: every other process's exit is spared it.
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        let call = current.call;
        current.call.start_ns = 0;
        account(
            ctx,
            regs,
            current.pid_tgid,
            &call,
            false,
            now.saturating_sub(call.start_ns),
            ret,
            Split::ON_CPU,
            stacks::STAYED_ON_CPU,
        );
        return;
    }
    // Only a target can have a parked call: every other process leaves here, on the cached
    // verdict, without a hash lookup or a clock read.
    let (pid_tgid, target) = caller(current);
    if !target {
        return;
    }
    on_parked_call_exit(ctx, regs, pid_tgid, ret, nr());
}

/// Exit of a target's call that was switched out (parked in `IN_FLIGHT`), or that began before
/// the probes attached (then its latency counts from the attach time: a lower bound).
#[inline(never)]
fn on_parked_call_exit<C: StackIdContext>(
    ctx: &C,
    regs: *const u8,
    pid_tgid: u64,
    ret: i64,
    nr: i64,
) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(info) = lookup_syscall(nr) else {
        return;
    };
    let tid = pid_tgid as u32;
    let mut socket = 0;
    if let Some(parked) = IN_FLIGHT.get_ptr(&tid) {
        // SAFETY: this thread's own entry, copied before it is removed.
        let parked = unsafe { *parked };
        let _ = IN_FLIGHT.remove(&tid);
        let call = parked.call;
        if call.start_ns != 0 {
            let split = if sched_view() {
                sched::split(tid, &parked, now)
            } else {
                Split::ON_CPU
            };
            account(
                ctx,
                regs,
                pid_tgid,
                &call,
                false,
                now.saturating_sub(call.start_ns),
                ret,
                split,
                parked.kernel_stack,
            );
            return;
        }
        // A mark left by the socket tracepoints for a call that began before we attached.
        socket = call.socket;
    }
    let Some(&attached) = ATTACH_NS.get(0) else {
        return;
    };
    if attached == 0 || attached > now {
        return;
    }
    let call = InFlight {
        index: info.index_plus_one - 1,
        kind: info.kind,
        socket,
        ..InFlight::default()
    };
    account(
        ctx,
        regs,
        pid_tgid,
        &call,
        true,
        now - attached,
        ret,
        Split::ON_CPU,
        stacks::NOT_TAKEN,
    );
}

/// `sock_recv_length` / `sock_send_length`: the call in flight on this thread touched a socket.
#[inline(always)]
pub fn on_socket_io() {
    let Some(current) = current() else { return };
    if current.call.start_ns != 0 {
        // The running thread's call (see the module comment).
        current.call.socket = 1;
        return;
    }
    // Every socket transfer on the machine comes here: other processes leave on the cached
    // verdict, without a hash lookup.
    let (pid_tgid, target) = caller_seen(current);
    if !target {
        return;
    }
    let tid = pid_tgid as u32;
    match IN_FLIGHT.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry.
        Some(parked) => unsafe { (*parked).call.socket = 1 },
        None => {
            // A call that began before we attached: leave a mark for its exit.
            let mark = Parked {
                call: InFlight {
                    socket: 1,
                    ..InFlight::default()
                },
                ..Parked::default()
            };
            if IN_FLIGHT.insert(&tid, &mark, 0).is_err() {
                bump(counter::IN_FLIGHT_FULL);
            }
        }
    }
}

/// `sched_process_exit` (per thread): drop the thread's call so dead threads leak nothing.
#[inline(always)]
pub fn on_task_exit() {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(current) = current()
        && current.call.start_ns != 0
    {
        current.call.start_ns = 0;
        bump(counter::DIED_IN_CALL);
    }
    if let Some(parked) = IN_FLIGHT.get_ptr(&tid) {
        // SAFETY: this thread's own entry.
        if unsafe { (*parked).call.start_ns } != 0 {
            bump(counter::DIED_IN_CALL);
        }
        let _ = IN_FLIGHT.remove(&tid);
    }
    if sched_view() {
        sched::forget_thread(tid);
    }
    if crate::lite::lite() {
        crate::lite::forget_thread(tid);
    }
}

/// `sched_process_fork`: follow tasks created by a target (PID mode only).
#[inline(always)]
pub fn on_task_fork(child_pid: u32) {
    if global(&FILTER_MODE) != filter::PIDS || !is_target(bpf_get_current_pid_tgid()) {
        return;
    }
    if TARGETS.insert(&child_pid, &1, 0).is_ok() {
        bump(counter::FOLLOWED_TASKS);
        expire_verdicts();
    } else {
        bump(counter::TARGETS_FULL);
    }
}

#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "inlined into the exit hooks")]
fn account<C: StackIdContext>(
    ctx: &C,
    regs: *const u8,
    pid_tgid: u64,
    call: &InFlight,
    lower_bound: bool,
    latency: u64,
    ret: i64,
    split: Split,
    kernel_stack: i32,
) {
    let kind = call.kind;
    // Read, Write, and their batch forms (Kind's numbering keeps this to two compares).
    let is_rw = kind <= Kind::Write as u8 || kind >= Kind::ReadBatch as u8;
    let slot = slot(call.index as usize, call.socket != 0 && is_rw, lower_bound) as u32;
    if sched_view() && !lower_bound {
        sched::record(slot, latency, &split);
    }
    // Calls under way at attach are left out: their place in the scheduler split is unknown.
    if crate::stacks::on() && !lower_bound {
        let call = crate::stacks::Call {
            tgid: (pid_tgid >> 32) as u32,
            slot,
            latency,
            ret,
            blocked_ns: split.blocked_ns,
            runq_ns: split.runq_ns,
            kernel_stack,
        };
        crate::stacks::record(ctx, regs, &call);
    }
    let Some(stats) = stats_for(pid_tgid, slot) else {
        return;
    };
    // SAFETY: a per-CPU map value: only this CPU writes it, and the program is not re-entered.
    let stats = unsafe { &mut *stats };
    add_latency(stats, latency);
    if ret < 0 {
        stats.errors += 1;
        if ret == -EAGAIN {
            stats.eagain += 1;
        }
    } else if kind <= Kind::Write as u8 {
        stats.bytes += ret as u64;
    } else if kind == Kind::Multiplex as u8 || kind >= Kind::ReadBatch as u8 {
        if ret == 0 {
            stats.zero_ready += 1;
        }
        let ready = if (ret as u64) < READY_MAX {
            ret as u64
        } else {
            READY_MAX
        };
        if let Some(bucket) = stats.ready.get_mut(bucket_index(ready)) {
            *bucket += 1;
        }
    }
    if call.nonblocking != 0 {
        stats.nonblocking += 1;
    }
    if crate::ready::on() && call.ready_fd_plus_one != 0 {
        crate::ready::serviced_at_exit(pid_tgid, call, ret);
    }
}

/// A call and its latency into a slot's count, sum and histogram.
#[inline(always)]
pub fn add_latency(stats: &mut SlotStats, latency: u64) {
    stats.calls += 1;
    stats.latency_sum_ns += latency;
    if let Some(bucket) = stats.latency.get_mut(bucket_index(latency)) {
        *bucket += 1;
    }
}

#[inline(always)]
pub fn stats_for(pid_tgid: u64, slot: u32) -> Option<*mut SlotStats> {
    if global(&PER_PID) == 0 {
        return STATS.get_ptr_mut(slot);
    }
    let key = PidSlot {
        tgid: (pid_tgid >> 32) as u32,
        slot,
    };
    if let Some(stats) = PID_STATS.get_ptr_mut(&key) {
        return Some(stats);
    }
    let zero = ZERO_STATS.get(0)?;
    if PID_STATS.insert(&key, zero, 0).is_ok() {
        if let Ok(comm) = bpf_get_current_comm() {
            // Best effort: a missing name is shown as empty.
            let _ = PID_COMM.insert(&key.tgid, &comm, 0);
        }
        return PID_STATS.get_ptr_mut(&key);
    }
    // Full: still count the call in the totals, without its process.
    bump(counter::PID_STATS_FULL);
    STATS.get_ptr_mut(slot)
}
