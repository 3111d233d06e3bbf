//! The Go view's programs. `--go`: the Go process's epoll_pwait calls (its network polls),
//! each attributed to the user stack that made it, on the syscall's own tracepoints.
//!
//! `--go-exact`: uprobes on four functions of Go's runtime (`abi::GO_EXACT_HOOKS`), attached
//! to one process. Each goroutine is followed by its `g` pointer (a g is never freed, only
//! reused after it exits, and a parked or runnable one cannot exit): parked on the network
//! (`GO_PARKED`, the park's time), made runnable by netpoll (`GO_WOKEN`, the wake-up's time),
//! running. Every hit is a trap into the kernel (12-14 µs here), so the programs do the least:
//! a register or two, one user-memory read, a hash update.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_get_current_pid_tgid, bpf_get_stack, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, tracepoint, uprobe},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::{ProbeContext, TracePointContext},
};
use netpoll_ebpf::abi::{
    GO_MAX_GOROUTINES, GO_MAX_HANDOFF_CALLERS, GO_MAX_POLL_SITES, GO_POLL_FRAMES, GoExact,
    GoPollCall, GoPollKey, GoPollStats, MAX_THREADS, poll_timeout,
};

use crate::sched::record_hist;

/// Byte offsets of `rg` and `wg` in the runtime's `pollDesc` (from DWARF or the per-version
/// table), written when the uprobes are attached: a map, not a load-time constant, because
/// the binary may be known only after the programs are loaded.
#[map]
static GO_POLLDESC: Array<u32> = Array::with_max_entries(2, 0);

/// The Go process whose polls are attributed, and where the tracepoint records hold the poll's
/// timeout and result (set by the loader).
#[unsafe(no_mangle)]
static GO_TGID: u32 = 0;
#[unsafe(no_mangle)]
static GO_POLL_TIMEOUT_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static GO_POLL_RET_OFFSET: u32 = 0;

/// By (stack, timeout kind): what the polls did.
#[map]
static GO_POLLS: PerCpuHashMap<GoPollKey, GoPollStats> =
    PerCpuHashMap::with_max_entries(GO_MAX_POLL_SITES, 0);
/// Polls in progress, by thread.
#[map]
static GO_POLL_CALLS: HashMap<u32, GoPollCall> = HashMap::with_max_entries(MAX_THREADS, 0);

/// The calling thread, if it is the Go process's.
#[inline(always)]
fn go_thread() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: plain read of a load-time constant.
    let tgid = unsafe { core::ptr::read_volatile(&GO_TGID) };
    ((pid_tgid >> 32) as u32 == tgid).then_some(pid_tgid as u32)
}

#[tracepoint]
pub fn go_poll_enter(ctx: TracePointContext) -> u32 {
    let Some(tid) = go_thread() else {
        return 0;
    };
    // SAFETY: plain read of a load-time constant; the record is read by the helper.
    let offset = unsafe { core::ptr::read_volatile(&GO_POLL_TIMEOUT_OFFSET) } as usize;
    // SAFETY: an offset inside the tracepoint's record, from its format file.
    let timeout = unsafe { ctx.read_at::<u64>(offset) }.unwrap_or(0) as i32;
    let timeout = match timeout {
        t if t < 0 => poll_timeout::BLOCKING,
        0 => poll_timeout::NON_BLOCKING,
        _ => poll_timeout::TIMED,
    };
    // The innermost frames of the caller's stack, by the kernel's frame-pointer walk (Go keeps
    // frame pointers on amd64); a short walk, no stack map to hash into.
    let mut frames = [0u64; GO_POLL_FRAMES];
    // SAFETY: the buffer is this program's own, of the size given.
    let taken = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            frames.as_mut_ptr().cast(),
            (GO_POLL_FRAMES * 8) as u32,
            u64::from(BPF_F_USER_STACK),
        )
    };
    if taken < 0 {
        frames = [0; GO_POLL_FRAMES];
    }
    let call = GoPollCall {
        start_ns: now(),
        key: GoPollKey {
            frames,
            timeout,
            _pad: 0,
        },
    };
    let _ = GO_POLL_CALLS.insert(&tid, &call, 0);
    0
}

#[tracepoint]
pub fn go_poll_exit(ctx: TracePointContext) -> u32 {
    let Some(tid) = go_thread() else {
        return 0;
    };
    // SAFETY: a value of a hash map, copied out before it is removed.
    let Some(&call) = (unsafe { GO_POLL_CALLS.get(&tid) }) else {
        return 0;
    };
    let _ = GO_POLL_CALLS.remove(&tid);
    // SAFETY: plain read of a load-time constant.
    let offset = unsafe { core::ptr::read_volatile(&GO_POLL_RET_OFFSET) } as usize;
    // SAFETY: an offset inside the tracepoint's record, from its format file.
    let ret = unsafe { ctx.read_at::<i64>(offset) }.unwrap_or(-1);
    if GO_POLLS.get_ptr_mut(&call.key).is_none() {
        let _ = GO_POLLS.insert(&call.key, &GoPollStats::default(), 0);
    }
    let Some(stats) = GO_POLLS.get_ptr_mut(&call.key) else {
        return 0;
    };
    // SAFETY: this CPU's value of a per-CPU hash map.
    let stats = unsafe { &mut *stats };
    stats.calls += 1;
    if ret > 0 {
        stats.events += ret as u64;
    } else if ret == 0 {
        stats.empty += 1;
    }
    stats.time_ns += now().saturating_sub(call.start_ns);
    0
}

