//! What every hook does, whatever kind of hook carries it: filter, time, classify, aggregate.
//!
//! A measured call is timed from `sys_enter` to `sys_exit` of the same thread (`IN_FLIGHT`, keyed
//! by thread id). Socket tracepoints that fire in between mark it as socket I/O. At exit the call
//! lands in one per-CPU slot of `STATS` (or of `PID_STATS` with `--per-pid`): counters plus
//! log-linear histograms, so nothing is copied to user space per event.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
};
use netpoll_ebpf::{
    abi::{
        EAGAIN, IORING_ENTER_GETEVENTS, InFlight, MAX_PID_SLOTS, MAX_TARGETS, MAX_THREADS,
        NUM_SLOTS, PidSlot, SlotStats, SyscallInfo, counter, filter, slot,
    },
    histogram::{READY_MAX, bucket_index},
    syscalls::{Kind, MAX_SYSCALL_NR, Wait},
};

// Load-time configuration, set by the loader with `EbpfLoader::set_global`. Read-only after load,
// so the verifier treats them as constants and prunes the filter branches not taken.
#[unsafe(no_mangle)]
static FILTER_MODE: u8 = filter::ALL;
#[unsafe(no_mangle)]
static FILTER_COMM: [u8; 16] = [0; 16];
#[unsafe(no_mangle)]
static FILTER_CGROUP: u64 = 0;
#[unsafe(no_mangle)]
static PER_PID: u8 = 0;

#[map]
static SYSCALL_TABLE: Array<SyscallInfo> = Array::with_max_entries(MAX_SYSCALL_NR, 0);
#[map]
static IN_FLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(MAX_THREADS, 0);
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
fn lookup_syscall(nr: i64) -> Option<SyscallInfo> {
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

/// `sys_enter`: start timing a measured call of a target thread.
#[inline(always)]
pub fn on_sys_enter<A: SyscallArgs>(nr: i64, args: &A) {
    let Some(info) = lookup_syscall(nr) else {
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return;
    }
    let tid = pid_tgid as u32;
    let call = InFlight {
        index: info.index_plus_one - 1,
        socket: 0,
        nonblocking: is_nonblocking(&info, args) as u8,
        kind: info.kind,
        _pad: [0; 4],
        // SAFETY: helper without arguments. Taken last so the probe's own work is not timed.
        start_ns: unsafe { bpf_ktime_get_ns() },
    };
    match IN_FLIGHT.get_ptr_mut(&tid) {
        // SAFETY: the entry belongs to this thread, which is here and nowhere else.
        Some(slot) => unsafe { *slot = call },
        None => {
            if IN_FLIGHT.insert(&tid, &call, 0).is_err() {
                bump(counter::IN_FLIGHT_FULL);
            }
        }
    }
}

/// `sys_exit`: account a measured call. `nr` is read only when the thread has no call in flight,
/// which happens for calls that were already running when the probes attached.
#[inline(always)]
pub fn on_sys_exit(ret: i64, nr: impl FnOnce() -> i64) {
    // SAFETY: helpers without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let mut socket = false;
    match IN_FLIGHT.get_ptr_mut(&tid) {
        Some(ptr) => {
            // SAFETY: this thread's own entry.
            let call = unsafe { &mut *ptr };
            if call.start_ns != 0 {
                let started = call.start_ns;
                call.start_ns = 0;
                let latency = now.saturating_sub(started);
                let (index, kind) = (call.index, call.kind);
                let (is_socket, nonblocking) = (call.socket != 0, call.nonblocking != 0);
                account(
                    pid_tgid,
                    index,
                    kind,
                    is_socket,
                    false,
                    nonblocking,
                    latency,
                    ret,
                );
                return;
            }
            if call.socket == 0 {
                // Enter saw this thread before: this is a call we do not measure.
                return;
            }
            // A socket tracepoint fired inside a call whose entry we never saw.
            call.socket = 0;
            socket = true;
        }
        None => {}
    }
    on_call_started_before_attach(pid_tgid, now, ret, nr(), socket);
}

#[cold]
#[inline(never)]
fn on_call_started_before_attach(pid_tgid: u64, now: u64, ret: i64, nr: i64, socket: bool) {
    let Some(info) = lookup_syscall(nr) else {
        return;
    };
    if !is_target(pid_tgid) {
        return;
    }
    let Some(&attached) = ATTACH_NS.get(0) else {
        return;
    };
    if attached == 0 || attached > now {
        return;
    }
    let index = info.index_plus_one - 1;
    account(
        pid_tgid,
        index,
        info.kind,
        socket,
        true,
        false,
        now - attached,
        ret,
    );
    // Remember the thread: its next exits take the fast path.
    let tid = pid_tgid as u32;
    if IN_FLIGHT.get_ptr(&tid).is_none() {
        let seen = InFlight::default();
        if IN_FLIGHT.insert(&tid, &seen, 0).is_err() {
            bump(counter::IN_FLIGHT_FULL);
        }
    }
}

/// `sock_recv_length` / `sock_send_length`: the call in flight on this thread touched a socket.
#[inline(always)]
pub fn on_socket_io() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    match IN_FLIGHT.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry.
        Some(call) => unsafe { (*call).socket = 1 },
        None => {
            // A call that began before we attached: leave a mark for its exit.
            if is_target(pid_tgid) {
                let mark = InFlight {
                    socket: 1,
                    ..InFlight::default()
                };
                if IN_FLIGHT.insert(&tid, &mark, 0).is_err() {
                    bump(counter::IN_FLIGHT_FULL);
                }
            }
        }
    }
}

/// `sched_process_exit` (per thread): drop the thread's entry so dead threads leak nothing.
#[inline(always)]
pub fn on_task_exit() {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(call) = IN_FLIGHT.get_ptr(&tid) {
        // SAFETY: this thread's own entry.
        if unsafe { (*call).start_ns } != 0 {
            bump(counter::DIED_IN_CALL);
        }
        let _ = IN_FLIGHT.remove(&tid);
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
    } else {
        bump(counter::TARGETS_FULL);
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one flat call on the hot path, inlined"
)]
#[inline(always)]
fn account(
    pid_tgid: u64,
    index: u8,
    kind: u8,
    socket: bool,
    lower_bound: bool,
    nonblocking: bool,
    latency: u64,
    ret: i64,
) {
    let is_rw = kind == Kind::Read as u8 || kind == Kind::Write as u8;
    let slot = slot(index as usize, socket && is_rw, lower_bound) as u32;
    let Some(stats) = stats_for(pid_tgid, slot) else {
        return;
    };
    // SAFETY: a per-CPU map value: only this CPU writes it, and the program is not re-entered.
    let stats = unsafe { &mut *stats };
    stats.calls += 1;
    stats.latency_sum_ns += latency;
    if let Some(bucket) = stats.latency.get_mut(bucket_index(latency)) {
        *bucket += 1;
    }
    if ret < 0 {
        stats.errors += 1;
        if ret == -EAGAIN {
            stats.eagain += 1;
        }
    } else if is_rw {
        stats.bytes += ret as u64;
    } else if kind == Kind::Multiplex as u8 {
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
    if nonblocking {
        stats.nonblocking += 1;
    }
}

#[inline(always)]
fn stats_for(pid_tgid: u64, slot: u32) -> Option<*mut SlotStats> {
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
