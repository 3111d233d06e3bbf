//! The probes: loads netpoll's BPF programs, attaches them with the cheapest hook kind the kernel
//! accepts, and reads their maps ([`snapshot`]). Dropping [`Probes`] detaches everything (links
//! are tied to this process's descriptors). What to probe is in [`target`].

pub mod go;
pub mod micro;
pub mod ready;
pub mod snapshot;
pub mod stacks;
pub mod target;
pub mod uring;

use analysis::results::ProgramCost;
use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap},
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
};
use netpoll_ebpf::{
    abi::{
        GO_MAX_GOROUTINES, GO_MAX_POLL_SITES, Hook, HookKind, MAX_FRAME_RULES, MAX_PID_SLOTS,
        MAX_READY, MAX_STACKS, MAX_THREADS, MAX_URING_REQS, MAX_URING_RINGS, SyscallInfo,
        URING_OP_SLOTS, filter, globals, hook_of_program, maps, program_name, stacks as stack_mode,
        uring_field, uring_path,
    },
    syscalls::{MAX_SYSCALL_NR, SYSCALLS},
};

use crate::system;

/// The BPF object built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll"));

/// Which tasks the programs record; checked in the kernel first thing.
#[derive(Clone, Debug)]
pub enum Filter {
    All,
    Pids(Vec<u32>),
    Comm(String),
    Cgroup(u64),
}

pub struct Options {
    pub filter: Filter,
    pub follow_children: bool,
    /// Use this hook kind only; otherwise the cheapest that works.
    pub hook: Option<HookKind>,
    pub mode: Mode,
    /// `--go`: the Go process whose network polls are attributed to their callers.
    pub go: Option<GoProbes>,
    /// `--uring`: each io_uring request's path and phases (any mode but the floor).
    pub uring: bool,
}

/// The Go view's probes (their maps are sized only when used).
#[derive(Clone, Copy, Debug)]
pub struct GoProbes {
    pub pid: u32,
    /// `--go-exact`'s uprobes will be attached (its maps follow goroutines).
    pub exact: bool,
}

/// What the probes record: one value, so that a combination the programs cannot do (lite mode
/// with the scheduler view, say) cannot be asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every measured syscall timed and counted; `per_pid`: also broken down by process;
    /// `sched`: each call's latency split into on CPU, blocked and run-queue time; `ready`:
    /// readiness-to-service delays and event-loop turns; `stacks`: each call's stacks.
    Full {
        per_pid: bool,
        sched: bool,
        ready: bool,
        stacks: Option<StackWalk>,
    },
    /// No hooks on every syscall: socket transfers and sleeps in syscalls only (`--lite`).
    Lite,
    /// The overhead benchmark's floor: do-nothing programs instead of netpoll's.
    Floor(Floor),
}

/// `--stacks`, `--kernel-stacks`: the stacks the exit hook walks for each measured call of a
/// target, and how many (process, syscall, stacks) it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackWalk {
    /// The kernel stack too, where the call first left the CPU.
    pub kernel: bool,
    /// Entries of `STACK_STATS` (its default, `MAX_STACK_KEYS`, unless a test asks for less).
    pub table: u32,
}

impl StackWalk {
    pub fn from_flags(stacks: bool, kernel_stacks: bool, table: u32) -> Option<StackWalk> {
        (stacks || kernel_stacks).then_some(StackWalk {
            kernel: kernel_stacks,
            table,
        })
    }

    /// The `STACKS` global's value.
    fn abi(walk: Option<StackWalk>) -> u8 {
        match walk {
            None => stack_mode::OFF,
            Some(StackWalk { kernel: false, .. }) => stack_mode::USER,
            Some(StackWalk { kernel: true, .. }) => stack_mode::USER_AND_KERNEL,
        }
    }
}

/// Where the floor's do-nothing programs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Floor {
    /// On full mode's hooks (with the scheduler view's when `sched`).
    Full { sched: bool },
    /// On lite mode's hooks.
    Lite,
    /// On these hooks only (the benchmark's per-hook breakdown).
    Hooks(Vec<Hook>),
}

