//! The syscalls netpoll measures: one table that both sides derive everything from.
//!
//! User space fills the kernel's `SYSCALL_TABLE` map (indexed by syscall number) from [`SYSCALLS`],
//! so the BPF programs never hard-code a number.

/// What a syscall does, which decides what the probes record for it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "bpf"), derive(Hash, PartialOrd, Ord))]
pub enum Kind {
    /// Moves bytes in: split into socket and non-socket (file, pipe, eventfd) calls.
    Read = 1,
    /// Moves bytes out: split into socket and non-socket calls.
    Write = 2,
    /// Waits for readiness (epoll, poll, select): ready-count histogram, timeouts, non-blocking calls.
    Multiplex = 3,
    Accept = 4,
    Connect = 5,
    /// io_uring_enter: submits and/or waits for completions.
    Uring = 6,
    /// Moves several datagrams in (recvmmsg): returns a message count, kept as a histogram
    /// like ready events (bytes are not in the return value, so not counted).
    ReadBatch = 7,
    /// Moves several datagrams out (sendmmsg); as `ReadBatch`.
    WriteBatch = 8,
}

/// How a call says whether it may block: read at entry from its arguments.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not a waiting call.
    None = 0,
    /// An `int` timeout in milliseconds: 0 never blocks, negative blocks without limit.
    MillisArg = 1,
    /// A pointer to `struct timespec`/`timeval`: NULL blocks without limit, all-zero never blocks.
    TimePtrArg = 2,
    /// io_uring_enter: blocks only with IORING_ENTER_GETEVENTS and min_complete > 0.
    UringGetEvents = 3,
}

/// The classes netpoll totals calls by, in the order they are listed. Read and write calls are
/// split by what they touched (a socket or anything else); every other class is one family of
/// the syscall table. Defined once: results files, tables, metrics and the verdict use these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Class {
    Epoll,
    PollSelect,
    IoUring,
    Accept,
    Connect,
    SocketRead,
    SocketWrite,
    OtherRead,
    OtherWrite,
}

/// What the class totals group a syscall by; reads and writes are split further by descriptor
/// (see [`Class::of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Read,
    Write,
    Epoll,
    PollSelect,
    Accept,
    Connect,
    IoUring,
}

impl Class {
    /// Every class, in listing order.
    pub const ALL: [Class; 9] = [
        Class::Epoll,
        Class::PollSelect,
        Class::IoUring,
        Class::Accept,
        Class::Connect,
        Class::SocketRead,
        Class::SocketWrite,
        Class::OtherRead,
        Class::OtherWrite,
    ];

