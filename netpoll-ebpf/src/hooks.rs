//! Entry points, thin: each reads its hook's arguments and calls [`crate::probe`].
//!
//! The same probes come in three hook kinds, cheapest first; the loader uses the first the kernel
//! accepts: BTF tracepoints (`btf_*`), raw tracepoints (`raw_*`), classic tracepoints (`tp_*`).
//! The `floor_*` programs do nothing on the same hooks: the overhead benchmark's floor.
//! Program names follow `netpoll_ebpf::abi::program_name` (a test in netpoll-user checks the
//! object against it), and the globals below are named in `netpoll_ebpf::abi::globals`.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{
        BtfTracePointContext, RawTracePointContext, TracePointContext, tracing::StackIdContext,
    },
};

use crate::{
    lite,
    probe::{self, SyscallArgs},
    sched,
};

// Architecture facts set by the loader: byte offsets inside `struct pt_regs` of the six syscall
// arguments and of the syscall number, as seen by the sys_enter/sys_exit tracepoints.
#[unsafe(no_mangle)]
static REGS_ARG_OFFSETS: [u32; 6] = [0; 6];
#[unsafe(no_mangle)]
static REGS_NR_OFFSET: u32 = 0;
/// Offset of `child_pid` in the `sched:sched_process_fork` record (from its tracefs format file).
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 0;
/// Offset of `pid` (the thread id) in `struct task_struct`, from the kernel's BTF.
#[unsafe(no_mangle)]
static TASK_PID_OFFSET: u32 = 0;

