//! The fixture side: this test binary, run with `NETPOLL_FIXTURE=<scenario>`, sets up, stops
//! itself with SIGSTOP (not a syscall the probes measure), and, once continued, makes exactly the
//! syscalls of its scenario through `libc::syscall`, then `_exit`s.

use std::{
    fs::File,
    io::Write as _,
    net::{TcpListener, TcpStream},
    os::fd::{AsRawFd, IntoRawFd},
};

use libc::{c_long, syscall};

fn stop_for_probes() {
    // SAFETY: signalling ourselves.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

fn sys(nr: c_long, args: [usize; 6]) -> i64 {
    // SAFETY: each scenario passes valid buffers and descriptors.
    unsafe { syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) as i64 }
}

fn read(fd: i32, buf: &mut [u8], len: usize) -> i64 {
    sys(
        libc::SYS_read,
        [fd as usize, buf.as_mut_ptr() as usize, len, 0, 0, 0],
    )
}

fn write(fd: i32, buf: &[u8], len: usize) -> i64 {
    sys(
        libc::SYS_write,
        [fd as usize, buf.as_ptr() as usize, len, 0, 0, 0],
    )
}

/// Reads exactly `len` bytes with `nr` (read or recvfrom), however many calls it takes.
fn read_all(nr: c_long, fd: i32, buf: &mut [u8], len: usize) {
    let mut got = 0;
    while got < len {
        let n = sys(
            nr,
            [
                fd as usize,
                buf[got..].as_mut_ptr() as usize,
                len - got,
                0,
                0,
                0,
            ],
        );
        assert!(n > 0, "fixture read failed: {n}");
        got += n as usize;
    }
}

fn tcp_pair() -> (i32, i32, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client.into_raw_fd(), server.into_raw_fd(), listener)
}

