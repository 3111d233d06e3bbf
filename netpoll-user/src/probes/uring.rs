//! The io_uring view's probes (`--uring`): where the io_uring tracepoints keep the fields the
//! programs read (from their format files), the opcode table, attaching, and reading the
//! counts back.

use std::path::Path;

use analysis::{
    Histogram,
    uring::{Uring, UringRequests},
};
use anyhow::{Context as _, Result, anyhow};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use netpoll_ebpf::{
    abi::{
        URING_FIELD_NAMES, URING_OP_SLOTS, URING_OPS, URING_PATHS, URING_PROGRAMS, UringKey,
        UringReq, UringStats, UringTotals, maps, uring_field, uring_index,
    },
    histogram::SCHED_BUCKETS,
};

use super::Probes;
use crate::system;

/// Where the io_uring tracepoints are on this kernel: each program's event (the first of its
/// candidates that exists) and the offsets of the fields the programs read.
#[derive(Clone, Debug)]
pub struct UringLayout {
    pub events: Vec<(&'static str, &'static str)>,
    pub fields: [u32; uring_field::COUNT],
}

impl UringLayout {
    /// Read from tracefs; the error says which event or field this kernel lacks.
    pub fn of_this_kernel() -> Result<UringLayout> {
        let root = Path::new(system::TRACEFS).join("events/io_uring");
        let mut events = Vec::new();
        for (program, candidates) in URING_PROGRAMS {
            let event = candidates
                .iter()
                .find(|e| root.join(e).is_dir())
                .ok_or_else(|| {
                    anyhow!(
                        "this kernel has no io_uring:{} tracepoint (io_uring tracing needs Linux \
                         6.0 or later)",
                        candidates.join(" or io_uring:")
                    )
                })?;
            events.push((program, *event));
        }
        let mut fields = [0u32; uring_field::COUNT];
        for (i, (program, field)) in URING_FIELD_NAMES.iter().enumerate() {
            let event = events
                .iter()
                .find(|(p, _)| p == program)
                .map(|(_, e)| *e)
                .ok_or_else(|| anyhow!("no event for {program}"))?;
            fields[i] = system::tracepoint_field_offset("io_uring", event, field)
                .with_context(|| format!("--uring: io_uring:{event}"))?;
        }
        Ok(UringLayout { events, fields })
    }
}

impl Probes {
    /// The opcode table and the five programs, completion first: a request must never be
    /// submitted (and followed) before the program that ends it is there.
    pub(super) fn attach_uring(&mut self, layout: &UringLayout) -> Result<()> {
        let mut ops: Array<_, u8> = Array::try_from(self.map_mut(maps::URING_OPCODES)?)?;
        for (slot, (_, opcode)) in URING_OPS.iter().enumerate() {
            ops.set(u32::from(*opcode), slot as u8, 0)?;
        }
        for (program, event) in &layout.events {
            self.attach_tracepoints(program, "io_uring", &[event])?;
        }
        let mut attached: Array<_, u64> = Array::try_from(self.map_mut(maps::URING_ATTACH_NS)?)?;
        attached.set(0, crate::system::monotonic_ns(), 0)?;
        Ok(())
    }

    /// The view's counts now, summed over CPUs.
    pub(super) fn uring_snapshot(&self) -> Result<Uring> {
        let stats: PerCpuArray<&MapData, UringStats> =
            PerCpuArray::try_from(self.map(maps::URING_STATS)?)?;
        let names = URING_OPS.iter().map(|(name, _)| *name).chain(["other"]);
        let mut rows = Vec::new();
        for (slot, op) in names.enumerate().take(URING_OP_SLOTS) {
            for (path_index, path) in URING_PATHS.iter().enumerate() {
                let per_cpu = stats.get(&uring_index(slot as u32, path_index as u8), 0)?;
                rows.push(sum_cpus(op, path, per_cpu.iter()));
            }
        }
        let totals: PerCpuArray<&MapData, UringTotals> =
            PerCpuArray::try_from(self.map(maps::URING_TOTALS)?)?;
        let mut uring = Uring {
            requests: Uring::from_rows(rows),
            unfollowed_ns: Histogram::new(SCHED_BUCKETS),
            ..Uring::default()
        };
        for cpu in totals.get(&0, 0)?.iter() {
            uring.submitted += cpu.submitted;
            uring.rearmed += cpu.rearmed;
            uring.unfollowed += cpu.unfollowed;
            uring.unfollowed_sum_ns += cpu.unfollowed_sum_ns;
            uring
                .unfollowed_ns
                .merge(&Histogram::from_counts(&cpu.unfollowed_hist));
            uring.aux_completions += cpu.aux_completions;
        }
        let followed: HashMap<&MapData, UringKey, UringReq> =
            HashMap::try_from(self.map(maps::URING_REQS)?)?;
        uring.in_flight = followed.keys().count() as u64;
        Ok(uring)
    }
}