/// Goroutines parked on the network: g → when.
#[map]
static GO_PARKED: HashMap<u64, u64> = HashMap::with_max_entries(GO_MAX_GOROUTINES, 0);
/// Goroutines made runnable by netpoll, not yet running: g → when.
#[map]
static GO_WOKEN: HashMap<u64, u64> = HashMap::with_max_entries(GO_MAX_GOROUTINES, 0);
#[map]
static GO_EXACT: PerCpuArray<GoExact> = PerCpuArray::with_max_entries(1, 0);
/// `handoffp`'s callers: return address → hand-offs.
#[map]
static GO_HANDOFFS: HashMap<u64, u64> = HashMap::with_max_entries(GO_MAX_HANDOFF_CALLERS, 0);
/// Hits of the calibration program.
#[map]
static GO_CALIBRATION: Array<u64> = Array::with_max_entries(1, 0);

/// `pollDesc.rg`/`wg` hold a g pointer while a goroutine is parked (else pdNil 0, pdReady 1,
/// pdWait 2: runtime/netpoll.go, unchanged from 1.19 to 1.27).
const PD_WAIT: u64 = 2;

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn stats() -> Option<&'static mut GoExact> {
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    GO_EXACT.get_ptr_mut(0).map(|s| unsafe { &mut *s })
}

/// The registers at the probed instruction: Go's register ABI passes arguments in RAX, RBX,
/// RCX...; RSP points at the return address (nothing of the function has run yet).
#[inline(always)]
fn regs(ctx: &ProbeContext) -> &aya_ebpf::bindings::pt_regs {
    // SAFETY: a uprobe's context is the probed thread's saved registers, valid for the
    // program's run.
    unsafe { &*ctx.regs }
}

#[uprobe]
pub fn go_park(ctx: ProbeContext) -> u32 {
    let gp = regs(&ctx).rax;
    if let Some(s) = stats() {
        s.parks += 1;
        if GO_PARKED.insert(&gp, &now(), 0).is_err() {
            s.full += 1;
        }
    }
    0
}

#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (pd, mode) = (r.rbx, r.rcx as u32);
    if let Some(s) = stats() {
        s.ready_calls += 1;
    }
    let (Some(&rg), Some(&wg)) = (GO_POLLDESC.get(0), GO_POLLDESC.get(1)) else {
        return 0;
    };
    // mode is 'r', 'w' or 'r'+'w'.
    if mode == u32::from(b'r') || mode == u32::from(b'r') + u32::from(b'w') {
        woken(pd + u64::from(rg));
    }
    if mode == u32::from(b'w') || mode == u32::from(b'r') + u32::from(b'w') {
        woken(pd + u64::from(wg));
    }
    0
}

/// The goroutine parked on one side of a pollDesc, if any, is being made runnable.
#[inline(always)]
fn woken(slot: u64) {
    // SAFETY: bpf_probe_read_user validates the address.
    let Ok(gp) = (unsafe { bpf_probe_read_user(slot as *const u64) }) else {
        return;
    };
    if gp <= PD_WAIT {
        return;
    }
    let Some(s) = stats() else {
        return;
    };
    let t = now();
    s.wakes += 1;
    // SAFETY: a value of a hash map, read once.
    if let Some(&parked) = unsafe { GO_PARKED.get(&gp) } {
        s.wakes_of_seen_parks += 1;
        record_hist(&mut s.parked_ns, t.saturating_sub(parked));
        let _ = GO_PARKED.remove(&gp);
    }
    if GO_WOKEN.insert(&gp, &t, 0).is_err() {
        s.full += 1;
    }
}

#[uprobe]
pub fn go_execute(ctx: ProbeContext) -> u32 {
    let gp = regs(&ctx).rax;
    let Some(s) = stats() else {
        return 0;
    };
    s.executes += 1;
    // SAFETY: a value of a hash map, read once.
    if let Some(&woken) = unsafe { GO_WOKEN.get(&gp) } {
        s.runs_after_wake += 1;
        record_hist(&mut s.wake_to_run_ns, now().saturating_sub(woken));
        let _ = GO_WOKEN.remove(&gp);
    } else if GO_PARKED.get_ptr(&gp).is_some() {
        s.resumed_otherwise += 1;
        let _ = GO_PARKED.remove(&gp);
    }
    0
}

#[uprobe]
pub fn go_handoff(ctx: ProbeContext) -> u32 {
    // SAFETY: bpf_probe_read_user validates the address: the return address on the stack.
    let Ok(caller) = (unsafe { bpf_probe_read_user(regs(&ctx).rsp as *const u64) }) else {
        return 0;
    };
    match GO_HANDOFFS.get_ptr_mut(&caller) {
        // SAFETY: a value of a hash map; a lost increment between CPUs is the only race.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = GO_HANDOFFS.insert(&caller, &1, 0);
        }
    }
    0
}

#[uprobe]
pub fn go_calibrate(_ctx: ProbeContext) -> u32 {
    if let Some(hits) = GO_CALIBRATION.get_ptr_mut(0) {
        // SAFETY: an array slot; netpoll calls the probed function from one thread.
        unsafe { *hits += 1 };
    }
    0
}