impl Mode {
    /// The scheduler view's maps are filled (or, for the floor, its hooks are attached).
    pub fn sched(&self) -> bool {
        matches!(
            self,
            Mode::Full { sched: true, .. } | Mode::Floor(Floor::Full { sched: true })
        )
    }

    /// Lite mode's maps are filled (or, for the floor, its hooks are attached).
    pub fn lite(&self) -> bool {
        matches!(self, Mode::Lite | Mode::Floor(Floor::Lite))
    }

    /// The readiness-to-service view's maps are filled.
    pub fn ready(&self) -> bool {
        matches!(self, Mode::Full { ready: true, .. })
    }

    pub fn per_pid(&self) -> bool {
        matches!(self, Mode::Full { per_pid: true, .. })
    }

    /// The stacks walked (`--stacks`).
    pub fn stacks(&self) -> Option<StackWalk> {
        match self {
            Mode::Full { stacks, .. } => *stacks,
            _ => None,
        }
    }

    /// The hook kinds this mode can use (the scheduler view reads task pointers; lite mode
    /// reads a task's registers through BTF); the error names the flag.
    fn check_hook(&self, hook: Option<HookKind>) -> Result<()> {
        if self.sched() && hook == Some(HookKind::Tracepoint) {
            bail!(
                "--sched needs BTF or raw tracepoints (task pointers); not with --hook tracepoint"
            );
        }
        if self.lite() && hook.is_some_and(|k| k != HookKind::TpBtf) {
            bail!("--lite needs BTF tracepoints (it reads a task's registers through BTF)");
        }
        Ok(())
    }
}

pub struct Probes {
    ebpf: Ebpf,
    pub hook: HookKind,
    pub socket_split: bool,
    pub following: bool,
    pub mode: Mode,
    /// Why the fork record's `child_pid` offset is unknown (then children are not followed).
    fork_unknown: Option<String>,
    /// Things worth telling the user (fallbacks taken), one line each.
    pub notes: Vec<String>,
    /// `--go`: the programs attributing the Go process's network polls are attached.
    pub go_polls: bool,
    /// `--ready`: epoll registrations read from /proc/PID/fdinfo at attach.
    pub seeded_registrations: u64,
    /// `--uring`: the io_uring view's programs are attached, to these events.
    pub uring: Option<uring::UringLayout>,
    /// The hook that expires `--comm`'s or `--cgroup`'s cached verdicts, when they are cached.
    verdict_expiry: Option<Hook>,
}

/// Hooks that must all attach with one hook kind, in attach order: sched_switch parks the calls
/// of threads leaving a CPU (and forgets which thread the hooks saw running, which only hooks
/// attached after it may keep); then exit before enter, so that calls exiting before ATTACH_NS
/// is set are ignored and every call entered after the enter hook is attached is measured in
/// full.
const SYSCALL_HOOKS: [Hook; 3] = [Hook::Switch, Hook::SysExit, Hook::SysEnter];

/// Lite mode's hooks (besides the task hooks): no sys_enter/sys_exit. sched_switch first: it
/// forgets, at each context switch, which thread the socket hooks saw running.
const LITE_HOOKS: [Hook; 3] = [Hook::Switch, Hook::SockRecv, Hook::SockSend];

/// Byte offsets of the 6 syscall arguments in x86_64's `struct pt_regs`
/// (arch/x86/include/asm/ptrace.h: di, si, dx, r10, r8, r9), and of the syscall number
/// (orig_ax). x86_64 is the only architecture netpoll builds for (main.rs says so at compile
/// time).
const PT_REGS_ARGS: [u32; 6] = [112, 104, 96, 56, 72, 64];
const PT_REGS_NR: u32 = 120;
/// Byte offsets of the user stack pointer (sp) and instruction pointer (ip) in x86_64's
/// `struct pt_regs`.
const PT_REGS_SP: u32 = 152;
const PT_REGS_IP: u32 = 128;