    /// The name results files, tables and metrics use (`socket_read`, `poll_select`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Class::Epoll => "epoll",
            Class::PollSelect => "poll_select",
            Class::IoUring => "io_uring",
            Class::Accept => "accept",
            Class::Connect => "connect",
            Class::SocketRead => "socket_read",
            Class::SocketWrite => "socket_write",
            Class::OtherRead => "other_read",
            Class::OtherWrite => "other_write",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The class of a call of `family`; `socket` says what a read or write touched (`None`:
    /// not known, counted as not a socket, as the probes do without the socket tracepoints).
    pub const fn of(family: Family, socket: Option<bool>) -> Class {
        let socket = matches!(socket, Some(true));
        match family {
            Family::Read if socket => Class::SocketRead,
            Family::Read => Class::OtherRead,
            Family::Write if socket => Class::SocketWrite,
            Family::Write => Class::OtherWrite,
            Family::Epoll => Class::Epoll,
            Family::PollSelect => Class::PollSelect,
            Family::Accept => Class::Accept,
            Family::Connect => Class::Connect,
            Family::IoUring => Class::IoUring,
        }
    }

    /// A readiness wait (epoll, poll, select): the calls an event loop blocks in.
    pub const fn is_readiness_wait(self) -> bool {
        matches!(self, Class::Epoll | Class::PollSelect)
    }

    /// A call that may wait for something to happen: a readiness wait or io_uring_enter
    /// (which waits for completions).
    pub const fn is_wait(self) -> bool {
        self.is_readiness_wait() || matches!(self, Class::IoUring)
    }

    /// Moves bytes through a socket.
    pub const fn is_socket(self) -> bool {
        matches!(self, Class::SocketRead | Class::SocketWrite)
    }

    /// Moves bytes in (from a socket or anything else).
    pub const fn is_read(self) -> bool {
        matches!(self, Class::SocketRead | Class::OtherRead)
    }

    /// Moves bytes (a read or a write).
    pub const fn is_transfer(self) -> bool {
        matches!(
            self,
            Class::SocketRead | Class::SocketWrite | Class::OtherRead | Class::OtherWrite
        )
    }
}

pub struct Syscall {
    pub name: &'static str,
    pub kind: Kind,
    /// What the class totals group it by.
    pub family: Family,
    pub wait: Wait,
    /// Which argument (0-based) carries the timeout, for `wait` != `None`.
    pub wait_arg: u8,
    /// The syscall number on x86_64, the one architecture netpoll's probes support (they read
    /// the syscall registers at x86_64's `pt_regs` offsets; netpoll-user refuses to build for
    /// any other).
    pub nr: u32,
}

const fn sc(name: &'static str, kind: Kind, family: Family, nr: u32) -> Syscall {
    Syscall {
        name,
        kind,
        family,
        wait: Wait::None,
        wait_arg: 0,
        nr,
    }
}

const fn waits(s: Syscall, wait: Wait, wait_arg: u8) -> Syscall {
    Syscall {
        wait,
        wait_arg,
        ..s
    }
}

use Kind::*;

const READ: Family = Family::Read;
const WRITE: Family = Family::Write;
const EPOLL: Family = Family::Epoll;
const POLL_SELECT: Family = Family::PollSelect;

/// Every measured syscall. Order is the ABI: a syscall's index here is its index in the maps.
pub const SYSCALLS: [Syscall; 21] = [
    sc("read", Read, READ, 0),
    sc("readv", Read, READ, 19),
    sc("recvfrom", Read, READ, 45),
    sc("recvmsg", Read, READ, 47),
    sc("write", Write, WRITE, 1),
    sc("writev", Write, WRITE, 20),
    sc("sendto", Write, WRITE, 44),
    sc("sendmsg", Write, WRITE, 46),
    waits(sc("epoll_wait", Multiplex, EPOLL, 232), Wait::MillisArg, 3),
    waits(sc("epoll_pwait", Multiplex, EPOLL, 281), Wait::MillisArg, 3),
    waits(
        sc("epoll_pwait2", Multiplex, EPOLL, 441),
        Wait::TimePtrArg,
        3,
    ),
    waits(sc("poll", Multiplex, POLL_SELECT, 7), Wait::MillisArg, 2),
    waits(
        sc("ppoll", Multiplex, POLL_SELECT, 271),
        Wait::TimePtrArg,
        2,
    ),
    waits(
        sc("select", Multiplex, POLL_SELECT, 23),
        Wait::TimePtrArg,
        4,
    ),
    waits(
        sc("pselect6", Multiplex, POLL_SELECT, 270),
        Wait::TimePtrArg,
        4,
    ),
    sc("accept", Accept, Family::Accept, 43),
    sc("accept4", Accept, Family::Accept, 288),
    sc("connect", Connect, Family::Connect, 42),
    // io_uring_enter(fd, to_submit, min_complete, flags, ...): flags is argument 3.
    waits(
        sc("io_uring_enter", Uring, Family::IoUring, 426),
        Wait::UringGetEvents,
        3,
    ),
    // Appended, not grouped with the reads and writes: an index here is an index in the maps.
    sc("recvmmsg", ReadBatch, READ, 299),
    sc("sendmmsg", WriteBatch, WRITE, 307),
];

pub const NUM_SYSCALLS: usize = SYSCALLS.len();

/// A syscall's part in the readiness-to-service view (`--ready`): (name, x86_64 number, role,
/// descriptor argument, what it ends). The waits' results are stamped ready; a call on a
/// descriptor ends its delay.
pub struct ReadySyscall {
    pub name: &'static str,
    pub nr: u32,
    pub role: u8,
    pub fd_arg: u8,
    pub ender: u8,
    /// It closes the descriptor.
    pub closes: bool,
}

const fn on_fd(name: &'static str, nr: u32, fd_arg: u8, ender: u8) -> ReadySyscall {
    ReadySyscall {
        name,
        nr,
        role: crate::abi::ready_role::ON_FD,
        fd_arg,
        ender,
        closes: false,
    }
}

const fn wait(name: &'static str, nr: u32, role: u8) -> ReadySyscall {
    ReadySyscall {
        name,
        nr,
        role,
        fd_arg: 0,
        ender: 0,
        closes: false,
    }
}

/// Every syscall the readiness view watches.
pub const READY_SYSCALLS: [ReadySyscall; 27] = {
    use crate::abi::{ready_ender as e, ready_role as r};
    [
        wait("epoll_wait", 232, r::EPOLL_WAIT),
        wait("epoll_pwait", 281, r::EPOLL_WAIT),
        wait("epoll_pwait2", 441, r::EPOLL_WAIT),
        wait("poll", 7, r::POLL),
        wait("ppoll", 271, r::POLL),
        wait("select", 23, r::SELECT),
        wait("pselect6", 270, r::SELECT),
        ReadySyscall {
            name: "epoll_ctl",
            nr: 233,
            role: r::EPOLL_CTL,
            fd_arg: 2,
            ender: e::EPOLL_CTL,
            closes: false,
        },
        on_fd("read", 0, 0, e::READ),
        on_fd("readv", 19, 0, e::READ),
        on_fd("pread64", 17, 0, e::READ),
        on_fd("preadv", 295, 0, e::READ),
        on_fd("recvfrom", 45, 0, e::READ),
        on_fd("recvmsg", 47, 0, e::READ),
        on_fd("recvmmsg", 299, 0, e::READ),
        on_fd("write", 1, 0, e::WRITE),
        on_fd("writev", 20, 0, e::WRITE),
        on_fd("pwrite64", 18, 0, e::WRITE),
        on_fd("pwritev", 296, 0, e::WRITE),
        on_fd("sendto", 44, 0, e::WRITE),
        on_fd("sendmsg", 46, 0, e::WRITE),
        on_fd("sendmmsg", 307, 0, e::WRITE),
        on_fd("sendfile", 40, 0, e::WRITE),
        on_fd("accept", 43, 0, e::ACCEPT),
        on_fd("accept4", 288, 0, e::ACCEPT),
        ReadySyscall {
            closes: true,
            ..on_fd("close", 3, 0, e::CLOSE)
        },
        on_fd("shutdown", 48, 0, e::CLOSE),
    ]
};

/// The table's entry for a syscall name.
pub fn syscall(name: &str) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.name == name)
}

