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

/// io_uring's thread kinds, by the name the kernel gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoThread {
    /// `iou-wrk-PID`.
    Worker,
    /// `iou-sqp-PID`.
    Sqpoll,
}

/// An io_uring thread's kind and schedstat (ns on CPU, ns waiting for a CPU) at a sample.
type IoThreadStat = (IoThread, u64, u64);

/// What one look at the targets saw.
pub struct Sample {
    pub observed: Observed,
    /// Each thread's CPU time so far.
    pub cpu: HashMap<u32, u64>,
    /// io_uring's threads, by thread id.
    io_threads: HashMap<u32, IoThreadStat>,
}

/// One look at the processes `roots` and their descendants; their descriptors too when
/// `with_descriptors` (one read per descriptor: 0.5 s for 19,000).
pub fn sample(roots: &[u32], with_descriptors: bool) -> Sample {
    let mut cpu = HashMap::new();
    let mut io_threads = HashMap::new();
    let mut o = Observed::default();
    let mut epolls = HashSet::new();
    let mut pids = roots.to_vec();
    pids.extend(procfs::descendants(roots));
    pids.sort_unstable();
    pids.dedup();
    // UDP sockets' inodes (10th column), read once: a server's processes share a namespace.
    let udp_inodes = pids
        .first()
        .filter(|_| with_descriptors)
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
            let tid = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok());
            let stat: Vec<u64> = procfs::read(path.join("schedstat"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if let (Some(tid), Some(&ns)) = (tid, stat.first()) {
                cpu.insert(tid, ns);
            }
            let comm = procfs::read(path.join("comm")).unwrap_or_default();
            let kind = if comm.starts_with("iou-sqp") {
                o.sq_poll_threads += 1;
                Some(IoThread::Sqpoll)
            } else if comm.starts_with("iou-wrk") {
                Some(IoThread::Worker)
            } else {
                None
            };
            if let (Some(kind), Some(tid), [on_cpu, runq, ..]) = (kind, tid, stat.as_slice()) {
                io_threads.insert(tid, (kind, *on_cpu, *runq));
            }
            // "NR args..." while blocked in a syscall, "running", or "-1 ..." outside one.
            let syscall = procfs::read(path.join("syscall")).unwrap_or_default();
            if let Some(nr) = syscall
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|nr| *nr >= 0)
            {
                *o.waiting_in.entry(syscall_name(nr).into()).or_default() += 1;
            }
        }
        if with_descriptors {
            descriptors(pid, &mut o, &mut epolls, &udp_inodes);
        }
    }
    Sample {
        observed: o,
        cpu,
        io_threads,
    }
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
            procfs::read(format!(
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
    /// io_uring's threads at the first sample, and at the last one each was seen in (a worker
    /// that exits keeps its last sample).
    io_first: Option<HashMap<u32, IoThreadStat>>,
    io_last: HashMap<u32, IoThreadStat>,
}

impl Sampler {
    pub fn new(roots: Vec<u32>) -> Sampler {
        Sampler {
            roots,
            every: std::time::Duration::from_secs(1),
            last: None,
            first_cpu: None,
            observed: Observed::default(),
            io_first: None,
            io_last: HashMap::new(),
        }
    }

    /// io_uring's threads between the first sample and the last: a thread already there at
    /// the first counts from it, a later one from its start. `None` before two samples.
    pub fn io_threads(&self) -> Option<analysis::uring::UringThreads> {
        let first = self.io_first.as_ref()?;
        let mut threads = analysis::uring::UringThreads::default();
        for (tid, &(kind, on_cpu, runq)) in &self.io_last {
            let (_, cpu0, runq0) = first.get(tid).copied().unwrap_or((kind, 0, 0));
            let t = match kind {
                IoThread::Worker => &mut threads.io_wq,
                IoThread::Sqpoll => &mut threads.sqpoll,
            };
            t.threads += 1;
            t.on_cpu_ns += on_cpu.saturating_sub(cpu0);
            t.runq_ns += runq.saturating_sub(runq0);
        }
        Some(threads)
    }

    /// A look at the threads only, as a measurement window opens: busy threads and io_uring's
    /// threads count from here. The descriptors, slow to read with many, were seen before.
    pub fn window_opens(&mut self) {
        if self.roots.is_empty() {
            return;
        }
        let Sample {
            cpu, io_threads, ..
        } = sample(&self.roots, false);
        if cpu.is_empty() {
            return;
        }
        self.first_cpu = Some(cpu);
        self.io_last.extend(io_threads.clone());
        self.io_first = Some(io_threads);
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
        let Sample {
            observed: s,
            cpu,
            io_threads,
        } = sample(&self.roots, true);
        if s.processes == 0 {
            return;
        }
        self.observed.add_sample(&s);
        if self.io_first.is_none() {
            self.io_first = Some(io_threads.clone());
        }
        self.io_last.extend(io_threads);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread at the first sample counts from it; one started later from zero; one that
    /// exited keeps its last sample.
    #[test]
    fn io_threads_count_from_the_first_sample_or_their_start() {
        let mut sampler = Sampler::new(vec![1]);
        sampler.io_first = Some([(10, (IoThread::Worker, 100, 10))].into());
        sampler.io_last = [
            (10, (IoThread::Worker, 300, 30)),
            (11, (IoThread::Worker, 50, 5)),
            (12, (IoThread::Sqpoll, 1000, 0)),
        ]
        .into();
        let t = sampler.io_threads().expect("sampled");
        assert_eq!(
            (t.io_wq.threads, t.io_wq.on_cpu_ns, t.io_wq.runq_ns),
            (2, 250, 25)
        );
        assert_eq!((t.sqpoll.threads, t.sqpoll.on_cpu_ns), (1, 1000));
        assert_eq!(Sampler::new(vec![1]).io_threads(), None);
    }
}
