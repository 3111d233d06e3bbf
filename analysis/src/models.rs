//! The catalogue of I/O models: every model's name, what it is, its colour in every chart, and
//! its variants. Defined once; `netpoll models` and `serve`, the reports, the experiment suite and
//! the tests all read it (netpoll-user maps each name to the file that implements it).

use plotters::style::RGBColor;

use crate::verdict::Family;

/// An I/O model of the echo service, as `netpoll serve --model NAME` runs it.
#[derive(Debug)]
pub struct Model {
    pub name: &'static str,
    pub about: &'static str,
    /// Its colour in every chart.
    pub color: RGBColor,
    /// Highest descriptor number the model can watch, plus one (select: FD_SETSIZE).
    pub descriptor_limit: Option<usize>,
    /// What the I/O-model verdict must say of it.
    pub family: Family,
    /// TCP (a connection per client) or UDP (datagrams, `udp://` load).
    pub transport: Transport,
}

/// How a model's clients reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// A model run with an option that changes what it is: named `model+option` wherever models
/// are named (experiments, report labels, `--model`), with a colour of its own.
#[derive(Debug)]
pub struct Variant {
    pub name: &'static str,
    pub model: &'static str,
    pub about: &'static str,
    pub color: RGBColor,
    /// io-uring's `--sqpoll`.
    pub sqpoll: bool,
    /// af-xdp's `--busy-poll`.
    pub busy_poll: bool,
}

/// Every model, in the order the lecture introduces them (Tableau 10 colours, then more).
pub const MODELS: &[Model] = &[
    Model {
        name: "blocking-threads",
        about: "a thread per connection, blocking sockets",
        color: RGBColor(31, 119, 180),
        descriptor_limit: None,
        family: Family::BlockingPerConnection,
        transport: Transport::Tcp,
    },
    Model {
        name: "blocking-iterative",
        about: "one thread serving one connection at a time (head-of-line blocking)",
        color: RGBColor(255, 127, 14),
        descriptor_limit: None,
        family: Family::BlockingIterative,
        transport: Transport::Tcp,
    },
    Model {
        name: "nonblocking-spin",
        about: "one thread looping over non-blocking sockets (an EAGAIN storm, a burning CPU)",
        color: RGBColor(44, 160, 44),
        descriptor_limit: None,
        family: Family::BusyPolling,
        transport: Transport::Tcp,
    },
    Model {
        name: "select",
        about: "one thread waiting in select(2) (at most FD_SETSIZE descriptors)",
        color: RGBColor(214, 39, 40),
        // FD_SETSIZE on Linux.
        descriptor_limit: Some(1024),
        family: Family::Select,
        transport: Transport::Tcp,
    },
    Model {
        name: "poll",
        about: "one thread waiting in poll(2)",
        color: RGBColor(148, 103, 189),
        descriptor_limit: None,
        family: Family::Poll,
        transport: Transport::Tcp,
    },
    Model {
        name: "epoll-lt",
        about: "one thread, an epoll reactor, level-triggered",
        color: RGBColor(140, 86, 75),
        descriptor_limit: None,
        family: Family::EpollReactor,
        transport: Transport::Tcp,
    },
    Model {
        name: "epoll-et",
        about: "one thread, an epoll reactor, edge-triggered",
        color: RGBColor(227, 119, 194),
        descriptor_limit: None,
        family: Family::EpollReactor,
        transport: Transport::Tcp,
    },
    Model {
        name: "epoll-reactors",
        about: "one epoll reactor per core sharing the listener (the nginx shape)",
        color: RGBColor(127, 127, 127),
        descriptor_limit: None,
        family: Family::EpollReactors,
        transport: Transport::Tcp,
    },
    Model {
        name: "tokio",
        about: "tokio's multi-threaded runtime, a task per connection (Go's netpoller, in Rust)",
        color: RGBColor(188, 189, 34),
        descriptor_limit: None,
        family: Family::MnRuntime,
        transport: Transport::Tcp,
    },
    Model {
        name: "io-uring",
        about: "io_uring: queue reads and writes, collect completions (--sqpoll: no syscalls when busy)",
        color: RGBColor(23, 190, 207),
        descriptor_limit: None,
        family: Family::IoUring,
        transport: Transport::Tcp,
    },
    Model {
        name: "sigio",
        about: "signal-driven I/O: the kernel signals which socket is ready (O_ASYNC, F_SETSIG)",
        color: RGBColor(0, 0, 128),
        descriptor_limit: None,
        family: Family::SignalDriven,
        transport: Transport::Tcp,
    },
    Model {
        name: "go-netpoller",
        about: "Go: a goroutine per connection in blocking style; the runtime's netpoller underneath (--threads: GOMAXPROCS)",
        // Go's brand blue.
        color: RGBColor(0, 125, 156),
        descriptor_limit: None,
        family: Family::MnRuntime,
        transport: Transport::Tcp,
    },
    Model {
        name: "udp-blocking",
        about: "UDP: one thread in recvfrom for every client, a sendto per reply",
        color: RGBColor(255, 187, 120),
        descriptor_limit: None,
        family: Family::BlockingIterative,
        transport: Transport::Udp,
    },
    Model {
        name: "udp-epoll",
        about: "UDP: non-blocking, epoll_wait, then recvmmsg/sendmmsg batches of up to 64 datagrams",
        color: RGBColor(152, 223, 138),
        descriptor_limit: None,
        family: Family::EpollReactor,
        transport: Transport::Udp,
    },
    Model {
        name: "udp-io-uring",
        about: "UDP: 64 receives queued in io_uring (RecvMsg), each answered by a SendMsg (--sqpoll)",
        color: RGBColor(158, 218, 229),
        descriptor_limit: None,
        family: Family::IoUring,
        transport: Transport::Udp,
    },
    Model {
        name: "af-xdp",
        about: "UDP through AF_XDP (needs --netns): an XDP program hands the port's frames to rings shared with user space; no syscall per datagram (--busy-poll: none to wait either)",
        color: RGBColor(247, 182, 210),
        descriptor_limit: None,
        family: Family::KernelBypass,
        transport: Transport::Udp,
    },
];

pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "io-uring+sqpoll",
        model: "io-uring",
        about: "io-uring --sqpoll: a kernel thread polls the submission queue",
        color: RGBColor(0, 100, 0),
        sqpoll: true,
        busy_poll: false,
    },
    Variant {
        name: "af-xdp+busy-poll",
        model: "af-xdp",
        about: "af-xdp --busy-poll: spin on the rings, never sleep in poll",
        color: RGBColor(197, 176, 213),
        sqpoll: false,
        busy_poll: true,
    },
];

/// Memory mappings each thread of netpoll's models takes: its stack and guard page, and the
/// signal stack Rust's runtime gives every thread and its guard page (measured: 20,105
/// mappings in a blocking-threads server of 5,011 threads).
pub const MAPPINGS_PER_THREAD: usize = 4;

/// What the machine allows one process: the open-files hard limit (`ulimit -Hn`, raised up to
/// fs.nr_open only with CAP_SYS_RESOURCE), vm.max_map_count, kernel.pid_max.
#[derive(Debug, Clone, Copy)]
pub struct ProcessLimits {
    pub descriptors: usize,
    /// `descriptors` is fs.nr_open: the hard limit may be raised to it here.
    pub descriptors_raisable: bool,
    pub max_map_count: usize,
    pub pid_max: usize,
}

impl ProcessLimits {
    /// How many threads of its own one process may start here, and what stops it there. A
    /// margin is kept for the process's own mappings and the machine's other tasks.
    pub fn threads(&self) -> (usize, String) {
        let by_maps = self.max_map_count.saturating_sub(200) / MAPPINGS_PER_THREAD;
        let by_pids = self.pid_max.saturating_sub(1000);
        if by_maps <= by_pids {
            (
                by_maps,
                format!(
                    "{MAPPINGS_PER_THREAD} memory mappings per thread (stack, guard page, signal stack and its guard), vm.max_map_count {}",
                    self.max_map_count
                ),
            )
        } else {
            (
                by_pids,
                format!(
                    "and every thread takes a PID of the machine's kernel.pid_max {}",
                    self.pid_max
                ),
            )
        }
    }

    /// This machine's, for this process.
    pub fn read() -> ProcessLimits {
        let sysctl = |name: &str, default| {
            std::fs::read_to_string(format!("/proc/sys/{name}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        // `Max open files            1024                 20000                files`.
        let hard_files = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                let line = l.lines().find(|l| l.starts_with("Max open files"))?;
                line.split_whitespace().nth(4)?.parse().ok()
            })
            .unwrap_or(1024);
        // With CAP_SYS_RESOURCE the hard limit may be raised, up to fs.nr_open (netpoll does).
        const CAP_SYS_RESOURCE: u32 = 24;
        let may_raise = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let caps = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
                u64::from_str_radix(caps.trim(), 16).ok()
            })
            .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
        ProcessLimits {
            descriptors: if may_raise {
                sysctl("fs/nr_open", hard_files).max(hard_files)
            } else {
                hard_files
            },
            descriptors_raisable: may_raise,
            max_map_count: sysctl("vm/max_map_count", 65_530),
            pid_max: sysctl("kernel/pid_max", 32_768),
        }
    }
}

/// Why one process of a model cannot hold a number of connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The open-files limit: more processes would hold more (`--workers`).
    Descriptors(String),
    /// A limit of the model itself (FD_SETSIZE), or of threads.
    Model(String),
}

impl Stop {
    pub fn reason(&self) -> &str {
        match self {
            Stop::Descriptors(s) | Stop::Model(s) => s,
        }
    }
}

/// Descriptors a server process keeps beside its connections (stdio, the listener, epoll's,
/// io_uring's, a few of the runtime's) and the room netpoll leaves for the rest.
pub const SPARE_DESCRIPTORS: usize = 72;

