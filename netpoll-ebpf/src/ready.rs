//! The readiness-to-service view (`--ready`): how long a descriptor a wait reported ready
//! waits before the process touches it, and how long each event-loop turn takes.
//!
//! When a target's wait returns, the descriptors it reported are stamped ready (`READY`): for
//! epoll, each returned event's data is mapped back to its descriptor through the process's
//! registrations (`REGISTRATIONS`, kept from its `epoll_ctl` calls, and from
//! /proc/PID/fdinfo for those made before netpoll attached); poll and select name the
//! descriptors themselves. The process's next call on a stamped descriptor (a read, a write,
//! an accept, a close, an `epoll_ctl`) ends the delay, at its entry. A thread's turn runs from
//! its wait's return to its next wait. Work is bounded: at most `READY_EVENTS_PER_WAIT` events
//! are read per wait, the rest counted as not measured. Without `--ready` none of this runs
//! (a load-time constant prunes it).

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use netpoll_ebpf::{
    abi::{
        EAGAIN, FdKey, InFlight, MAX_READY, MAX_THREADS, READY_EVENTS_PER_WAIT, ReadyDelay,
        ReadyInfo, ReadyStamp, ReadyTotals, ReadyWait, RegKey, Turn, ready_ender, ready_flags,
        ready_role,
    },
    syscalls::{Kind, MAX_SYSCALL_NR},
};

use crate::{
    probe::{SyscallArgs, caller, current},
    sched::record_hist,
};

/// 1 with `--ready` (set by the loader).
#[unsafe(no_mangle)]
static READY_VIEW: u8 = 0;

/// By syscall number: its part in the view (filled by the loader with `--ready` only).
#[map]
static READY_TABLE: Array<ReadyInfo> = Array::with_max_entries(MAX_SYSCALL_NR, 0);
/// Descriptors reported ready, not yet serviced.
#[map]
static READY: LruHashMap<FdKey, ReadyStamp> = LruHashMap::with_max_entries(MAX_READY, 0);
/// (process, epoll data) → descriptor.
#[map]
static REGISTRATIONS: LruHashMap<RegKey, u32> = LruHashMap::with_max_entries(MAX_READY, 0);
/// (process, descriptor) → its registration, to forget it on `EPOLL_CTL_DEL`, MOD or close.
#[map]
static REGISTERED_FDS: LruHashMap<FdKey, RegKey> = LruHashMap::with_max_entries(MAX_READY, 0);
/// Waits in progress, by thread.
#[map]
static READY_WAITS: HashMap<u32, ReadyWait> = HashMap::with_max_entries(MAX_THREADS, 0);
/// Each waiting thread's loop.
#[map]
static TURNS: LruHashMap<u32, Turn> = LruHashMap::with_max_entries(MAX_THREADS, 0);
#[map]
static READY_DELAY: PerCpuArray<ReadyDelay> = PerCpuArray::with_max_entries(ready_ender::COUNT, 0);
#[map]
static READY_TOTALS: PerCpuArray<ReadyTotals> = PerCpuArray::with_max_entries(1, 0);

const EPOLL_CTL_ADD: u64 = 1;
const EPOLL_CTL_DEL: u64 = 2;
const EPOLL_CTL_MOD: u64 = 3;
/// `struct epoll_event` is packed on x86_64: a u32 of events, then the u64 data.
const EPOLL_EVENT_SIZE: u64 = 12;
/// select's fd_sets are read up to this many descriptors (64 per word).
const SELECT_WORDS: u64 = 4;

/// Whether the view is on (a load-time constant).
#[inline(always)]
pub fn on() -> bool {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load-time value.
    unsafe { core::ptr::read_volatile(&READY_VIEW) != 0 }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn totals() -> Option<&'static mut ReadyTotals> {
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    READY_TOTALS.get_ptr_mut(0).map(|t| unsafe { &mut *t })
}