/// The (mode, comm, cgroup id) globals of a filter.
fn filter_globals(f: &Filter) -> (u8, [u8; 16], u64) {
    match f {
        Filter::All => (filter::ALL, [0u8; 16], 0),
        Filter::Pids(_) => (filter::PIDS, [0u8; 16], 0),
        Filter::Comm(name) => {
            let mut comm = [0u8; 16];
            // The kernel keeps 15 bytes of a task's name.
            let bytes = &name.as_bytes()[..name.len().min(15)];
            comm[..bytes.len()].copy_from_slice(bytes);
            (filter::COMM, comm, 0)
        }
        Filter::Cgroup(id) => (filter::CGROUP, [0u8; 16], *id),
    }
}

/// The hook that expires the cached target verdicts when a task may have become a target or
/// stopped being one without a new process: a rename (`--comm`), a cgroup move (`--cgroup`).
/// `--pid` needs none (targets are added by netpoll and the fork hook, which expire it), and
/// `--all` caches nothing.
fn verdict_expiry_hook(f: &Filter) -> Option<Hook> {
    match f {
        Filter::Comm(_) => Some(Hook::TaskRename),
        Filter::Cgroup(_) => Some(Hook::CgroupAttach),
        Filter::All | Filter::Pids(_) => None,
    }
}

/// Whether the kernel has this hook's tracepoint.
fn tracepoint_exists(hook: Hook) -> bool {
    let (category, event) = hook.tracepoint();
    std::path::Path::new(system::TRACEFS)
        .join("events")
        .join(category)
        .join(event)
        .exists()
}

impl Probes {
    /// Loads the object and attaches every hook, in the order that loses no call.
    pub fn load(options: &Options) -> Result<Probes> {
        options.mode.check_hook(options.hook)?;
        // A kernel without the io_uring tracepoints (or with other fields) loses the view, not
        // the run: a note says why.
        let (uring, uring_note) = match options.uring.then(uring::UringLayout::of_this_kernel) {
            Some(Ok(layout)) => (Some(layout), None),
            Some(Err(e)) => (None, Some(format!("--uring: no io_uring view: {e:#}"))),
            None => (None, None),
        };
        let mut probes = Probes::load_object(options, uring.as_ref())?;
        probes.notes.extend(uring_note);
        if let Some(layout) = uring {
            match probes.attach_uring(&layout) {
                Ok(()) => probes.uring = Some(layout),
                Err(e) => probes
                    .notes
                    .push(format!("--uring: no io_uring view: {e:#}")),
            }
        }
        if options.go.is_some()
            && go_poll_offsets().is_ok()
            && let Err(e) = probes.attach_go_polls()
        {
            probes.notes.push(format!(
                "--go: the network polls' callers are not seen: {e:#}"
            ));
        }
        let btf = Btf::from_sys_fs().ok();
        let kinds: Vec<HookKind> = options.hook.map_or(HookKind::ALL.to_vec(), |k| vec![k]);
        let floor = match &options.mode {
            Mode::Lite => {
                probes.attach_lite_hooks(options, btf.as_ref())?;
                return Ok(probes);
            }
            Mode::Floor(Floor::Lite) => {
                probes.attach_floor_hooks(&[HookKind::TpBtf], &LITE_HOOKS, btf.as_ref())?;
                return Ok(probes);
            }
            Mode::Floor(Floor::Hooks(hooks)) => {
                probes.attach_floor_hooks(&kinds, hooks, btf.as_ref())?;
                return Ok(probes);
            }
            Mode::Floor(Floor::Full { .. }) => true,
            Mode::Full { .. } => false,
        };
        probes.attach_socket_split(&kinds, floor, btf.as_ref());
        if !floor {
            probes.attach_task_hooks(&kinds, options, btf.as_ref())?;
        }
        if options.mode.sched() {
            probes.attach_sched_hooks(&kinds, floor, btf.as_ref())?;
        }
        probes.attach_syscall_hooks(&kinds, floor, btf.as_ref())?;
        if options.mode.ready() {
            probes
                .attach_ready_waits(btf.as_ref())
                .context("--ready: the waits' exits")?;
        }
        let mut attach_ns: Array<_, u64> = Array::try_from(probes.map_mut(maps::ATTACH_NS)?)?;
        attach_ns.set(0, system::monotonic_ns(), 0)?;
        Ok(probes)
    }