fn sum_cpus<'a>(
    op: &str,
    path: &str,
    per_cpu: impl Iterator<Item = &'a UringStats>,
) -> UringRequests {
    let empty = || Histogram::new(SCHED_BUCKETS);
    let mut r = UringRequests {
        op: op.to_string(),
        path: path.to_string(),
        requests: 0,
        completions: 0,
        errors: 0,
        eagain: 0,
        sqpoll: 0,
        latency_sum_ns: 0,
        latency_ns: empty(),
        waits: 0,
        wait_sum_ns: 0,
        wait_ns: empty(),
        task_works: 0,
        task_work_sum_ns: 0,
        task_work_ns: empty(),
    };
    for cpu in per_cpu {
        r.requests += cpu.requests;
        r.completions += cpu.completions;
        r.errors += cpu.errors;
        r.eagain += cpu.eagain;
        r.sqpoll += cpu.sqpoll;
        r.latency_sum_ns += cpu.latency_sum_ns;
        r.latency_ns.merge(&Histogram::from_counts(&cpu.latency));
        r.waits += cpu.waits;
        r.wait_sum_ns += cpu.wait_sum_ns;
        r.wait_ns.merge(&Histogram::from_counts(&cpu.wait));
        r.task_works += cpu.task_works;
        r.task_work_sum_ns += cpu.task_work_sum_ns;
        r.task_work_ns
            .merge(&Histogram::from_counts(&cpu.task_work));
    }
    r
}

#[cfg(test)]
mod tests {
    use io_uring::opcode;

    use super::*;

    /// netpoll's table of operations has the kernel's numbers (as the io-uring crate has them).
    #[test]
    fn operation_numbers_are_the_kernels() {
        let code = |name: &str| URING_OPS.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(code("nop"), opcode::Nop::CODE);
        assert_eq!(code("readv"), opcode::Readv::CODE);
        assert_eq!(code("writev"), opcode::Writev::CODE);
        assert_eq!(code("fsync"), opcode::Fsync::CODE);
        assert_eq!(code("read_fixed"), opcode::ReadFixed::CODE);
        assert_eq!(code("write_fixed"), opcode::WriteFixed::CODE);
        assert_eq!(code("poll_add"), opcode::PollAdd::CODE);
        assert_eq!(code("sendmsg"), opcode::SendMsg::CODE);
        assert_eq!(code("recvmsg"), opcode::RecvMsg::CODE);
        assert_eq!(code("timeout"), opcode::Timeout::CODE);
        assert_eq!(code("accept"), opcode::Accept::CODE);
        assert_eq!(code("async_cancel"), opcode::AsyncCancel::CODE);
        assert_eq!(code("connect"), opcode::Connect::CODE);
        assert_eq!(code("openat"), opcode::OpenAt::CODE);
        assert_eq!(code("close"), opcode::Close::CODE);
        assert_eq!(code("statx"), opcode::Statx::CODE);
        assert_eq!(code("read"), opcode::Read::CODE);
        assert_eq!(code("write"), opcode::Write::CODE);
        assert_eq!(code("send"), opcode::Send::CODE);
        assert_eq!(code("recv"), opcode::Recv::CODE);
        assert_eq!(code("splice"), opcode::Splice::CODE);
        assert_eq!(code("shutdown"), opcode::Shutdown::CODE);
        assert_eq!(code("send_zc"), opcode::SendZc::CODE);
        assert_eq!(code("read_multishot"), opcode::ReadMulti::CODE);
    }
}