/// The fixture's scenarios: what the fixture process does once continued. Shared by the tests
/// (which start one) and the fixture (which runs it), so a name cannot be misspelt on one side.
macro_rules! scenarios {
    ($($variant:ident = $name:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Scenario {
            $($variant),*
        }

        impl Scenario {
            /// The value of NETPOLL_FIXTURE that selects it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Scenario::$variant => $name),*
                }
            }

            pub fn from_name(name: &str) -> Option<Scenario> {
                match name {
                    $($name => Some(Scenario::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

scenarios! {
    Epoll = "epoll",
    Io = "io",
    IoNostop = "io-nostop",
    Accept = "accept",
    Poll = "poll",
    BlockedAccept = "blocked-accept",
    Fork = "fork",
    Comm = "comm",
    RenamedMidway = "renamed-midway",
    MovedMidway = "moved-midway",
    DieInCall = "die-in-call",
    Migrate = "migrate",
    Tree = "tree",
    EpollThenHold = "epoll-then-hold",
    Steady = "steady",
    PipeWake = "pipe-wake",
    RunqSameCpu = "runq-same-cpu",
    RunqOtherCpu = "runq-other-cpu",
    BigWrite = "big-write",
    Mmsg = "mmsg",
    SocketWake = "socket-wake",
    FutexWake = "futex-wake",
    IoOnCpu0 = "io-on-cpu0",
    BystanderOnCpu0 = "bystander-on-cpu0",
    Sleepy = "sleepy",
    ReadyInOrder = "ready-in-order",
    ReadyIgnored = "ready-ignored",
    ReadyBadInput = "ready-bad-input",
    Uring = "uring",
    UringShared = "uring-shared",
}

pub fn run(scenario: Scenario) -> ! {
    match scenario {
        Scenario::Epoll => {
            epoll(false);
        }
        Scenario::ReadyInOrder => ready_in_order(),
        Scenario::ReadyIgnored => ready_ignored(),
        Scenario::ReadyBadInput => ready_bad_input(),
        Scenario::Uring => uring(),
        Scenario::UringShared => uring_shared(),
        Scenario::Io => io(),
        Scenario::IoNostop => io_after_stop(),
        Scenario::Accept => accept(),
        Scenario::Poll => poll(),
        Scenario::BlockedAccept => blocked_accept(),
        Scenario::Fork => fork(),
        Scenario::Comm => {
            // SAFETY: PR_SET_NAME with a NUL-terminated name.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"npfixture".as_ptr()) };
            io();
        }
        Scenario::RenamedMidway => becomes_target_midway(|| {
            // SAFETY: PR_SET_NAME with a NUL-terminated name.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"npfixture".as_ptr()) };
        }),
        // Moved into the cgroup by the test (another task, on another CPU, as service
        // managers do) while it spins without a syscall, until the test sets the byte of
        // NETPOLL_FIXTURE_FLAG that it maps: its CPU's cached verdict stays as it was, unless
        // the move expires it.
        Scenario::MovedMidway => {
            let flag = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(std::env::var("NETPOLL_FIXTURE_FLAG").expect("NETPOLL_FIXTURE_FLAG"))
                .expect("flag file");
            // SAFETY: a one-page shared mapping of our own file, read as bytes.
            let byte = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    std::os::fd::AsRawFd::as_raw_fd(&flag),
                    0,
                )
            } as *const u8;
            assert!(byte as isize != -1, "mmap of the flag file");
            becomes_target_midway(|| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                // SAFETY: the mapping lives until we exit; volatile: the test writes it.
                while unsafe { std::ptr::read_volatile(byte) } == 0 {
                    assert!(std::time::Instant::now() < deadline, "never moved");
                    std::hint::spin_loop();
                }
            })
        }
        Scenario::DieInCall => die_in_call(),
        Scenario::Migrate => migrate(),
        Scenario::Tree => tree(),
        Scenario::EpollThenHold => {
            // How many of the waits slept, by the kernel's own count, and how long they took:
            // the truth lite mode's sleeps are held against.
            let (slept, wall) = epoll(true).expect("observed");
            println!("{slept} {}", wall.as_nanos());
            // Held until the test closes our stdin: the exporter is scraped meanwhile.
            let mut byte = [0u8; 1];
            read(0, &mut byte, 1);
        }
        Scenario::Steady => steady(),
        Scenario::PipeWake => pipe_wake(),
        Scenario::RunqSameCpu => contended(true),
        Scenario::RunqOtherCpu => contended(false),
        Scenario::BigWrite => big_write(),
        Scenario::Mmsg => mmsg(),
        Scenario::SocketWake => socket_wake(),
        Scenario::FutexWake => futex_wake(),
        Scenario::IoOnCpu0 => {
            pin_to(0);
            io();
        }
        Scenario::BystanderOnCpu0 => {
            // Not a target: socket writes and reads on CPU 0, as fast as it can, until killed.
            pin_to(0);
            let mut pair = [0i32; 2];
            // SAFETY: valid out-pointer.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
            stop_for_probes();
            let mut byte = [0u8; 1];
            loop {
                write(pair[0], &byte, 1);
                read(pair[1], &mut byte, 1);
            }
        }
        Scenario::Sleepy => {
            stop_for_probes();
            loop {
                write(1, b"", 0);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    // SAFETY: exit without running destructors or flushing (no stray syscalls).
    unsafe { libc::_exit(0) }
}

/// 20 epoll_wait calls that time out after 10 ms, 7 with timeout 0, then one epoll_pwait that
/// finds one ready descriptor, after one socket write.
/// Voluntary context switches of this thread so far: the kernel counts one each time the thread
/// goes to sleep (a switch that is neither a preemption nor interrupted by a signal).
fn voluntary_switches() -> i64 {
    // SAFETY: a zeroed rusage is a valid out-buffer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_nvcsw
}

/// 20 epoll_waits that wait 10 ms, 7 that do not, a write, an epoll_pwait that finds it. With
/// `observe`, also how many of the 27 waits slept (the kernel's count: one that finds its 10 ms
/// already past when it would sleep, as on a vCPU the host held back, does not) and their wall
/// time; the two getrusage calls that costs are left out of the scenario otherwise.
fn epoll(observe: bool) -> Option<(i64, std::time::Duration)> {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut pair = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: valid event.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, pair[0], &mut ev) };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let evp = events.as_mut_ptr() as usize;
    stop_for_probes();
    let before = observe.then(|| (voluntary_switches(), std::time::Instant::now()));
    for _ in 0..20 {
        sys(libc::SYS_epoll_wait, [ep as usize, evp, 8, 10, 0, 0]);
    }
    for _ in 0..7 {
        sys(libc::SYS_epoll_wait, [ep as usize, evp, 8, 0, 0, 0]);
    }
    let observed =
        before.map(|(switches, start)| (voluntary_switches() - switches, start.elapsed()));
    write(pair[1], b"x", 1);
    sys(
        libc::SYS_epoll_pwait,
        [ep as usize, evp, 8, -1i64 as usize, 0, 8],
    );
    observed
}

/// The readiness fixtures' known numbers: sockets, rounds, the sleep between services.
pub const READY_SOCKETS: usize = 4;
pub const READY_ROUNDS: usize = 3;
pub const READY_GAP_MS: u64 = 20;
/// ready-ignored: the turns one ready socket is left alone, and each turn's length.
pub const IGNORED_TURNS: usize = 3;
pub const TURN_MS: u64 = 10;

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// A single-threaded epoll loop, its sockets registered after the probes attached (the
/// epoll_ctl hook sees them), each with data that is not its descriptor. Each round, the peer
/// writes a byte to every socket, then the loop waits and services the ready sockets in the
/// order returned, sleeping READY_GAP_MS before each but the first: the k-th waits k gaps.
fn ready_in_order() {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let pairs: Vec<[i32; 2]> = (0..READY_SOCKETS)
        .map(|_| {
            let mut pair = [0i32; 2];
            // SAFETY: valid out-pointer.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
            pair
        })
        .collect();
    stop_for_probes();
    for (i, pair) in pairs.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            // Like a server's pointer to its connection: not the descriptor.
            u64: 0xfeed_0000_0000 + i as u64,
        };
        // SAFETY: valid event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, pair[0], &mut ev) };
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut byte = [0u8; 1];
    for _ in 0..READY_ROUNDS {
        for pair in &pairs {
            write(pair[1], b"x", 1);
        }
        let n = sys(
            libc::SYS_epoll_wait,
            [
                ep as usize,
                events.as_mut_ptr() as usize,
                8,
                usize::MAX,
                0,
                0,
            ],
        );
        assert_eq!(n, READY_SOCKETS as i64);
        for (k, ev) in events[..n as usize].iter().enumerate() {
            if k > 0 {
                sleep_ms(READY_GAP_MS);
            }
            let fd = pairs[(ev.u64 - 0xfeed_0000_0000) as usize][0];
            read(fd, &mut byte, 1);
        }
    }
    // One more wait ends the last round's turn.
    sys(
        libc::SYS_epoll_wait,
        [ep as usize, events.as_mut_ptr() as usize, 8, 0, 0, 0],
    );
}

/// A level-triggered epoll loop whose two sockets were registered before the probes attached
/// (netpoll reads them from fdinfo). Socket A holds a byte for each of IGNORED_TURNS + 1 turns;
/// socket B holds one byte the loop leaves alone for IGNORED_TURNS turns (reported ready again
/// each time), then reads. Each turn reads A, then sleeps TURN_MS.
fn ready_ignored() {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut pairs = [[0i32; 2]; 2];
    for (i, pair) in pairs.iter_mut().enumerate() {
        // SAFETY: valid out-pointer.
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64 + 100,
        };
        // SAFETY: valid event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, pair[0], &mut ev) };
    }
    let [a, b] = pairs;
    stop_for_probes();
    for _ in 0..=IGNORED_TURNS {
        write(a[1], b"a", 1);
    }
    write(b[1], b"b", 1);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut byte = [0u8; 1];
    for turn in 0..=IGNORED_TURNS {
        sys(
            libc::SYS_epoll_wait,
            [
                ep as usize,
                events.as_mut_ptr() as usize,
                8,
                usize::MAX,
                0,
                0,
            ],
        );
        read(a[0], &mut byte, 1);
        if turn == IGNORED_TURNS {
            read(b[0], &mut byte, 1);
        }
        sleep_ms(TURN_MS);
    }
    sys(
        libc::SYS_epoll_wait,
        [ep as usize, events.as_mut_ptr() as usize, 8, 0, 0, 0],
    );
}

/// What --ready must not be fooled by: a wait given a bogus events pointer (EFAULT), and a
/// ready socket closed unread whose descriptor number is reused at once by a new socket, which
/// is then read (its data was never reported by a wait).
fn ready_bad_input() {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut pair = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    stop_for_probes();
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 7,
    };
    // SAFETY: valid event.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, pair[0], &mut ev) };
    write(pair[1], b"x", 1);
    // A bogus pointer: the kernel refuses it (EFAULT), nothing is reported.
    let bogus = sys(libc::SYS_epoll_wait, [ep as usize, 8, 8, 0, 0, 0]);
    assert!(bogus < 0);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let n = sys(
        libc::SYS_epoll_wait,
        [ep as usize, events.as_mut_ptr() as usize, 8, 0, 0, 0],
    );
    assert_eq!(n, 1);
    // Closed unread; the number comes back with a new socket, read at once.
    let closed = pair[0];
    sys(libc::SYS_close, [closed as usize, 0, 0, 0, 0, 0]);
    let mut again = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, again.as_mut_ptr()) };
    assert_eq!(again[0], closed, "the lowest free descriptor is reused");
    write(again[1], b"y", 1);
    let mut byte = [0u8; 1];
    read(again[0], &mut byte, 1);
    sys(
        libc::SYS_epoll_wait,
        [ep as usize, events.as_mut_ptr() as usize, 8, 0, 0, 0],
    );
}