    /// Loads the object with its globals set, fills the syscall table and the PID targets.
    fn load_object(options: &Options, uring: Option<&uring::UringLayout>) -> Result<Probes> {
        let (arg_offsets, nr_offset) = (PT_REGS_ARGS, PT_REGS_NR);
        let mut notes = Vec::new();
        match system::ensure_tracefs() {
            Ok(Some(note)) => notes.push(note),
            Ok(None) => {}
            Err(e) => notes.push(format!("{e:#}")),
        }
        let fork_offset =
            system::tracepoint_field_offset("sched", "sched_process_fork", "child_pid");
        let fork_child_pid_offset = *fork_offset.as_ref().unwrap_or(&0);
        let (mode, comm, cgroup) = filter_globals(&options.filter);
        // Each CPU caches its last verdict where something expires it exactly; without the
        // expiry hook (an older kernel), --comm and --cgroup decide at every hook.
        let verdict_expiry = verdict_expiry_hook(&options.filter).filter(|&h| tracepoint_exists(h));
        let verdict_cache = match &options.filter {
            Filter::All => 0u8,
            Filter::Pids(_) => 1,
            _ => verdict_expiry.is_some() as u8,
        };
        let per_pid = options.mode.per_pid() as u8;
        let sched = options.mode.sched() as u8;
        let lite = options.mode.lite() as u8;
        let ready = options.mode.ready() as u8;
        let ready_sized = |n: u32| if options.mode.ready() { n } else { 1 };
        let uring_fields = uring.map_or([0; uring_field::COUNT], |u| u.fields);
        let uring_sized = |n: u32| if uring.is_some() { n } else { 1 };
        let stack_walk = StackWalk::abi(options.mode.stacks());
        let stack_table = options.mode.stacks().map_or(1, |s| s.table.max(1));
        let stacks_sized = |n: u32| if stack_walk != stack_mode::OFF { n } else { 1 };
        // The scheduler view and lite mode read thread ids out of task pointers: where they
        // are, from BTF.
        let task_pid_offset = if options.mode.sched() || options.mode.lite() {
            task_pid_offset().context("--sched and --lite need kernel BTF")?
        } else {
            0
        };
        let go_goroutines = if options.go.is_some_and(|g| g.exact) {
            GO_MAX_GOROUTINES
        } else {
            1
        };
        let go_tgid = options.go.map_or(0, |g| g.pid);
        let sized = |n: u32| if options.go.is_some() { n } else { 1 };
        // Where the epoll_pwait records hold the timeout and the result.
        let poll_offsets = options.go.map(|_| go_poll_offsets());
        let (poll_timeout, poll_ret) = match &poll_offsets {
            Some(Ok(offsets)) => *offsets,
            Some(Err(e)) => {
                notes.push(format!(
                    "--go: the network polls' callers are not seen: {e:#}"
                ));
                (0, 0)
            }
            None => (0, 0),
        };
        let ebpf = EbpfLoader::new()
            .override_global(globals::FILTER_MODE, &mode, true)
            .override_global(globals::FILTER_COMM, &comm, true)
            .override_global(globals::FILTER_CGROUP, &cgroup, true)
            .override_global(globals::VERDICT_CACHE, &verdict_cache, true)
            .override_global(globals::PER_PID, &per_pid, true)
            .override_global(globals::REGS_ARG_OFFSETS, &arg_offsets, true)
            .override_global(globals::REGS_NR_OFFSET, &nr_offset, true)
            .override_global(globals::FORK_CHILD_PID_OFFSET, &fork_child_pid_offset, true)
            .override_global(globals::SCHED, &sched, true)
            .override_global(globals::LITE, &lite, true)
            .override_global(globals::READY_VIEW, &ready, true)
            .map_max_entries(maps::READY_TABLE, ready_sized(MAX_SYSCALL_NR))
            .map_max_entries(maps::READY, ready_sized(MAX_READY))
            .map_max_entries(maps::REGISTRATIONS, ready_sized(MAX_READY))
            .map_max_entries(maps::REGISTERED_FDS, ready_sized(MAX_READY))
            .map_max_entries(maps::READY_WAITS, ready_sized(MAX_THREADS))
            .map_max_entries(maps::TURNS, ready_sized(MAX_THREADS))
            .override_global(globals::URING_FIELDS, &uring_fields, true)
            .map_max_entries(maps::URING_REQS, uring_sized(MAX_URING_REQS))
            .map_max_entries(maps::URING_RING_WAITS, uring_sized(MAX_URING_RINGS))
            .map_max_entries(
                maps::URING_STATS,
                uring_sized((URING_OP_SLOTS * uring_path::COUNT) as u32),
            )
            .override_global(globals::STACKS, &stack_walk, true)
            .override_global(globals::REGS_SP_OFFSET, &PT_REGS_SP, true)
            .override_global(globals::REGS_IP_OFFSET, &PT_REGS_IP, true)
            .map_max_entries(maps::FRAME_RULES, stacks_sized(MAX_FRAME_RULES))
            .map_max_entries(maps::STACK_TRACES, stacks_sized(MAX_STACKS))
            .map_max_entries(maps::STACK_STATS, stack_table)
            .override_global(globals::TASK_PID_OFFSET, &task_pid_offset, true)
            .override_global(globals::GO_TGID, &go_tgid, true)
            .override_global(globals::GO_POLL_TIMEOUT_OFFSET, &poll_timeout, true)
            .override_global(globals::GO_POLL_RET_OFFSET, &poll_ret, true)
            .map_max_entries(maps::GO_POLLS, sized(GO_MAX_POLL_SITES))
            .map_max_entries(maps::GO_POLL_CALLS, sized(MAX_THREADS))
            .map_max_entries(maps::GO_PARKED, go_goroutines)
            .map_max_entries(maps::GO_WOKEN, go_goroutines)
            // PID_STATS is preallocated: keep it tiny unless it is used.
            .map_max_entries(
                maps::PID_STATS,
                if options.mode.per_pid() {
                    MAX_PID_SLOTS
                } else {
                    1
                },
            )
            .load(OBJECT)
            .context("loading netpoll's BPF object failed")?;
        let mut probes = Probes {
            ebpf,
            hook: HookKind::TpBtf,
            socket_split: false,
            following: false,
            mode: options.mode.clone(),
            fork_unknown: fork_offset.err().map(|e| format!("{e:#}")),
            notes,
            go_polls: false,
            seeded_registrations: 0,
            uring: None,
            verdict_expiry,
        };
        probes.fill_syscall_table()?;
        if options.mode.ready() {
            probes.fill_ready_table()?;
        }
        if let Filter::Pids(pids) = &options.filter {
            for &pid in pids {
                probes.add_target(pid)?;
            }
        }
        Ok(probes)
    }

