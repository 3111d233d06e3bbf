//! Reading the probes: one [`Snapshot`] of every map, summed over CPUs; the difference of two
//! (a measurement window); and a window turned into the tables of a results file.

use std::collections::BTreeMap;

use analysis::{
    Histogram, Results, SCHEMA,
    results::{
        Counters, EndReason, Fd, HookKind, Lite, LiteSyscall, ProcessStats, SyscallStats, Target,
        Tool, classes_of,
    },
    run::RunInfo,
    sched::{CallSched, Scheduler, Wakers},
};
use anyhow::Result;
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap};
use netpoll_ebpf::{
    abi::{LiteStats, NUM_SLOTS, Parked, PidSlot, SchedTotals, SlotSched, SlotStats, maps},
    syscalls::{NUM_SYSCALLS, SYSCALLS},
};

use super::Probes;
use crate::system;

/// One read of every map, summed over CPUs.
#[derive(Clone)]
pub struct Snapshot {
    /// Indexed by `netpoll_ebpf::abi::slot`.
    pub slots: Vec<SyscallStats>,
    pub per_pid: BTreeMap<u32, Vec<SyscallStats>>,
    /// Process names for `per_pid`, as the kernel saw them at each process's first call.
    pub comms: BTreeMap<u32, String>,
    pub counters: Counters,
    /// The scheduler view, when on.
    pub scheduler: Option<Scheduler>,
    /// `--lite`: by syscall index.
    pub lite: Option<Vec<LiteSyscall>>,
    /// `--ready`: readiness-to-service delays and loop turns.
    pub ready: Option<analysis::ready::Ready>,
    /// `--uring`: io_uring requests by operation and path.
    pub uring: Option<analysis::uring::Uring>,
    /// `--stacks`: the measured calls by stack, before naming (see [`crate::stacks`]).
    pub stacks: Option<super::stacks::RawStacks>,
}