/// epoll_wait with a 10 ms timeout, over and over, for NETPOLL_FIXTURE_SECONDS seconds: about
/// 100 calls a second of about 10 ms each.
fn steady() {
    let seconds: u64 = std::env::var("NETPOLL_FIXTURE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    stop_for_probes();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        sys(
            libc::SYS_epoll_wait,
            [ep as usize, events.as_mut_ptr() as usize, 1, 10, 0, 0],
        );
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// 5 reads of a pipe, each blocked until a sibling thread writes 20 ms later.
fn pipe_wake() {
    let mut pipe = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    stop_for_probes();
    let writer = pipe[1];
    let sibling = std::thread::spawn(move || {
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            write(writer, b"x", 1);
        }
    });
    let mut byte = [0u8; 1];
    for _ in 0..5 {
        read(pipe[0], &mut byte, 1);
    }
    let _ = sibling.join();
}

/// 100 waits of 1 ms in epoll_wait on CPU 0, at the lowest priority (nice 19: woken, it cannot
/// preempt a busier thread), while a sibling thread spins for 1.5 s on CPU 0 (`same_cpu`: the
/// waits, once woken, queue behind it) or on CPU 1.
fn contended(same_cpu: bool) {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    pin_to(0);
    // SAFETY: renicing the calling thread (who 0: the caller).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    stop_for_probes();
    let busy = std::thread::spawn(move || {
        pin_to(if same_cpu { 0 } else { 1 });
        // SAFETY: renicing the calling thread (who 0) back to the default priority.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 0) };
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
    });
    for _ in 0..100 {
        sys(
            libc::SYS_epoll_wait,
            [ep as usize, events.as_mut_ptr() as usize, 1, 1, 0, 0],
        );
    }
    let _ = busy.join();
}

