//! Loads netpoll's BPF programs, attaches them with the cheapest hook the kernel accepts, and reads
//! their maps. Dropping [`Probes`] detaches everything (links are tied to this process's fds).

use std::collections::BTreeMap;

use analysis::{
    Histogram,
    results::{Counters, SyscallStats},
};
use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
};
use netpoll_ebpf::{
    abi::{
        InFlight, MAX_PID_SLOTS, NUM_SLOTS, PidSlot, SlotStats, SyscallInfo, counter, filter, maps,
    },
    syscalls::{NUM_SYSCALLS, SYSCALLS},
};

use crate::system;

/// The BPF object built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netpoll"));

/// Hook kinds, cheapest first (see ../shared/TOOLCHAIN.md for measured costs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookMode {
    /// BTF tracepoints (tp_btf) on sys_enter/sys_exit: cheapest, needs kernel BTF.
    TpBtf,
    /// Raw tracepoints on sys_enter/sys_exit.
    RawTp,
    /// Classic raw_syscalls:sys_enter/sys_exit tracepoints: most expensive, needs tracefs.
    Tracepoint,
}

impl HookMode {
    pub const ALL: [HookMode; 3] = [HookMode::TpBtf, HookMode::RawTp, HookMode::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            HookMode::TpBtf => "tp_btf",
            HookMode::RawTp => "raw_tp",
            HookMode::Tracepoint => "tracepoint",
        }
    }

    /// Prefix of this mode's program names in netpoll-ebpf/src/hooks.rs.
    fn prefix(self) -> &'static str {
        match self {
            HookMode::TpBtf => "btf",
            HookMode::RawTp => "raw",
            HookMode::Tracepoint => "tp",
        }
    }
}

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
    pub per_pid: bool,
    /// Use this hook kind only; otherwise the cheapest that works.
    pub hook: Option<HookMode>,
    /// Attach the do-nothing programs instead (the overhead benchmark's floor).
    pub floor: bool,
}

pub struct Probes {
    ebpf: Ebpf,
    pub hook: HookMode,
    pub socket_split: bool,
    pub following: bool,
    per_pid: bool,
    /// Things worth telling the user (fallbacks taken), one line each.
    pub notes: Vec<String>,
}

/// One read of every map, summed over CPUs.
#[derive(Clone)]
pub struct Snapshot {
    /// Indexed by `netpoll_ebpf::abi::slot`.
    pub slots: Vec<SyscallStats>,
    pub per_pid: BTreeMap<u32, Vec<SyscallStats>>,
    /// Process names for `per_pid`, as the kernel saw them at each process's first call.
    pub comms: BTreeMap<u32, String>,
    pub counters: Counters,
}

impl Snapshot {
    /// What happened between `earlier` and `self` (a measurement window).
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let rows_since = |now: &[SyscallStats], before: Option<&Vec<SyscallStats>>| {
            now.iter()
                .enumerate()
                .map(|(i, row)| match before.and_then(|b| b.get(i)) {
                    Some(b) => row.since(b),
                    None => row.clone(),
                })
                .collect::<Vec<_>>()
        };
        let (c, e) = (&self.counters, &earlier.counters);
        Snapshot {
            slots: rows_since(&self.slots, Some(&earlier.slots)),
            per_pid: self
                .per_pid
                .iter()
                .map(|(pid, rows)| (*pid, rows_since(rows, earlier.per_pid.get(pid))))
                .collect(),
            comms: self.comms.clone(),
            counters: Counters {
                in_flight_full: c.in_flight_full.saturating_sub(e.in_flight_full),
                targets_full: c.targets_full.saturating_sub(e.targets_full),
                pid_stats_full: c.pid_stats_full.saturating_sub(e.pid_stats_full),
                died_in_call: c.died_in_call.saturating_sub(e.died_in_call),
                followed_tasks: c.followed_tasks.saturating_sub(e.followed_tasks),
                in_flight_entries: c.in_flight_entries,
            },
        }
    }
}