impl Probes {
    pub fn snapshot(&self) -> Result<Snapshot> {
        let stats: PerCpuArray<&MapData, SlotStats> =
            PerCpuArray::try_from(self.map(maps::STATS)?)?;
        let mut slots = Vec::with_capacity(NUM_SLOTS);
        for slot in 0..NUM_SLOTS as u32 {
            let per_cpu = stats.get(&slot, 0)?;
            slots.push(sum_cpus(slot as usize, per_cpu.iter()));
        }
        let scheduler = if self.mode.sched() {
            let sched: PerCpuArray<&MapData, SlotSched> =
                PerCpuArray::try_from(self.map(maps::SCHED_STATS)?)?;
            for (slot, row) in slots.iter_mut().enumerate() {
                row.sched = Some(sum_sched(sched.get(&(slot as u32), 0)?.iter()));
            }
            let totals: PerCpuArray<&MapData, SchedTotals> =
                PerCpuArray::try_from(self.map(maps::SCHED_TOTALS)?)?;
            Some(sum_totals(totals.get(&0, 0)?.iter()))
        } else {
            None
        };
        let lite = if self.mode.lite() {
            let stats: PerCpuArray<&MapData, LiteStats> =
                PerCpuArray::try_from(self.map(maps::LITE_STATS)?)?;
            let mut rows = Vec::with_capacity(NUM_SYSCALLS);
            for (index, s) in SYSCALLS.iter().enumerate() {
                let mut row = LiteSyscall {
                    name: s.name.to_string(),
                    ..LiteSyscall::default()
                };
                for cpu in stats.get(&(index as u32), 0)?.iter() {
                    row.merge(&LiteSyscall {
                        name: String::new(),
                        socket_transfers: cpu.transfers,
                        errors: cpu.errors,
                        eagain: cpu.eagain,
                        bytes: cpu.bytes,
                        sleeps: cpu.sleeps,
                        off_cpu_sum_ns: cpu.off_cpu_sum_ns,
                        off_cpu_ns: Histogram::from_counts(&cpu.off_cpu),
                    });
                }
                rows.push(row);
            }
            Some(rows)
        } else {
            None
        };
        let mut per_pid: BTreeMap<u32, Vec<SyscallStats>> = BTreeMap::new();
        let mut comms = BTreeMap::new();
        if self.mode.per_pid() {
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
        let in_flight: HashMap<&MapData, u32, Parked> =
            HashMap::try_from(self.map(maps::IN_FLIGHT)?)?;
        let values = Counters::DEFS
            .iter()
            .map(|def| match def.kernel {
                Some(index) => read(index),
                // The only one user space counts: threads parked in a call right now.
                None => Ok(in_flight.keys().count() as u64),
            })
            .collect::<Result<Vec<u64>>>()?;
        let mut values = values.into_iter();
        let counters = Counters::from_values(|_| values.next().unwrap_or_default());
        let ready = if self.mode.ready() {
            Some(self.ready_snapshot()?)
        } else {
            None
        };
        let uring = if self.uring.is_some() {
            Some(self.uring_snapshot()?)
        } else {
            None
        };
        let stacks = if self.mode.stacks().is_some() {
            Some(self.stacks_snapshot()?)
        } else {
            None
        };
        Ok(Snapshot {
            slots,
            per_pid,
            comms,
            counters,
            scheduler,
            lite,
            ready,
            uring,
            stacks,
        })
    }
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
        Snapshot {
            slots: rows_since(&self.slots, Some(&earlier.slots)),
            per_pid: self
                .per_pid
                .iter()
                .map(|(pid, rows)| (*pid, rows_since(rows, earlier.per_pid.get(pid))))
                .collect(),
            comms: self.comms.clone(),
            counters: self.counters.since(&earlier.counters),
            scheduler: match (&self.scheduler, &earlier.scheduler) {
                (Some(now), Some(before)) => Some(now.since(before)),
                (now, _) => now.clone(),
            },
            lite: match (&self.lite, &earlier.lite) {
                (Some(now), Some(before)) => {
                    Some(now.iter().zip(before).map(|(n, b)| n.since(b)).collect())
                }
                (now, _) => now.clone(),
            },
            ready: match (&self.ready, &earlier.ready) {
                (Some(now), Some(before)) => Some(now.since(before)),
                (now, _) => now.clone(),
            },
            uring: match (&self.uring, &earlier.uring) {
                (Some(now), Some(before)) => Some(now.since(before)),
                (now, _) => now.clone(),
            },
            stacks: match (&self.stacks, &earlier.stacks) {
                (Some(now), Some(before)) => Some(super::stacks::since(now, before)),
                (now, _) => now.clone(),
            },
        }
    }

    /// Measured calls (not lower bounds) that happened since `before` (or ever), by syscall.
    pub fn measured_since(&self, before: Option<&Snapshot>) -> Vec<SyscallStats> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(slot, _)| !slot_parts(*slot).2)
            .map(|(slot, row)| before.map_or(row.clone(), |b| row.since(&b.slots[slot])))
            .filter(|r| r.calls > 0)
            .collect()
    }

    /// The results file of a collection whose counts are this snapshot (a whole collection, or
    /// a window). With --per-pid the totals are the processes' sums plus what could not be
    /// attributed to a process. The stacks are named apart ([`crate::stacks::Images::name`]):
    /// take them first.
    pub fn into_results(self, collection: Collection) -> Results {
        let (mut syscalls, mut lower_bound) = split_slots(&self.slots);
        let mut processes = BTreeMap::new();
        for (&pid, slots) in &self.per_pid {
            let (measured, lower) = split_slots(slots);
            add_rows(&mut syscalls, &measured);
            add_rows(&mut lower_bound, &lower);
            let comm = self
                .comms
                .get(&pid)
                .cloned()
                .unwrap_or_else(|| crate::procfs::process_comm(pid));
            let classes = classes_of(&measured);
            processes.insert(
                pid,
                ProcessStats {
                    comm,
                    syscalls: measured,
                    classes,
                },
            );
        }
        let c = collection;
        Results {
            schema: SCHEMA.into(),
            tool: Tool::netpoll(),
            target: c.target,
            host: system::host(),
            hook: c.hook,
            socket_split: c.socket_split,
            started_at: c.started_at,
            ended_at: system::utc_now_rfc3339(),
            duration_ns: c.duration_ns,
            end_reason: c.end_reason,
            partial: matches!(c.end_reason, EndReason::Interrupted | EndReason::ServerDied),
            command_exit_code: c.command_exit_code,
            classes: classes_of(&syscalls),
            syscalls,
            lower_bound,
            processes,
            counters: self.counters,
            scheduler: self.scheduler,
            run: c.run,
            programs: Vec::new(),
            lite: self.lite.map(Lite::from_rows),
            io_model: None,
            go: None,
            ready: self.ready,
            netpoll_cpu: None,
            memory: None,
            uring: self.uring,
            stacks: None,
        }
    }
}