/// Datagram batches between two connected UDP sockets: sendmmsg of 3, 5 and 7 datagrams of
/// 100 bytes, each taken back by one recvmmsg of up to 16: six calls, each knowing its batch.
fn mmsg() {
    use std::net::UdpSocket;
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    a.connect(b.local_addr().expect("addr")).expect("connect");
    b.connect(a.local_addr().expect("addr")).expect("connect");
    let mut bufs = vec![[0u8; 100]; 16];
    // SAFETY: all-zero is a valid iovec and mmsghdr.
    let mut iovecs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; 16];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths), filled in below.
    let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; 16];
    for i in 0..16 {
        iovecs[i].iov_base = bufs[i].as_mut_ptr().cast();
        iovecs[i].iov_len = 100;
        headers[i].msg_hdr.msg_iov = &raw mut iovecs[i];
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    let headers_ptr = headers.as_mut_ptr() as usize;
    stop_for_probes();
    for batch in [3usize, 5, 7] {
        let sent = sys(
            libc::SYS_sendmmsg,
            [a.as_raw_fd() as usize, headers_ptr, batch, 0, 0, 0],
        );
        assert_eq!(sent, batch as i64, "sendmmsg");
        let got = sys(
            libc::SYS_recvmmsg,
            [
                b.as_raw_fd() as usize,
                headers_ptr,
                16,
                libc::MSG_DONTWAIT as usize,
                0,
                0,
            ],
        );
        assert_eq!(got, batch as i64, "recvmmsg");
    }
}

