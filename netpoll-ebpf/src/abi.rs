//! Map keys and values exchanged between the BPF programs and user space, and the names of the
//! maps, globals and programs. Everything is `#[repr(C)]` with explicit padding.

use crate::{
    histogram::{LATENCY_BUCKETS, READY_BUCKETS, SCHED_BUCKETS},
    syscalls::NUM_SYSCALLS,
};

/// Value of the `SYSCALL_TABLE` array map, indexed by syscall number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallInfo {
    /// Index in [`crate::syscalls::SYSCALLS`] plus one; 0 means "not measured".
    pub index_plus_one: u8,
    /// [`crate::syscalls::Kind`] as u8.
    pub kind: u8,
    /// [`crate::syscalls::Wait`] as u8.
    pub wait: u8,
    pub wait_arg: u8,
}

/// A measured call in progress on one thread (in `CURRENT`, or parked in `IN_FLIGHT` by thread
/// id). `start_ns == 0` means no call: in `IN_FLIGHT`, a mark of the socket tracepoints for a
/// call that began before the probes attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub start_ns: u64,
    pub index: u8,
    /// Set by the socket send/receive tracepoints while the call runs.
    pub socket: u8,
    /// The call was asked not to block (zero timeout).
    pub nonblocking: u8,
    /// [`crate::syscalls::Kind`] as u8.
    pub kind: u8,
    /// `--ready`: the descriptor of a read, write or accept, plus one (0: none), so that its
    /// exit can end the descriptor's readiness delay, knowing whether it found anything.
    pub ready_fd_plus_one: u32,
}

/// A call parked in `IN_FLIGHT` (its thread left the CPU), with, in the scheduler view, its
/// thread's blocked and run-queue totals when it was parked: at exit, the differences are the
/// call's own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Parked {
    pub call: InFlight,
    pub base_blocked_ns: u64,
    pub base_runq_ns: u64,
    /// `--kernel-stacks`: the kernel stack where the call left the CPU (an id in
    /// `STACK_TRACES` or a negative errno), else [`stacks::NOT_TAKEN`].
    pub kernel_stack: i32,
    pub _pad: u32,
}

/// Where a target thread is, for the scheduler view (`THREADS`, by thread id).
pub mod thread_state {
    /// Running (or never seen leaving a CPU).
    pub const ON_CPU: u8 = 0;
    /// Switched out while runnable (preempted, or yielded): waiting for a CPU since `off_ns`.
    pub const PREEMPTED: u8 = 1;
    /// Switched out asleep (waiting for data, a timeout, a lock) since `off_ns`.
    pub const BLOCKED: u8 = 2;
    /// Woken at `woken_ns`, waiting for a CPU since.
    pub const WOKEN: u8 = 3;
}

/// Who woke a thread.
pub mod waker {
    /// An interrupt, softirq or timer (a packet arriving, a timeout expiring).
    pub const INTERRUPT: usize = 0;
    /// Another thread of the same process (a worker pool, a futex, Go's netpoller).
    pub const SAME_PROCESS: usize = 1;
    /// A thread of another process.
    pub const OTHER_PROCESS: usize = 2;
    pub const COUNT: usize = 3;
    /// Not woken during the call (it never blocked).
    pub const NONE: u8 = 0xff;
}

/// Scheduler state of one target thread (the scheduler view, `THREADS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadSched {
    /// When it last left a CPU.
    pub off_ns: u64,
    /// When it was last woken.
    pub woken_ns: u64,
    /// Totals since it was first seen: asleep, and runnable but not running.
    pub blocked_ns: u64,
    pub runq_ns: u64,
    pub tgid: u32,
    /// [`thread_state`].
    pub state: u8,
    /// [`waker`] of its last wakeup.
    pub waker: u8,
    pub _pad: [u8; 2],
}

/// The scheduler view of one slot (`SCHED_STATS`): each call's latency split into on CPU,
/// blocked (asleep) and waiting for a CPU, so that on + blocked + runq = latency for every
/// call. Histograms stop at 2^36 ns (69 s); longer values share the last bucket.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SlotSched {
    pub on_cpu_sum_ns: u64,
    pub blocked_sum_ns: u64,
    pub runq_sum_ns: u64,
    /// Calls woken while inside the call, by [`waker`].
    pub wakeups: [u64; waker::COUNT],
    /// Of those, the time from the (last) wakeup to the call's return, summed.
    pub wake_to_exit_sum_ns: [u64; waker::COUNT],
    pub _reserved: u64,
    pub on_cpu: [u64; SCHED_BUCKETS],
    pub blocked: [u64; SCHED_BUCKETS],
    pub runq: [u64; SCHED_BUCKETS],
}

impl SlotSched {
    pub const ZERO: SlotSched = SlotSched {
        on_cpu_sum_ns: 0,
        blocked_sum_ns: 0,
        runq_sum_ns: 0,
        wakeups: [0; waker::COUNT],
        wake_to_exit_sum_ns: [0; waker::COUNT],
        _reserved: 0,
        on_cpu: [0; SCHED_BUCKETS],
        blocked: [0; SCHED_BUCKETS],
        runq: [0; SCHED_BUCKETS],
    };
}

/// The scheduler view over every target thread, in and outside measured calls
/// (`SCHED_TOTALS`, one per-CPU entry).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SchedTotals {
    pub blocked_ns: u64,
    pub runq_ns: u64,
    /// Switched out runnable (involuntary: preempted) and asleep (voluntary).
    pub preemptions: u64,
    pub sleeps: u64,
    /// Wakeups by [`waker`].
    pub wakeups: [u64; waker::COUNT],
    pub _reserved: u64,
    /// Run-queue delay after every wakeup or preemption, nanoseconds.
    pub runq: [u64; SCHED_BUCKETS],
}

/// Per-CPU state (`CURRENT`): the measured call of the thread running on this CPU, who runs
/// there, and the last target verdict (any mode but `--all`, when `VERDICT_CACHE` is set),
/// valid while `verdict_generation` matches `TARGETS_GEN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Current {
    /// Thread (low 32 bits) and process (high 32 bits) of `call`.
    pub pid_tgid: u64,
    /// `call.start_ns == 0`: no call in progress.
    pub call: InFlight,
    pub verdict_for: u64,
    pub verdict_generation: u64,
    pub verdict: u64,
    /// The thread running on this CPU (pid_tgid), taken at the first hook after a context
    /// switch, forgotten (0) at the next: the hooks in between need not ask the kernel.
    pub running: u64,
}

/// Everything recorded for one slot (syscall x socket/other x measured/lower-bound).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SlotStats {
    pub calls: u64,
    /// Calls that returned an error (negative return value), including EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    /// Bytes moved, for read and write calls (sum of positive return values).
    pub bytes: u64,
    /// Waiting calls that returned zero ready events (timed out, or nothing ready).
    pub zero_ready: u64,
    /// Waiting calls made with a zero timeout (polls that could not block).
    pub nonblocking: u64,
    pub latency_sum_ns: u64,
    pub _reserved: u64,
    /// Latency histogram in nanoseconds, see [`crate::histogram`].
    pub latency: [u64; LATENCY_BUCKETS],
    /// Ready events (return value) per successful waiting call.
    pub ready: [u64; READY_BUCKETS],
}

