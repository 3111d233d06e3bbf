//! Where the calls are made (`--stacks`): at the exit of each measured call of a target, the
//! kernel walks the caller's user stack (and, if asked, its kernel stack) into `STACK_TRACES`,
//! and the call is added to its (process, slot, stacks, caller) in `STACK_STATS`: counts and
//! latency sums aggregated in the kernel, nothing copied per call. Without `--stacks` none of
//! this code runs (the verifier prunes it).
//!
//! The kernel's walk follows frame pointers, from the instruction pointer at the syscall. A leaf
//! function that keeps no frame (libc's `read`, Go's `Syscall6`: nearly every syscall wrapper)
//! leaves the frame pointer on its caller's frame, so the walk goes from the wrapper straight to
//! its caller's caller. The wrapper's return address is then just above the stack pointer (at
//! it, or past the wrapper's own few locals): the words there that follow a call instruction are
//! kept in the key, and user space, which can read the wrapper's call frame information, puts
//! the right one back in the stack.

use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    cty::c_void,
    helpers::{bpf_probe_read_kernel, generated},
    macros::map,
    maps::{HashMap, PerCpuHashMap, StackTrace},
    programs::tracing::StackIdContext,
};
use netpoll_ebpf::{
    abi::{
        EAGAIN, LeafKey, MAX_LEAVES, MAX_STACK_KEYS, MAX_STACKS, RETURN_CANDIDATES, StackKey,
        StackStats, counter, stacks,
    },
    x86::{call_ends, zero},
};

use crate::probe::bump;

/// [`stacks`] mode, set by the loader.
#[unsafe(no_mangle)]
static STACKS: u8 = stacks::OFF;
/// Offsets of the user stack pointer and instruction pointer in `struct pt_regs`, set by the
/// loader.
#[unsafe(no_mangle)]
static REGS_SP_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static REGS_IP_OFFSET: u32 = 0;

#[map]
static STACK_TRACES: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);
#[map]
static STACK_STATS: PerCpuHashMap<StackKey, StackStats> =
    PerCpuHashMap::with_max_entries(MAX_STACK_KEYS, 0);
/// Where each known syscall instruction's wrapper keeps its return address (written by user
/// space as it learns them, from the wrapper's call frame information).
#[map]
static LEAF_SLOTS: HashMap<LeafKey, u32> = HashMap::with_max_entries(MAX_LEAVES, 0);

#[inline(always)]
fn mode() -> u8 {
    // SAFETY: a plain read of a load-time constant.
    unsafe { core::ptr::read_volatile(&STACKS) }
}

/// Whether `--stacks` is on (a load-time constant).
#[inline(always)]
pub fn on() -> bool {
    mode() != stacks::OFF
}

/// `sched_switch`, for a call leaving the CPU for the first time: where in the kernel it is
/// (with `--kernel-stacks`), else [`stacks::NOT_TAKEN`].
#[inline(always)]
pub fn kernel_stack_at_switch<C: StackIdContext>(ctx: &C) -> i32 {
    if mode() != stacks::USER_AND_KERNEL {
        return stacks::NOT_TAKEN;
    }
    match ctx.get_stackid(&STACK_TRACES, 0) {
        Ok(id) => id as i32,
        Err(errno) => errno,
    }
}

/// A measured call that just returned, for [`record`].
pub struct Call {
    pub tgid: u32,
    pub slot: u32,
    pub latency: u64,
    pub ret: i64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// From [`kernel_stack_at_switch`], or [`stacks::STAYED_ON_CPU`].
    pub kernel_stack: i32,
}

