//! What /proc says about the targets' I/O model, for the verdict ([`analysis::verdict`]): each
//! thread's current syscall (`/proc/PID/task/TID/syscall`), each descriptor's kind and flags
//! (`/proc/PID/fd`, `/proc/PID/fdinfo`: O_NONBLOCK and O_ASYNC of sockets, the registrations of
//! epoll instances with their EPOLLET/EPOLLONESHOT bits), io_uring instances and their SQPOLL
//! threads. Read from user space a few times per run: nothing on the probes' hot path.

use std::{
    collections::{HashMap, HashSet},
    fs,
    time::Instant,
};

use analysis::verdict::Observed;
use netpoll_ebpf::syscalls::SYSCALLS;

use crate::procfs;

/// Syscalls threads commonly wait in besides netpoll's own (x86_64 numbers).
const OTHER_WAITS: &[(i64, &str)] = &[
    (34, "pause"),
    (35, "nanosleep"),
    (61, "wait4"),
    (128, "rt_sigtimedwait"),
    (130, "rt_sigsuspend"),
    (202, "futex"),
    (230, "clock_nanosleep"),
];

/// BPF_PROG_TYPE_XDP, as /proc/PID/fdinfo of a program descriptor says it.
const XDP_PROG_TYPE: &str = "6";
const O_NONBLOCK: u32 = 0o4000;
const O_ASYNC: u32 = 0o20000;
const EPOLLET: u64 = 1 << 31;
const EPOLLONESHOT: u64 = 1 << 30;

fn syscall_name(nr: i64) -> &'static str {
    SYSCALLS
        .iter()
        .find(|s| i64::from(s.nr) == nr)
        .map(|s| s.name)
        .or_else(|| OTHER_WAITS.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s))
        .unwrap_or("other")
}

/// One look at the processes `roots` and their descendants; and each thread's CPU time so far.
pub fn sample(roots: &[u32]) -> (Observed, HashMap<u32, u64>) {
    let mut cpu = HashMap::new();
    let mut o = Observed::default();
    let mut epolls = HashSet::new();
    let mut pids = roots.to_vec();
    pids.extend(procfs::descendants(roots));
    pids.sort_unstable();
    pids.dedup();
    // UDP sockets' inodes (10th column), read once: a server's processes share a namespace.
    let udp_inodes = pids
        .first()
        .map(|&pid| procfs::net_table_inodes(pid, &["udp", "udp6"]))
        .unwrap_or_default();
    for pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        o.processes += 1;
        for task in tasks.flatten() {
            o.threads += 1;
            let path = task.path();
            // schedstat: ns on CPU, ns waiting, timeslices.
            if let (Some(tid), Some(ns)) = (
                task.file_name()
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok()),
                fs::read_to_string(path.join("schedstat"))
                    .ok()
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()),
            ) {
                cpu.insert(tid, ns);
            }
            if fs::read_to_string(path.join("comm")).is_ok_and(|c| c.starts_with("iou-sqp")) {
                o.sq_poll_threads += 1;
            }
            // "NR args..." while blocked in a syscall, "running", or "-1 ..." outside one.
            let syscall = fs::read_to_string(path.join("syscall")).unwrap_or_default();
            if let Some(nr) = syscall
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|nr| *nr >= 0)
            {
                *o.waiting_in.entry(syscall_name(nr).into()).or_default() += 1;
            }
        }
        descriptors(pid, &mut o, &mut epolls, &udp_inodes);
    }
    (o, cpu)
}

/// Sockets, epoll instances and io_urings of one process. Descriptors of one epoll instance
/// (dup'd, as mio does, or inherited across fork) list the same registrations: `epolls` holds
/// the lists seen, so each instance counts once.
fn descriptors(
    pid: u32,
    o: &mut Observed,
    epolls: &mut HashSet<String>,
    udp_inodes: &HashSet<u64>,
) {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    for fd in fds.flatten() {
        let Ok(link) = fs::read_link(fd.path()) else {
            continue;
        };
        let link = link.to_string_lossy();
        let info = || {
            fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default()
        };
        if let Some(inode) = procfs::socket_inode(&link) {
            o.sockets += 1;
            o.udp_sockets += u32::from(udp_inodes.contains(&inode));
            let flags = info()
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
                .unwrap_or(0);
            o.nonblocking_sockets += u32::from(flags & O_NONBLOCK != 0);
            o.async_sockets += u32::from(flags & O_ASYNC != 0);
        } else if link == "anon_inode:[eventpoll]" {
            // "tfd:        5 events:       19 data: ..." per registered descriptor.
            let info = info();
            let registrations: Vec<&str> = info.lines().filter(|l| l.starts_with("tfd:")).collect();
            if registrations.is_empty() || !epolls.insert(registrations.join("\n")) {
                continue;
            }
            let mut registered = 0;
            for line in registrations {
                registered += 1;
                let events = line
                    .split_whitespace()
                    .skip_while(|w| *w != "events:")
                    .nth(1)
                    .and_then(|v| u64::from_str_radix(v, 16).ok())
                    .unwrap_or(0);
                o.edge_triggered += u32::from(events & EPOLLET != 0);
                o.oneshot += u32::from(events & EPOLLONESHOT != 0);
            }
            o.epoll_registrations += registered;
            o.epoll_instances += u32::from(registered > 0);
        } else if link == "anon_inode:[io_uring]" {
            o.io_urings += 1;
        } else if link == "anon_inode:bpf-prog"
            && info()
                .lines()
                .any(|l| l.split_whitespace().eq(["prog_type:", XDP_PROG_TYPE]))
        {
            o.xdp_programs += 1;
        }
    }
}

/// Samples the targets now and then while a collection runs: at most once per `every`, so a
/// server with thousands of threads and descriptors is not slowed by netpoll's reading.
pub struct Sampler {
    roots: Vec<u32>,
    every: std::time::Duration,
    last: Option<Instant>,
    /// Each thread's CPU time at the first sample.
    first_cpu: Option<HashMap<u32, u64>>,
    pub observed: Observed,
}

impl Sampler {
    pub fn new(roots: Vec<u32>) -> Sampler {
        Sampler {
            roots,
            every: std::time::Duration::from_secs(1),
            last: None,
            first_cpu: None,
            observed: Observed::default(),
        }
    }

    /// Takes a sample if the last is old enough.
    pub fn tick(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) || self.roots.is_empty() {
            return;
        }
        self.now();
    }

    /// Takes a sample now (the targets may be about to stop).
    pub fn now(&mut self) {
        self.last = Some(Instant::now());
        let (s, cpu) = sample(&self.roots);
        if s.processes == 0 {
            return;
        }
        self.observed.add_sample(&s);
        // Busy threads: those that ran at least a tenth as much as the busiest since the first
        // sample (a server's idle helper threads, redis's bio threads say, do not count).
        match &self.first_cpu {
            None => self.first_cpu = Some(cpu),
            Some(first) => {
                let ran: Vec<u64> = cpu
                    .iter()
                    .map(|(tid, ns)| ns.saturating_sub(first.get(tid).copied().unwrap_or(0)))
                    .collect();
                let busiest = ran.iter().copied().max().unwrap_or(0);
                if busiest > 0 {
                    self.observed.busy_threads =
                        ran.iter().filter(|&&ns| ns * 10 >= busiest).count() as u32;
                }
            }
        }
    }
}