impl SlotStats {
    pub const ZERO: SlotStats = SlotStats {
        calls: 0,
        errors: 0,
        eagain: 0,
        bytes: 0,
        zero_ready: 0,
        nonblocking: 0,
        latency_sum_ns: 0,
        _reserved: 0,
        latency: [0; LATENCY_BUCKETS],
        ready: [0; READY_BUCKETS],
    };
}

/// `--lite`, per syscall (`LITE_STATS`, indexed like the syscall table): what can be known
/// without hooks on every syscall. The socket tracepoints give each socket transfer (one per
/// read/recv/write/send on a socket; one per message of recvmmsg/sendmmsg) with its result; the
/// scheduler gives each time a call of this syscall put its thread to sleep, and how long the
/// thread then stayed off CPU (until it ran again: asleep, then waiting for a CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LiteStats {
    pub transfers: u64,
    /// Transfers that failed (negative result), including EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    /// Bytes moved by the successful transfers.
    pub bytes: u64,
    pub sleeps: u64,
    pub off_cpu_sum_ns: u64,
    pub _reserved: [u64; 2],
    /// Off-CPU time per sleep, nanoseconds (2^36 ns and over share the last bucket).
    pub off_cpu: [u64; SCHED_BUCKETS],
}

impl LiteStats {
    pub const ZERO: LiteStats = LiteStats {
        transfers: 0,
        errors: 0,
        eagain: 0,
        bytes: 0,
        sleeps: 0,
        off_cpu_sum_ns: 0,
        _reserved: [0; 2],
        off_cpu: [0; SCHED_BUCKETS],
    };
}

/// `--lite`: a target thread asleep inside a measured syscall, in slot `tid % LITE_SLOTS` of
/// `LITE_ASLEEP` (a direct-mapped array: `sched_switch` checks the task coming in with one
/// array read instead of a hash lookup).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LiteAsleep {
    pub since_ns: u64,
    /// Index of the syscall in the syscall table.
    pub index: u32,
    /// The thread asleep in this slot; 0 (the idle task, never a target) when the slot is free.
    pub tid: u32,
}

/// Slots of `LITE_ASLEEP`, a power of two. Thread ids below it never share a slot (this
/// machine kind's `kernel.pid_max` is 32,768); above it, a target thread falling asleep while
/// another one holds its slot loses that sleep, counted as `counter::IN_FLIGHT_FULL`.
pub const LITE_SLOTS: u32 = 65_536;

/// Key of `PID_STATS` (used with `--per-pid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PidSlot {
    pub tgid: u32,
    pub slot: u32,
}

/// Slots per syscall index: socket/other x measured/lower-bound.
pub const NUM_SLOTS: usize = NUM_SYSCALLS * 4;

/// Where a call's numbers go. `lower_bound` calls were already blocked when the probes attached:
/// their latency is counted from the attach time.
#[inline(always)]
pub const fn slot(index: usize, socket: bool, lower_bound: bool) -> usize {
    ((lower_bound as usize * NUM_SYSCALLS + index) << 1) | socket as usize
}

/// Indices of the `COUNTERS` per-CPU array: things that would otherwise be lost silently.
pub mod counter {
    /// A measured call found `IN_FLIGHT` full: the call is not measured.
    pub const IN_FLIGHT_FULL: u32 = 0;
    /// A child of a target could not be added to `TARGETS`: it is not followed.
    pub const TARGETS_FULL: u32 = 1;
    /// `PID_STATS` was full: the call is counted in the totals without a process.
    pub const PID_STATS_FULL: u32 = 2;
    /// A thread exited while inside a measured call (the call never returned).
    pub const DIED_IN_CALL: u32 = 3;
    /// Tasks (processes and threads) created by targets and added to `TARGETS`.
    pub const FOLLOWED_TASKS: u32 = 4;
    /// The scheduler view could not track a thread: `THREADS` was full.
    pub const THREADS_FULL: u32 = 5;
    /// `--stacks`: a measured call's stack could not be counted: `STACK_STATS` was full (the
    /// call is still counted in the totals).
    pub const STACK_STATS_FULL: u32 = 6;
    pub const COUNT: u32 = 8;
}

/// Target filter chosen at load time (global `FILTER_MODE`).
pub mod filter {
    pub const ALL: u8 = 0;
    pub const PIDS: u8 = 1;
    pub const COMM: u8 = 2;
    pub const CGROUP: u8 = 3;
}

/// Names of maps shared with user space.
pub mod maps {
    pub const SYSCALL_TABLE: &str = "SYSCALL_TABLE";
    pub const THREADS: &str = "THREADS";
    pub const SCHED_STATS: &str = "SCHED_STATS";
    pub const SCHED_TOTALS: &str = "SCHED_TOTALS";
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    pub const STATS: &str = "STATS";
    pub const PID_STATS: &str = "PID_STATS";
    pub const PID_COMM: &str = "PID_COMM";
    pub const TARGETS: &str = "TARGETS";
    pub const TARGETS_GEN: &str = "TARGETS_GEN";
    pub const COUNTERS: &str = "COUNTERS";
    pub const ATTACH_NS: &str = "ATTACH_NS";
    pub const LITE_STATS: &str = "LITE_STATS";
    pub const LITE_ASLEEP: &str = "LITE_ASLEEP";
    pub const GO_PARKED: &str = "GO_PARKED";
    pub const GO_WOKEN: &str = "GO_WOKEN";
    pub const GO_EXACT: &str = "GO_EXACT";
    pub const GO_HANDOFFS: &str = "GO_HANDOFFS";
    pub const GO_CALIBRATION: &str = "GO_CALIBRATION";
    /// `--go-exact`: byte offsets of `rg` (0) and `wg` (1) in the runtime's `pollDesc`, u32.
    pub const GO_POLLDESC: &str = "GO_POLLDESC";
    pub const GO_POLLS: &str = "GO_POLLS";
    pub const GO_POLL_CALLS: &str = "GO_POLL_CALLS";
    pub const READY_TABLE: &str = "READY_TABLE";
    pub const READY: &str = "READY";
    pub const REGISTRATIONS: &str = "REGISTRATIONS";
    pub const REGISTERED_FDS: &str = "REGISTERED_FDS";
    pub const READY_WAITS: &str = "READY_WAITS";
    pub const TURNS: &str = "TURNS";
    pub const READY_DELAY: &str = "READY_DELAY";
    pub const READY_TOTALS: &str = "READY_TOTALS";
    pub const URING_OPCODES: &str = "URING_OPCODES";
    pub const URING_REQS: &str = "URING_REQS";
    pub const URING_STATS: &str = "URING_STATS";
    pub const URING_TOTALS: &str = "URING_TOTALS";
    pub const URING_RING_WAITS: &str = "URING_RING_WAITS";
    /// When the io_uring view's programs were attached (monotonic ns), u64.
    pub const URING_ATTACH_NS: &str = "URING_ATTACH_NS";
    /// `--stacks`: the stacks walked (a stack trace map: id -> return addresses).
    pub const STACK_TRACES: &str = "STACK_TRACES";
    /// `--stacks`: [`super::StackKey`] -> [`super::StackStats`], per CPU.
    pub const STACK_STATS: &str = "STACK_STATS";
    /// `--stacks`: [`super::CodeKey`] -> u32 ([`super::frame_rule`]), written by user space.
    pub const FRAME_RULES: &str = "FRAME_RULES";
}