/// One write of 16 MiB into a pipe a sibling thread drains: a call that spends its time
/// copying, on CPU (and blocked whenever the pipe is full).
fn big_write() {
    let mut pipe = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    let data = vec![7u8; 16 << 20];
    stop_for_probes();
    let reader = pipe[0];
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < 16 << 20 {
            let n = read(reader, &mut buf, 1 << 16);
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
    });
    write(pipe[1], &data, data.len());
    let _ = drain.join();
}

/// A socket read blocked until data arrives over loopback, sent 20 ms later by a sibling:
/// the reader is woken by the network stack (a softirq), not by the sender.
fn socket_wake() {
    let (client, server, _listener) = tcp_pair();
    stop_for_probes();
    let sibling = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(client, b"hello", 5);
    });
    let mut buf = [0u8; 5];
    read(server, &mut buf, 5);
    let _ = sibling.join();
}

/// A thread waits on a futex (not a measured call) until a sibling wakes it 20 ms later.
fn futex_wake() {
    static WORD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    stop_for_probes();
    let waiter = std::thread::spawn(|| {
        while WORD.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            sys(
                libc::SYS_futex,
                [
                    WORD.as_ptr() as usize,
                    libc::FUTEX_WAIT as usize,
                    0,
                    0,
                    0,
                    0,
                ],
            );
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    WORD.store(1, std::sync::atomic::Ordering::SeqCst);
    sys(
        libc::SYS_futex,
        [
            WORD.as_ptr() as usize,
            libc::FUTEX_WAKE as usize,
            1,
            0,
            0,
            0,
        ],
    );
    let _ = waiter.join();
}

/// Descriptors for `io_calls`: a regular file, a connected TCP pair (and its listener), a pipe.
struct IoFds {
    file: i32,
    client: i32,
    server: i32,
    pipe: [i32; 2],
    _listener: TcpListener,
}

fn io_setup() -> IoFds {
    let path = std::env::temp_dir().join(format!("netpoll-fixture-{}", std::process::id()));
    File::create(&path)
        .and_then(|mut f| f.write_all(&[7u8; 4096]))
        .expect("temp file");
    let file = File::open(&path).expect("open").into_raw_fd();
    let _ = std::fs::remove_file(&path);
    let (client, server, _listener) = tcp_pair();
    let mut pipe = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::pipe(pipe.as_mut_ptr()) };
    IoFds {
        file,
        client,
        server,
        pipe,
        _listener,
    }
}

/// Stops for the probes after the set-up; `io_calls` then.
fn io() {
    let fds = io_setup();
    stop_for_probes();
    io_calls(&fds);
}

/// Pinned to CPU 0 (where a cached "not a target" verdict would stay), 20 pipe write+read
/// pairs of 1 byte as a process that is not a target, then `become` makes it one (a new name,
/// another cgroup), then `io_calls`: the probes must count exactly those.
fn becomes_target_midway(become_target: impl FnOnce()) {
    pin_to(0);
    let fds = io_setup();
    stop_for_probes();
    let mut buf = [0u8; 1];
    for _ in 0..20 {
        write(fds.pipe[1], &buf, 1);
        read(fds.pipe[0], &mut buf, 1);
    }
    become_target();
    io_calls(&fds);
}

fn io_after_stop() {
    io_calls(&io_setup());
}

/// File read of 1000 bytes; socket write 300 + read 300; sendto 200 + recvfrom 200; pipe
/// write 10 + read 10; one non-blocking read of an empty socket (EAGAIN).
fn io_calls(
    &IoFds {
        file,
        client,
        server,
        pipe,
        ..
    }: &IoFds,
) {
    let mut buf = vec![0u8; 4096];
    read(file, &mut buf, 1000);
    write(client, &buf, 300);
    read_all(libc::SYS_read, server, &mut buf, 300);
    sys(
        libc::SYS_sendto,
        [client as usize, buf.as_ptr() as usize, 200, 0, 0, 0],
    );
    read_all(libc::SYS_recvfrom, server, &mut buf, 200);
    write(pipe[1], &buf, 10);
    read(pipe[0], &mut buf, 10);
    // SAFETY: plain fcntl on our descriptor.
    unsafe { libc::fcntl(server, libc::F_SETFL, libc::O_NONBLOCK) };
    let r = read(server, &mut buf, 10);
    assert_eq!(r, -1);
}

/// 5 connections to ourselves: 5 connect, 5 accept4.
fn accept() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    stop_for_probes();
    for _ in 0..5 {
        // connect() and accept4() are the only measured calls here (socket() and close() are not).
        let client = TcpStream::connect(addr).expect("connect");
        let fd = sys(
            libc::SYS_accept4,
            [listener.as_raw_fd() as usize, 0, 0, 0, 0, 0],
        );
        assert!(fd >= 0);
        // SAFETY: closing descriptors we own.
        unsafe { libc::close(fd as i32) };
        drop(client);
    }
}