/// The thread id of a `struct task_struct *` (the scheduler view's hooks get task pointers).
#[inline(always)]
fn task_tid(task: *const u8) -> u32 {
    // SAFETY: plain read of a load-time constant; bpf_probe_read_kernel validates the address.
    let offset = unsafe { core::ptr::read_volatile(&TASK_PID_OFFSET) } as usize;
    unsafe { bpf_probe_read_kernel(task.add(offset) as *const i32) }.unwrap_or(0) as u32
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`, as BTF and raw tracepoints pass it: the previous task was
/// preempted (still runnable) when `preempt` is set or its state is TASK_RUNNING (0).
#[inline(always)]
fn switch<C: StackIdContext>(ctx: &C, preempt: u64, next: *const u8, prev_state: u64) {
    if lite::lite() {
        // No call is ever timed in lite mode: nothing to park.
        lite::on_switch(preempt & 1 != 0 || prev_state as u32 == 0, task_tid(next));
    } else {
        probe::on_switch_out(ctx, || preempt & 1 != 0 || prev_state as u32 == 0);
        if probe::sched_view() {
            sched::thread_entered_cpu(task_tid(next));
        }
    }
    probe::forget_running();
}

// Record layout of the classic raw_syscalls tracepoints: 8 bytes of common fields, then
// `long id` and `unsigned long args[6]` (sys_enter) or `long ret` (sys_exit). Stable since 2.6.
const TP_SYSCALL_ID: usize = 8;
const TP_SYSCALL_ARGS: usize = 16;
const TP_SYSCALL_RET: usize = 16;

#[inline(always)]
fn read_regs(regs: *const u8, offset: u32) -> u64 {
    // SAFETY: bpf_probe_read_kernel validates the address.
    unsafe { bpf_probe_read_kernel(regs.add(offset as usize) as *const u64) }.unwrap_or(0)
}

/// Syscall arguments behind a `struct pt_regs *` (BTF and raw tracepoints).
struct RegsArgs(*const u8);

impl SyscallArgs for RegsArgs {
    #[inline(always)]
    fn arg(&self, n: u8) -> u64 {
        // Constant indices only: the verifier refuses variable offsets into the stack.
        let offset = match n {
            0 => &REGS_ARG_OFFSETS[0],
            1 => &REGS_ARG_OFFSETS[1],
            2 => &REGS_ARG_OFFSETS[2],
            3 => &REGS_ARG_OFFSETS[3],
            4 => &REGS_ARG_OFFSETS[4],
            5 => &REGS_ARG_OFFSETS[5],
            _ => return 0,
        };
        // SAFETY: plain read of a load-time constant.
        read_regs(self.0, unsafe { core::ptr::read_volatile(offset) })
    }
}

#[inline(always)]
pub fn regs_nr(regs: *const u8) -> i64 {
    // SAFETY: plain read of a load-time constant.
    read_regs(regs, unsafe { core::ptr::read_volatile(&REGS_NR_OFFSET) }) as i64
}

/// Syscall arguments inside a classic `raw_syscalls:sys_enter` record.
struct RecordArgs<'a>(&'a TracePointContext);

impl SyscallArgs for RecordArgs<'_> {
    #[inline(always)]
    fn arg(&self, n: u8) -> u64 {
        // SAFETY: read_at uses bpf_probe_read_kernel; n < 6 keeps it inside the record.
        unsafe {
            self.0
                .read_at::<u64>(TP_SYSCALL_ARGS + 8 * (n as usize % 6))
        }
        .unwrap_or(0)
    }
}

// BTF tracepoints: sys_enter(struct pt_regs *regs, long id), sys_exit(struct pt_regs *regs, long ret).

#[btf_tracepoint(function = "sys_enter")]
pub fn btf_sys_enter(ctx: BtfTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    probe::on_sys_enter(ctx.arg(1), &RegsArgs(regs));
    0
}

#[btf_tracepoint(function = "sys_exit")]
pub fn btf_sys_exit(ctx: BtfTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    probe::on_sys_exit(&ctx, regs, ctx.arg(1), || regs_nr(regs));
    0
}

// sock_recv_length(struct sock *sk, int ret, int flags), sock_send_length(likewise).

#[btf_tracepoint(function = "sock_recv_length")]
pub fn btf_sock_recv(ctx: BtfTracePointContext) -> i32 {
    socket_io(ctx.arg::<u64>(1) as i32 as i64);
    0
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn btf_sock_send(ctx: BtfTracePointContext) -> i32 {
    socket_io(ctx.arg::<u64>(1) as i32 as i64);
    0
}

/// A socket transfer: lite mode counts it (lite runs on BTF tracepoints only: it reads the
/// current task's registers through BTF-typed helpers); otherwise it marks the call in flight.
#[inline(always)]
fn socket_io(ret: i64) {
    if lite::lite() {
        lite::on_transfer(ret);
    } else {
        probe::on_socket_io();
    }
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn btf_task_exit(_ctx: BtfTracePointContext) -> i32 {
    probe::on_task_exit();
    0
}

#[btf_tracepoint(function = "sched_switch")]
pub fn btf_switch(ctx: BtfTracePointContext) -> i32 {
    switch(&ctx, ctx.arg(0), ctx.arg(2), ctx.arg(3));
    0
}

#[btf_tracepoint(function = "sched_waking")]
pub fn btf_wakeup(ctx: BtfTracePointContext) -> i32 {
    sched::on_wakeup(task_tid(ctx.arg(0)));
    0
}

#[btf_tracepoint(function = "irq_handler_entry")]
pub fn btf_irq_entry(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[btf_tracepoint(function = "irq_handler_exit")]
pub fn btf_irq_exit(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_left();
    0
}

#[btf_tracepoint(function = "softirq_entry")]
pub fn btf_softirq_entry(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn btf_softirq_exit(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_left();
    0
}

#[btf_tracepoint(function = "hrtimer_expire_entry")]
pub fn btf_timer_entry(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[btf_tracepoint(function = "hrtimer_expire_exit")]
pub fn btf_timer_exit(_ctx: BtfTracePointContext) -> i32 {
    sched::irq_left();
    0
}

// Raw tracepoints: same arguments as the BTF ones, read without BTF.

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    probe::on_sys_enter(ctx.arg(1), &RegsArgs(regs));
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    probe::on_sys_exit(&ctx, regs, ctx.arg(1), || regs_nr(regs));
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn raw_sock_recv(_ctx: RawTracePointContext) -> i32 {
    probe::on_socket_io();
    0
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn raw_sock_send(_ctx: RawTracePointContext) -> i32 {
    probe::on_socket_io();
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_task_exit(_ctx: RawTracePointContext) -> i32 {
    probe::on_task_exit();
    0
}

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn raw_switch(ctx: RawTracePointContext) -> i32 {
    switch(&ctx, ctx.arg(0), ctx.arg(2), ctx.arg(3));
    0
}

#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn raw_wakeup(ctx: RawTracePointContext) -> i32 {
    sched::on_wakeup(task_tid(ctx.arg(0)));
    0
}

#[raw_tracepoint(tracepoint = "irq_handler_entry")]
pub fn raw_irq_entry(_ctx: RawTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[raw_tracepoint(tracepoint = "irq_handler_exit")]
pub fn raw_irq_exit(_ctx: RawTracePointContext) -> i32 {
    sched::irq_left();
    0
}

#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn raw_softirq_entry(_ctx: RawTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn raw_softirq_exit(_ctx: RawTracePointContext) -> i32 {
    sched::irq_left();
    0
}

#[raw_tracepoint(tracepoint = "hrtimer_expire_entry")]
pub fn raw_timer_entry(_ctx: RawTracePointContext) -> i32 {
    sched::irq_entered();
    0
}

#[raw_tracepoint(tracepoint = "hrtimer_expire_exit")]
pub fn raw_timer_exit(_ctx: RawTracePointContext) -> i32 {
    sched::irq_left();
    0
}

// Classic tracepoints (need tracefs): raw_syscalls:sys_enter/sys_exit and friends.

#[tracepoint]
pub fn tp_sys_enter(ctx: TracePointContext) -> i32 {
    // SAFETY: read_at uses bpf_probe_read_kernel.
    let nr = unsafe { ctx.read_at::<i64>(TP_SYSCALL_ID) }.unwrap_or(-1);
    probe::on_sys_enter(nr, &RecordArgs(&ctx));
    0
}

#[tracepoint]
pub fn tp_sys_exit(ctx: TracePointContext) -> i32 {
    // SAFETY: read_at uses bpf_probe_read_kernel.
    let ret = unsafe { ctx.read_at::<i64>(TP_SYSCALL_RET) }.unwrap_or(0);
    // SAFETY: as above.
    // No user registers in the record: `--stacks` recovers no frameless leaf's caller here.
    probe::on_sys_exit(&ctx, core::ptr::null(), ret, || {
        unsafe { ctx.read_at::<i64>(TP_SYSCALL_ID) }.unwrap_or(-1)
    });
    0
}

#[tracepoint]
pub fn tp_sock_recv(_ctx: TracePointContext) -> i32 {
    probe::on_socket_io();
    0
}

#[tracepoint]
pub fn tp_sock_send(_ctx: TracePointContext) -> i32 {
    probe::on_socket_io();
    0
}

#[tracepoint]
pub fn tp_task_exit(_ctx: TracePointContext) -> i32 {
    probe::on_task_exit();
    0
}

/// Classic tracepoints carry no task pointers: no scheduler view (the loader refuses it).
#[tracepoint]
pub fn tp_switch(ctx: TracePointContext) -> i32 {
    probe::on_switch_out(&ctx, || false);
    probe::forget_running();
    0
}

/// Follows children in every hook mode: fork is rare, so the classic tracepoint's cost is moot,
/// and its record names the child's pid without reading `struct task_struct`.
#[tracepoint]
pub fn tp_task_fork(ctx: TracePointContext) -> i32 {
    // SAFETY: plain read of a load-time constant; read_at uses bpf_probe_read_kernel.
    let offset = unsafe { core::ptr::read_volatile(&FORK_CHILD_PID_OFFSET) } as usize;
    if let Ok(child) = unsafe { ctx.read_at::<i32>(offset) } {
        probe::on_task_fork(child as u32);
    }
    0
}

/// `task:task_rename` (an exec, prctl(PR_SET_NAME), a write to /proc/PID/comm), with `--comm`:
/// the renamed task may have become a target or stopped being one.
#[tracepoint]
pub fn tp_task_rename(_ctx: TracePointContext) -> i32 {
    probe::expire_verdicts();
    0
}

/// `cgroup:cgroup_attach_task`, with `--cgroup`: a task moved into or out of the cgroup.
#[tracepoint]
pub fn tp_cgroup_attach(_ctx: TracePointContext) -> i32 {
    probe::expire_verdicts();
    0
}

// The floor: empty programs on the hooks above, for `cargo xtask bench overhead`.

#[btf_tracepoint(function = "sys_enter")]
pub fn floor_btf_sys_enter(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "sock_recv_length")]
pub fn floor_btf_sock_recv(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "sock_send_length")]
pub fn floor_btf_sock_send(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "sched_switch")]
pub fn floor_btf_switch(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_raw_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_raw_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn floor_raw_sock_recv(_ctx: RawTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn floor_raw_sock_send(_ctx: RawTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn floor_raw_switch(_ctx: RawTracePointContext) -> i32 {
    0
}
#[tracepoint]
pub fn floor_tp_sys_enter(_ctx: TracePointContext) -> i32 {
    0
}
#[tracepoint]
pub fn floor_tp_sys_exit(_ctx: TracePointContext) -> i32 {
    0
}
#[tracepoint]
pub fn floor_tp_sock_recv(_ctx: TracePointContext) -> i32 {
    0
}
#[tracepoint]
pub fn floor_tp_sock_send(_ctx: TracePointContext) -> i32 {
    0
}
#[tracepoint]
pub fn floor_tp_switch(_ctx: TracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "sched_waking")]
pub fn floor_btf_wakeup(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn floor_raw_wakeup(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "irq_handler_entry")]
pub fn floor_btf_irq_entry(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "irq_handler_entry")]
pub fn floor_raw_irq_entry(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "irq_handler_exit")]
pub fn floor_btf_irq_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "irq_handler_exit")]
pub fn floor_raw_irq_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "softirq_entry")]
pub fn floor_btf_softirq_entry(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn floor_raw_softirq_entry(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "softirq_exit")]
pub fn floor_btf_softirq_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn floor_raw_softirq_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "hrtimer_expire_entry")]
pub fn floor_btf_timer_entry(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "hrtimer_expire_entry")]
pub fn floor_raw_timer_entry(_ctx: RawTracePointContext) -> i32 {
    0
}
#[btf_tracepoint(function = "hrtimer_expire_exit")]
pub fn floor_btf_timer_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
#[raw_tracepoint(tracepoint = "hrtimer_expire_exit")]
pub fn floor_raw_timer_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