/// Adds a measured call to its stack's numbers. `regs`: the user registers (null where the
/// hook has none: then no caller is recovered). A function of its own (a BPF-to-BPF call): the
/// verifier checks it apart from the scheduler view's branches, instead of once per path
/// through them.
#[inline(never)]
pub fn record<C: StackIdContext>(ctx: &C, regs: *const u8, call: &Call) {
    let user_stack = match ctx.get_stackid(&STACK_TRACES, u64::from(BPF_F_USER_STACK)) {
        Ok(id) => id as i32,
        Err(errno) => errno,
    };
    let kernel_stack = if mode() == stacks::USER_AND_KERNEL {
        call.kernel_stack
    } else {
        stacks::NOT_TAKEN
    };
    let key = StackKey {
        tgid: call.tgid,
        slot: call.slot,
        user_stack,
        kernel_stack,
        return_candidates: return_candidates(regs, call.tgid),
    };
    if STACK_STATS.get_ptr_mut(&key).is_none()
        && STACK_STATS.insert(&key, &StackStats::default(), 0).is_err()
    {
        bump(counter::STACK_STATS_FULL);
        return;
    }
    let Some(stats) = STACK_STATS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: this CPU's value of a per-CPU map; the program is not re-entered.
    let stats = unsafe { &mut *stats };
    stats.calls += 1;
    stats.latency_sum_ns += call.latency;
    stats.blocked_ns += call.blocked_ns;
    stats.runq_ns += call.runq_ns;
    if call.ret < 0 {
        stats.errors += 1;
        if call.ret == -EAGAIN {
            stats.eagain += 1;
        }
    }
}

/// The words above the user stack pointer that may be the syscall wrapper's return address
/// (see the module comment). Once user space has learnt where this syscall instruction's
/// wrapper keeps it (`LEAF_SLOTS`), that one word, unchecked (user space checks it); before,
/// every word that follows a call instruction (the others 0), each checked without a branch
/// on what it holds (see [`call_ends`]).
#[inline(always)]
fn return_candidates(regs: *const u8, tgid: u32) -> [u64; RETURN_CANDIDATES] {
    let mut found = [0u64; RETURN_CANDIDATES];
    if regs.is_null() {
        return found;
    }
    let read_reg = |offset: &u32| {
        // SAFETY: a plain read of a load-time constant; bpf_probe_read_kernel checks the
        // address.
        let offset = unsafe { core::ptr::read_volatile(offset) } as usize;
        unsafe { bpf_probe_read_kernel(regs.add(offset) as *const u64) }.ok()
    };
    let (Some(sp), Some(ip)) = (read_reg(&REGS_SP_OFFSET), read_reg(&REGS_IP_OFFSET)) else {
        return found;
    };
    let leaf = LeafKey { tgid, _pad: 0, ip };
    // SAFETY: the value is copied out at once.
    if let Some(&slot) = unsafe { LEAF_SLOTS.get(&leaf) } {
        if (slot as usize) < RETURN_CANDIDATES {
            let index = slot as usize & (RETURN_CANDIDATES - 1);
            // SAFETY: the helper checks the address, and zeroes the word if it cannot read it.
            unsafe {
                generated::bpf_probe_read_user(
                    (&mut found[index] as *mut u64).cast(),
                    8,
                    (sp + 8 * index as u64) as *const c_void,
                )
            };
        }
        return found;
    }
    // SAFETY: the helper checks the address, and zeroes the buffer if it cannot read it.
    unsafe {
        generated::bpf_probe_read_user(
            found.as_mut_ptr().cast(),
            (RETURN_CANDIDATES * 8) as u32,
            sp as *const c_void,
        )
    };
    for word in found.iter_mut() {
        // Code addresses only: canonical user space (x86_64's lower half) past the zero page,
        // not a pointer into this stack (within 1 MiB of the stack pointer). Computed without
        // a branch; one branch per word then spares the read below the words that cannot be
        // code (a read of a bad address takes the fault path: hundreds of ns).
        let user_space = zero(word.wrapping_sub(0x1000) >> 47);
        let off_stack = 1 ^ zero(word.abs_diff(sp) >> 20);
        let mut before = 0u64;
        if user_space & off_stack != 0 {
            // SAFETY: as above; an address that is not mapped reads as zeros.
            unsafe {
                generated::bpf_probe_read_user(
                    (&mut before as *mut u64).cast(),
                    8,
                    (*word - 8) as *const c_void,
                )
            };
        }
        *word *= call_ends(before);
    }
    found
}
