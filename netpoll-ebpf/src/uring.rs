//! The io_uring view (`--uring`): which path each request of a target takes through io_uring
//! and how long each part lasts, from the io_uring tracepoints.
//!
//! A request is followed by (ring, request) from its submission by a target
//! (`io_uring_submit_req`; the ring's SQPOLL thread is a thread of the target's process) to the
//! posting of its completion (`io_uring_complete`). In between, `io_uring_poll_arm` says it had
//! to wait for its file's readiness, `io_uring_task_add` that the file became ready,
//! `io_uring_queue_async_work` that it went to an io-wq worker; a request that met none of them
//! completed inline, within its submission. Only followed requests cost a lookup beyond the
//! first: other processes' io_uring events cost one hash lookup each, and nothing at all
//! without `--uring` (the programs are not attached).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use netpoll_ebpf::abi::{
    EAGAIN, IORING_CQE_F_MORE, MAX_URING_REQS, MAX_URING_RINGS, URING_OP_SLOTS, UringKey, UringReq,
    UringStats, UringTotals, uring_field, uring_index, uring_path,
};

use crate::{probe::is_target, sched::record_hist};

/// Where each field the programs read sits in its tracepoint's record (set by the loader from
/// the format files: the layouts changed across 6.x).
#[unsafe(no_mangle)]
static URING_FIELDS: [u32; uring_field::COUNT] = [0; uring_field::COUNT];

/// By opcode: its `URING_OPS` slot (the loader fills the named ones; others read 0 and are
/// told apart by the `OTHER` marker below).
#[map]
static URING_OPCODES: Array<u8> = Array::with_max_entries(256, 0);
#[map]
static URING_REQS: LruHashMap<UringKey, UringReq> = LruHashMap::with_max_entries(MAX_URING_REQS, 0);
#[map]
static URING_STATS: PerCpuArray<UringStats> =
    PerCpuArray::with_max_entries((URING_OP_SLOTS * uring_path::COUNT) as u32, 0);
#[map]
static URING_TOTALS: PerCpuArray<UringTotals> = PerCpuArray::with_max_entries(1, 0);
/// When the programs were attached (set by the loader).
#[map]
static URING_ATTACH_NS: Array<u64> = Array::with_max_entries(1, 0);
/// By ring: when a target last waited on it for completions.
#[map]
static URING_RING_WAITS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(MAX_URING_RINGS, 0);

#[inline(always)]
fn field(index: usize) -> usize {
    // SAFETY: a plain read of a static; volatile so the compiler keeps the load-time value.
    let fields = unsafe { core::ptr::read_volatile(&URING_FIELDS) };
    fields.get(index).copied().unwrap_or(0) as usize
}

#[inline(always)]
fn read<T: Copy + Default>(ctx: &TracePointContext, index: usize) -> T {
    // SAFETY: reads within the tracepoint's record, at an offset from its format file.
    unsafe { ctx.read_at::<T>(field(index)) }.unwrap_or_default()
}

#[inline(always)]
fn key(ctx: &TracePointContext, ctx_field: usize, req_field: usize) -> UringKey {
    UringKey {
        ctx: read(ctx, ctx_field),
        req: read(ctx, req_field),
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn totals() -> Option<&'static mut UringTotals> {
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    URING_TOTALS.get_ptr_mut(0).map(|t| unsafe { &mut *t })
}

/// The followed request of an event, if any.
#[inline(always)]
fn followed(key: &UringKey) -> Option<&'static mut UringReq> {
    // SAFETY: a value of a hash map, changed in place by the programs of its request's events.
    URING_REQS.get_ptr_mut(key).map(|r| unsafe { &mut *r })
}

#[tracepoint]
pub fn uring_submit(ctx: TracePointContext) -> u32 {
    if !is_target(bpf_get_current_pid_tgid()) {
        return 0;
    }
    let key = key(&ctx, uring_field::SUBMIT_CTX, uring_field::SUBMIT_REQ);
    let opcode: u8 = read(&ctx, uring_field::SUBMIT_OPCODE);
    let sq_thread: u8 = read(&ctx, uring_field::SUBMIT_SQ_THREAD);
    // Slot 0 is "nop" for opcode 0 only; every unnamed opcode also reads 0 from the table.
    let op_slot = match URING_OPCODES.get(u32::from(opcode)) {
        Some(&slot) if slot != 0 || opcode == 0 => slot,
        _ => (URING_OP_SLOTS - 1) as u8,
    };
    let req = UringReq {
        start_ns: now(),
        phase_ns: 0,
        ready_ns: 0,
        op_slot,
        path: uring_path::INLINE,
        sqpoll: u8::from(sq_thread != 0),
        _pad: [0; 5],
    };
    let _ = URING_REQS.insert(&key, &req, 0);
    if let Some(t) = totals() {
        t.submitted += 1;
    }
    0
}