/// Syscall numbers below this are looked up in the kernel's table; all measured ones are.
pub const MAX_SYSCALL_NR: u32 = 512;

impl Kind {
    /// Read and write calls are split by what they touched: a socket or something else.
    pub const fn splits_by_socket(self) -> bool {
        matches!(
            self,
            Kind::Read | Kind::Write | Kind::ReadBatch | Kind::WriteBatch
        )
    }

    /// The return value counts something (ready descriptors, messages): a histogram of it.
    pub const fn counts_in_return(self) -> bool {
        matches!(self, Kind::Multiplex | Kind::ReadBatch | Kind::WriteBatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_in_range() {
        for (i, a) in SYSCALLS.iter().enumerate() {
            assert!(a.nr < MAX_SYSCALL_NR);
            for b in &SYSCALLS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.nr, b.nr, "{} and {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn the_readiness_view_knows_each_waiting_call_by_the_same_number() {
        for r in &READY_SYSCALLS {
            assert!(r.nr < MAX_SYSCALL_NR);
            if let Some(s) = syscall(r.name) {
                assert_eq!(s.nr, r.nr, "{}", r.name);
            }
        }
        for s in SYSCALLS.iter().filter(|s| s.kind == Kind::Multiplex) {
            assert!(READY_SYSCALLS.iter().any(|r| r.nr == s.nr), "{}", s.name);
        }
        for (i, a) in READY_SYSCALLS.iter().enumerate() {
            for b in &READY_SYSCALLS[i + 1..] {
                assert_ne!(a.nr, b.nr, "{} and {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn waiting_calls_name_their_timeout_argument() {
        for s in &SYSCALLS {
            assert_eq!(
                s.wait != Wait::None,
                matches!(s.kind, Kind::Multiplex | Kind::Uring),
                "{}",
                s.name
            );
            assert!(s.wait_arg < 6);
        }
    }
}
