//! What to profile: existing processes, a name, a cgroup, or a command netpoll starts itself.

use std::{
    ffi::CString,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    fcntl::OFlag,
    sys::wait::{WaitPidFlag, WaitStatus, waitpid},
    unistd::{ForkResult, Pid, fork, pipe2},
};

use crate::system;

/// Checks that every PID names a live process.
pub fn check_pids(pids: &[u32]) -> Result<()> {
    for &pid in pids {
        if !crate::procfs::process_alive(pid) {
            bail!("--pid {pid}: no such process");
        }
    }
    Ok(())
}

/// A command forked and held before `exec` until the probes are attached, so that its very first
/// syscall is seen.
pub struct HeldCommand {
    pub pid: u32,
    exec_error: OwnedFd,
    program: String,
    /// The executable it will exec (as PATH resolved it).
    pub path: PathBuf,
    /// The command leads a process group of its own (its children are in it too).
    group: bool,
    /// Its exit status once reaped (a reaped PID may be reused: never wait for it twice).
    exited: std::cell::Cell<Option<i32>>,
}

/// How a process group ended ([`HeldCommand::stop_group`]).
#[derive(Debug, Default)]
pub struct GroupStopped {
    /// The leader's exit status, when it exited after SIGTERM or before.
    pub exit: Option<i32>,
    /// Nothing had exited within the grace period after SIGTERM: the group was killed.
    pub killed: bool,
    /// Processes the command left behind outside its group (daemons, `setsid` children),
    /// found through netpoll being their subreaper, and killed.
    pub leftovers: Vec<(u32, String)>,
}

pub enum CommandState {
    Running,
    Exited(i32),
}

/// `program` as exec would find it: a path, or the first executable of that name in PATH.
pub fn resolve(program: &str) -> Option<PathBuf> {
    let is_executable =
        |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file();
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| is_executable(p))
}

impl HeldCommand {
    pub fn spawn(argv: &[String]) -> Result<HeldCommand> {
        Self::spawn_passing(argv, None)
    }

    /// Like `spawn`, and the command inherits descriptor `pass` (close-on-exec cleared in the
    /// child only).
    pub fn spawn_passing(argv: &[String], pass: Option<i32>) -> Result<HeldCommand> {
        Self::spawn_with(argv, pass, false, None)
    }

    /// Like `spawn_passing`, the command in the network namespace `netns` (an open
    /// /run/netns/NAME), entered before its first instruction.
    pub fn spawn_in_netns(argv: &[String], pass: i32, netns: i32) -> Result<HeldCommand> {
        Self::spawn_with(argv, Some(pass), false, Some(netns))
    }

    /// Like `spawn`, in a process group of its own, so that the command and every child it
    /// starts can be signalled together ([`HeldCommand::stop_group`]).
    pub fn spawn_group(argv: &[String]) -> Result<HeldCommand> {
        Self::spawn_with(argv, None, true, None)
    }