/// Names of the load-time globals (`static`s with `#[unsafe(no_mangle)]` in the programs), set
/// by the loader with `EbpfLoader::override_global`. Read-only after load, so the verifier
/// treats them as constants.
pub mod globals {
    /// [`super::filter`] mode, u8.
    pub const FILTER_MODE: &str = "FILTER_MODE";
    /// `--comm`: the task name, `[u8; 16]`.
    pub const FILTER_COMM: &str = "FILTER_COMM";
    /// `--cgroup`: the cgroup v2 id, u64.
    pub const FILTER_CGROUP: &str = "FILTER_CGROUP";
    /// 1 to cache each CPU's last target verdict (`--pid`, and `--comm`/`--cgroup` when the
    /// hook that expires it on renames/moves is there), u8.
    pub const VERDICT_CACHE: &str = "VERDICT_CACHE";
    /// `--per-pid`: 1 to break results down by process, u8.
    pub const PER_PID: &str = "PER_PID";
    /// Byte offsets in `struct pt_regs` of the 6 syscall arguments, `[u32; 6]`.
    pub const REGS_ARG_OFFSETS: &str = "REGS_ARG_OFFSETS";
    /// Byte offset in `struct pt_regs` of the syscall number, u32.
    pub const REGS_NR_OFFSET: &str = "REGS_NR_OFFSET";
    /// Offset of `child_pid` in the `sched:sched_process_fork` record, u32.
    pub const FORK_CHILD_PID_OFFSET: &str = "FORK_CHILD_PID_OFFSET";
    /// 1: the scheduler view (`--sched`) is on, u8.
    pub const SCHED: &str = "SCHED";
    /// Byte offset of `pid` in `struct task_struct` (from the kernel's BTF), u32.
    pub const TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
    /// 1: `--lite`, no hooks on every syscall, u8.
    pub const LITE: &str = "LITE";
    /// 1: `--ready`, the readiness-to-service view, u8.
    pub const READY_VIEW: &str = "READY_VIEW";
    /// `--go`: the Go process whose polls are attributed (its tgid), u32.
    pub const GO_TGID: &str = "GO_TGID";
    /// Offsets of `timeout` in the `syscalls:sys_enter_epoll_pwait` record and of `ret` in
    /// `sys_exit_epoll_pwait`'s (from their tracefs format files), u32.
    pub const GO_POLL_TIMEOUT_OFFSET: &str = "GO_POLL_TIMEOUT_OFFSET";
    pub const GO_POLL_RET_OFFSET: &str = "GO_POLL_RET_OFFSET";
    /// `--uring`: offsets of the io_uring tracepoints' fields (from their tracefs format
    /// files), `[u32; uring_field::COUNT]`, indexed by [`super::uring_field`].
    pub const URING_FIELDS: &str = "URING_FIELDS";
    /// `--stacks`: [`super::stacks`] mode, u8.
    pub const STACKS: &str = "STACKS";
    /// Byte offsets in `struct pt_regs` of the user stack pointer and instruction pointer, u32.
    pub const REGS_SP_OFFSET: &str = "REGS_SP_OFFSET";
    pub const REGS_IP_OFFSET: &str = "REGS_IP_OFFSET";
}

/// `--go-exact`'s uprobes: each program and the Go runtime function it is attached to, at its
/// first instruction (never at a return: uretprobes corrupt Go's movable stacks, golang/go
/// #22008). Four functions see every transition reported, with arguments in Go's register ABI
/// (amd64: RAX, RBX, RCX, ...):
/// - `runtime.netpollblockcommit(gp, gpp)`: gopark's commit for a goroutine parking on the
///   network (IO wait): the park.
/// - `runtime.netpollready(toRun, pd, mode)`: netpoll found `pd` ready; the goroutine in its
///   `rg`/`wg` is made runnable: the network wake-up.
/// - `runtime.execute(gp, inheritTime)`: a goroutine starts running on an M: the end of its
///   wait for a P.
/// - `runtime.handoffp(pp)`: a P is handed to another M because its own M is blocked (in a
///   syscall: sysmon's `retake`, `entersyscallblock`), counted by caller.
pub const GO_EXACT_HOOKS: [(&str, &str); 4] = [
    ("go_park", "runtime.netpollblockcommit"),
    ("go_ready", "runtime.netpollready"),
    ("go_execute", "runtime.execute"),
    ("go_handoff", "runtime.handoffp"),
];

#[cfg(not(target_arch = "bpf"))]
impl GoExact {
    /// Adds `other` (`sign` 1) or takes it away (`sign` -1, for a later total less an earlier
    /// one), field by field.
    pub fn add(&mut self, other: &GoExact, sign: i64) {
        let f = |a: &mut u64, b: u64| {
            *a = if sign >= 0 {
                *a + b
            } else {
                a.saturating_sub(b)
            }
        };
        f(&mut self.parks, other.parks);
        f(&mut self.wakes, other.wakes);
        f(&mut self.wakes_of_seen_parks, other.wakes_of_seen_parks);
        f(&mut self.runs_after_wake, other.runs_after_wake);
        f(&mut self.resumed_otherwise, other.resumed_otherwise);
        f(&mut self.executes, other.executes);
        f(&mut self.full, other.full);
        f(&mut self.ready_calls, other.ready_calls);
        for (a, &b) in self.parked_ns.iter_mut().zip(&other.parked_ns) {
            f(a, b);
        }
        for (a, &b) in self.wake_to_run_ns.iter_mut().zip(&other.wake_to_run_ns) {
            f(a, b);
        }
    }
}

/// `--ready`: what a syscall is to the readiness-to-service view (`READY_TABLE`, by number).
pub mod ready_role {
    pub const NONE: u8 = 0;
    /// epoll_wait, epoll_pwait, epoll_pwait2: their returned events are stamped ready.
    pub const EPOLL_WAIT: u8 = 1;
    /// poll, ppoll: their returned pollfds.
    pub const POLL: u8 = 2;
    /// select, pselect6: their returned fd_sets.
    pub const SELECT: u8 = 3;
    /// epoll_ctl: registers what each descriptor's events will carry; ends a delay too.
    pub const EPOLL_CTL: u8 = 4;
    /// A call on a descriptor (its `fd_arg`-th argument): ends the descriptor's delay.
    pub const ON_FD: u8 = 5;
}

/// What ended a readiness-to-service delay (`READY_DELAY`'s index), named by [`READY_ENDERS`].
pub mod ready_ender {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const ACCEPT: u8 = 2;
    pub const CLOSE: u8 = 3;
    pub const EPOLL_CTL: u8 = 4;
    pub const COUNT: u32 = 5;
}

/// Names of [`ready_ender`]'s values, in order.
pub const READY_ENDERS: [&str; 5] = ["read", "write", "accept", "close", "epoll_ctl"];

/// A syscall's part in the readiness view (`READY_TABLE`'s value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyInfo {
    /// [`ready_role`].
    pub role: u8,
    /// Which argument is the descriptor (`ON_FD`).
    pub fd_arg: u8,
    /// [`ready_ender`] (`ON_FD`).
    pub ender: u8,
    /// Bit 0: the call closes the descriptor (it leaves its epoll instances). Bit 1: the call
    /// is measured (a read, write or accept of `SYSCALLS`): its delay ends at its exit, where a
    /// call that found nothing (EAGAIN) shows the report was stale.
    pub flags: u8,
}

/// [`ReadyInfo::flags`].
pub mod ready_flags {
    pub const CLOSES: u8 = 1;
    pub const AT_EXIT: u8 = 2;
}