    /// Loads `program` (a classic tracepoint program of the object) and attaches it to each of
    /// `category:events`.
    fn attach_tracepoints(&mut self, program: &str, category: &str, events: &[&str]) -> Result<()> {
        let p: &mut TracePoint = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| anyhow!("program {program} is missing from the BPF object"))?
            .try_into()?;
        p.load().with_context(|| format!("loading {program}"))?;
        for event in events {
            p.attach(category, event)
                .with_context(|| format!("attaching {program} to {category}:{event}"))?;
        }
        Ok(())
    }

    /// Do-nothing programs on the given hooks only, each with the first kind that attaches.
    fn attach_floor_hooks(
        &mut self,
        kinds: &[HookKind],
        hooks: &[Hook],
        btf: Option<&Btf>,
    ) -> Result<()> {
        for &hook in hooks {
            if !hook.has_floor() {
                bail!("no do-nothing program for {}", hook.stem());
            }
            let mut last_err = None;
            let attached = kinds.iter().any(|&kind| {
                if !hook.kinds().contains(&kind) {
                    return false;
                }
                match self.attach(kind, hook, true, btf) {
                    Ok(()) => {
                        self.hook = kind;
                        true
                    }
                    Err(e) => {
                        last_err = Some(e);
                        false
                    }
                }
            });
            if !attached {
                return Err(last_err
                    .unwrap_or_else(|| anyhow!("no hook kind to try"))
                    .context(format!("attaching a do-nothing program to {}", hook.stem())));
            }
        }
        Ok(())
    }

    /// Lite mode: the socket tracepoints and sched_switch, as BTF tracepoints (they read the
    /// current task's saved registers through BTF-typed helpers), and the task hooks.
    fn attach_lite_hooks(&mut self, options: &Options, btf: Option<&Btf>) -> Result<()> {
        for hook in LITE_HOOKS {
            self.attach(HookKind::TpBtf, hook, false, btf)
                .with_context(|| format!("--lite could not attach to {}", hook.stem()))?;
        }
        self.hook = HookKind::TpBtf;
        self.socket_split = true;
        self.attach_task_hooks(&[HookKind::TpBtf], options, btf)
    }

    /// Socket tracepoints first: a socket call must never exit before its classifier is there.
    fn attach_socket_split(&mut self, kinds: &[HookKind], floor: bool, btf: Option<&Btf>) {
        for hook in [Hook::SockRecv, Hook::SockSend] {
            self.socket_split = kinds
                .iter()
                .any(|&k| self.attach(k, hook, floor, btf).is_ok());
            if !self.socket_split {
                self.notes.push("the sock:sock_{recv,send}_length tracepoints (Linux >= 6.4) are unavailable: read/write calls are not split into socket and other".into());
                return;
            }
        }
    }

    /// Thread exits (to drop dead threads' calls), forks (to follow children), and what
    /// expires the cached verdicts of `--comm` and `--cgroup` (without it they would be wrong:
    /// an error).
    fn attach_task_hooks(
        &mut self,
        kinds: &[HookKind],
        options: &Options,
        btf: Option<&Btf>,
    ) -> Result<()> {
        if let Some(hook) = self.verdict_expiry {
            let (category, event) = hook.tracepoint();
            self.attach(HookKind::Tracepoint, hook, false, btf)
                .with_context(|| {
                    format!("attaching to {category}:{event}, which tells which tasks are targets")
                })?;
        }
        if !kinds
            .iter()
            .any(|&k| self.attach(k, Hook::TaskExit, false, btf).is_ok())
        {
            self.notes.push("sched_process_exit is unavailable: entries of threads that die inside a call are kept until the run ends".into());
        }
        if options.follow_children && matches!(options.filter, Filter::Pids(_)) {
            // Without the child_pid offset the fork program would read garbage: skip it.
            let followed = match &self.fork_unknown {
                Some(why) => Err(anyhow!("{why}")),
                None => self.attach(HookKind::Tracepoint, Hook::TaskFork, false, btf),
            };
            match followed {
                Ok(()) => self.following = true,
                Err(e) => self
                    .notes
                    .push(format!("not following children of the targets: {e:#}")),
            }
        }
        Ok(())
    }

    /// The scheduler view's hooks (interrupt contexts, then wakeups), of the first kind that
    /// attaches them all; sched_switch comes with the syscall hooks.
    fn attach_sched_hooks(
        &mut self,
        kinds: &[HookKind],
        floor: bool,
        btf: Option<&Btf>,
    ) -> Result<()> {
        let mut last_err = None;
        for &kind in kinds.iter().filter(|k| **k != HookKind::Tracepoint) {
            match Hook::SCHED
                .iter()
                .try_for_each(|&hook| self.attach(kind, hook, floor, btf))
            {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no hook kind to try"))
            .context("the scheduler view's hooks (sched_waking, interrupts) could not attach"))
    }

    /// sys_enter, sys_exit and sched_switch, all of one kind: the first kind that attaches.
    fn attach_syscall_hooks(
        &mut self,
        kinds: &[HookKind],
        floor: bool,
        btf: Option<&Btf>,
    ) -> Result<()> {
        let mut last_err = None;
        for &kind in kinds {
            let attached = SYSCALL_HOOKS
                .iter()
                .try_for_each(|&hook| self.attach(kind, hook, floor, btf));
            match attached {
                Ok(()) => {
                    self.hook = kind;
                    return Ok(());
                }
                Err(e) => {
                    self.notes.push(format!(
                        "{} hooks unavailable ({}); trying the next kind",
                        kind.name(),
                        short_error(&e)
                    ));
                    self.unload(kind, floor);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no hook kind to try"))
            .context("no hook kind could attach to sys_enter/sys_exit"))
    }

    fn attach(&mut self, kind: HookKind, hook: Hook, floor: bool, btf: Option<&Btf>) -> Result<()> {
        let name = program_name(kind, hook, floor);
        let program = self
            .ebpf
            .program_mut(&name)
            .ok_or_else(|| anyhow!("program {name} is missing from the BPF object"))?;
        let (category, event) = hook.tracepoint();
        match kind {
            HookKind::TpBtf => {
                let btf = btf.ok_or_else(|| {
                    anyhow!("kernel BTF (/sys/kernel/btf/vmlinux) is unavailable")
                })?;
                let p: &mut BtfTracePoint = program.try_into()?;
                p.load(event, btf)
                    .with_context(|| format!("loading {name}"))?;
                p.attach().with_context(|| format!("attaching {name}"))?;
            }
            HookKind::RawTp => {
                let p: &mut RawTracePoint = program.try_into()?;
                p.load().with_context(|| format!("loading {name}"))?;
                p.attach(event)
                    .with_context(|| format!("attaching {name}"))?;
            }
            HookKind::Tracepoint => {
                let p: &mut TracePoint = program.try_into()?;
                p.load().with_context(|| format!("loading {name}"))?;
                p.attach(category, event)
                    .with_context(|| format!("attaching {name} to {category}:{event}"))?;
            }
        }
        Ok(())
    }

    /// Unloads a kind's syscall programs after a partial attach (unloading also detaches).
    fn unload(&mut self, kind: HookKind, floor: bool) {
        for hook in SYSCALL_HOOKS {
            let Some(program) = self.ebpf.program_mut(&program_name(kind, hook, floor)) else {
                continue;
            };
            // Unloading a program that never loaded is a harmless error.
            let _ = match program {
                aya::programs::Program::BtfTracePoint(p) => p.unload(),
                aya::programs::Program::RawTracePoint(p) => p.unload(),
                aya::programs::Program::TracePoint(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} is missing from the BPF object"))
    }

    fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} is missing from the BPF object"))
    }

    fn fill_syscall_table(&mut self) -> Result<()> {
        let mut table: Array<_, SyscallInfo> = Array::try_from(self.map_mut(maps::SYSCALL_TABLE)?)?;
        for (index, s) in SYSCALLS.iter().enumerate() {
            let info = SyscallInfo {
                index_plus_one: index as u8 + 1,
                kind: s.kind as u8,
                wait: s.wait as u8,
                wait_arg: s.wait_arg,
            };
            table.set(s.nr, info, 0)?;
        }
        Ok(())
    }

    /// What is attached, for the "attached ..." line.
    pub fn describe_hooks(&self) -> &'static str {
        if self.mode.lite() {
            "lite (socket tracepoints and sched_switch, tp_btf)"
        } else {
            self.hook.name()
        }
    }

    /// Adds a process (all its threads) to the PID filter.
    pub fn add_target(&mut self, pid: u32) -> Result<()> {
        let mut targets: HashMap<_, u32, u8> = HashMap::try_from(self.map_mut(maps::TARGETS)?)?;
        targets
            .insert(pid, 1, 0)
            .with_context(|| format!("adding PID {pid} to the targets"))?;
        // Expire the per-CPU "not a target" verdicts the programs may have cached for it (a
        // child found after attaching); racing with the fork hook's bump still changes it.
        let mut generation: Array<_, u64> = Array::try_from(self.map_mut(maps::TARGETS_GEN)?)?;
        let next = generation.get(&0, 0)?.wrapping_add(1);
        generation.set(0, next, 0)?;
        Ok(())
    }
}

/// Keeps the kernel's BPF run-time statistics (kernel.bpf_stats_enabled) on while it lives,
/// when asked: they add two clock reads to every run of every BPF program on the machine.
pub struct BpfStats {
    _fd: Option<std::os::fd::OwnedFd>,
    /// The statistics are on (turned on here, or already on).
    pub enabled: bool,
}

impl BpfStats {
    pub fn enable(turn_on: bool) -> BpfStats {
        let already = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if already || !turn_on {
            return BpfStats {
                _fd: None,
                enabled: already,
            };
        }
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => BpfStats {
                _fd: Some(fd),
                enabled: true,
            },
            Err(e) => {
                eprintln!(
                    "netpoll: note: cannot turn BPF statistics on ({e}); netpoll's own cost is not measured"
                );
                BpfStats {
                    _fd: None,
                    enabled: false,
                }
            }
        }
    }
}