/// `sys_enter` of any syscall: a target's wait, `epoll_ctl`, or call on a descriptor. For a
/// measured read, write or accept, returns its descriptor plus one (its delay ends at its exit,
/// [`serviced_at_exit`]); else 0.
#[inline(always)]
pub fn enter<A: SyscallArgs>(nr: i64, args: &A) -> u32 {
    if !(0..MAX_SYSCALL_NR as i64).contains(&nr) {
        return 0;
    }
    let Some(&info) = READY_TABLE.get(nr as u32) else {
        return 0;
    };
    if info.role == ready_role::NONE {
        return 0;
    }
    let Some(current) = current() else { return 0 };
    let (pid_tgid, target) = caller(current);
    if !target {
        return 0;
    }
    if info.flags & ready_flags::AT_EXIT != 0 {
        let fd = args.arg(info.fd_arg);
        return if fd < u64::from(u32::MAX) {
            fd as u32 + 1
        } else {
            0
        };
    }
    let tgid = (pid_tgid >> 32) as u32;
    let t = now();
    if matches!(
        info.role,
        ready_role::EPOLL_WAIT | ready_role::POLL | ready_role::SELECT
    ) {
        // The results are read at the wait's exit, by a program of its own (below).
        wait_entered(pid_tgid as u32, info.role, args, t);
        return 0;
    }
    if info.role == ready_role::EPOLL_CTL {
        let fd = args.arg(2);
        serviced(tgid, fd, ready_ender::EPOLL_CTL, t, false);
        registered(tgid, args.arg(1), fd as u32, args.arg(3));
        return 0;
    }
    let fd = args.arg(info.fd_arg);
    serviced(tgid, fd, info.ender, t, false);
    // A closed descriptor leaves its epoll instances (its number may come back).
    if info.flags & ready_flags::CLOSES != 0 {
        forget(tgid, fd as u32);
    }
    0
}

/// The exit of a measured read, write or accept on a descriptor (`call.ready_fd_plus_one`):
/// the end of its delay, timed at the call's entry; a call that found nothing (EAGAIN) shows
/// the report was stale (the descriptor had been serviced before it was read): counted apart.
#[inline(always)]
pub fn serviced_at_exit(pid_tgid: u64, call: &InFlight, ret: i64) {
    let ender = if call.kind == Kind::Accept as u8 {
        ready_ender::ACCEPT
    } else if call.kind == Kind::Write as u8 || call.kind == Kind::WriteBatch as u8 {
        ready_ender::WRITE
    } else {
        ready_ender::READ
    };
    let fd = u64::from(call.ready_fd_plus_one - 1);
    serviced(
        (pid_tgid >> 32) as u32,
        fd,
        ender,
        call.start_ns,
        ret == -EAGAIN,
    );
}

// The waits' exits have a program of their own, beside the main one on `sys_exit` (a BTF
// tracepoint: every syscall's exit runs it, and leaves after one array lookup unless it is a
// wait): verified alone, its loops over a wait's results do not weigh on the main program.
// Without BTF tracepoints, one program per kind of wait goes on the waits' own exit tracepoints
// (`syscalls:sys_exit_epoll_wait`...), which only waiting processes pay for, but dearly (a
// perf record per call). Record layout there: 8 bytes of common fields, `int __syscall_nr` at
// 8, `long ret` at 16, stable since 2.6.
const TP_RET: usize = 16;

/// The calling thread, if it is a target's: (tgid, tid).
#[inline(always)]
fn target_thread() -> Option<(u32, u32)> {
    let (pid_tgid, target) = caller(current()?);
    target.then_some(((pid_tgid >> 32) as u32, pid_tgid as u32))
}