#[tracepoint]
pub fn uring_poll_arm(ctx: TracePointContext) -> u32 {
    let Some(req) = followed(&key(&ctx, uring_field::ARM_CTX, uring_field::ARM_REQ)) else {
        return 0;
    };
    if req.path == uring_path::POLL && req.phase_ns != 0 {
        // Woken with nothing to do yet: armed again; its wait goes on from the first arming.
        req.ready_ns = 0;
        if let Some(t) = totals() {
            t.rearmed += 1;
        }
        return 0;
    }
    req.path = uring_path::POLL;
    req.phase_ns = now();
    req.ready_ns = 0;
    0
}

#[tracepoint]
pub fn uring_task_add(ctx: TracePointContext) -> u32 {
    let Some(req) = followed(&key(
        &ctx,
        uring_field::TASK_ADD_CTX,
        uring_field::TASK_ADD_REQ,
    )) else {
        return 0;
    };
    if req.path == uring_path::INLINE {
        // A poll request (POLL_ADD) is armed at its submission without the arming event.
        req.path = uring_path::POLL;
        req.phase_ns = req.start_ns;
    }
    if req.path == uring_path::POLL && req.ready_ns == 0 {
        req.ready_ns = now();
    }
    0
}

#[tracepoint]
pub fn uring_async(ctx: TracePointContext) -> u32 {
    let Some(req) = followed(&key(&ctx, uring_field::ASYNC_CTX, uring_field::ASYNC_REQ)) else {
        return 0;
    };
    req.path = uring_path::IO_WQ;
    req.phase_ns = now();
    0
}

#[tracepoint]
pub fn uring_cqring_wait(ctx: TracePointContext) -> u32 {
    if !is_target(bpf_get_current_pid_tgid()) {
        return 0;
    }
    let ring: u64 = read(&ctx, uring_field::WAIT_CTX);
    let _ = URING_RING_WAITS.insert(&ring, &now(), 0);
    0
}

#[tracepoint]
pub fn uring_complete(ctx: TracePointContext) -> u32 {
    let key = key(&ctx, uring_field::COMPLETE_CTX, uring_field::COMPLETE_REQ);
    let Some(req) = followed(&key) else {
        // A target's completion without a followed request (completions run in its threads:
        // task work, io-wq workers, the submitter): posted without its request (a multishot
        // request's auxiliary completion), or of a request submitted before netpoll attached.
        if is_target(bpf_get_current_pid_tgid())
            && let Some(t) = totals()
        {
            if key.req == 0 {
                t.aux_completions += 1;
            } else {
                // In flight when the programs were attached: at least this long.
                let attached = URING_ATTACH_NS.get(0).copied().unwrap_or(0);
                let lower = now().saturating_sub(attached);
                t.unfollowed += 1;
                t.unfollowed_sum_ns += lower;
                record_hist(&mut t.unfollowed_hist, lower);
            }
        }
        return 0;
    };
    // A SQPOLL thread submits on its own schedule: the process's waits say nothing of it.
    if req.path == uring_path::INLINE && req.sqpoll == 0 {
        // SAFETY: a value copied out of a hash map.
        let waited = unsafe { URING_RING_WAITS.get(&key.ctx) }
            .copied()
            .unwrap_or(0);
        if waited > req.start_ns {
            // Not completed within its submission: its process waited on the ring first.
            req.path = uring_path::DEFERRED;
        }
    }
    let t = now();
    let res: i32 = read(&ctx, uring_field::COMPLETE_RES);
    let cflags: u32 = read(&ctx, uring_field::COMPLETE_CFLAGS);
    let Some(stats) = URING_STATS.get_ptr_mut(uring_index(u32::from(req.op_slot), req.path)) else {
        return 0;
    };
    // SAFETY: a per-CPU value; programs do not migrate while they run.
    let stats = unsafe { &mut *stats };
    stats.completions += 1;
    if res < 0 {
        stats.errors += 1;
        if i64::from(res) == -EAGAIN {
            stats.eagain += 1;
        }
    }
    let latency = t.saturating_sub(req.start_ns);
    stats.latency_sum_ns += latency;
    record_hist(&mut stats.latency, latency);
    if req.path == uring_path::POLL && req.phase_ns != 0 && req.ready_ns >= req.phase_ns {
        let wait = req.ready_ns - req.phase_ns;
        stats.waits += 1;
        stats.wait_sum_ns += wait;
        record_hist(&mut stats.wait, wait);
        let task_work = t.saturating_sub(req.ready_ns);
        stats.task_works += 1;
        stats.task_work_sum_ns += task_work;
        record_hist(&mut stats.task_work, task_work);
    } else if req.path == uring_path::IO_WQ && req.phase_ns != 0 {
        let queued = t.saturating_sub(req.phase_ns);
        stats.waits += 1;
        stats.wait_sum_ns += queued;
        record_hist(&mut stats.wait, queued);
    }
    if cflags & IORING_CQE_F_MORE != 0 {
        // A multishot request goes on: its next completion is timed from this one.
        req.start_ns = t;
        req.phase_ns = if req.path == uring_path::POLL { t } else { 0 };
        req.ready_ns = 0;
        return 0;
    }
    stats.requests += 1;
    stats.sqpoll += u64::from(req.sqpoll);
    let _ = URING_REQS.remove(&key);
    0
}