/// `--ready`'s program for the waits' exits beside the main one on `sys_exit` (a BTF
/// tracepoint); without BTF tracepoints, [`READY_WAIT_PROGRAMS`] instead.
pub const READY_EXIT_PROGRAM: &str = "btf_ready_exit";

/// `--ready`'s programs on the waits' own exit tracepoints: (program, `syscalls` events).
pub const READY_WAIT_PROGRAMS: [(&str, &[&str]); 3] = [
    (
        "ready_epoll_exit",
        &[
            "sys_exit_epoll_wait",
            "sys_exit_epoll_pwait",
            "sys_exit_epoll_pwait2",
        ],
    ),
    ("ready_poll_exit", &["sys_exit_poll", "sys_exit_ppoll"]),
    (
        "ready_select_exit",
        &["sys_exit_select", "sys_exit_pselect6"],
    ),
];

/// `--uring`'s programs and the io_uring tracepoint each is attached to (the submission's is
/// `io_uring_submit_sqe` before Linux 6.0: the loader takes whichever exists). A request is
/// followed from its submission by the target to its completion, keyed by ring and request:
/// - `io_uring_submit_req`: submitted (by a target thread, or its ring's SQPOLL thread);
/// - `io_uring_poll_arm`: it could not complete at once and waits for its file's readiness;
/// - `io_uring_task_add`: the file became ready; the request's task work is queued;
/// - `io_uring_queue_async_work`: punted to an io-wq worker (it would block);
/// - `io_uring_complete`: its completion (CQE) is posted;
/// - `io_uring_cqring_wait`: a target waits for completions on a ring (a request of that ring
///   completed after it, without the events above, was not inline: see `uring_path::DEFERRED`).
pub const URING_PROGRAMS: [(&str, &[&str]); 6] = [
    ("uring_complete", &["io_uring_complete"]),
    ("uring_cqring_wait", &["io_uring_cqring_wait"]),
    ("uring_task_add", &["io_uring_task_add"]),
    ("uring_async", &["io_uring_queue_async_work"]),
    ("uring_poll_arm", &["io_uring_poll_arm"]),
    (
        "uring_submit",
        &["io_uring_submit_req", "io_uring_submit_sqe"],
    ),
];

/// Indexes of `URING_FIELDS`: each (event, field) the programs read, with its name in the
/// format files ([`URING_FIELD_NAMES`]).
pub mod uring_field {
    pub const SUBMIT_CTX: usize = 0;
    pub const SUBMIT_REQ: usize = 1;
    pub const SUBMIT_OPCODE: usize = 2;
    pub const SUBMIT_SQ_THREAD: usize = 3;
    pub const ARM_CTX: usize = 4;
    pub const ARM_REQ: usize = 5;
    pub const TASK_ADD_CTX: usize = 6;
    pub const TASK_ADD_REQ: usize = 7;
    pub const ASYNC_CTX: usize = 8;
    pub const ASYNC_REQ: usize = 9;
    pub const COMPLETE_CTX: usize = 10;
    pub const COMPLETE_REQ: usize = 11;
    pub const COMPLETE_RES: usize = 12;
    pub const COMPLETE_CFLAGS: usize = 13;
    pub const WAIT_CTX: usize = 14;
    pub const COUNT: usize = 15;
}

/// (program, field) of each `uring_field` index, in order: the program's event's format file
/// says where the field is.
pub const URING_FIELD_NAMES: [(&str, &str); uring_field::COUNT] = [
    ("uring_submit", "ctx"),
    ("uring_submit", "req"),
    ("uring_submit", "opcode"),
    ("uring_submit", "sq_thread"),
    ("uring_poll_arm", "ctx"),
    ("uring_poll_arm", "req"),
    ("uring_task_add", "ctx"),
    ("uring_task_add", "req"),
    ("uring_async", "ctx"),
    ("uring_async", "req"),
    ("uring_complete", "ctx"),
    ("uring_complete", "req"),
    ("uring_complete", "res"),
    ("uring_complete", "cflags"),
    ("uring_cqring_wait", "ctx"),
];

/// The io_uring operations netpoll names (`enum io_uring_op` of the kernel's uapi, a stable
/// ABI: the numbers never change), in slot order; any other opcode is counted in the last
/// slot, `other`. Network, file and the control operations servers use.
pub const URING_OPS: [(&str, u8); 24] = [
    ("nop", 0),
    ("readv", 1),
    ("writev", 2),
    ("fsync", 3),
    ("read_fixed", 4),
    ("write_fixed", 5),
    ("poll_add", 6),
    ("sendmsg", 9),
    ("recvmsg", 10),
    ("timeout", 11),
    ("accept", 13),
    ("async_cancel", 14),
    ("connect", 16),
    ("openat", 18),
    ("close", 19),
    ("statx", 21),
    ("read", 22),
    ("write", 23),
    ("send", 26),
    ("recv", 27),
    ("splice", 30),
    ("shutdown", 34),
    ("send_zc", 47),
    ("read_multishot", 49),
];

/// Slots of `URING_STATS`'s opcodes: the named ones and `other`.
pub const URING_OP_SLOTS: usize = URING_OPS.len() + 1;

/// How a request was carried out (the second index of `URING_STATS`).
pub mod uring_path {
    /// Completed within the submission (the data was there, the operation never blocks).
    pub const INLINE: u8 = 0;
    /// Waited for its file's readiness (internal poll, or a poll request), then completed
    /// from task work.
    pub const POLL: u8 = 1;
    /// Handed to an io-wq worker thread (an operation that blocks: most buffered file I/O).
    pub const IO_WQ: u8 = 2;
    /// None of the above, yet completed only after its process had waited on the ring: retried
    /// from task work when what it waited for came, with no tracepoint of its own (a buffered
    /// read whose page was not cached waits for the page lock, Linux 5.9 and later; a timeout).
    /// Not told apart from inline for requests a SQPOLL thread submitted, nor when the process
    /// reaps completions without ever waiting in `io_uring_enter`.
    pub const DEFERRED: u8 = 3;
    pub const COUNT: usize = 4;
}

/// Names of the paths, by [`uring_path`] value.
pub const URING_PATHS: [&str; uring_path::COUNT] = ["inline", "poll", "io-wq", "deferred"];

/// Rings a target waited on (`URING_RING_WAITS`).
pub const MAX_URING_RINGS: u32 = 4096;

/// `URING_STATS`'s index of an (opcode slot, path).
pub const fn uring_index(op_slot: u32, path: u8) -> u32 {
    op_slot * uring_path::COUNT as u32 + path as u32
}

/// Requests followed at once (`URING_REQS`, an LRU map: a request never completed, such as one
/// submitted with IOSQE_CQE_SKIP_SUCCESS that succeeded, ages out).
pub const MAX_URING_REQS: u32 = 65_536;

/// CQE flag: more completions of this (multishot) request will follow.
pub const IORING_CQE_F_MORE: u32 = 1 << 1;

/// A request: its ring and its `struct io_kiocb` (user_data is not unique, liburing #351).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UringKey {
    pub ctx: u64,
    pub req: u64,
}

/// A request followed (`URING_REQS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UringReq {
    /// Submission (or, for a multishot request, its previous completion).
    pub start_ns: u64,
    /// Poll: when it was armed. io-wq: when it was queued.
    pub phase_ns: u64,
    /// Poll: when its file became ready (task work queued).
    pub ready_ns: u64,
    /// `URING_OPS` slot.
    pub op_slot: u8,
    pub path: u8,
    /// Submitted by the ring's SQPOLL thread.
    pub sqpoll: u8,
    pub _pad: [u8; 5],
}

