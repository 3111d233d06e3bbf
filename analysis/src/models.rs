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
