//! What `profile` and `export` watch: the target options they share (`--pid`, `--comm`,
//! `--cgroup`, `--all`, `-- COMMAND`, `--per-pid`, `--no-follow`), resolved and attached.

use std::path::PathBuf;

use analysis::results::{HookKind, Target, TargetKind};
use anyhow::{Result, bail};
use netpoll_ebpf::abi::Hook;

use crate::{
    probes::{
        Filter, Floor, GoProbes, Mode, Options, Probes, StackWalk,
        target::{self, HeldCommand},
    },
    system,
};

#[derive(clap::Args)]
pub struct TargetArgs {
    /// Profile this process (all its threads, and what it spawns); repeat for several.
    #[arg(short, long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Profile every task with this name (as in /proc/PID/comm, at most 15 bytes).
    #[arg(short, long, value_name = "NAME")]
    comm: Option<String>,
    /// Profile every task in this cgroup v2 (absolute, or relative to /sys/fs/cgroup).
    #[arg(short = 'g', long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Profile every process on the machine.
    #[arg(short, long)]
    all: bool,
    /// Do not follow processes and threads created by --pid targets or the command.
    #[arg(long)]
    no_follow: bool,
    /// Break the results down by process.
    #[arg(long, conflicts_with = "lite")]
    pub per_pid: bool,
    /// The scheduler view: split each call's latency into running, blocked (asleep) and waiting
    /// for a CPU, and count who woke the threads. Adds hooks on every context switch and wakeup
    /// of the machine (see the overhead benchmark).
    #[arg(long, conflicts_with = "lite")]
    pub sched: bool,
    /// The readiness-to-service view: for every descriptor a wait (epoll, poll, select)
    /// reports ready, the time until the process touches it (its next read, write, accept,
    /// close or epoll_ctl on it), and each event-loop turn (a wait's return to the thread's
    /// next wait) with the events it handled. Adds a table lookup to every syscall of the
    /// machine and, for the targets, a hash update per ready descriptor.
    #[arg(long, conflicts_with = "lite")]
    pub ready: bool,
    /// The io_uring view: each io_uring request of the targets followed from submission to
    /// completion on the io_uring tracepoints: which path it took (inline, waited for its
    /// socket's readiness, handed to an io-wq worker), by operation, with its latency and
    /// phases. Adds programs on the io_uring tracepoints only (a hash lookup per io_uring event
    /// of the machine); with --lite too.
    #[arg(long)]
    pub uring: bool,
    /// Lite mode: no hooks on every syscall (their floor is what every process on the machine
    /// pays). Counts the targets' socket transfers (bytes, errors, EAGAIN) and the times their
    /// syscalls put them to sleep, with the time off CPU; calls that neither touch a socket nor
    /// sleep are not seen, and no call is timed. Needs BTF tracepoints; not with --sched or
    /// --per-pid.
    #[arg(long)]
    pub lite: bool,
    /// Turn the kernel's BPF statistics on (kernel.bpf_stats_enabled) to measure netpoll's own
    /// cost: run time and runs of each of its programs. Adds two clock reads to every run of
    /// every BPF program on the machine while on.
    #[arg(long)]
    pub bpf_stats: bool,
    /// Command to start and profile from its first syscall.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The targets, resolved: what the kernel filters on, and what the results say.
pub struct Targets {
    filter: Filter,
    pub target: Target,
    /// The command started with `--`, held until the probes are attached.
    pub command: Option<HeldCommand>,
    /// The `--pid`s given (their exit ends the collection).
    pub given_pids: Vec<u32>,
}

impl TargetArgs {
    /// The probes' mode these flags ask for; `floor`: the overhead benchmark's do-nothing
    /// programs instead (on the hooks given, or where the mode would attach its own).
    pub fn mode(&self, floor: Option<Vec<Hook>>, stacks: Option<StackWalk>) -> Mode {
        match floor {
            Some(hooks) if !hooks.is_empty() => Mode::Floor(Floor::Hooks(hooks)),
            Some(_) if self.lite => Mode::Floor(Floor::Lite),
            Some(_) => Mode::Floor(Floor::Full { sched: self.sched }),
            None if self.lite => Mode::Lite,
            None => Mode::Full {
                per_pid: self.per_pid,
                sched: self.sched,
                ready: self.ready,
                stacks,
            },
        }
    }

    /// Everything a user can get wrong is checked before anything is attached.
    pub fn check(&self) -> Result<()> {
        let kinds = [
            !self.pids.is_empty(),
            self.comm.is_some(),
            self.cgroup.is_some(),
            self.all,
            !self.command.is_empty(),
        ];
        match kinds.iter().filter(|&&t| t).count() {
            0 => bail!(
                "nothing to profile: give --pid PID, --comm NAME, --cgroup PATH, --all, or -- COMMAND [ARGS...]"
            ),
            1 => {}
            _ => bail!("give one kind of target: --pid, --comm, --cgroup, --all or -- COMMAND"),
        }
        target::check_pids(&self.pids)
    }