/// Requests of one (opcode, path) (`URING_STATS`, per CPU). Latencies are from submission
/// to the completion's posting; a multishot request's each completion counts, timed from the
/// one before.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UringStats {
    /// Requests finished (their last completion).
    pub requests: u64,
    /// Completions posted (several per multishot request).
    pub completions: u64,
    /// Completions with a negative result, and of them -EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    /// Requests submitted by the SQPOLL thread.
    pub sqpoll: u64,
    pub latency_sum_ns: u64,
    /// Poll: armed until ready (waiting for the file). io-wq: queued until completed.
    pub waits: u64,
    pub wait_sum_ns: u64,
    /// Poll: ready until completed (the task work waiting to run, then running).
    pub task_works: u64,
    pub task_work_sum_ns: u64,
    pub latency: [u64; SCHED_BUCKETS],
    pub wait: [u64; SCHED_BUCKETS],
    pub task_work: [u64; SCHED_BUCKETS],
}

/// The io_uring view's totals (`URING_TOTALS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UringTotals {
    /// Requests submitted by targets and followed.
    pub submitted: u64,
    /// Poll requests armed again before completing (woken, but nothing to do yet).
    pub rearmed: u64,
    /// Completions whose request was not followed from its submission (submitted before
    /// netpoll attached, by a target's ring): timed from the attach, a lower bound.
    pub unfollowed: u64,
    pub unfollowed_sum_ns: u64,
    /// Completions posted without their request (a multishot request's intermediate ones, on
    /// kernels that post them as auxiliary CQEs): counted, not timed.
    pub aux_completions: u64,
    pub _pad: u64,
    pub unfollowed_hist: [u64; SCHED_BUCKETS],
}

/// Ready events read per wait: beyond, they are counted as not measured. Each costs a read of
/// user memory and a hash update.
pub const READY_EVENTS_PER_WAIT: u32 = 64;
/// Descriptors stamped ready and not yet serviced, and registrations followed (LRU maps: the
/// oldest are dropped first when full).
pub const MAX_READY: u32 = 65_536;

/// A descriptor of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: u32,
}

/// What a process's epoll instances return for a descriptor: its registered data. Not keyed by
/// the epoll descriptor: one instance may have several (mio registers through a dup of the
/// descriptor it waits on), and the data a process registers names one descriptor (an fd, or
/// a pointer to its connection).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegKey {
    pub tgid: u32,
    pub _pad: u32,
    pub data: u64,
}

/// A descriptor reported ready and not yet serviced (`READY`), each way on its own: a read or
/// an accept services readability, a write writability, a close or `epoll_ctl` both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadyStamp {
    /// When it was reported readable and writable; 0: not pending that way.
    pub readable_ns: u64,
    pub writable_ns: u64,
    /// The waiting thread's turn at each report (see [`Turn`]).
    pub readable_turn: u32,
    pub writable_turn: u32,
    /// The thread whose wait reported it.
    pub tid: u32,
    pub _pad: u32,
}

/// A wait in progress (`READY_WAITS`, by thread): where its results will be.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadyWait {
    /// epoll: the events array; poll: the pollfds; select: readfds.
    pub ptr: u64,
    /// select: writefds.
    pub ptr2: u64,
    /// poll, select: how many descriptors were passed.
    pub nfds: u64,
    /// [`ready_role`].
    pub role: u8,
    pub _pad: [u8; 7],
}

/// A thread's event loop (`TURNS`): turns are numbered by its waits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Turn {
    /// When its last wait returned; 0 while it waits.
    pub returned_ns: u64,
    pub number: u64,
    /// Ready events its last wait returned.
    pub events: u64,
}

/// Readiness-to-service delays ended by one kind of call (`READY_DELAY`, per CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ReadyDelay {
    pub count: u64,
    pub sum_ns: u64,
    /// Serviced only after the thread that waited for it had waited again.
    pub deferred: u64,
    pub _reserved: u64,
    pub hist: [u64; SCHED_BUCKETS],
}

/// The readiness view's totals (`READY_TOTALS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ReadyTotals {
    /// Ready descriptors stamped.
    pub stamped: u64,
    /// epoll events whose data matched no registration known (made before netpoll attached,
    /// and not in fdinfo; or a shared epoll instance).
    pub unmapped: u64,
    /// Ready events beyond the per-wait bound, or unreadable: not measured.
    pub not_read: u64,
    /// Reported ready again before being serviced (the first report's time is kept).
    pub again: u64,
    /// Loop turns: from a wait's return to the same thread's next wait.
    pub turns: u64,
    pub turn_sum_ns: u64,
    /// Ready events the turns' waits returned.
    pub turn_events: u64,
    /// Reports found stale: the read, write or accept that came next found nothing to do
    /// (EAGAIN): the descriptor had been serviced before the report was read.
    pub stale: u64,
    pub turn_hist: [u64; SCHED_BUCKETS],
}

/// `--go`'s programs on the epoll_pwait tracepoints (they fire for that syscall only, so other
/// processes pay only when they call it): each network poll of the Go process is attributed
/// to the user stack that made it (who polls: the scheduler looking for work, sysmon...).
pub const GO_POLL_PROGRAMS: [(&str, &str); 2] = [
    ("go_poll_exit", "sys_exit_epoll_pwait"),
    ("go_poll_enter", "sys_enter_epoll_pwait"),
];

/// Distinct (stack, timeout kind) pairs of network polls kept.
pub const GO_MAX_POLL_SITES: u32 = 1024;

/// Frames of a poll's user stack kept: the syscall stub, then netpoll or its caller, then
/// theirs (enough to name who polled on every release; fewer frames, less walking).
pub const GO_POLL_FRAMES: usize = 5;

/// How a network poll may wait: its epoll_pwait timeout.
pub mod poll_timeout {
    /// -1: until an event (the scheduler with nothing else to do).
    pub const BLOCKING: u32 = 0;
    /// 0: returns at once (a poll for work).
    pub const NON_BLOCKING: u32 = 1;
    /// > 0: until the next timer.
    pub const TIMED: u32 = 2;
}

/// A network poll site: the innermost frames of the user stack that called epoll_pwait (0
/// past the stack's end, all 0 when it could not be taken), and how it may wait.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoPollKey {
    pub frames: [u64; GO_POLL_FRAMES],
    /// [`poll_timeout`].
    pub timeout: u32,
    pub _pad: u32,
}

/// What the polls of one site did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoPollStats {
    pub calls: u64,
    /// Ready events returned in all, and calls that returned none.
    pub events: u64,
    pub empty: u64,
    /// Time inside the calls, ns.
    pub time_ns: u64,
}

/// A poll in progress (`GO_POLL_CALLS`, by thread).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoPollCall {
    pub start_ns: u64,
    pub key: GoPollKey,
}

/// The program that measures what one uprobe hit costs on this machine (attached to a
/// function of netpoll's own, when `--go-exact` starts).
pub const GO_CALIBRATION_PROGRAM: &str = "go_calibrate";

/// Goroutines `--go-exact` can follow at once (parked on the network, or made runnable and not
/// yet running).
pub const GO_MAX_GOROUTINES: u32 = 65_536;

/// Distinct callers of `handoffp` counted.
pub const GO_MAX_HANDOFF_CALLERS: u32 = 64;