/// 3 poll calls with timeout 0, 2 select calls with a 5 ms timeout (nothing ready).
fn poll() {
    let mut pair = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    let mut pfd = libc::pollfd {
        fd: pair[0],
        events: libc::POLLIN,
        revents: 0,
    };
    stop_for_probes();
    for _ in 0..3 {
        sys(libc::SYS_poll, [(&raw mut pfd) as usize, 1, 0, 0, 0, 0]);
    }
    for _ in 0..2 {
        // SAFETY: fd_set manipulation on a stack value.
        let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
        // SAFETY: FD_SET on a zeroed fd_set of our own, with a descriptor below FD_SETSIZE.
        unsafe { libc::FD_SET(pair[0], &mut set) };
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 5000,
        };
        sys(
            libc::SYS_select,
            [
                pair[0] as usize + 1,
                (&raw mut set) as usize,
                0,
                0,
                (&raw mut tv) as usize,
                0,
            ],
        );
    }
}

/// Prints its port, then blocks in accept4 until the test connects.
fn blocked_accept() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    let fd = sys(
        libc::SYS_accept4,
        [listener.as_raw_fd() as usize, 0, 0, 0, 0, 0],
    );
    assert!(fd >= 0);
}

/// The parent forks a child that writes 3 times to /dev/null; the parent writes once.
fn fork() {
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
        .into_raw_fd();
    stop_for_probes();
    // SAFETY: the child only makes raw syscalls and _exits.
    match unsafe { libc::fork() } {
        0 => {
            for _ in 0..3 {
                write(null, b"abc", 3);
            }
            // SAFETY: leave without cleanup.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            write(null, b"abcd", 4);
        }
    }
}

/// Pinned to CPU 0, one epoll_wait that times out after 300 ms; meanwhile the test moves us
/// to CPU 1, so the call returns on another CPU than it began on.
fn migrate() {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: a zeroed cpu_set_t with CPU 0 set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    stop_for_probes();
    sys(
        libc::SYS_epoll_wait,
        [ep as usize, events.as_mut_ptr() as usize, 1, 300, 0, 0],
    );
}

/// A child exists before the probes attach: it writes 5 bytes, the parent 4.
fn tree() {
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
        .into_raw_fd();
    // SAFETY: the child only makes raw syscalls and _exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        stop_for_probes();
        write(null, b"abcde", 5);
        // SAFETY: leave without cleanup.
        unsafe { libc::_exit(0) }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child to stop, then to exit.
    unsafe { libc::waitpid(child, &mut status, libc::WUNTRACED) };
    stop_for_probes();
    // SAFETY: continuing our own stopped child, then reaping it.
    unsafe {
        libc::kill(child, libc::SIGCONT);
        libc::waitpid(child, &mut status, 0);
    }
    write(null, b"abcd", 4);
}

/// A thread blocks in epoll_wait forever; the main thread then exits the process, which
/// interrupts the call (it returns EINTR to the exit path, which the sys_exit hook sees).
fn die_in_call() {
    let ep = sys(libc::SYS_epoll_create1, [0; 6]) as i32;
    stop_for_probes();
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    std::thread::spawn(move || {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
        STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
        sys(
            libc::SYS_epoll_wait,
            [
                ep as usize,
                events.as_mut_ptr() as usize,
                1,
                -1i64 as usize,
                0,
                0,
            ],
        );
    });
    // On a busy machine the thread may start late: the 300 ms count from its call.
    while !STARTED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
}