    /// Resolves names, cgroups and the command (started, held before its first instruction).
    pub fn resolve(&self) -> Result<Targets> {
        if let Some(name) = &self.comm
            && name.len() > 15
        {
            eprintln!(
                "netpoll: note: the kernel keeps 15 bytes of a task name; matching {:?}",
                &name[..15]
            );
        }
        let cgroup = self.cgroup.as_deref().map(system::cgroup_id).transpose()?;
        let command = if self.command.is_empty() {
            None
        } else {
            Some(HeldCommand::spawn(&self.command)?)
        };
        let mut pids = self.pids.clone();
        pids.extend(command.as_ref().map(|c| c.pid));
        let (kind, filter) = match (&self.comm, &cgroup) {
            _ if command.is_some() => (TargetKind::Command, Filter::Pids(pids.clone())),
            _ if !pids.is_empty() => (TargetKind::Pid, Filter::Pids(pids.clone())),
            (Some(name), _) => (TargetKind::Comm, Filter::Comm(name.clone())),
            (_, Some((_, id))) => (TargetKind::Cgroup, Filter::Cgroup(*id)),
            _ => (TargetKind::All, Filter::All),
        };
        Ok(Targets {
            filter,
            target: Target {
                kind,
                pids,
                comm: self.comm.clone(),
                cgroup: cgroup.map(|c| c.0.display().to_string()),
                command: self.command.clone(),
                follow_children: false,
            },
            command,
            given_pids: self.pids.clone(),
        })
    }
}

impl Targets {
    /// Loads and attaches the probes (the floor's do-nothing programs with `floor`: on the hooks
    /// listed, or on all if none is; lite mode with `--lite`); adds the children that existed
    /// before; stops the held command if that fails.
    pub fn attach(
        &mut self,
        args: &TargetArgs,
        hook: Option<HookKind>,
        floor: Option<Vec<Hook>>,
        go: Option<GoProbes>,
        stacks: Option<StackWalk>,
    ) -> Result<Probes> {
        let attached = self.try_attach(args, hook, floor, go, stacks);
        if attached.is_err()
            && let Some(c) = &self.command
        {
            c.stop();
        }
        attached
    }

    fn try_attach(
        &mut self,
        args: &TargetArgs,
        hook: Option<HookKind>,
        floor: Option<Vec<Hook>>,
        go: Option<GoProbes>,
        stacks: Option<StackWalk>,
    ) -> Result<Probes> {
        let uring = args.uring && floor.is_none();
        let mut probes = Probes::load(&Options {
            filter: self.filter.clone(),
            follow_children: !args.no_follow,
            hook,
            mode: args.mode(floor, stacks),
            go,
            uring,
        })?;
        if probes.following {
            // Children that existed before we attached (nginx's workers, say). Scanned after
            // the fork hook is attached, so every child is caught by one or the other.
            for pid in crate::procfs::descendants(&self.target.pids) {
                probes.add_target(pid)?;
            }
        }
        self.target.follow_children = probes.following;
        if probes.mode.ready() {
            // Registrations made before the epoll_ctl hook was attached: from fdinfo (a held
            // command has made none of its own yet).
            let mut pids = self.given_pids.clone();
            pids.extend(crate::procfs::descendants(&self.given_pids));
            for pid in pids {
                probes.seeded_registrations += probes.seed_registrations(pid).unwrap_or(0);
            }
        }
        for note in &probes.notes {
            eprintln!("netpoll: note: {note}");
        }
        Ok(probes)
    }

    /// `PID 42 (redis-server)`, `tasks named "nginx"`, ...
    pub fn describe(&self) -> String {
        let t = &self.target;
        match t.kind {
            TargetKind::Command => format!(
                "`{}` (PID {})",
                t.command.join(" "),
                t.pids.last().copied().unwrap_or(0)
            ),
            TargetKind::Comm => format!("tasks named {:?}", t.comm.as_deref().unwrap_or_default()),
            TargetKind::Cgroup => format!("cgroup {}", t.cgroup.as_deref().unwrap_or_default()),
            TargetKind::All => "every process".into(),
            TargetKind::Pid | TargetKind::Run => {
                let list: Vec<String> = t
                    .pids
                    .iter()
                    .map(|&p| format!("{p} ({})", crate::procfs::process_comm(p)))
                    .collect();
                format!("PID {}", list.join(", "))
            }
        }
    }

    /// The process `--go` reads, when `wanted`: the first --pid, or the command; a note when
    /// the targets are no process (a name, a cgroup, the machine).
    pub fn go_target(&self, wanted: bool) -> Option<u32> {
        if !wanted {
            return None;
        }
        let pid = self.target.pids.first().copied();
        if pid.is_none() {
            eprintln!("netpoll: note: --go reads one Go process: give --pid PID or -- COMMAND");
        }
        pid
    }

    /// The file `--go-exact`'s uprobes go on for `pid`: the command's executable (it has not
    /// exec'd yet), or the running copy of a --pid's.
    pub fn executable(&self, pid: u32) -> std::path::PathBuf {
        match &self.command {
            Some(c) if c.pid == pid => c.path.clone(),
            _ => format!("/proc/{pid}/exe").into(),
        }
    }

    /// Lets the held command run (after the probes are attached).
    pub fn release(&mut self) -> Result<()> {
        match self.command.as_mut() {
            Some(c) => c.release(),
            None => Ok(()),
        }
    }
}
