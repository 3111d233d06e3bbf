//! Facts about and preconditions of the running system: privileges, tracefs, processes, clocks.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context as _, Result, bail};

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Loading tracing programs needs root, or CAP_BPF plus CAP_PERFMON: say which is missing.
pub fn check_privileges() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    // Effective capabilities from /proc: CAP_PERFMON is 38, CAP_BPF is 39.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = [(39, "CAP_BPF"), (38, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "netpoll needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {}); try `sudo netpoll ...`",
        missing.join(" and ")
    )
}

/// Mounts tracefs at /sys/kernel/tracing when it is absent (classic tracepoints and the fork
/// follower need it). Returns a note to print when it mounted something.
pub fn ensure_tracefs() -> Result<Option<String>> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(None);
    }
    nix::mount::mount(Some("tracefs"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
        .with_context(|| format!("tracefs is not mounted and mounting it failed; mount it with `mount -t tracefs tracefs {TRACEFS}`"))?;
    Ok(Some(format!("mounted tracefs at {TRACEFS}")))
}

/// Byte offset of `field` in a tracepoint's record, from its tracefs format file.
pub fn tracepoint_field_offset(category: &str, event: &str, field: &str) -> Result<u32> {
    let path = PathBuf::from(TRACEFS)
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in text.lines() {
        let mut parts = line.trim().split(';').map(str::trim);
        let (Some(decl), Some(offset)) = (parts.next(), parts.next()) else {
            continue;
        };
        let is_field = decl
            .strip_prefix("field:")
            .and_then(|d| d.split_whitespace().last())
            .is_some_and(|name| name == field);
        if let (true, Some(n)) = (is_field, offset.strip_prefix("offset:")) {
            return n
                .parse()
                .with_context(|| format!("bad offset in {}", path.display()));
        }
    }
    bail!("{} has no field {field}", path.display())
}

/// A process is alive while /proc has it and it is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised comm, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Every live process descended from `roots` (children, grandchildren...), from /proc.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the parenthesised comm: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) && !roots.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

pub fn process_comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The cgroup v2 id of a cgroup directory (its inode number), as bpf_get_current_cgroup_id sees it.
pub fn cgroup_id(path: &Path) -> Result<(PathBuf, u64)> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(path)
    };
    let stat = nix::sys::statfs::statfs(&full)
        .with_context(|| format!("--cgroup {}: no such cgroup directory", full.display()))?;
    if stat.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        bail!("--cgroup {}: not a cgroup v2 directory", full.display());
    }
    let meta = fs::metadata(&full).with_context(|| format!("--cgroup {}", full.display()))?;
    if !meta.is_dir() {
        bail!("--cgroup {}: not a cgroup v2 directory", full.display());
    }
    Ok((full, meta.ino()))
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns.
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

pub fn host() -> analysis::results::Host {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    analysis::results::Host {
        hostname: field(|u| u.nodename()),
        kernel: field(|u| u.release()),
        arch: std::env::consts::ARCH.to_string(),
        cpus: online_cpus(),
    }
}

/// Current UTC time as RFC 3339 with milliseconds.
pub fn utc_now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// SIGINT and SIGTERM, noticed at any moment from start-up on.
pub struct Signals {
    pub interrupt: Arc<AtomicBool>,
    pub terminate: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let signals = Signals {
            interrupt: Arc::default(),
            terminate: Arc::default(),
        };
        signal_hook::flag::register(signal_hook::consts::SIGINT, signals.interrupt.clone())
            .and_then(|_| {
                signal_hook::flag::register(signal_hook::consts::SIGTERM, signals.terminate.clone())
            })
            .context("cannot install signal handlers")?;
        Ok(signals)
    }

    pub fn received(&self) -> Option<i32> {
        if self.interrupt.load(Ordering::Relaxed) {
            Some(130)
        } else if self.terminate.load(Ordering::Relaxed) {
            Some(143)
        } else {
            None
        }
    }
}