/// Hooks that must all attach with one hook kind, in attach order.
const SYSCALL_HOOKS: [&str; 3] = ["switch", "sys_exit", "sys_enter"];

/// Tracepoint (category, event) of each hook, for the classic-tracepoint mode.
fn tracepoint_of(hook: &str) -> (&'static str, &'static str) {
    match hook {
        "sys_enter" => ("raw_syscalls", "sys_enter"),
        "sys_exit" => ("raw_syscalls", "sys_exit"),
        "sock_recv" => ("sock", "sock_recv_length"),
        "sock_send" => ("sock", "sock_send_length"),
        "task_exit" => ("sched", "sched_process_exit"),
        "switch" => ("sched", "sched_switch"),
        _ => ("sched", "sched_process_fork"),
    }
}

/// (byte offsets of the 6 syscall arguments, offset of the syscall number) in `struct pt_regs`.
fn pt_regs_layout() -> Result<([u32; 6], u32)> {
    match std::env::consts::ARCH {
        // arch/x86/include/asm/ptrace.h: di, si, dx, r10, r8, r9; orig_ax.
        "x86_64" => Ok(([112, 104, 96, 56, 72, 64], 120)),
        arch => bail!("netpoll's probes know the syscall registers of x86_64 only, not {arch}"),
    }
}

fn syscall_number(index: usize) -> u32 {
    SYSCALLS[index].nr_x86_64
}

