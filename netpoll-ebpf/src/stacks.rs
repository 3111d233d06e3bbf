//! Where the calls are made (`--stacks`): at the exit of each measured call of a target, the
//! kernel walks the caller's user stack (and, if asked, its kernel stack) into `STACK_TRACES`,
//! and the call is added to its (process, slot, stacks, caller) in `STACK_STATS`: counts and
//! latency sums aggregated in the kernel, nothing copied per call. Without `--stacks` none of
//! this code runs (the verifier prunes it).
//!
//! The kernel's walk follows frame pointers, from the instruction pointer at the syscall. A leaf
//! function that keeps no frame (libc's `read`, Go's `Syscall6`: nearly every syscall wrapper)
//! leaves the frame pointer on its caller's frame, so the walk goes from the wrapper straight to
//! its caller's caller; and in code built without frame pointers (most distribution binaries)
//! the walk follows garbage. So the exit hook also unwinds by the code's call frame
//! information: user space reads each syscall instruction's and each return address's rule
//! from `.eh_frame` (the canonical frame address is the stack pointer plus N there) and writes
//! it into `FRAME_RULES`; with it, the kernel goes from the syscall's stack pointer to the
//! wrapper's return address, the caller's frame, its return address, and so on, one read and
//! one lookup a frame, until a function that keeps a frame pointer (from there the walk is
//! right) or one whose rule it does not have yet. Until it has the syscall instruction's rule,
//! it keeps the words just above the stack pointer that follow a call instruction: user space
//! picks the wrapper's return address among them.

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
        CodeKey, EAGAIN, MAX_FRAME_RULES, MAX_STACK_KEYS, MAX_STACKS, RETURN_CANDIDATES, StackKey,
        StackStats, counter, frame_rule, stacks,
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
/// The frame rules user space has learnt for the targets' syscall instructions and return
/// addresses (see [`frame_rule`]).
#[map]
static FRAME_RULES: HashMap<CodeKey, u32> = HashMap::with_max_entries(MAX_FRAME_RULES, 0);

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
    let (callers, unwound) = callers(regs, call.tgid);
    let key = StackKey {
        tgid: call.tgid,
        slot: call.slot,
        user_stack,
        kernel_stack,
        callers,
        unwound,
        _pad: 0,
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

/// The callers the frame-pointer walk may lack (see the module comment), and whether they were
/// unwound. Once user space has learnt the frame rule of this syscall instruction
/// (`FRAME_RULES`): the return addresses unwound with the rules learnt, up to
/// [`RETURN_CANDIDATES`] of them, a read and a lookup each (user space checks them). Before:
/// every word above the stack pointer that follows a call instruction (the others 0), each
/// checked without a branch on what it holds (see [`call_ends`]).
#[inline(always)]
fn callers(regs: *const u8, tgid: u32) -> ([u64; RETURN_CANDIDATES], u32) {
    let mut found = [0u64; RETURN_CANDIDATES];
    if regs.is_null() {
        return (found, 0);
    }
    let read_reg = |offset: &u32| {
        // SAFETY: a plain read of a load-time constant; bpf_probe_read_kernel checks the
        // address.
        let offset = unsafe { core::ptr::read_volatile(offset) } as usize;
        unsafe { bpf_probe_read_kernel(regs.add(offset) as *const u64) }.ok()
    };
    let (Some(sp), Some(ip)) = (read_reg(&REGS_SP_OFFSET), read_reg(&REGS_IP_OFFSET)) else {
        return (found, 0);
    };
    // SAFETY: the value is copied out at once.
    if let Some(&rule) = unsafe { FRAME_RULES.get(&CodeKey { tgid, _pad: 0, ip }) } {
        if rule != frame_rule::FRAME_POINTER {
            unwind(tgid, sp + u64::from(rule), &mut found);
        }
        return (found, 1);
    }
    (return_candidates(sp), 0)
}

/// From the syscall wrapper's canonical frame address: each return address, then its caller's
/// CFA by the rule learnt for it, while there is one.
#[inline(always)]
fn unwind(tgid: u32, mut cfa: u64, found: &mut [u64; RETURN_CANDIDATES]) {
    for slot in found.iter_mut() {
        let mut ra = 0u64;
        // SAFETY: the helper checks the address, and zeroes the word if it cannot read it.
        unsafe {
            generated::bpf_probe_read_user(
                (&mut ra as *mut u64).cast(),
                8,
                cfa.wrapping_sub(8) as *const c_void,
            )
        };
        *slot = ra;
        // SAFETY: the value is copied out at once.
        match unsafe {
            FRAME_RULES.get(&CodeKey {
                tgid,
                _pad: 0,
                ip: ra,
            })
        } {
            Some(&rule) if rule != frame_rule::FRAME_POINTER && ra != 0 => {
                cfa = cfa.wrapping_add(u64::from(rule));
            }
            _ => break,
        }
    }
}

/// Every word just above the stack pointer that follows a call instruction.
#[inline(always)]
fn return_candidates(sp: u64) -> [u64; RETURN_CANDIDATES] {
    let mut found = [0u64; RETURN_CANDIDATES];
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