/// `--go-exact`'s counts (`GO_EXACT`, one per-CPU entry).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoExact {
    /// Goroutines parked on the network (gopark committed, IO wait).
    pub parks: u64,
    /// Goroutines made runnable by netpoll; of them, those whose park was seen.
    pub wakes: u64,
    pub wakes_of_seen_parks: u64,
    /// Goroutines that ran after a network wake-up (the wait for a P measured).
    pub runs_after_wake: u64,
    /// Goroutines parked on the network that ran again without a netpoll wake-up: a deadline,
    /// a close, or readiness racing the park itself (the commit then fails).
    pub resumed_otherwise: u64,
    /// Every `execute`: goroutines scheduled onto an M.
    pub executes: u64,
    /// Follow-up maps full: a park or wake-up could not be remembered.
    pub full: u64,
    /// `netpollready` calls: one per ready descriptor netpoll returned.
    pub ready_calls: u64,
    /// Parked on the network, from the park to the wake-up, nanoseconds.
    pub parked_ns: [u64; SCHED_BUCKETS],
    /// From the wake-up to running (waiting for a P and an M), nanoseconds.
    pub wake_to_run_ns: [u64; SCHED_BUCKETS],
}

/// The `af-xdp` model's XDP program, its maps and its global (see netpoll-ebpf's `xdp.rs`).
pub const XDP_PROGRAM: &str = "xdp_echo_redirect";
pub const XDP_SOCKETS_MAP: &str = "XSKS";
pub const XDP_COUNTS_MAP: &str = "XDP_COUNTS";
/// The echo port, network byte order, u16.
pub const XDP_ECHO_PORT_GLOBAL: &str = "XDP_ECHO_PORT_BE";

/// What the XDP program did with each packet: indexes of `XDP_COUNTS`.
pub mod xdp_counter {
    /// To the AF_XDP socket (the echo port).
    pub const REDIRECTED: u32 = 0;
    /// To the kernel's stack (anything else).
    pub const PASSED: u32 = 1;
    /// The echo port, but no socket on the queue.
    pub const DROPPED: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// The kernel events netpoll hooks. Each exists as one program per [`HookKind`], named
/// `{kind prefix}_{stem}` (`btf_sys_enter`, `raw_switch`, `tp_task_fork`); the do-nothing
/// programs of the overhead benchmark's floor add `floor_` in front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    SysEnter,
    SysExit,
    SockRecv,
    SockSend,
    TaskExit,
    Switch,
    TaskFork,
    /// `--comm`: a task renamed (exec, prctl, /proc/PID/comm): the cached verdicts expire.
    TaskRename,
    /// `--cgroup`: a task moved to another cgroup: the cached verdicts expire.
    CgroupAttach,
    /// The scheduler view: a thread woken.
    Wakeup,
    /// The scheduler view: interrupt, softirq and timer contexts (who woke a thread).
    IrqEntry,
    IrqExit,
    SoftirqEntry,
    SoftirqExit,
    TimerEntry,
    TimerExit,
}

impl Hook {
    pub const ALL: [Hook; 16] = [
        Hook::SysEnter,
        Hook::SysExit,
        Hook::SockRecv,
        Hook::SockSend,
        Hook::TaskExit,
        Hook::Switch,
        Hook::TaskFork,
        Hook::TaskRename,
        Hook::CgroupAttach,
        Hook::Wakeup,
        Hook::IrqEntry,
        Hook::IrqExit,
        Hook::SoftirqEntry,
        Hook::SoftirqExit,
        Hook::TimerEntry,
        Hook::TimerExit,
    ];

    /// The hooks of the scheduler view (`--sched`), in attach order: the exits of interrupt
    /// contexts before their entries (an exit without its entry is ignored, an entry without
    /// its exit would leave the CPU marked in an interrupt), then wakeups.
    pub const SCHED: [Hook; 7] = [
        Hook::IrqExit,
        Hook::SoftirqExit,
        Hook::TimerExit,
        Hook::IrqEntry,
        Hook::SoftirqEntry,
        Hook::TimerEntry,
        Hook::Wakeup,
    ];

    /// The part of its programs' names after the kind's prefix.
    pub const fn stem(self) -> &'static str {
        match self {
            Hook::SysEnter => "sys_enter",
            Hook::SysExit => "sys_exit",
            Hook::SockRecv => "sock_recv",
            Hook::SockSend => "sock_send",
            Hook::TaskExit => "task_exit",
            Hook::Switch => "switch",
            Hook::TaskFork => "task_fork",
            Hook::TaskRename => "task_rename",
            Hook::CgroupAttach => "cgroup_attach",
            Hook::Wakeup => "wakeup",
            Hook::IrqEntry => "irq_entry",
            Hook::IrqExit => "irq_exit",
            Hook::SoftirqEntry => "softirq_entry",
            Hook::SoftirqExit => "softirq_exit",
            Hook::TimerEntry => "timer_entry",
            Hook::TimerExit => "timer_exit",
        }
    }

    /// The classic tracepoint (category, event); its name is also the event that raw and BTF
    /// tracepoints attach to.
    pub const fn tracepoint(self) -> (&'static str, &'static str) {
        match self {
            Hook::SysEnter => ("raw_syscalls", "sys_enter"),
            Hook::SysExit => ("raw_syscalls", "sys_exit"),
            Hook::SockRecv => ("sock", "sock_recv_length"),
            Hook::SockSend => ("sock", "sock_send_length"),
            Hook::TaskExit => ("sched", "sched_process_exit"),
            Hook::Switch => ("sched", "sched_switch"),
            Hook::TaskFork => ("sched", "sched_process_fork"),
            Hook::TaskRename => ("task", "task_rename"),
            Hook::CgroupAttach => ("cgroup", "cgroup_attach_task"),
            Hook::Wakeup => ("sched", "sched_waking"),
            Hook::IrqEntry => ("irq", "irq_handler_entry"),
            Hook::IrqExit => ("irq", "irq_handler_exit"),
            Hook::SoftirqEntry => ("irq", "softirq_entry"),
            Hook::SoftirqExit => ("irq", "softirq_exit"),
            Hook::TimerEntry => ("timer", "hrtimer_expire_entry"),
            Hook::TimerExit => ("timer", "hrtimer_expire_exit"),
        }
    }

    /// Kinds this hook has a program for: fork, renames and cgroup moves are rare, so only
    /// their classic tracepoints exist (fork's record names the child without reading `struct
    /// task_struct`); the scheduler view reads task pointers, which only BTF and raw
    /// tracepoints pass.
    pub const fn kinds(self) -> &'static [HookKind] {
        match self {
            Hook::TaskFork | Hook::TaskRename | Hook::CgroupAttach => &[HookKind::Tracepoint],
            Hook::Wakeup
            | Hook::IrqEntry
            | Hook::IrqExit
            | Hook::SoftirqEntry
            | Hook::SoftirqExit
            | Hook::TimerEntry
            | Hook::TimerExit => &[HookKind::TpBtf, HookKind::RawTp],
            _ => &HookKind::ALL,
        }
    }

    /// Whether the overhead benchmark's floor has a do-nothing program on this hook.
    pub const fn has_floor(self) -> bool {
        !matches!(
            self,
            Hook::TaskExit | Hook::TaskFork | Hook::TaskRename | Hook::CgroupAttach
        )
    }
}

/// How a program hooks an event, cheapest first (docs/toolchain.md has the measured costs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HookKind {
    /// BTF tracepoints (`tp_btf`): cheapest, need kernel BTF.
    TpBtf,
    /// Raw tracepoints (`raw_tp`).
    RawTp,
    /// Classic tracepoints: most expensive, need tracefs.
    Tracepoint,
}

