//! Preconditions and facts of the running system: privileges, tracefs, signals, limits, the
//! subreaper, clocks and CPU placement. Reading /proc about processes is `procfs`'s job.

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
        cpus: crate::procfs::online_cpus(),
    }
}

/// Current UTC time as RFC 3339 with milliseconds.
pub fn utc_now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// SIGINT and SIGTERM, noticed at any moment from start-up on; each also wakes [`Signals::wait`].
pub struct Signals {
    pub interrupt: Arc<AtomicBool>,
    pub terminate: Arc<AtomicBool>,
    /// The read end of a pipe the handlers write a byte to.
    wake: std::os::unix::net::UnixStream,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let (wake, wake_write) =
            std::os::unix::net::UnixStream::pair().context("cannot create the signal pipe")?;
        wake.set_nonblocking(true)?;
        let signals = Signals {
            interrupt: Arc::default(),
            terminate: Arc::default(),
            wake,
        };
        use signal_hook::{consts, flag, low_level::pipe};
        flag::register(consts::SIGINT, signals.interrupt.clone())
            .and_then(|_| flag::register(consts::SIGTERM, signals.terminate.clone()))
            .and_then(|_| pipe::register(consts::SIGINT, wake_write.try_clone()?))
            .and_then(|_| pipe::register(consts::SIGTERM, wake_write))
            .context("cannot install signal handlers")?;
        Ok(signals)
    }

    /// Sleeps until a signal, one of `fds` readable (a pidfd: its process exited), or
    /// `timeout`: a collection loop that wakes for events, not every few milliseconds.
    pub fn wait(&self, fds: &[std::os::fd::BorrowedFd], timeout: std::time::Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut polled: Vec<PollFd> = std::iter::once(self.wake.as_fd())
            .chain(fds.iter().copied())
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
            .collect();
        let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
        let _ = poll(
            &mut polled,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        // Drain the signal bytes; the flags say which signal came.
        let mut sink = [0u8; 64];
        while std::io::Read::read(&mut &self.wake, &mut sink).is_ok_and(|n| n > 0) {}
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

/// A descriptor that becomes readable when process `pid` exits (`pidfd_open`, Linux 5.3);
/// None when the process is gone or the kernel has no pidfds.
pub fn pidfd(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(pid, 0) returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: a descriptor we own from here on.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
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

/// This process's CPU time so far, every thread: (user, system) ns (getrusage, µs resolution).
pub fn own_cpu_ns() -> (u64, u64) {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or((0, 0), |u| {
        let ns = |t: nix::sys::time::TimeVal| {
            t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000
        };
        (ns(u.user_time()), ns(u.system_time()))
    })
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
    fn the_machine_is_busy_and_this_process_may_use_its_cpus() {
        let before = crate::procfs::MachineSample::read().expect("/proc/stat");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {}
        let after = crate::procfs::MachineSample::read().expect("/proc/stat");
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
}