impl Probes {
    pub fn load(options: &Options) -> Result<Probes> {
        let (arg_offsets, nr_offset) = pt_regs_layout()?;
        let mut notes = Vec::new();
        if let Some(note) = system::ensure_tracefs().unwrap_or_else(|e| {
            notes.push(format!("{e:#}"));
            None
        }) {
            notes.push(note);
        }
        let fork_offset =
            system::tracepoint_field_offset("sched", "sched_process_fork", "child_pid");

        let (mode, comm, cgroup) = match &options.filter {
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
        };
        let per_pid = options.per_pid as u8;
        let fork_child_pid_offset = *fork_offset.as_ref().unwrap_or(&0);
        let ebpf = EbpfLoader::new()
            .override_global("FILTER_MODE", &mode, true)
            .override_global("FILTER_COMM", &comm, true)
            .override_global("FILTER_CGROUP", &cgroup, true)
            .override_global("PER_PID", &per_pid, true)
            .override_global("REGS_ARG_OFFSETS", &arg_offsets, true)
            .override_global("REGS_NR_OFFSET", &nr_offset, true)
            .override_global("FORK_CHILD_PID_OFFSET", &fork_child_pid_offset, true)
            // PID_STATS is preallocated: keep it tiny unless it is used.
            .map_max_entries(
                maps::PID_STATS,
                if options.per_pid { MAX_PID_SLOTS } else { 1 },
            )
            .load(OBJECT)
            .context("loading netpoll's BPF object failed")?;

        let mut probes = Probes {
            ebpf,
            hook: HookMode::TpBtf,
            socket_split: false,
            following: false,
            per_pid: options.per_pid,
            notes,
        };
        probes.fill_syscall_table()?;
        if let Filter::Pids(pids) = &options.filter {
            for &pid in pids {
                probes.add_target(pid)?;
            }
        }

        let btf = Btf::from_sys_fs().ok();
        let floor = if options.floor { "floor_" } else { "" };
        let modes: Vec<HookMode> = options.hook.map_or(HookMode::ALL.to_vec(), |m| vec![m]);

        // Socket tracepoints first: a socket call must never exit before its classifier is there.
        for hook in ["sock_recv", "sock_send"] {
            probes.socket_split = modes
                .iter()
                .any(|&m| probes.attach(m, floor, hook, btf.as_ref()).is_ok());
            if !probes.socket_split {
                probes.notes.push("the sock:sock_{recv,send}_length tracepoints (Linux >= 6.4) are unavailable: read/write calls are not split into socket and other".into());
                break;
            }
        }
        if !options.floor {
            let exit_ok = modes
                .iter()
                .any(|&m| probes.attach(m, "", "task_exit", btf.as_ref()).is_ok());
            if !exit_ok {
                probes.notes.push("sched_process_exit is unavailable: entries of threads that die inside a call are kept until the run ends".into());
            }
            if options.follow_children && matches!(options.filter, Filter::Pids(_)) {
                // Without the child_pid offset the fork program would read garbage: skip it.
                let followed = match &fork_offset {
                    Ok(_) => probes.attach(HookMode::Tracepoint, "", "task_fork", btf.as_ref()),
                    Err(e) => Err(anyhow!("{e:#}")),
                };
                match followed {
                    Ok(()) => probes.following = true,
                    Err(e) => probes
                        .notes
                        .push(format!("not following children of the targets: {e:#}")),
                }
            }
        }

        // sched_switch parks the calls of threads leaving a CPU; then exit before enter: calls
        // that exit before ATTACH_NS is set are ignored, and every call entered after the enter
        // hook is attached is measured in full.
        let mut last_err = None;
        for &mode in &modes {
            let attached = SYSCALL_HOOKS
                .iter()
                .try_for_each(|hook| probes.attach(mode, floor, hook, btf.as_ref()));
            match attached {
                Ok(()) => {
                    probes.hook = mode;
                    last_err = None;
                    break;
                }
                Err(e) => {
                    probes.notes.push(format!(
                        "{} hooks unavailable ({}); trying the next kind",
                        mode.name(),
                        short_error(&e)
                    ));
                    probes.detach(mode, floor);
                    last_err = Some(e);
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e.context("no hook kind could attach to sys_enter/sys_exit"));
        }
        let mut attach_ns: Array<_, u64> = Array::try_from(probes.map_mut(maps::ATTACH_NS)?)?;
        attach_ns.set(0, system::monotonic_ns(), 0)?;
        Ok(probes)
    }

    fn attach(&mut self, mode: HookMode, floor: &str, hook: &str, btf: Option<&Btf>) -> Result<()> {
        let name = format!("{floor}{}_{hook}", mode.prefix());
        let program = self
            .ebpf
            .program_mut(&name)
            .ok_or_else(|| anyhow!("program {name} is missing from the BPF object"))?;
        match mode {
            HookMode::TpBtf => {
                let btf = btf.ok_or_else(|| {
                    anyhow!("kernel BTF (/sys/kernel/btf/vmlinux) is unavailable")
                })?;
                let p: &mut BtfTracePoint = program.try_into()?;
                let function = match hook {
                    "sock_recv" => "sock_recv_length",
                    "sock_send" => "sock_send_length",
                    "task_exit" => "sched_process_exit",
                    "switch" => "sched_switch",
                    other => other,
                };
                p.load(function, btf)
                    .with_context(|| format!("loading {name}"))?;
                p.attach().with_context(|| format!("attaching {name}"))?;
            }
            HookMode::RawTp => {
                let p: &mut RawTracePoint = program.try_into()?;
                p.load().with_context(|| format!("loading {name}"))?;
                p.attach(tracepoint_of(hook).1)
                    .with_context(|| format!("attaching {name}"))?;
            }
            HookMode::Tracepoint => {
                let p: &mut TracePoint = program.try_into()?;
                p.load().with_context(|| format!("loading {name}"))?;
                let (category, event) = tracepoint_of(hook);
                p.attach(category, event)
                    .with_context(|| format!("attaching {name} to {category}:{event}"))?;
            }
        }
        Ok(())
    }

    /// Unloads a mode's syscall programs after a partial attach (unload also detaches).
    fn detach(&mut self, mode: HookMode, floor: &str) {
        for hook in SYSCALL_HOOKS {
            let name = format!("{floor}{}_{hook}", mode.prefix());
            let Some(program) = self.ebpf.program_mut(&name) else {
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
            table.set(syscall_number(index), info, 0)?;
        }
        Ok(())
    }

    /// Adds a process (all its threads) to the PID filter.
    pub fn add_target(&mut self, pid: u32) -> Result<()> {
        let mut targets: HashMap<_, u32, u8> = HashMap::try_from(self.map_mut(maps::TARGETS)?)?;
        targets
            .insert(pid, 1, 0)
            .with_context(|| format!("adding PID {pid} to the targets"))?;
        Ok(())
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let stats: PerCpuArray<&MapData, SlotStats> =
            PerCpuArray::try_from(self.map(maps::STATS)?)?;
        let mut slots = Vec::with_capacity(NUM_SLOTS);
        for slot in 0..NUM_SLOTS as u32 {
            let per_cpu = stats.get(&slot, 0)?;
            slots.push(sum_cpus(slot as usize, per_cpu.iter()));
        }
        let mut per_pid: BTreeMap<u32, Vec<SyscallStats>> = BTreeMap::new();
        if self.per_pid {
            let pid_stats: PerCpuHashMap<&MapData, PidSlot, SlotStats> =
                PerCpuHashMap::try_from(self.map(maps::PID_STATS)?)?;
            for entry in pid_stats.iter() {
                let (key, per_cpu) = entry?;
                let rows = per_pid
                    .entry(key.tgid)
                    .or_insert_with(|| (0..NUM_SLOTS).map(empty_slot).collect());
                if let Some(row) = rows.get_mut(key.slot as usize) {
                    *row = sum_cpus(key.slot as usize, per_cpu.iter());
                }
            }
        }
        let mut comms = BTreeMap::new();
        if self.per_pid {
            let names: HashMap<&MapData, u32, [u8; 16]> =
                HashMap::try_from(self.map(maps::PID_COMM)?)?;
            for entry in names.iter() {
                let (pid, comm) = entry?;
                let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                comms.insert(pid, String::from_utf8_lossy(&comm[..len]).into_owned());
            }
        }
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map(maps::COUNTERS)?)?;
        let read = |i: u32| -> Result<u64> { Ok(counters.get(&i, 0)?.iter().sum()) };
        let counters = Counters {
            in_flight_full: read(counter::IN_FLIGHT_FULL)?,
            targets_full: read(counter::TARGETS_FULL)?,
            pid_stats_full: read(counter::PID_STATS_FULL)?,
            died_in_call: read(counter::DIED_IN_CALL)?,
            followed_tasks: read(counter::FOLLOWED_TASKS)?,
            in_flight_entries: {
                let in_flight: HashMap<&MapData, u32, InFlight> =
                    HashMap::try_from(self.map(maps::IN_FLIGHT)?)?;
                in_flight.keys().count() as u64
            },
        };
        Ok(Snapshot {
            slots,
            per_pid,
            comms,
            counters,
        })
    }
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

/// Syscall index, socket flag and lower-bound flag of a slot (inverse of `abi::slot`).
pub fn slot_parts(slot: usize) -> (usize, bool, bool) {
    let rest = slot >> 1;
    (rest % NUM_SYSCALLS, slot & 1 == 1, rest >= NUM_SYSCALLS)
}

fn empty_slot(slot: usize) -> SyscallStats {
    let (index, socket, _) = slot_parts(slot);
    let s = &SYSCALLS[index];
    SyscallStats {
        name: s.name.to_string(),
        fd: s
            .kind
            .splits_by_socket()
            .then(|| if socket { "socket" } else { "other" }.to_string()),
        ..SyscallStats::default()
    }
}

fn sum_cpus<'a>(slot: usize, per_cpu: impl Iterator<Item = &'a SlotStats>) -> SyscallStats {
    let mut row = empty_slot(slot);
    for cpu in per_cpu {
        row.merge(&SyscallStats {
            calls: cpu.calls,
            errors: cpu.errors,
            eagain: cpu.eagain,
            bytes: cpu.bytes,
            zero_ready: cpu.zero_ready,
            nonblocking: cpu.nonblocking,
            latency_sum_ns: cpu.latency_sum_ns,
            latency_ns: Histogram::from_counts(&cpu.latency),
            ready_events: Histogram::from_counts(&cpu.ready),
            ..SyscallStats::default()
        });
    }
    row
}