/// The io_uring fixture's known numbers: NOPs and receives with their data already there
/// (inline), receives whose data comes URING_WAIT_MS later (poll), reads of a file forced to an
/// io-wq worker (IOSQE_ASYNC), buffered reads of a file in the page cache (inline) and of one
/// evicted from it before each read (io-wq: the read would block on the disk), a multishot
/// accept of URING_ACCEPTS connections then cancelled (one request, several completions), and
/// NOPs through a second ring whose SQPOLL thread submits them.
pub const URING_NOPS: u64 = 5;
pub const URING_INLINE_RECVS: u64 = 40;
pub const URING_POLLED_RECVS: u64 = 6;
pub const URING_WAIT_MS: u64 = 20;
pub const URING_ASYNC_READS: u64 = 12;
pub const URING_CACHED_READS: u64 = 8;
pub const URING_COLD_READS: u64 = 8;
pub const URING_ACCEPTS: u64 = 3;
pub const URING_SQPOLL_NOPS: u64 = 5;

/// Submits one request and waits for its completion (`before_wait` runs in between); its result
/// and flags.
fn uring_one(
    ring: &mut io_uring::IoUring,
    entry: io_uring::squeue::Entry,
    before_wait: &dyn Fn(),
) -> (i32, u32) {
    // SAFETY: the entry's buffers outlive the request: it is reaped below.
    unsafe { ring.submission().push(&entry).expect("queue") };
    ring.submit().expect("submit");
    before_wait();
    uring_reap(ring)
}

/// Waits for the next completion: its result and flags.
fn uring_reap(ring: &mut io_uring::IoUring) -> (i32, u32) {
    loop {
        if let Some(cqe) = ring.completion().next() {
            return (cqe.result(), cqe.flags());
        }
        ring.submit_and_wait(1).expect("wait");
    }
}