/// What a results file says besides the probes' counts.
pub struct Collection {
    pub target: Target,
    pub hook: HookKind,
    pub socket_split: bool,
    pub started_at: String,
    pub duration_ns: u64,
    pub end_reason: EndReason,
    pub command_exit_code: Option<i32>,
    pub run: Option<RunInfo>,
}

/// Adds rows into totals, matching by syscall and fd kind.
fn add_rows(totals: &mut Vec<SyscallStats>, rows: &[SyscallStats]) {
    for row in rows {
        match totals
            .iter_mut()
            .find(|t| t.name == row.name && t.fd == row.fd)
        {
            Some(total) => total.merge(row),
            None => totals.push(row.clone()),
        }
    }
}

/// Rows with calls, split into measured and lower-bound ones.
fn split_slots(slots: &[SyscallStats]) -> (Vec<SyscallStats>, Vec<SyscallStats>) {
    let (mut measured, mut lower) = (Vec::new(), Vec::new());
    for (slot, row) in slots.iter().enumerate() {
        if row.calls == 0 {
            continue;
        }
        if slot_parts(slot).2 {
            lower.push(row.clone())
        } else {
            measured.push(row.clone())
        }
    }
    (measured, lower)
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
            .then_some(if socket { Fd::Socket } else { Fd::Other }),
        ..SyscallStats::default()
    }
}

/// A slot's scheduler view, summed over CPUs.
fn sum_sched<'a>(per_cpu: impl Iterator<Item = &'a SlotSched>) -> CallSched {
    let mut total = CallSched::default();
    for cpu in per_cpu {
        total.merge(&CallSched {
            on_cpu_ns: Histogram::from_counts(&cpu.on_cpu),
            on_cpu_sum_ns: cpu.on_cpu_sum_ns,
            blocked_ns: Histogram::from_counts(&cpu.blocked),
            blocked_sum_ns: cpu.blocked_sum_ns,
            runq_ns: Histogram::from_counts(&cpu.runq),
            runq_sum_ns: cpu.runq_sum_ns,
            wakeups: Wakers::from_array(cpu.wakeups),
            wake_to_exit_sum_ns: Wakers::from_array(cpu.wake_to_exit_sum_ns),
        });
    }
    total
}

/// The threads' totals, summed over CPUs.
fn sum_totals<'a>(per_cpu: impl Iterator<Item = &'a SchedTotals>) -> Scheduler {
    let mut s = Scheduler::default();
    for cpu in per_cpu {
        s.blocked_ns += cpu.blocked_ns;
        s.runq_ns += cpu.runq_ns;
        s.preemptions += cpu.preemptions;
        s.sleeps += cpu.sleeps;
        let w = Wakers::from_array(cpu.wakeups);
        s.wakeups.interrupt += w.interrupt;
        s.wakeups.same_process += w.same_process;
        s.wakeups.other_process += w.other_process;
        s.runq_delay_ns.merge(&Histogram::from_counts(&cpu.runq));
    }
    s
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

#[cfg(test)]
mod tests {
    use netpoll_ebpf::abi::slot;

    use super::*;

    #[test]
    fn slot_parts_inverts_the_abi_slot() {
        for index in 0..NUM_SYSCALLS {
            for socket in [false, true] {
                for lower in [false, true] {
                    assert_eq!(
                        slot_parts(slot(index, socket, lower)),
                        (index, socket, lower)
                    );
                }
            }
        }
    }
}
