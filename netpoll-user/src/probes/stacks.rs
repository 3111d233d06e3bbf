//! The stacks view's maps (`--stacks`): the measured calls by (process, slot, stacks, caller),
//! and the stacks themselves. Named and assembled in [`crate::stacks`].

use std::collections::HashMap as StdHashMap;

use anyhow::Result;
use aya::maps::{HashMap, MapData, PerCpuHashMap, StackTraceMap};
use netpoll_ebpf::abi::{CodeKey, StackKey, StackStats, maps};

use super::Probes;

/// `STACK_STATS` summed over CPUs.
pub type RawStacks = StdHashMap<StackKey, StackStats>;

/// What happened between two reads of `STACK_STATS` (entries are never removed, so each of
/// `earlier`'s is in `now`).
pub fn since(now: &RawStacks, earlier: &RawStacks) -> RawStacks {
    now.iter()
        .filter_map(|(key, n)| {
            let b = earlier.get(key).copied().unwrap_or_default();
            let d = StackStats {
                calls: n.calls.saturating_sub(b.calls),
                errors: n.errors.saturating_sub(b.errors),
                eagain: n.eagain.saturating_sub(b.eagain),
                latency_sum_ns: n.latency_sum_ns.saturating_sub(b.latency_sum_ns),
                blocked_ns: n.blocked_ns.saturating_sub(b.blocked_ns),
                runq_ns: n.runq_ns.saturating_sub(b.runq_ns),
                _reserved: [0; 2],
            };
            (d.calls > 0).then_some((*key, d))
        })
        .collect()
}

impl Probes {
    /// `STACK_STATS`, summed over CPUs.
    pub(super) fn stacks_snapshot(&self) -> Result<RawStacks> {
        let map: PerCpuHashMap<&MapData, StackKey, StackStats> =
            PerCpuHashMap::try_from(self.map(maps::STACK_STATS)?)?;
        let mut raw = RawStacks::new();
        for entry in map.iter() {
            let (key, per_cpu) = entry?;
            let total = raw.entry(key).or_default();
            for cpu in per_cpu.iter() {
                total.calls += cpu.calls;
                total.errors += cpu.errors;
                total.eagain += cpu.eagain;
                total.latency_sum_ns += cpu.latency_sum_ns;
                total.blocked_ns += cpu.blocked_ns;
                total.runq_ns += cpu.runq_ns;
            }
        }
        Ok(raw)
    }

    /// The keys of `STACK_STATS` (keys only: cheap enough to poll).
    pub fn stack_keys(&self) -> Result<Vec<StackKey>> {
        let map: PerCpuHashMap<&MapData, StackKey, StackStats> =
            PerCpuHashMap::try_from(self.map(maps::STACK_STATS)?)?;
        Ok(map.keys().filter_map(Result::ok).collect())
    }

    /// `FRAME_RULES`, for user space to fill as it learns the targets' frame rules (`None`
    /// without `--stacks`).
    pub fn take_frame_rules(&mut self) -> Option<HashMap<MapData, CodeKey, u32>> {
        self.mode.stacks()?;
        let map = self.ebpf.take_map(maps::FRAME_RULES)?;
        aya::maps::HashMap::try_from(map).ok()
    }

    /// The addresses of a stack in `STACK_TRACES`, innermost first; `None` if it is not there.
    pub fn stack_trace(&self, id: i32) -> Option<Vec<u64>> {
        let map: StackTraceMap<&MapData> =
            StackTraceMap::try_from(self.map(maps::STACK_TRACES).ok()?).ok()?;
        let trace = map.get(&u32::try_from(id).ok()?, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }
}