/// One request at a time, each reaped before the next: its path is known.
fn uring() {
    use io_uring::{IoUring, opcode, squeue, types::Fd};
    let mut ring = IoUring::new(16).expect("io_uring_setup");
    let mut sqpoll = IoUring::builder()
        .setup_sqpoll(1000)
        .build(8)
        .expect("io_uring_setup with SQPOLL");
    let mut pair = [0i32; 2];
    // SAFETY: valid out-pointer.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    let exe = File::open(std::env::current_exe().expect("exe")).expect("open");
    // A file of its own on a disk-backed filesystem, written and synced (clean pages can be
    // evicted), then read once so that it is in the page cache.
    let path = std::env::temp_dir().join(format!("netpoll-uring-{}", std::process::id()));
    let mut data = File::create(&path).expect("create");
    data.write_all(&vec![7u8; 16 * 4096]).expect("write");
    data.sync_all().expect("fsync");
    let data = File::open(&path).expect("open");
    let _ = std::fs::remove_file(&path);
    let _ = std::io::Read::read_to_end(&mut &data, &mut Vec::new());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut buf = [0u8; 4096];
    // A receive in flight when the probes attach: its completion is not followed (a lower
    // bound, from the attach).
    let early = opcode::Recv::new(Fd(pair[0]), buf.as_mut_ptr(), 1).build();
    // SAFETY: buf outlives the request (reaped right after the stop).
    unsafe { ring.submission().push(&early).expect("queue") };
    ring.submit().expect("submit");
    stop_for_probes();
    sleep_ms(URING_WAIT_MS);
    write(pair[1], b"z", 1);
    let ok = |(res, _): (i32, u32)| assert!(res >= 0, "request failed: {res}");
    ok(uring_reap(&mut ring));
    let nothing = || {};
    for _ in 0..URING_NOPS {
        ok(uring_one(&mut ring, opcode::Nop::new().build(), &nothing));
    }
    for _ in 0..URING_INLINE_RECVS {
        write(pair[1], b"x", 1);
        let recv = opcode::Recv::new(Fd(pair[0]), buf.as_mut_ptr(), 1).build();
        ok(uring_one(&mut ring, recv, &nothing));
    }
    for _ in 0..URING_POLLED_RECVS {
        let recv = opcode::Recv::new(Fd(pair[0]), buf.as_mut_ptr(), 1).build();
        let later = || {
            sleep_ms(URING_WAIT_MS);
            write(pair[1], b"y", 1);
        };
        ok(uring_one(&mut ring, recv, &later));
    }
    let read_at = |file: &File, i: u64, flags: squeue::Flags, buf: &mut [u8]| {
        opcode::Read::new(Fd(file.as_raw_fd()), buf.as_mut_ptr(), buf.len() as u32)
            .offset(i * 4096)
            .build()
            .flags(flags)
    };
    for i in 0..URING_ASYNC_READS {
        let read = read_at(&exe, i, squeue::Flags::ASYNC, &mut buf);
        ok(uring_one(&mut ring, read, &nothing));
    }
    for i in 0..URING_CACHED_READS {
        let read = read_at(&data, i, squeue::Flags::empty(), &mut buf);
        ok(uring_one(&mut ring, read, &nothing));
    }
    for i in 0..URING_COLD_READS {
        // SAFETY: a valid descriptor; drops the file's clean pages from the page cache.
        unsafe { libc::posix_fadvise(data.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let read = read_at(&data, i, squeue::Flags::empty(), &mut buf);
        ok(uring_one(&mut ring, read, &nothing));
    }
    // One multishot accept: a completion per connection (flagged MORE), until cancelled.
    const MULTISHOT: u64 = 0xacce;
    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
        .build()
        .user_data(MULTISHOT);
    // SAFETY: no buffer.
    unsafe { ring.submission().push(&accept).expect("queue") };
    ring.submit().expect("submit");
    let mut clients = Vec::new();
    for _ in 0..URING_ACCEPTS {
        clients.push(TcpStream::connect(addr).expect("connect"));
        let (res, flags) = uring_reap(&mut ring);
        assert!(
            res >= 0 && io_uring::cqueue::more(flags),
            "multishot accept: {res} {flags}"
        );
    }
    let cancel = opcode::AsyncCancel::new(MULTISHOT).build().user_data(1);
    // SAFETY: no buffer.
    unsafe { ring.submission().push(&cancel).expect("queue") };
    ring.submit().expect("submit");
    // The cancel's completion and the accept's last (-ECANCELED), in either order.
    uring_reap(&mut ring);
    uring_reap(&mut ring);
    for _ in 0..URING_SQPOLL_NOPS {
        ok(uring_one(&mut sqpoll, opcode::Nop::new().build(), &nothing));
    }
}

/// uring-shared: NOPs through one ring, by the fixture and by a child it forks after the
/// probes attached (not a target with --no-follow), which shares the ring.
pub const URING_OWN_NOPS: u64 = 5;
pub const URING_CHILD_NOPS: u64 = 7;
const OWN: u64 = 1;
const CHILD: u64 = 2;

fn uring_shared() {
    use io_uring::{IoUring, opcode};
    let mut ring = IoUring::new(32).expect("io_uring_setup");
    stop_for_probes();
    // SAFETY: the child submits on the inherited ring (its queues are shared memory) and
    // _exits.
    match unsafe { libc::fork() } {
        0 => {
            for _ in 0..URING_CHILD_NOPS {
                let nop = opcode::Nop::new().build().user_data(CHILD);
                // SAFETY: no buffer.
                unsafe { ring.submission().push(&nop).expect("queue") };
            }
            ring.submit().expect("submit");
            // SAFETY: leave without cleanup.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            assert!(status == 0, "the child failed to submit: {status}");
        }
    }
    for _ in 0..URING_OWN_NOPS {
        let nop = opcode::Nop::new().build().user_data(OWN);
        // SAFETY: no buffer.
        unsafe { ring.submission().push(&nop).expect("queue") };
    }
    ring.submit().expect("submit");
    // The completion queue holds both processes' completions: count each's.
    let (mut own, mut theirs) = (0, 0);
    while own < URING_OWN_NOPS {
        ring.submit_and_wait(1).expect("wait");
        for c in ring.completion() {
            match c.user_data() {
                OWN => own += 1,
                CHILD => theirs += 1,
                other => panic!("a completion of nobody's request: {other}"),
            }
        }
    }
    assert_eq!(
        theirs, URING_CHILD_NOPS,
        "the child's requests did not complete"
    );
}