impl HookKind {
    pub const ALL: [HookKind; 3] = [HookKind::TpBtf, HookKind::RawTp, HookKind::Tracepoint];

    /// As results files and messages name it: `tp_btf`, `raw_tp`, `tracepoint`.
    pub const fn name(self) -> &'static str {
        match self {
            HookKind::TpBtf => "tp_btf",
            HookKind::RawTp => "raw_tp",
            HookKind::Tracepoint => "tracepoint",
        }
    }

    /// As the command line names it: `tp-btf`, `raw-tp`, `tracepoint`.
    pub const fn cli_name(self) -> &'static str {
        match self {
            HookKind::TpBtf => "tp-btf",
            HookKind::RawTp => "raw-tp",
            HookKind::Tracepoint => "tracepoint",
        }
    }

    /// Prefix of this kind's program names.
    pub const fn prefix(self) -> &'static str {
        match self {
            HookKind::TpBtf => "btf",
            HookKind::RawTp => "raw",
            HookKind::Tracepoint => "tp",
        }
    }
}

/// Name of the program for `hook` of `kind` (`floor`: the do-nothing one).
#[cfg(not(target_arch = "bpf"))]
pub fn program_name(kind: HookKind, hook: Hook, floor: bool) -> String {
    let floor = if floor { "floor_" } else { "" };
    format!("{floor}{}_{}", kind.prefix(), hook.stem())
}

/// The hot path's parts, micro-benchmarked by `netpoll micro-costs` (socket filters run by
/// `BPF_PROG_TEST_RUN`, never attached): program, what one run does beyond `micro_empty`.
pub const MICRO_PROGRAMS: &[(&str, &str)] = &[
    (
        "micro_empty",
        "nothing (the test run's own cost, subtracted from the others)",
    ),
    ("micro_clock", "a clock read (bpf_ktime_get_ns)"),
    (
        "micro_pid_tgid",
        "asking who runs (bpf_get_current_pid_tgid): once per context switch",
    ),
    (
        "micro_syscall_table",
        "the syscall table's entry (array lookup and check)",
    ),
    (
        "micro_current",
        "this CPU's call slot (per-CPU array lookup)",
    ),
    (
        "micro_verdict",
        "who runs and the cached verdict (slot lookup, generation, compares)",
    ),
    (
        "micro_targets_hash",
        "a TARGETS hash lookup (an uncached verdict)",
    ),
    (
        "micro_account",
        "a call into its slot (per-CPU stats lookup, count, sum, histogram)",
    ),
];

/// Every program in the BPF object, by name.
#[cfg(not(target_arch = "bpf"))]
pub fn program_names() -> Vec<String> {
    let mut names = vec![XDP_PROGRAM.to_string(), GO_CALIBRATION_PROGRAM.to_string()];
    let others = GO_EXACT_HOOKS
        .iter()
        .map(|(program, _)| *program)
        .chain(GO_POLL_PROGRAMS.iter().map(|(program, _)| *program))
        .chain(READY_WAIT_PROGRAMS.iter().map(|(program, _)| *program))
        .chain(URING_PROGRAMS.iter().map(|(program, _)| *program))
        .chain(MICRO_PROGRAMS.iter().map(|(program, _)| *program))
        .chain([READY_EXIT_PROGRAM]);
    names.extend(others.map(str::to_string));
    for hook in Hook::ALL {
        for &kind in hook.kinds() {
            names.push(program_name(kind, hook, false));
            if hook.has_floor() {
                names.push(program_name(kind, hook, true));
            }
        }
    }
    names
}

/// The hook a program of the object is for (`program_name` read backwards).
#[cfg(not(target_arch = "bpf"))]
pub fn hook_of_program(name: &str) -> Option<Hook> {
    Hook::ALL.into_iter().find(|&hook| {
        hook.kinds().iter().any(|&kind| {
            [false, true]
                .iter()
                .any(|&floor| program_name(kind, hook, floor) == name)
        })
    })
}

/// Capacity of `IN_FLIGHT` (threads that can be inside a measured call at once) and `TARGETS`.
pub const MAX_THREADS: u32 = 65_536;
pub const MAX_TARGETS: u32 = 65_536;
/// Entries of `PID_STATS` with `--per-pid`: processes x slots they use (about 2 MiB per 64 entries
/// and CPU, preallocated).
pub const MAX_PID_SLOTS: u32 = 1024;

/// `--stacks`: which stacks the exit hook takes of each measured call of a target (global
/// `STACKS`).
pub mod stacks {
    pub const OFF: u8 = 0;
    /// The user stack (the kernel's frame-pointer walk) and the caller of a frameless leaf.
    pub const USER: u8 = 1;
    /// The user stack, and the kernel stack where the call first left the CPU (taken in
    /// `sched_switch`: where it blocked, or was preempted).
    pub const USER_AND_KERNEL: u8 = 2;
    /// `StackKey::kernel_stack` when the kernel stack was not asked for.
    pub const NOT_TAKEN: i32 = i32::MIN;
    /// `StackKey::kernel_stack` of a call that never left the CPU (no switch, no stack).
    pub const STAYED_ON_CPU: i32 = i32::MIN + 1;
}

/// Distinct stacks kept (`STACK_TRACES`): a stack trace map hashes stacks into this many
/// buckets, and a stack whose bucket holds another is lost (its id is -EEXIST), so it is sized
/// well above the stacks a server shows (tens to hundreds). 127 frames of 8 bytes each: 16 MiB.
pub const MAX_STACKS: u32 = 16_384;
/// Distinct (process, syscall slot, user stack, kernel stack, caller) kept (`STACK_STATS`).
pub const MAX_STACK_KEYS: u32 = 16_384;

/// Where a measured call was made (`STACK_STATS`'s key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    /// The call's slot (see [`slot`]; measured calls only).
    pub slot: u32,
    /// Id in `STACK_TRACES` of the user stack, or a negative errno: -EFAULT (no user stack
    /// could be read), -EEXIST (a hash collision in the stack map), -ENOMEM.
    pub user_stack: i32,
    /// Likewise for the kernel stack where the call first left the CPU; or
    /// [`stacks::STAYED_ON_CPU`], or [`stacks::NOT_TAKEN`].
    pub kernel_stack: i32,
    /// `unwound == 0`: the words just above the user stack pointer that may be return
    /// addresses (each follows a call instruction; 0 for the others). One of them is the
    /// caller of the syscall wrapper when the wrapper keeps no frame pointer (libc's, Go's),
    /// which the frame-pointer walk skips: user space knows which from the wrapper's call
    /// frame information. `unwound == 1`: the return addresses unwound with the rules user
    /// space has learnt (`FRAME_RULES`), the wrapper's caller first, 0 after the last.
    pub callers: [u64; RETURN_CANDIDATES],
    pub unwound: u32,
    pub _pad: u32,
}

/// Words above the stack pointer looked at for the syscall wrapper's return address: a
/// wrapper's frame of up to 56 bytes (glibc's cancellable path keeps 40).
pub const RETURN_CANDIDATES: usize = 8;

/// An instruction of a process (`FRAME_RULES`' key): one after a syscall, or a return address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodeKey {
    pub tgid: u32,
    pub _pad: u32,
    pub ip: u64,
}