    fn spawn_with(
        argv: &[String],
        pass: Option<i32>,
        group: bool,
        netns: Option<i32>,
    ) -> Result<HeldCommand> {
        let Some(program) = argv.first() else {
            bail!("no command given after --")
        };
        let Some(path) = resolve(program) else {
            bail!("cannot start `{program}`: no such executable (not found in PATH)")
        };
        let resolved = path.clone();
        let path = CString::new(path.into_os_string().into_encoded_bytes())
            .context("command path contains a NUL byte")?;
        let args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("command argument contains a NUL byte")?;
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let (err_read, err_write) = pipe2(OFlag::O_CLOEXEC)?;

        // SAFETY: the child only calls async-signal-safe functions (setpgid, setns, fcntl, kill,
        // execv, write, _exit) on memory prepared before the fork.
        match unsafe { fork() }.context("fork failed")? {
            // SAFETY: in the forked child: only async-signal-safe calls, as said above the fork.
            ForkResult::Child => unsafe {
                libc::close(err_read.as_raw_fd());
                if group {
                    libc::setpgid(0, 0);
                }
                if let Some(ns) = netns
                    && libc::setns(ns, libc::CLONE_NEWNET) != 0
                {
                    libc::_exit(126);
                }
                if let Some(fd) = pass {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                // Wait, stopped, for the probes. Stopping is not a syscall netpoll measures, so
                // the wait leaves no trace in the results (a blocking read would).
                libc::kill(libc::getpid(), libc::SIGSTOP);
                libc::execv(path.as_ptr(), arg_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                libc::write(err_write.as_raw_fd(), (&raw const errno).cast(), 4);
                libc::_exit(127);
            },
            ForkResult::Parent { child } => {
                drop(err_write);
                match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
                    Ok(WaitStatus::Stopped(..)) => {}
                    other => bail!("`{program}` did not wait for the probes: {other:?}"),
                }
                Ok(HeldCommand {
                    pid: child.as_raw() as u32,
                    exec_error: err_read,
                    program: program.clone(),
                    path: resolved,
                    group,
                    exited: std::cell::Cell::new(None),
                })
            }
        }
    }

    /// Lets the command `exec`; fails if exec failed.
    pub fn release(&mut self) -> Result<()> {
        nix::sys::signal::kill(
            Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        )
        .context("resuming the command")?;
        let mut errno = [0u8; 4];
        // Blocks until exec succeeds (the CLOEXEC pipe closes) or the child reports its errno.
        match nix::unistd::read(self.exec_error.as_raw_fd(), &mut errno) {
            Ok(4) => {
                let _ = waitpid(Pid::from_raw(self.pid as i32), None);
                bail!(
                    "cannot start `{}`: {}",
                    self.program,
                    std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno))
                )
            }
            _ => Ok(()),
        }
    }

    pub fn poll(&self) -> CommandState {
        if let Some(code) = self.exited.get() {
            return CommandState::Exited(code);
        }
        let code = match waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
            Ok(_) => return CommandState::Running,
            Err(_) => -1,
        };
        self.exited.set(Some(code));
        CommandState::Exited(code)
    }

    /// Waits up to `limit` for the command to exit.
    fn wait_exit(&self, limit: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let CommandState::Exited(code) = self.poll() {
                return Some(code);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Stops a command started with `spawn_group`, the way service managers do: SIGTERM to the
    /// whole group, SIGKILL after `grace`; then whatever it left outside its group (found with
    /// netpoll as subreaper, [`system::become_subreaper`]) gets the same. Everything is reaped.
    pub fn stop_group(&self, grace: std::time::Duration) -> GroupStopped {
        use nix::sys::signal::{Signal, kill, killpg};
        debug_assert!(self.group, "stop_group on a command without its own group");
        let group = Pid::from_raw(self.pid as i32);
        let mut stopped = GroupStopped::default();
        // A command still held stopped must be woken to die of SIGTERM.
        let _ = killpg(group, Signal::SIGCONT);
        let _ = killpg(group, Signal::SIGTERM);
        stopped.exit = self.wait_exit(grace);
        if stopped.exit.is_some() {
            // The leader may exit before its children: they get another grace period.
            let deadline = std::time::Instant::now() + grace;
            while killpg(group, None).is_ok() && std::time::Instant::now() < deadline {
                system::reap_exited_children();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if killpg(group, None).is_ok() || stopped.exit.is_none() {
            stopped.killed = true;
            let _ = killpg(group, Signal::SIGKILL);
            stopped.exit = stopped.exit.or_else(|| self.wait_exit(grace));
        }
        system::reap_exited_children();
        let own = std::process::id();
        let left: Vec<u32> = crate::procfs::descendants(&[own])
            .into_iter()
            .filter(|&p| crate::procfs::process_alive(p))
            .collect();
        for &pid in &left {
            stopped
                .leftovers
                .push((pid, crate::procfs::process_comm(pid)));
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        // SIGKILL cannot be ignored: they are gone once reaped.
        let deadline = std::time::Instant::now() + grace;
        while left.iter().any(|&p| crate::procfs::process_alive(p))
            && std::time::Instant::now() < deadline
        {
            system::reap_exited_children();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        system::reap_exited_children();
        stopped
    }

    /// Stops the command (SIGINT, then SIGKILL after a grace period) and reaps it.
    pub fn stop(&self) -> Option<i32> {
        let pid = Pid::from_raw(self.pid as i32);
        // A command still held stopped must be woken to die of SIGINT.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        for _ in 0..400 {
            if let CommandState::Exited(code) = self.poll() {
                return Some(code);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
        None
    }
}