impl Probes {
    /// Runs and run time of every attached program so far (counted while BPF statistics are
    /// on).
    pub fn program_costs(&self) -> Vec<ProgramCost> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                let uring_event = self.uring.as_ref().and_then(|u| {
                    let (_, event) = u.events.iter().find(|(p, _)| *p == name)?;
                    Some(format!("io_uring:{event}"))
                });
                let event = hook_of_program(name)
                    .map(|h| {
                        let (category, event) = h.tracepoint();
                        format!("{category}:{event}")
                    })
                    .or(uring_event)
                    .unwrap_or_default();
                Some(ProgramCost {
                    program: name.to_string(),
                    event,
                    runs: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }
}

/// Offsets of `timeout` in the `syscalls:sys_enter_epoll_pwait` record and of `ret` in
/// `sys_exit_epoll_pwait`'s.
fn go_poll_offsets() -> Result<(u32, u32)> {
    Ok((
        system::tracepoint_field_offset("syscalls", "sys_enter_epoll_pwait", "timeout")?,
        system::tracepoint_field_offset("syscalls", "sys_exit_epoll_pwait", "ret")?,
    ))
}

/// Byte offset of `pid` in the kernel's `struct task_struct`, from its BTF.
fn task_pid_offset() -> Result<u32> {
    let btf = btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux")
        .map_err(|e| anyhow!("reading /sys/kernel/btf/vmlinux: {e}"))?;
    let types = btf
        .resolve_types_by_name("task_struct")
        .map_err(|e| anyhow!("no task_struct in the kernel's BTF: {e}"))?;
    for t in types {
        if let btf_rs::Type::Struct(s) = t {
            for member in &s.members {
                if btf.resolve_name(member).is_ok_and(|n| n == "pid") {
                    return Ok(member.bit_offset() / 8);
                }
            }
        }
    }
    bail!("task_struct has no pid field in the kernel's BTF")
}

/// One line of a load error: the verifier's log is long, its verdict is the line before the
/// "verification time" footer.
fn short_error(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    let first = lines
        .next()
        .unwrap_or_default()
        .split(" Verifier output")
        .next()
        .unwrap_or_default()
        .to_string();
    let verdict = text
        .lines()
        .take_while(|l| !l.starts_with("verification time"))
        .last();
    match verdict {
        Some(v) if v != first => format!("{first} {v}"),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    /// The object holds exactly the programs the ABI names: loader, floor and tests agree.
    #[test]
    fn the_object_has_every_program_the_abi_names() {
        let object = aya_obj::Object::parse(super::OBJECT).expect("the embedded BPF object");
        let mut found: Vec<&str> = object.programs.keys().map(String::as_str).collect();
        let mut named = netpoll_ebpf::abi::program_names();
        found.sort_unstable();
        named.sort_unstable();
        assert_eq!(found, named);
    }
}