/// `FRAME_RULES`' values, learnt by user space from the code's call frame information
/// (`.eh_frame`): at that instruction the canonical frame address (CFA) is the stack pointer
/// plus this many bytes, and the return address is just below it. So from the syscall's stack
/// pointer the kernel unwinds code without frame pointers: the wrapper's CFA, its return
/// address, the caller's rule at it, the caller's CFA, and so on.
pub mod frame_rule {
    /// The function keeps a frame pointer (its CFA is rbp + 16): the frame-pointer walk is
    /// right from there; the unwinding stops.
    pub const FRAME_POINTER: u32 = u32::MAX;
}

/// Instructions whose frame rule is known (`FRAME_RULES`).
pub const MAX_FRAME_RULES: u32 = 65_536;

/// The measured calls made from one [`StackKey`] (`STACK_STATS`, per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StackStats {
    pub calls: u64,
    /// Calls that returned an error, including EAGAIN.
    pub errors: u64,
    pub eagain: u64,
    pub latency_sum_ns: u64,
    /// With `--sched`: the latency split (on CPU is the rest); 0 without.
    pub blocked_ns: u64,
    pub runq_ns: u64,
    pub _reserved: [u64; 2],
}

/// Linux errno for "try again": the non-blocking call would have blocked.
pub const EAGAIN: i64 = 11;

/// io_uring_enter flag: wait for completions.
pub const IORING_ENTER_GETEVENTS: u64 = 1;

#[cfg(feature = "user")]
mod user {
    /// `aya::Pod` for the map types: each is a `#[repr(C)]` struct of integers (and integer
    /// arrays) with its padding spelt out as fields, so every bit pattern is a valid value and
    /// none has uninitialised bytes; the size tests below pin their layouts.
    macro_rules! pod {
        ($($t:ident),* $(,)?) => {
            $(
                // SAFETY: see above: a #[repr(C)] struct of integers with explicit padding.
                unsafe impl aya::Pod for super::$t {}
            )*
        };
    }

    pod!(
        SyscallInfo,
        InFlight,
        Current,
        SlotStats,
        PidSlot,
        Parked,
        ThreadSched,
        SlotSched,
        SchedTotals,
        LiteStats,
        LiteAsleep,
        GoExact,
        GoPollKey,
        GoPollStats,
        GoPollCall,
        ReadyInfo,
        FdKey,
        RegKey,
        ReadyStamp,
        ReadyWait,
        Turn,
        ReadyDelay,
        ReadyTotals,
        UringKey,
        UringReq,
        UringStats,
        UringTotals,
        StackKey,
        StackStats,
        CodeKey,
    );
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<SyscallInfo>(), 4);
        assert_eq!(size_of::<InFlight>(), 16);
        assert_eq!(offset_of!(InFlight, index), 8);
        assert_eq!(size_of::<PidSlot>(), 8);
        assert_eq!(size_of::<Current>(), 56);
        assert_eq!(size_of::<StackKey>(), 24 + 8 * RETURN_CANDIDATES);
        assert_eq!(size_of::<StackStats>(), 64);
        assert_eq!(offset_of!(SlotStats, latency), 64);
        assert_eq!(
            size_of::<SlotStats>(),
            64 + 8 * (LATENCY_BUCKETS + READY_BUCKETS)
        );
        assert_eq!(align_of::<SlotStats>(), 8);
    }

    #[test]
    fn program_names_are_distinct_and_fit_the_kernel() {
        let names = program_names();
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "{a} twice");
        }
        // The af-xdp model's XDP program; 6 hooks of every kind, the classic tracepoints of
        // fork, rename and cgroup moves, 7 scheduler hooks of 2 kinds; the floor: 5 hooks of
        // every kind, the 7 scheduler hooks of 2 kinds; the Go view's 4 uprobes, its
        // calibration and 2 poll programs; the readiness view's 4 wait programs; the io_uring
        // view's 6; the 8 micro programs.
        assert_eq!(
            names.len(),
            1 + 6 * 3 + 3 + 7 * 2 + 5 * 3 + 7 * 2 + 4 + 1 + 2 + 4 + 6 + MICRO_PROGRAMS.len()
        );
        assert_eq!(MICRO_PROGRAMS.len(), 8);

        assert_eq!(
            program_name(HookKind::TpBtf, Hook::Switch, true),
            "floor_btf_switch"
        );
    }

    #[test]
    fn per_cpu_values_fit_the_kernel_limit() {
        // The kernel refuses per-CPU map values over 32 KiB (PCPU_MIN_UNIT_SIZE).
        assert!(size_of::<SlotStats>() <= 32 * 1024);
        assert!(size_of::<SlotSched>() <= 32 * 1024);
        assert!(size_of::<SchedTotals>() <= 32 * 1024);
        assert!(size_of::<LiteStats>() <= 32 * 1024);
        assert_eq!(size_of::<GoExact>(), 8 * 8 + 2 * 8 * SCHED_BUCKETS);
        assert_eq!(size_of::<GoPollKey>(), 48);
        assert_eq!(size_of::<GoPollStats>(), 32);
        assert_eq!(size_of::<GoPollCall>(), 56);
        assert_eq!(size_of::<ReadyInfo>(), 4);
        assert_eq!(size_of::<FdKey>(), 8);
        assert_eq!(size_of::<RegKey>(), 16);
        assert_eq!(size_of::<ReadyStamp>(), 32);
        assert_eq!(size_of::<ReadyWait>(), 32);
        assert_eq!(size_of::<Turn>(), 24);
        assert_eq!(size_of::<ReadyDelay>(), 32 + 8 * SCHED_BUCKETS);
        assert_eq!(size_of::<ReadyTotals>(), 64 + 8 * SCHED_BUCKETS);
        assert_eq!(size_of::<UringKey>(), 16);
        assert_eq!(size_of::<UringReq>(), 32);
        assert_eq!(size_of::<UringStats>(), 80 + 3 * 8 * SCHED_BUCKETS);
        assert!(size_of::<UringStats>() <= 32 * 1024);
        assert_eq!(size_of::<UringTotals>(), 48 + 8 * SCHED_BUCKETS);
    }

    #[test]
    fn uring_slots_and_fields_are_consistent() {
        for (i, (name, op)) in URING_OPS.iter().enumerate() {
            assert!(!URING_OPS[i + 1..].iter().any(|(n, o)| n == name || o == op));
        }
        for (program, _) in URING_FIELD_NAMES {
            assert!(
                URING_PROGRAMS.iter().any(|(p, _)| *p == program),
                "{program}"
            );
        }
        assert_eq!(
            uring_index(URING_OP_SLOTS as u32 - 1, uring_path::DEFERRED) as usize,
            URING_OP_SLOTS * uring_path::COUNT - 1
        );
    }

    #[test]
    fn scheduler_layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Parked>(), 40);
        assert_eq!(size_of::<ThreadSched>(), 40);
        assert_eq!(offset_of!(SlotSched, on_cpu), 8 * 10);
        assert_eq!(offset_of!(SchedTotals, runq), 8 * 8);
        assert_eq!(offset_of!(LiteStats, off_cpu), 8 * 8);
        assert_eq!(size_of::<LiteAsleep>(), 16);
    }

    #[test]
    fn slots_are_distinct_and_dense() {
        let mut seen = [false; NUM_SLOTS];
        for index in 0..NUM_SYSCALLS {
            for socket in [false, true] {
                for lower in [false, true] {
                    let s = slot(index, socket, lower);
                    assert!(!seen[s]);
                    seen[s] = true;
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
