//! The readiness-to-service view's maps (`--ready`): its syscall table, the registrations made
//! before netpoll attached (read from /proc/PID/fdinfo), and its counts.

use std::collections::BTreeMap;

use analysis::{
    Histogram,
    ready::{Ready, ReadyDelays},
};
use anyhow::{Result, anyhow};
use aya::{
    Btf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::BtfTracePoint,
};
use netpoll_ebpf::{
    abi::{
        FdKey, READY_ENDERS, READY_EXIT_PROGRAM, READY_WAIT_PROGRAMS, ReadyDelay, ReadyInfo,
        ReadyStamp, ReadyTotals, RegKey, maps, ready_ender, ready_flags, ready_role,
    },
    syscalls::READY_SYSCALLS,
};

use super::Probes;

impl Probes {
    /// The waits' exit program beside the main one on `sys_exit` (a BTF tracepoint), or,
    /// without BTF tracepoints, one per kind of wait on the waits' own exit tracepoints.
    pub(super) fn attach_ready_waits(&mut self, btf: Option<&Btf>) -> Result<()> {
        let beside = btf.ok_or_else(|| anyhow!("no kernel BTF")).and_then(|btf| {
            let p: &mut BtfTracePoint = self
                .ebpf
                .program_mut(READY_EXIT_PROGRAM)
                .ok_or_else(|| anyhow!("program {READY_EXIT_PROGRAM} is missing"))?
                .try_into()?;
            p.load("sys_exit", btf)?;
            p.attach()?;
            Ok(())
        });
        if beside.is_ok() {
            return Ok(());
        }
        for (program, events) in READY_WAIT_PROGRAMS {
            self.attach_tracepoints(program, "syscalls", events)?;
        }
        Ok(())
    }

    /// `READY_TABLE`: each watched syscall's part, by number.
    pub(super) fn fill_ready_table(&mut self) -> Result<()> {
        let mut table: Array<_, ReadyInfo> = Array::try_from(self.map_mut(maps::READY_TABLE)?)?;
        for s in &READY_SYSCALLS {
            // A measured call's delay ends at its exit, where its result is known.
            let measured = netpoll_ebpf::syscalls::syscall(s.name).is_some()
                && s.role == ready_role::ON_FD
                && s.ender != ready_ender::CLOSE;
            let info = ReadyInfo {
                role: s.role,
                fd_arg: s.fd_arg,
                ender: s.ender,
                flags: if s.closes { ready_flags::CLOSES } else { 0 }
                    | if measured { ready_flags::AT_EXIT } else { 0 },
            };
            table.set(s.nr, info, 0)?;
        }
        Ok(())
    }

    /// The epoll registrations `pid` made before netpoll attached, from the fdinfo of each of
    /// its epoll descriptors (`tfd: FD events: MASK data: DATA`); how many.
    pub fn seed_registrations(&mut self, pid: u32) -> Result<u64> {
        let found = epoll_registrations(pid);
        let mut regs: HashMap<_, RegKey, u32> =
            HashMap::try_from(self.map_mut(maps::REGISTRATIONS)?)?;
        for &(reg, fd) in &found {
            regs.insert(reg, fd, 0)?;
        }
        let mut fds: HashMap<_, FdKey, RegKey> =
            HashMap::try_from(self.map_mut(maps::REGISTERED_FDS)?)?;
        for &(reg, fd) in &found {
            fds.insert(FdKey { tgid: pid, fd }, reg, 0)?;
        }
        Ok(found.len() as u64)
    }

    /// The view's counts now, summed over CPUs.
    pub(super) fn ready_snapshot(&self) -> Result<Ready> {
        let delay: PerCpuArray<&MapData, ReadyDelay> =
            PerCpuArray::try_from(self.map(maps::READY_DELAY)?)?;
        let mut delays = BTreeMap::new();
        for (i, name) in READY_ENDERS.iter().enumerate() {
            let mut d = ReadyDelays {
                count: 0,
                sum_ns: 0,
                deferred: 0,
                histogram: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
            };
            for cpu in delay.get(&(i as u32), 0)?.iter() {
                d.count += cpu.count;
                d.sum_ns += cpu.sum_ns;
                d.deferred += cpu.deferred;
                d.histogram.merge(&Histogram::from_counts(&cpu.hist));
            }
            delays.insert(name.to_string(), d);
        }
        let totals: PerCpuArray<&MapData, ReadyTotals> =
            PerCpuArray::try_from(self.map(maps::READY_TOTALS)?)?;
        let mut ready = Ready {
            delays,
            stamped: 0,
            unmapped: 0,
            not_read: 0,
            reported_again: 0,
            stale: 0,
            pending: 0,
            seeded_registrations: self.seeded_registrations,
            turns: 0,
            turn_sum_ns: 0,
            turn_events: 0,
            turn_ns: Histogram::new(netpoll_ebpf::histogram::SCHED_BUCKETS),
        };
        for cpu in totals.get(&0, 0)?.iter() {
            ready.stamped += cpu.stamped;
            ready.unmapped += cpu.unmapped;
            ready.not_read += cpu.not_read;
            ready.reported_again += cpu.again;
            ready.stale += cpu.stale;
            ready.turns += cpu.turns;
            ready.turn_sum_ns += cpu.turn_sum_ns;
            ready.turn_events += cpu.turn_events;
            ready.turn_ns.merge(&Histogram::from_counts(&cpu.turn_hist));
        }
        let pending: HashMap<&MapData, FdKey, ReadyStamp> =
            HashMap::try_from(self.map(maps::READY)?)?;
        ready.pending = pending.keys().count() as u64;
        Ok(ready)
    }
}

/// `pid`'s epoll registrations: for each descriptor of an epoll instance, the data its events
/// carry. Unreadable entries are skipped (the process may be gone).
fn epoll_registrations(pid: u32) -> Vec<(RegKey, u32)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for fd in fds.flatten() {
        let is_epoll = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[eventpoll]");
        let Some(epfd) = fd.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !is_epoll {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
            continue;
        };
        found.extend(parse_fdinfo(&info).into_iter().map(|(tfd, data)| {
            (
                RegKey {
                    tgid: pid,
                    _pad: 0,
                    data,
                },
                tfd,
            )
        }));
    }
    // A dup of an epoll descriptor lists the same registrations again.
    found.sort_unstable_by_key(|(reg, fd)| (reg.data, *fd));
    found.dedup();
    found
}

/// The registrations in an epoll descriptor's fdinfo: (descriptor, data), from lines like
/// `tfd:        5 events:       19 data:                5  pos:0 ino:1f7 sdev:8` (hex data).
fn parse_fdinfo(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut field = |name: &str| {
                words
                    .by_ref()
                    .skip_while(|w| *w != name)
                    .nth(1)
                    .map(str::to_string)
            };
            let tfd = field("tfd:")?.parse().ok()?;
            let data = u64::from_str_radix(&field("data:")?, 16).ok()?;
            Some((tfd, data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines_give_descriptor_and_data() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n\
            tfd:        5 events:       19 data:                5  pos:0 ino:1f7 sdev:8\n\
            tfd:        7 events:  8000001d data:     c000122018  pos:0 ino:2a sdev:8\n";
        assert_eq!(parse_fdinfo(text), vec![(5, 5), (7, 0xc0_0012_2018)]);
    }
}