impl Model {
    /// Whether one process of this model can hold `held` connections under `limits`; the limit
    /// that stops it, in one line, if not.
    pub fn stops(&self, held: usize, limits: &ProcessLimits) -> Option<Stop> {
        let name = self.name;
        if let Some(limit) = self.descriptor_limit
            && held + 8 > limit
        {
            return Some(Stop::Model(format!(
                "{name} stops at {limit} descriptors: FD_SETSIZE (select's bitmaps have that many bits)"
            )));
        }
        if self.family == Family::BlockingPerConnection {
            let (most, why) = limits.threads();
            if held > most {
                return Some(Stop::Model(format!(
                    "{name} stops at about {most} connections: a thread each, {why}"
                )));
            }
        }
        let most = limits.descriptors.saturating_sub(SPARE_DESCRIPTORS);
        (held > most).then(|| {
            Stop::Descriptors(format!(
                "{name} stops at about {most} connections in one process: {}",
                if limits.descriptors_raisable {
                    format!("fs.nr_open ({})", limits.descriptors)
                } else {
                    format!(
                        "the open-files hard limit ({}, which cannot be raised here)",
                        limits.descriptors
                    )
                }
            ))
        })
    }
}

/// The model called `name`.
pub fn model(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

/// The variant called `name` (`io-uring+sqpoll`).
pub fn variant(name: &str) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}

/// The variant a model with these options is, if any.
pub fn variant_of(model: &str, sqpoll: bool, busy_poll: bool) -> Option<&'static Variant> {
    VARIANTS
        .iter()
        .find(|v| v.model == model && v.sqpoll == sqpoll && v.busy_poll == busy_poll)
}

/// Every name `--model` and the experiment suite accept: models, then variants.
pub fn names() -> impl Iterator<Item = &'static str> {
    MODELS
        .iter()
        .map(|m| m.name)
        .chain(VARIANTS.iter().map(|v| v.name))
}

/// The one-line error for an unknown name, listing the valid ones.
pub fn unknown(name: &str) -> String {
    format!(
        "unknown model {name:?}; the models are: {}",
        names().collect::<Vec<_>>().join(", ")
    )
}

/// Position of a model or variant in the catalogue (variants after their model): the order of
/// runs in reports.
pub fn rank(name: &str) -> Option<usize> {
    let base = variant(name).map_or(name, |v| v.model);
    let i = MODELS.iter().position(|m| m.name == base)?;
    Some(2 * i + usize::from(variant(name).is_some()))
}

/// The colour of a model or variant.
pub fn color(name: &str) -> Option<RGBColor> {
    model(name)
        .map(|m| m.color)
        .or_else(|| variant(name).map(|v| v.color))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_colours_are_unique() {
        let names: Vec<&str> = names().collect();
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "{a} twice");
            for b in &names[i + 1..] {
                assert_ne!(color(a), color(b), "{a} and {b} share a colour");
            }
        }
        for v in VARIANTS {
            assert!(
                model(v.model).is_some(),
                "{} varies an unknown model",
                v.name
            );
        }
    }

    #[test]
    fn variants_sort_after_their_model() {
        assert!(rank("io-uring") < rank("io-uring+sqpoll"));
        assert!(rank("io-uring+sqpoll") < rank("sigio"));
        assert_eq!(rank("carrier-pigeon"), None);
        assert!(
            unknown("x").contains("blocking-threads") && unknown("x").contains("io-uring+sqpoll")
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn each_model_stops_at_its_own_limit() {
        let limits = ProcessLimits {
            descriptors: 20_000,
            descriptors_raisable: false,
            max_map_count: 65_530,
            pid_max: 32_768,
        };
        let stop = |name: &str, held| model(name).unwrap().stops(held, &limits);
        assert_eq!(stop("select", 1000), None);
        assert!(matches!(stop("select", 1017), Some(Stop::Model(s)) if s.contains("FD_SETSIZE")));
        assert_eq!(stop("epoll-lt", 19_928), None);
        let over = stop("epoll-lt", 19_929).unwrap();
        assert!(
            matches!(&over, Stop::Descriptors(s) if s.contains("cannot be raised")),
            "{over:?}"
        );
        // A thread per connection: 4 mappings each under vm.max_map_count.
        assert_eq!(stop("blocking-threads", 16_332), None);
        assert!(
            matches!(stop("blocking-threads", 16_333), Some(Stop::Model(s)) if s.contains("max_map_count"))
        );
        let pids = ProcessLimits {
            pid_max: 4096,
            ..limits
        };
        let few = model("blocking-threads")
            .unwrap()
            .stops(3500, &pids)
            .unwrap();
        assert!(few.reason().contains("pid_max"), "{few:?}");
        let raisable = ProcessLimits {
            descriptors: 1 << 20,
            descriptors_raisable: true,
            ..limits
        };
        assert_eq!(model("epoll-lt").unwrap().stops(100_000, &raisable), None);
        let live = ProcessLimits::read();
        assert!(live.descriptors >= 1024 && live.max_map_count > 0 && live.pid_max > 0);
    }
}