/// Raises the soft limit on open descriptors to `needed` (and the hard limit too, when
/// privileged); a clear error when it cannot. Children inherit the raised limit.
pub fn ensure_fd_limit(needed: u64, what: &str) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= needed {
        return Ok(());
    }
    if setrlimit(Resource::RLIMIT_NOFILE, needed, hard.max(needed)).is_err() {
        bail!(
            "{what} need {needed} file descriptors, but the limit is {soft} and cannot be raised \
             above {hard} (see `ulimit -n` and /proc/sys/fs/nr_open); use fewer connections"
        );
    }
    Ok(())
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER): a
/// server's child whose parent exits, or that escapes into a session of its own, is re-parented
/// here instead of to init, so netpoll still finds it, and stops it, at the end.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// Reaps every child that has exited, without waiting for the others.
pub fn reap_exited_children() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The TCP addresses these processes listen on: their sockets' inodes (/proc/PID/fd) looked up
/// among the listening sockets of /proc/net/tcp and tcp6.
pub fn listening_addrs(pids: &[u32]) -> Vec<std::net::SocketAddr> {
    let inodes: std::collections::HashSet<u64> = pids
        .iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flat_map(|dir| dir.flatten())
        .filter_map(|fd| {
            let link = fs::read_link(fd.path()).ok()?;
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut addrs: Vec<_> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_listening)
                .collect::<Vec<_>>()
        })
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(addr, _)| addr)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// A listening socket's address and inode from a line of /proc/net/tcp{,6}:
/// `sl local_address rem_address st ... inode`, addresses in hex words of host byte order.
fn parse_listening(line: &str) -> Option<(std::net::SocketAddr, u64)> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&LISTEN) {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match ip.len() {
        8 => std::net::IpAddr::from(word(0)?),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            std::net::IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some((
        std::net::SocketAddr::new(ip, port),
        fields.get(9)?.parse().ok()?,
    ))
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    // Fields after the parenthesised name, which may itself contain spaces, start at 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(n.checked_sub(3)?)?.parse().ok()
}

/// CPU time and scheduling figures of a process, read from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSample {
    pub user_ns: u64,
    pub system_ns: u64,
    /// Summed over the live threads.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub threads: u64,
    /// The switch counts were read (`read`, not `read_stat`).
    pub switches_read: bool,
}

impl ProcessSample {
    /// CPU time and thread count only (one small read); None when the process is gone.
    pub fn read_stat(pid: u32) -> Option<ProcessSample> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let field = |n| stat_field(&stat, n);
        let ticks = clock_ticks();
        Some(ProcessSample {
            user_ns: field(14)? * 1_000_000_000 / ticks,
            system_ns: field(15)? * 1_000_000_000 / ticks,
            threads: field(20)?,
            ..ProcessSample::default()
        })
    }

    /// Everything, context switches summed over the threads; None when the process is gone.
    pub fn read(pid: u32) -> Option<ProcessSample> {
        let mut sample = Self::read_stat(pid)?;
        sample.switches_read = true;
        for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                continue; // the thread exited meanwhile
            };
            for line in status.lines() {
                let value = |prefix: &str| {
                    line.strip_prefix(prefix)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                };
                if let Some(v) = value("voluntary_ctxt_switches:") {
                    sample.voluntary_switches += v;
                } else if let Some(v) = value("nonvoluntary_ctxt_switches:") {
                    sample.involuntary_switches += v;
                }
            }
        }
        Some(sample)
    }
}

impl ProcessSample {
    /// `read` summed over `root` and its descendants (a server's worker processes); None when
    /// `root` is gone.
    pub fn read_tree(root: u32) -> Option<ProcessSample> {
        let mut total = Self::read(root)?;
        for pid in descendants(&[root]) {
            let Some(s) = Self::read(pid) else { continue };
            total.user_ns += s.user_ns;
            total.system_ns += s.system_ns;
            total.voluntary_switches += s.voluntary_switches;
            total.involuntary_switches += s.involuntary_switches;
            total.threads += s.threads;
        }
        Some(total)
    }
}

