//! The syscalls netpoll measures: one table that both sides derive everything from.
//!
//! User space fills the kernel's `SYSCALL_TABLE` map (indexed by syscall number) from [`SYSCALLS`]
//! with the numbers of the running architecture, so the BPF programs never hard-code a number.

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

pub struct Syscall {
    pub name: &'static str,
    pub kind: Kind,
    /// Family the class totals group by: `read`/`write` (split into `socket_*` and `other_*`),
    /// `epoll`, `poll_select`, `accept`, `connect`, `io_uring`.
    pub family: &'static str,
    pub wait: Wait,
    /// Which argument (0-based) carries the timeout, for `wait` != `None`.
    pub wait_arg: u8,
    pub nr_x86_64: u32,
    pub nr_aarch64: Option<u32>,
}

const fn sc(
    name: &'static str,
    kind: Kind,
    family: &'static str,
    nr_x86_64: u32,
    nr_aarch64: Option<u32>,
) -> Syscall {
    Syscall {
        name,
        kind,
        family,
        wait: Wait::None,
        wait_arg: 0,
        nr_x86_64,
        nr_aarch64,
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

/// Every measured syscall. Order is the ABI: a syscall's index here is its index in the maps.
pub const SYSCALLS: [Syscall; 21] = [
    sc("read", Read, "read", 0, Some(63)),
    sc("readv", Read, "read", 19, Some(65)),
    sc("recvfrom", Read, "read", 45, Some(207)),
    sc("recvmsg", Read, "read", 47, Some(212)),
    sc("write", Write, "write", 1, Some(64)),
    sc("writev", Write, "write", 20, Some(66)),
    sc("sendto", Write, "write", 44, Some(206)),
    sc("sendmsg", Write, "write", 46, Some(211)),
    waits(
        sc("epoll_wait", Multiplex, "epoll", 232, None),
        Wait::MillisArg,
        3,
    ),
    waits(
        sc("epoll_pwait", Multiplex, "epoll", 281, Some(22)),
        Wait::MillisArg,
        3,
    ),
    waits(
        sc("epoll_pwait2", Multiplex, "epoll", 441, Some(441)),
        Wait::TimePtrArg,
        3,
    ),
    waits(
        sc("poll", Multiplex, "poll_select", 7, None),
        Wait::MillisArg,
        2,
    ),
    waits(
        sc("ppoll", Multiplex, "poll_select", 271, Some(73)),
        Wait::TimePtrArg,
        2,
    ),
    waits(
        sc("select", Multiplex, "poll_select", 23, None),
        Wait::TimePtrArg,
        4,
    ),
    waits(
        sc("pselect6", Multiplex, "poll_select", 270, Some(72)),
        Wait::TimePtrArg,
        4,
    ),
    sc("accept", Accept, "accept", 43, Some(202)),
    sc("accept4", Accept, "accept", 288, Some(242)),
    sc("connect", Connect, "connect", 42, Some(203)),
    // io_uring_enter(fd, to_submit, min_complete, flags, ...): flags is argument 3.
    waits(
        sc("io_uring_enter", Uring, "io_uring", 426, Some(426)),
        Wait::UringGetEvents,
        3,
    ),
    // Appended, not grouped with the reads and writes: an index here is an index in the maps.
    sc("recvmmsg", ReadBatch, "read", 299, Some(243)),
    sc("sendmmsg", WriteBatch, "write", 307, Some(269)),
];

pub const NUM_SYSCALLS: usize = SYSCALLS.len();

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
            assert!(a.nr_x86_64 < MAX_SYSCALL_NR);
            for b in &SYSCALLS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.nr_x86_64, b.nr_x86_64, "{} and {}", a.name, b.name);
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