/// `sys_exit(struct pt_regs *regs, long ret)`: a target's wait returned.
#[btf_tracepoint(function = "sys_exit")]
pub fn btf_ready_exit(ctx: BtfTracePointContext) -> i32 {
    if !on() {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    let nr = crate::hooks::regs_nr(regs);
    if !(0..MAX_SYSCALL_NR as i64).contains(&nr) {
        return 0;
    }
    let Some(&info) = READY_TABLE.get(nr as u32) else {
        return 0;
    };
    if !matches!(
        info.role,
        ready_role::EPOLL_WAIT | ready_role::POLL | ready_role::SELECT
    ) {
        return 0;
    }
    if let Some((tgid, tid)) = target_thread() {
        wait_returned(tgid, tid, ctx.arg(1), info.role);
    }
    0
}

/// `sys_exit` of an epoll wait: its events, stamped.
#[tracepoint]
pub fn ready_epoll_exit(ctx: TracePointContext) -> u32 {
    wait_exit(&ctx, ready_role::EPOLL_WAIT);
    0
}

/// `sys_exit` of poll or ppoll.
#[tracepoint]
pub fn ready_poll_exit(ctx: TracePointContext) -> u32 {
    wait_exit(&ctx, ready_role::POLL);
    0
}

/// `sys_exit` of select or pselect6.
#[tracepoint]
pub fn ready_select_exit(ctx: TracePointContext) -> u32 {
    wait_exit(&ctx, ready_role::SELECT);
    0
}

#[inline(always)]
fn wait_exit(ctx: &TracePointContext, role: u8) {
    if !on() {
        return;
    }
    let Some((tgid, tid)) = target_thread() else {
        return;
    };
    // SAFETY: an offset inside the record.
    let ret = unsafe { ctx.read_at::<i64>(TP_RET) }.unwrap_or(-1);
    wait_returned(tgid, tid, ret, role);
}

/// A wait begins: its thread's turn ends; where its results will be is kept for its exit.
#[inline(always)]
fn wait_entered<A: SyscallArgs>(tid: u32, role: u8, args: &A, t: u64) {
    if let Some(turn) = TURNS.get_ptr_mut(&tid) {
        // SAFETY: this thread's own entry.
        let turn = unsafe { &mut *turn };
        if turn.returned_ns != 0 {
            let length = t.saturating_sub(turn.returned_ns);
            if let Some(s) = totals() {
                s.turns += 1;
                s.turn_sum_ns += length;
                s.turn_events += turn.events;
                record_hist(&mut s.turn_hist, length);
            }
            turn.returned_ns = 0;
        }
    }
    let wait = match role {
        ready_role::EPOLL_WAIT => ReadyWait {
            ptr: args.arg(1),
            role,
            ..ReadyWait::default()
        },
        ready_role::POLL => ReadyWait {
            ptr: args.arg(0),
            nfds: args.arg(1),
            role,
            ..ReadyWait::default()
        },
        _ => ReadyWait {
            ptr: args.arg(1),
            ptr2: args.arg(2),
            nfds: args.arg(0),
            role,
            ..ReadyWait::default()
        },
    };
    let _ = READY_WAITS.insert(&tid, &wait, 0);
}

/// A target's wait returned `ret`: stamp what it reported, and start the thread's next turn.
#[inline(always)]
fn wait_returned(tgid: u32, tid: u32, ret: i64, role: u8) {
    // SAFETY: this thread's own entry, copied before it is removed.
    let Some(&wait) = (unsafe { READY_WAITS.get(&tid) }) else {
        return;
    };
    if wait.role != role {
        return;
    }
    let _ = READY_WAITS.remove(&tid);
    let t = now();
    let events = if ret > 0 { ret as u64 } else { 0 };
    let number = match TURNS.get_ptr_mut(&tid) {
        Some(turn) => {
            // SAFETY: this thread's own entry.
            let turn = unsafe { &mut *turn };
            turn.number += 1;
            turn.returned_ns = t;
            turn.events = events;
            turn.number
        }
        None => {
            let turn = Turn {
                returned_ns: t,
                number: 1,
                events,
            };
            let _ = TURNS.insert(&tid, &turn, 0);
            1
        }
    };
    if events == 0 {
        return;
    }
    let stamped = match role {
        ready_role::EPOLL_WAIT => stamp_epoll(tgid, tid, &wait, events, number, t),
        ready_role::POLL => stamp_poll(tgid, tid, &wait, number, t),
        _ => stamp_select(tgid, tid, &wait, number, t),
    };
    if let Some(s) = totals() {
        s.not_read += events.saturating_sub(stamped);
    }
}

/// The data of each returned epoll event, mapped to its descriptor; how many were read.
#[inline(always)]
fn stamp_epoll(tgid: u32, tid: u32, wait: &ReadyWait, events: u64, turn: u64, t: u64) -> u64 {
    let mut read = 0;
    for i in 0..READY_EVENTS_PER_WAIT as u64 {
        if i >= events {
            break;
        }
        let at = wait.ptr + i * EPOLL_EVENT_SIZE;
        // SAFETY: bpf_probe_read_user validates the address.
        let Ok(event) = (unsafe { bpf_probe_read_user(at as *const [u32; 3]) }) else {
            break;
        };
        read += 1;
        let data = u64::from(event[1]) | (u64::from(event[2]) << 32);
        let key = RegKey {
            tgid,
            _pad: 0,
            data,
        };
        // SAFETY: a value of a hash map, copied at once.
        match unsafe { REGISTRATIONS.get(&key) } {
            Some(&fd) => stamp(tgid, fd, ways(event[0]), tid, turn, t),
            None => {
                if let Some(s) = totals() {
                    s.unmapped += 1;
                }
            }
        }
    }
    read
}

/// The returned pollfds with events, among the first `READY_EVENTS_PER_WAIT` passed; how many.
/// (The count is kept in the totals, not in a local the verifier would have to follow through
/// every iteration.)
#[inline(always)]
fn stamp_poll(tgid: u32, tid: u32, wait: &ReadyWait, turn: u64, t: u64) -> u64 {
    let before = reported();
    for i in 0..READY_EVENTS_PER_WAIT as u64 {
        if i >= wait.nfds {
            break;
        }
        // struct pollfd { int fd; short events; short revents; }
        // SAFETY: bpf_probe_read_user validates the address.
        let Ok(entry) = (unsafe { bpf_probe_read_user((wait.ptr + i * 8) as *const u64) }) else {
            break;
        };
        let (fd, revents) = (entry as u32 as i32, (entry >> 48) as u32);
        if revents != 0 && fd >= 0 {
            stamp(tgid, fd as u32, ways(revents), tid, turn, t);
        }
    }
    reported().saturating_sub(before)
}

/// Descriptors reported so far on this CPU (stamped, or reported again).
#[inline(always)]
fn reported() -> u64 {
    totals().map_or(0, |s| s.stamped + s.again)
}

/// select's ready descriptors, gathered before they are stamped: the bit scan only stores
/// them here (a count the verifier need not follow through each of its iterations).
#[repr(C)]
pub struct SelectFound {
    count: u64,
    fds: [u32; SELECT_STAMPS],
    writable: [u8; SELECT_STAMPS],
}

/// Descriptors stamped per select call at most; the rest are counted as not measured.
const SELECT_STAMPS: usize = 16;

#[map]
static SELECT_FOUND: PerCpuArray<SelectFound> = PerCpuArray::with_max_entries(1, 0);

/// The descriptors left set in select's read and write sets (the first `SELECT_WORDS` * 64,
/// at most `SELECT_STAMPS`); how many.
#[inline(always)]
fn stamp_select(tgid: u32, tid: u32, wait: &ReadyWait, turn: u64, t: u64) -> u64 {
    let Some(found) = SELECT_FOUND.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    let found = unsafe { &mut *found };
    found.count = 0;
    for (set, writable) in [(wait.ptr, 0u8), (wait.ptr2, 1u8)] {
        if set == 0 {
            continue;
        }
        for word in 0..SELECT_WORDS {
            if word * 64 >= wait.nfds {
                break;
            }
            // SAFETY: bpf_probe_read_user validates the address.
            let Ok(mut bits) = (unsafe { bpf_probe_read_user((set + word * 8) as *const u64) })
            else {
                break;
            };
            for bit in 0..64u64 {
                if bits == 0 {
                    break;
                }
                if bits & 1 != 0 {
                    let i = (found.count as usize) % SELECT_STAMPS;
                    if found.count < SELECT_STAMPS as u64 {
                        if let Some(fd) = found.fds.get_mut(i) {
                            *fd = (word * 64 + bit) as u32;
                        }
                        if let Some(w) = found.writable.get_mut(i) {
                            *w = writable;
                        }
                    }
                    found.count += 1;
                }
                bits >>= 1;
            }
        }
    }
    let before = reported();
    for i in 0..SELECT_STAMPS {
        if i as u64 >= found.count {
            break;
        }
        let (Some(&fd), Some(&w)) = (found.fds.get(i), found.writable.get(i)) else {
            break;
        };
        stamp(tgid, fd, (w == 0, w != 0), tid, turn, t);
    }
    reported().saturating_sub(before)
}

/// A readiness report's ways: readable (IN, PRI, RDHUP, and HUP or ERR, which a read reports)
/// and writable (OUT), from an epoll event mask or a pollfd's revents (the same bits).
#[inline(always)]
fn ways(mask: u32) -> (bool, bool) {
    const READABLE: u32 = 0x001 | 0x002 | 0x008 | 0x010 | 0x2000; // IN PRI ERR HUP RDHUP
    const WRITABLE: u32 = 0x004; // OUT
    (mask & READABLE != 0, mask & WRITABLE != 0)
}

/// A descriptor reported ready (`readable`, `writable`): each way stamped unless it is still
/// pending that way (then the first report's time is kept, counted as reported again).
#[inline(always)]
fn stamp(tgid: u32, fd: u32, (readable, writable): (bool, bool), tid: u32, turn: u64, t: u64) {
    if !readable && !writable {
        return;
    }
    let key = FdKey { tgid, fd };
    let Some(s) = totals() else { return };
    let turn = turn as u32;
    if let Some(pending) = READY.get_ptr_mut(&key) {
        // SAFETY: a value of a hash map; the process's threads race only on these fields.
        let p = unsafe { &mut *pending };
        if (readable && p.readable_ns != 0) || (writable && p.writable_ns != 0) {
            s.again += 1;
        }
        if readable && p.readable_ns == 0 {
            (p.readable_ns, p.readable_turn) = (t, turn);
            s.stamped += 1;
        }
        if writable && p.writable_ns == 0 {
            (p.writable_ns, p.writable_turn) = (t, turn);
            s.stamped += 1;
        }
        p.tid = tid;
        return;
    }
    let mut stamp = ReadyStamp {
        tid,
        ..ReadyStamp::default()
    };
    if readable {
        (stamp.readable_ns, stamp.readable_turn) = (t, turn);
    }
    if writable {
        (stamp.writable_ns, stamp.writable_turn) = (t, turn);
    }
    if READY.insert(&key, &stamp, 0).is_ok() {
        s.stamped += u64::from(readable) + u64::from(writable);
    }
}

/// A call on `fd` at `t`: the end of its delay, if it was reported ready the way the call
/// services (a close or `epoll_ctl` ends both ways, counted once from the earlier report);
/// `stale`: the call found nothing, the report is dropped and counted as stale.
#[inline(always)]
fn serviced(tgid: u32, fd: u64, ender: u8, t: u64, stale: bool) {
    if (fd as i64) < 0 || fd > u64::from(u32::MAX) {
        return;
    }
    let key = FdKey {
        tgid,
        fd: fd as u32,
    };
    let Some(pending) = READY.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: a value of a hash map.
    let p = unsafe { &mut *pending };
    let (since, turn) = match ender {
        ready_ender::READ | ready_ender::ACCEPT => {
            let since = (p.readable_ns, p.readable_turn);
            p.readable_ns = 0;
            since
        }
        ready_ender::WRITE => {
            let since = (p.writable_ns, p.writable_turn);
            p.writable_ns = 0;
            since
        }
        _ => {
            let earlier =
                if p.writable_ns != 0 && (p.readable_ns == 0 || p.writable_ns < p.readable_ns) {
                    (p.writable_ns, p.writable_turn)
                } else {
                    (p.readable_ns, p.readable_turn)
                };
            (p.readable_ns, p.writable_ns) = (0, 0);
            earlier
        }
    };
    let tid = p.tid;
    if p.readable_ns == 0 && p.writable_ns == 0 {
        let _ = READY.remove(&key);
    }
    if since == 0 {
        // Not ready the way this call services.
        return;
    }
    if stale {
        if let Some(s) = totals() {
            s.stale += 1;
        }
        return;
    }
    let Some(d) = READY_DELAY.get_ptr_mut(u32::from(ender)) else {
        return;
    };
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    let d = unsafe { &mut *d };
    let delay = t.saturating_sub(since);
    d.count += 1;
    d.sum_ns += delay;
    record_hist(&mut d.hist, delay);
    // SAFETY: a value of a hash map, read once.
    if let Some(waiter) = unsafe { TURNS.get(&tid) }
        && waiter.number > u64::from(turn)
    {
        d.deferred += 1;
    }
}

/// `epoll_ctl(epfd, op, fd, event)`: what `fd`'s events will carry.
#[inline(always)]
fn registered(tgid: u32, op: u64, fd: u32, event: u64) {
    match op {
        EPOLL_CTL_ADD | EPOLL_CTL_MOD => {
            // SAFETY: bpf_probe_read_user validates the address.
            let Ok(data) = (unsafe { bpf_probe_read_user((event + 4) as *const u64) }) else {
                return;
            };
            forget(tgid, fd);
            let reg = RegKey {
                tgid,
                _pad: 0,
                data,
            };
            let _ = REGISTRATIONS.insert(&reg, &fd, 0);
            let _ = REGISTERED_FDS.insert(&FdKey { tgid, fd }, &reg, 0);
        }
        EPOLL_CTL_DEL => forget(tgid, fd),
        _ => {}
    }
}

/// `fd` leaves its epoll instance.
#[inline(always)]
fn forget(tgid: u32, fd: u32) {
    let key = FdKey { tgid, fd };
    // SAFETY: a value of a hash map, copied before it is removed.
    if let Some(&reg) = unsafe { REGISTERED_FDS.get(&key) } {
        let _ = REGISTRATIONS.remove(&reg);
        let _ = REGISTERED_FDS.remove(&key);
    }
}