/// CPU time of the whole machine, from the first line of /proc/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq, all CPUs.
    pub busy_ns: u64,
    /// Time the hypervisor ran something else, all CPUs.
    pub steal_ns: u64,
}

impl MachineSample {
    pub fn read() -> Option<MachineSample> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // cpu user nice system idle iowait irq softirq steal guest guest_nice (in USER_HZ).
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let tick = |t: u64| t * 1_000_000_000 / clock_ticks();
        let field = |i: usize| f.get(i).copied().unwrap_or(0);
        Some(MachineSample {
            busy_ns: tick(field(0) + field(1) + field(2) + field(5) + field(6)),
            steal_ns: tick(field(7)),
        })
    }
}

/// CPUs online (not only those this thread may use: `netpoll run` pins itself).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

pub use analysis::workload::allowed_cpus;

/// Checks that `cpus` (from `option`) exist and this process may use them.
pub fn check_cpus(cpus: &[usize], option: &str) -> Result<()> {
    let allowed = allowed_cpus();
    if cpus.is_empty() {
        bail!("{option}: no CPU given");
    }
    if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
        bail!(
            "{option}: CPU {bad} is not one this process may use (allowed: {})",
            analysis::workload::format_cpu_list(&allowed)
        );
    }
    Ok(())
}

/// Pins a task (a thread, or a process before it creates threads: they inherit it) to `cpus`;
/// `pid` 0 is the calling thread.
pub fn pin(pid: u32, cpus: &[usize]) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid as i32), &set)
        .with_context(|| format!("cannot pin task {pid} to CPUs {cpus:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_has_the_right_shape() {
        let s = super::utc_now_rfc3339();
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }

    #[test]
    fn a_child_is_a_descendant() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let found = super::descendants(&[std::process::id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    #[test]
    fn this_process_has_threads_and_cpu_time() {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)))
            })
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {}
        let sample = super::ProcessSample::read(std::process::id()).expect("own /proc");
        assert!(sample.threads >= 4, "{sample:?}");
        assert!(
            super::ProcessSample::read_stat(std::process::id())
                .unwrap()
                .threads
                >= 4
        );
        assert!(sample.user_ns + sample.system_ns > 0, "{sample:?}");
        assert!(
            sample.voluntary_switches + sample.involuntary_switches > 0,
            "{sample:?}"
        );
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(super::stat_field("1 (a b) S 7", 4), Some(7));
        assert!(super::ProcessSample::read(0).is_none());
    }

    #[test]
    fn the_machine_is_busy_and_this_process_may_use_its_cpus() {
        let before = super::MachineSample::read().expect("/proc/stat");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {}
        let after = super::MachineSample::read().expect("/proc/stat");
        assert!(after.busy_ns > before.busy_ns, "{before:?} {after:?}");
        let cpus = super::allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(super::check_cpus(&cpus, "--x").is_ok());
        let err = super::check_cpus(&[100_000], "--server-cpus").unwrap_err();
        assert!(
            err.to_string().starts_with("--server-cpus: CPU 100000"),
            "{err}"
        );
    }

    #[test]
    fn listening_sockets_are_found_by_process() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let found = super::listening_addrs(&[std::process::id()]);
        assert!(found.contains(&v4.local_addr().unwrap()), "{found:?}");
        if let Some(v6) = v6 {
            assert!(found.contains(&v6.local_addr().unwrap()), "{found:?}");
        }
        assert!(super::listening_addrs(&[0]).is_empty());
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1";
        assert_eq!(
            super::parse_listening(line),
            Some(("127.0.0.1:8080".parse().unwrap(), 4242))
        );
        assert_eq!(super::parse_listening(&line.replace(" 0A ", " 01 ")), None);
    }

    #[test]
    fn this_process_is_alive_and_pid_zero_is_not_a_process() {
        assert!(super::process_alive(std::process::id()));
        assert!(!super::process_alive(0));
    }
}
