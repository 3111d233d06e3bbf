//! Loads the real probes (as root) against fixture processes whose syscalls are known exactly,
//! and checks what `netpoll profile` reports.
//!
//! This binary is also the fixture: run with `NETPOLL_FIXTURE=<scenario>`, it sets up, stops
//! itself with SIGSTOP (not a syscall the probes measure), and, once continued, makes exactly the
//! syscalls of its scenario through `libc::syscall`, then `_exit`s. Tests run one at a time:
//! kernel state is shared.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

mod common;

use analysis::{Results, results::SyscallStats};
use common::assert_nothing_attached;
use libtest_mimic::{Arguments, Trial};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

const NETPOLL: &str = env!("CARGO_BIN_EXE_netpoll");
const MS: u64 = 1_000_000;

fn main() {
    if let Ok(scenario) = std::env::var("NETPOLL_FIXTURE") {
        fixture::run(&scenario);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests = [
        Trial::test(
            "epoll_wait_timeouts_batching_and_latency",
            epoll_wait_timeouts_batching_and_latency,
        ),
        Trial::test(
            "reads_and_writes_split_by_socket_with_exact_bytes",
            reads_and_writes_split_by_socket_with_exact_bytes,
        ),
        Trial::test(
            "every_hook_kind_measures_the_same",
            every_hook_kind_measures_the_same,
        ),
        Trial::test("missing_tracefs_is_mounted", missing_tracefs_is_mounted),
        Trial::test(
            "accepts_and_connects_counted_exactly",
            accepts_and_connects_counted_exactly,
        ),
        Trial::test("poll_and_select_timeouts", poll_and_select_timeouts),
        Trial::test(
            "call_blocked_before_attach_is_a_lower_bound",
            call_blocked_before_attach_is_a_lower_bound,
        ),
        Trial::test(
            "children_followed_and_broken_down_per_pid",
            children_followed_and_broken_down_per_pid,
        ),
        Trial::test(
            "no_follow_sees_the_parent_only",
            no_follow_sees_the_parent_only,
        ),
        Trial::test(
            "spawned_command_profiled_from_its_first_syscall",
            spawned_command_profiled_from_its_first_syscall,
        ),
        Trial::test("comm_filter", comm_filter),
        Trial::test(
            "children_that_existed_before_attach_are_included",
            children_that_existed_before_attach_are_included,
        ),
        Trial::test("cgroup_filter", cgroup_filter),
        Trial::test(
            "call_resuming_on_another_cpu_is_measured",
            call_resuming_on_another_cpu_is_measured,
        ),
        Trial::test(
            "thread_killed_inside_a_call_leaks_nothing",
            thread_killed_inside_a_call_leaks_nothing,
        ),
        Trial::test(
            "ctrl_c_writes_partial_results_and_detaches",
            ctrl_c_writes_partial_results_and_detaches,
        ),
        Trial::test(
            "bad_inputs_fail_with_one_line_and_attach_nothing",
            bad_inputs_fail_with_one_line_and_attach_nothing,
        ),
        Trial::test("redis_server_under_load", redis_server_under_load),
    ];
    libtest_mimic::run(&args, tests.into()).exit();
}

type TestResult = Result<(), libtest_mimic::Failed>;

// ---------------------------------------------------------------------------------------------
// The fixture side.

mod fixture {
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

    pub fn run(scenario: &str) -> ! {
        match scenario {
            "epoll" => epoll(),
            "io" => io(),
            "io-nostop" => io_after_stop(),
            "accept" => accept(),
            "poll" => poll(),
            "blocked-accept" => blocked_accept(),
            "fork" => fork(),
            "comm" => {
                // SAFETY: PR_SET_NAME with a NUL-terminated name.
                unsafe { libc::prctl(libc::PR_SET_NAME, c"npfixture".as_ptr()) };
                io();
            }
            "die-in-call" => die_in_call(),
            "migrate" => migrate(),
            "tree" => tree(),
            "sleepy" => {
                stop_for_probes();
                loop {
                    write(1, b"", 0);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            other => panic!("unknown fixture {other}"),
        }
        // SAFETY: exit without running destructors or flushing (no stray syscalls).
        unsafe { libc::_exit(0) }
    }

    /// 20 epoll_wait calls that time out after 10 ms, 7 with timeout 0, then one epoll_pwait that
    /// finds one ready descriptor, after one socket write.
    fn epoll() {
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
        for _ in 0..20 {
            sys(libc::SYS_epoll_wait, [ep as usize, evp, 8, 10, 0, 0]);
        }
        for _ in 0..7 {
            sys(libc::SYS_epoll_wait, [ep as usize, evp, 8, 0, 0, 0]);
        }
        write(pair[1], b"x", 1);
        sys(
            libc::SYS_epoll_pwait,
            [ep as usize, evp, 8, -1i64 as usize, 0, 8],
        );
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
        // SAFETY: as above.
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
        std::thread::spawn(move || {
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1];
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
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

// ---------------------------------------------------------------------------------------------
// The test side.

/// A fixture process, stopped and waiting for the probes.
struct Fixture {
    child: Child,
}

impl Fixture {
    fn start(scenario: &str) -> Fixture {
        let exe = std::env::current_exe().expect("current_exe");
        let child = Command::new(exe)
            .env("NETPOLL_FIXTURE", scenario)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let fixture = Fixture { child };
        match waitpid(fixture.pid(), Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(..)) => fixture,
            other => panic!("fixture {scenario} did not stop: {other:?}"),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn go(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT");
    }

    fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait fixture")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `netpoll profile`, attached.
struct Profile {
    child: Child,
    json: PathBuf,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

struct Finished {
    status: ExitStatus,
    stderr: String,
    results: Option<Results>,
}

fn temp_json() -> PathBuf {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("netpoll-test-{}-{run}.json", std::process::id()))
}

impl Profile {
    /// Starts `netpoll profile ARGS --json F --quiet` and waits until it says it attached.
    fn start(args: &[&str]) -> Profile {
        Self::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Profile {
        let json = temp_json();
        let _ = std::fs::remove_file(&json);
        let mut cmd = Command::new(NETPOLL);
        cmd.arg("profile").args(["--quiet", "--json"]).arg(&json);
        // Options before `--`, the command after it.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split]).args(&args[split..]);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn netpoll");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut profile = Profile {
            child,
            json,
            stderr: rx,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match profile.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let attached = line.contains("attached");
                    profile.lines.push(line);
                    if attached {
                        return profile;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = profile.child.try_wait() {
                        panic!(
                            "netpoll exited ({status}) before attaching:\n{}",
                            profile.lines.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("netpoll did not attach:\n{}", profile.lines.join("\n"));
    }

    fn interrupt(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).expect("SIGINT");
    }

    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "netpoll did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(line);
        }
        let results = std::fs::read_to_string(&self.json).ok().map(|text| {
            Results::parse(&text, &self.json.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let _ = std::fs::remove_file(&self.json);
        assert_nothing_attached();
        Finished {
            status,
            stderr: self.lines.join("\n"),
            results,
        }
    }
}

impl Finished {
    fn results(&self) -> &Results {
        assert!(
            self.status.success(),
            "netpoll failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self.results
            .as_ref()
            .unwrap_or_else(|| panic!("no results written:\n{}", self.stderr))
    }
}

fn row<'a>(rows: &'a [SyscallStats], name: &str, fd: Option<&str>) -> &'a SyscallStats {
    rows.iter()
        .find(|r| r.name == name && r.fd.as_deref() == fd)
        .unwrap_or_else(|| {
            panic!(
                "no row {name} {fd:?} in {:?}",
                rows.iter().map(|r| r.label()).collect::<Vec<_>>()
            )
        })
}

fn check(cond: bool, what: impl std::fmt::Display) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what.to_string().into())
    }
}

/// Profiles a stopped fixture by PID until it exits.
fn profile_fixture(scenario: &str, extra: &[&str]) -> Finished {
    let fixture = Fixture::start(scenario);
    let pid = fixture.child.id().to_string();
    let mut args = vec!["--pid", pid.as_str()];
    args.extend_from_slice(extra);
    let profile = Profile::start(&args);
    fixture.go();
    let status = fixture.wait();
    assert!(status.success(), "fixture {scenario} failed: {status}");
    profile.finish()
}

fn epoll_wait_timeouts_batching_and_latency() -> TestResult {
    let run = profile_fixture("epoll", &[]);
    let r = run.results();
    check(
        r.end_reason == "targets_exited",
        format!("end_reason {}", r.end_reason),
    )?;
    let wait = row(&r.syscalls, "epoll_wait", None);
    check(wait.calls == 27, format!("epoll_wait calls {}", wait.calls))?;
    check(
        wait.zero_ready == 27,
        format!("zero_ready {}", wait.zero_ready),
    )?;
    check(
        wait.nonblocking == 7,
        format!("nonblocking {}", wait.nonblocking),
    )?;
    check(wait.errors == 0, "errors")?;
    // The 20 blocking calls each took 10 ms or a little more; the 7 polls far less.
    let slow: u64 = wait
        .latency_ns
        .buckets()
        .filter(|b| b.1 >= 10 * MS)
        .map(|b| b.2)
        .sum();
    check(
        slow == 20,
        format!("{slow} calls >= 10 ms: {:?}", wait.latency_ns),
    )?;
    let max = wait.latency_ns.max().expect("non-empty");
    check(
        max.low < 20 * MS,
        format!("slowest epoll_wait {max:?} should be ~10 ms"),
    )?;
    let p50 = wait.latency_ns.quantile(0.5).expect("non-empty");
    check(
        p50.high >= 10 * MS && p50.low < 15 * MS,
        format!("p50 {p50:?}"),
    )?;
    let pwait = row(&r.syscalls, "epoll_pwait", None);
    check(
        pwait.calls == 1 && pwait.zero_ready == 0 && pwait.nonblocking == 0,
        format!("{pwait:?}"),
    )?;
    check(
        pwait.ready_events.buckets().collect::<Vec<_>>() == [(1, 1, 1)],
        format!("ready {:?}", pwait.ready_events),
    )?;
    let epoll = r.class("epoll").expect("epoll class");
    check(epoll.calls == 28, format!("epoll class {}", epoll.calls))?;
    check(
        row(&r.syscalls, "write", Some("socket")).bytes == 1,
        "one socket byte written",
    )?;
    check(
        r.lower_bound.is_empty(),
        format!("lower bound {:?}", r.lower_bound),
    )
}

fn check_io(r: &Results) -> TestResult {
    let file_read = row(&r.syscalls, "read", Some("other"));
    check(
        file_read.bytes == 1010 && file_read.calls == 2,
        format!(
            "other reads: {} calls {} bytes",
            file_read.calls, file_read.bytes
        ),
    )?;
    let sock_read = row(&r.syscalls, "read", Some("socket"));
    check(
        sock_read.bytes == 300,
        format!("socket read bytes {}", sock_read.bytes),
    )?;
    check(
        sock_read.eagain == 1 && sock_read.errors == 1,
        format!("EAGAIN {} errors {}", sock_read.eagain, sock_read.errors),
    )?;
    check(
        row(&r.syscalls, "write", Some("socket")).bytes == 300,
        "socket write bytes",
    )?;
    check(
        row(&r.syscalls, "write", Some("other")).bytes == 10,
        "pipe write bytes",
    )?;
    check(
        row(&r.syscalls, "sendto", Some("socket")).bytes == 200,
        "sendto bytes",
    )?;
    check(
        row(&r.syscalls, "recvfrom", Some("socket")).bytes == 200,
        "recvfrom bytes",
    )?;
    let socket_read = r.class("socket_read").expect("socket_read");
    check(
        socket_read.bytes == 500,
        format!("socket_read class bytes {}", socket_read.bytes),
    )?;
    check(
        r.class("other_write").map(|c| c.calls) == Some(1),
        "other_write calls",
    )
}

fn reads_and_writes_split_by_socket_with_exact_bytes() -> TestResult {
    let run = profile_fixture("io", &[]);
    let r = run.results();
    check(r.socket_split, "socket split")?;
    check_io(r)?;
    check(
        r.syscalls.iter().all(|s| s.latency_ns.total() == s.calls),
        "one latency sample per call",
    )
}

fn every_hook_kind_measures_the_same() -> TestResult {
    for hook in ["tp-btf", "raw-tp", "tracepoint"] {
        let run = profile_fixture("io", &["--hook", hook]);
        let r = run.results();
        check(
            r.hook == hook.replace('-', "_"),
            format!("hook {} for {hook}", r.hook),
        )?;
        check_io(r)
            .map_err(|e| format!("with --hook {hook}: {}", e.message().unwrap_or_default()))?;
    }
    Ok(())
}

fn missing_tracefs_is_mounted() -> TestResult {
    // Unmount tracefs (left mounted by earlier runs), then let netpoll find it missing.
    let tracefs = std::path::Path::new("/sys/kernel/tracing/events");
    if tracefs.exists() {
        let ok = Command::new("umount")
            .arg("/sys/kernel/tracing")
            .status()
            .is_ok_and(|s| s.success());
        check(ok, "cannot unmount tracefs for the test")?;
    }
    check(!tracefs.exists(), "tracefs still mounted")?;
    let run = profile_fixture("io", &["--hook", "tracepoint"]);
    check(
        run.stderr
            .contains("mounted tracefs at /sys/kernel/tracing"),
        format!("no note in:\n{}", run.stderr),
    )?;
    check(tracefs.exists(), "tracefs is mounted afterwards")?;
    check_io(run.results())
}

fn accepts_and_connects_counted_exactly() -> TestResult {
    let run = profile_fixture("accept", &[]);
    let r = run.results();
    check(row(&r.syscalls, "accept4", None).calls == 5, "5 accept4")?;
    let connect = row(&r.syscalls, "connect", None);
    check(
        connect.calls == 5 && connect.errors == 0,
        format!("connect {connect:?}"),
    )?;
    check(
        r.class("accept").map(|c| c.calls) == Some(5),
        "accept class",
    )
}

fn poll_and_select_timeouts() -> TestResult {
    let run = profile_fixture("poll", &[]);
    let r = run.results();
    let poll = row(&r.syscalls, "poll", None);
    check(
        poll.calls == 3 && poll.nonblocking == 3 && poll.zero_ready == 3,
        format!("poll {poll:?}"),
    )?;
    let select = row(&r.syscalls, "select", None);
    check(
        select.calls == 2 && select.nonblocking == 0 && select.zero_ready == 2,
        format!("select {select:?}"),
    )?;
    let fast = select.latency_ns.buckets().filter(|b| b.1 < 5 * MS).count();
    check(
        fast == 0,
        format!(
            "select returned before its 5 ms timeout: {:?}",
            select.latency_ns
        ),
    )?;
    check(
        r.class("poll_select").map(|c| c.calls) == Some(5),
        "poll_select class",
    )
}

fn call_blocked_before_attach_is_a_lower_bound() -> TestResult {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .env("NETPOLL_FIXTURE", "blocked-accept")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("port number");
    // Wait until the fixture is inside accept4 (/proc/PID/syscall names the syscall it is in).
    let nr = libc::SYS_accept4.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/syscall", child.id()))
        .is_ok_and(|s| s.split_whitespace().next() == Some(nr.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "fixture never blocked in accept4"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    let profile = Profile::start(&["--pid", &pid]);
    std::thread::sleep(Duration::from_millis(300));
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    child.wait().expect("fixture");
    let run = profile.finish();
    let r = run.results();
    check(
        r.syscalls.iter().all(|s| s.name != "accept4"),
        "the blocked accept4 must not count as fully measured",
    )?;
    let accept = row(&r.lower_bound, "accept4", None);
    check(
        accept.calls == 1,
        format!("lower-bound accept4 calls {}", accept.calls),
    )?;
    let latency = accept.latency_ns.max().expect("one sample");
    check(
        latency.high >= 300 * MS && latency.low < 5_000 * MS,
        format!("lower bound {latency:?} should be >= 300 ms"),
    )
}

fn children_followed_and_broken_down_per_pid() -> TestResult {
    let run = profile_fixture("fork", &["--per-pid"]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 4 && writes.bytes == 13,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )?;
    check(r.counters.followed_tasks >= 1, "followed the child")?;
    check(
        r.processes.len() == 2,
        format!("{} processes", r.processes.len()),
    )?;
    let mut per_process: Vec<u64> = r
        .processes
        .values()
        .map(|p| p.syscalls.iter().map(|s| s.bytes).sum())
        .collect();
    per_process.sort();
    check(
        per_process == [4, 9],
        format!("bytes per process {per_process:?}"),
    )
}

fn children_that_existed_before_attach_are_included() -> TestResult {
    let run = profile_fixture("tree", &[]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 2 && writes.bytes == 9,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )
}

fn no_follow_sees_the_parent_only() -> TestResult {
    let run = profile_fixture("fork", &["--no-follow"]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 1 && writes.bytes == 4,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )
}

fn spawned_command_profiled_from_its_first_syscall() -> TestResult {
    let exe = std::env::current_exe().expect("current_exe");
    let exe = exe.to_str().expect("utf-8 path");
    let profile = Profile::start_with(&["--", exe], &[("NETPOLL_FIXTURE", "io-nostop")]);
    let run = profile.finish();
    let r = run.results();
    check(
        r.end_reason == "command_exited" && r.command_exit_code == Some(0),
        format!("{} {:?}", r.end_reason, r.command_exit_code),
    )?;
    // The program's start-up reads files (the dynamic loader), but makes no socket I/O.
    check(
        r.class("socket_read").map(|c| c.bytes) == Some(500),
        "socket bytes read",
    )?;
    check(
        r.class("socket_write").map(|c| c.bytes) == Some(500),
        "socket bytes written",
    )?;
    check(
        r.lower_bound.is_empty(),
        format!("nothing in flight at attach: {:?}", r.lower_bound),
    )
}

fn comm_filter() -> TestResult {
    let fixture = Fixture::start("comm");
    let profile = Profile::start(&["--comm", "npfixture", "--duration", "1.5"]);
    fixture.go();
    fixture.wait();
    let run = profile.finish();
    let r = run.results();
    check(r.end_reason == "duration", "ends at --duration")?;
    check_io(r)
}

/// The cgroup v2 mount point, mounting one when none is mounted.
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Some(dir) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) {
        return dir;
    }
    let dir = std::env::temp_dir().join("netpoll-test-cgroup2");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot mount cgroup2");
    dir
}

fn cgroup_filter() -> TestResult {
    let cgroup = cgroup2_root().join(format!("netpoll-test-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).expect("create cgroup");
    let fixture = Fixture::start("io");
    std::fs::write(cgroup.join("cgroup.procs"), fixture.child.id().to_string())
        .expect("move fixture");
    let path = cgroup.to_str().expect("utf-8").to_string();
    let profile = Profile::start(&["--cgroup", &path, "--duration", "1.5"]);
    fixture.go();
    fixture.wait();
    let run = profile.finish();
    let _ = std::fs::remove_dir(&cgroup);
    check_io(run.results())
}

fn call_resuming_on_another_cpu_is_measured() -> TestResult {
    check(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "this test needs 2 CPUs",
    )?;
    let fixture = Fixture::start("migrate");
    let pid = fixture.child.id();
    let profile = Profile::start(&["--pid", &pid.to_string()]);
    fixture.go();
    // Once it sleeps in epoll_wait on CPU 0, allow it CPU 1 only: it wakes up there.
    let nr = libc::SYS_epoll_wait.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(nr.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "fixture never blocked in epoll_wait"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(1).expect("cpu 1");
    nix::sched::sched_setaffinity(Pid::from_raw(pid as i32), &cpus).expect("sched_setaffinity");
    fixture.wait();
    let run = profile.finish();
    let r = run.results();
    let wait = row(&r.syscalls, "epoll_wait", None);
    check(wait.calls == 1 && wait.zero_ready == 1, format!("{wait:?}"))?;
    let latency = wait.latency_ns.max().expect("one sample");
    check(
        latency.high >= 300 * MS && latency.low < 400 * MS,
        format!("latency {latency:?}"),
    )?;
    check(
        r.lower_bound.is_empty(),
        format!("lower bound {:?}", r.lower_bound),
    )
}

fn thread_killed_inside_a_call_leaks_nothing() -> TestResult {
    let run = profile_fixture("die-in-call", &[]);
    let r = run.results();
    let wait = row(&r.syscalls, "epoll_wait", None);
    check(
        wait.calls == 1 && wait.errors == 1,
        format!("the interrupted epoll_wait: {wait:?}"),
    )?;
    let latency = wait.latency_ns.max().expect("one sample");
    check(
        latency.high >= 300 * MS,
        format!("it waited ~300 ms: {latency:?}"),
    )?;
    // Every thread of the (now dead) target left the in-flight map.
    check(
        r.counters.in_flight_entries == 0,
        format!("{} in-flight entries left", r.counters.in_flight_entries),
    )
}

fn ctrl_c_writes_partial_results_and_detaches() -> TestResult {
    let fixture = Fixture::start("sleepy");
    let pid = fixture.child.id().to_string();
    let profile = Profile::start(&["--pid", &pid]);
    fixture.go();
    std::thread::sleep(Duration::from_millis(500));
    profile.interrupt();
    let run = profile.finish();
    check(
        run.status.code() == Some(130),
        format!("exit code {:?}", run.status.code()),
    )?;
    let r = run.results.as_ref().ok_or("no partial results written")?;
    check(
        r.partial && r.end_reason == "interrupted",
        format!("partial {} reason {}", r.partial, r.end_reason),
    )?;
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls >= 10,
        format!("{} writes in 500 ms", writes.calls),
    )
}

fn expect_error(args: &[&str], expected: &str) -> TestResult {
    let out = Command::new(NETPOLL)
        .args(args)
        .output()
        .expect("run netpoll");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(!out.status.success(), format!("{args:?} succeeded"))?;
    check(
        stderr.lines().count() == 1,
        format!("{args:?}: want one line, got:\n{stderr}"),
    )?;
    check(
        stderr.contains(expected) && !stderr.contains("panicked"),
        format!("{args:?}: {stderr}"),
    )?;
    assert_nothing_attached();
    Ok(())
}

fn bad_inputs_fail_with_one_line_and_attach_nothing() -> TestResult {
    expect_error(
        &["profile", "--pid", "999999999"],
        "--pid 999999999: no such process",
    )?;
    expect_error(
        &["profile", "--cgroup", "/tmp"],
        "not a cgroup v2 directory",
    )?;
    expect_error(
        &["profile", "--cgroup", "/nonexistent/cg"],
        "no such cgroup directory",
    )?;
    expect_error(
        &["profile", "--", "/nonexistent/program"],
        "cannot start `/nonexistent/program`",
    )?;
    expect_error(
        &["profile", "--all", "--json", "/proc/netpoll/x.json"],
        "--json /proc/netpoll/x.json: cannot write",
    )?;
    expect_error(&["profile"], "nothing to profile")?;
    expect_error(
        &["profile", "--all", "--duration", "0"],
        "0 must be a positive number of seconds",
    )?;
    expect_error(&["profile", "--bogus"], "unexpected argument '--bogus'")?;
    expect_error(
        &["profile", "--all", "--pid", "1"],
        "give one kind of target",
    )?;
    // Not root: drop to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            NETPOLL,
            "profile",
            "--pid",
            "1",
        ])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success()
            && stderr.lines().count() == 1
            && stderr.contains("CAP_BPF and CAP_PERFMON"),
        format!("as nobody: {stderr}"),
    )
}

/// Starts a throwaway redis-server on a free loopback port.
fn start_redis() -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (installed by `cargo xtask test`)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn redis_server_under_load() -> TestResult {
    const N: u64 = 2000;
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const PONG: &[u8] = b"+PONG\r\n";
    let (mut redis, port) = start_redis();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_nodelay(true).expect("nodelay");
    // Let redis finish serving the connection it just accepted before the probes attach.
    std::thread::sleep(Duration::from_millis(200));
    let pid = redis.id().to_string();
    let profile = Profile::start(&["--pid", &pid]);
    let mut reply = [0u8; 7];
    for _ in 0..N {
        conn.write_all(PING).expect("send");
        conn.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply, PONG);
    }
    profile.interrupt();
    let run = profile.finish();
    let _ = redis.kill();
    let _ = redis.wait();
    let r = run.results.as_ref().ok_or("no results")?;
    let read = r.class("socket_read").ok_or("no socket reads")?;
    let write = r.class("socket_write").ok_or("no socket writes")?;
    // One read per request and one write per reply, moving exactly the bytes sent.
    check(
        read.bytes == N * PING.len() as u64,
        format!(
            "redis read {} bytes, expected {}",
            read.bytes,
            N * PING.len() as u64
        ),
    )?;
    check(
        write.bytes == N * PONG.len() as u64,
        format!("redis wrote {} bytes", write.bytes),
    )?;
    check(
        (N..=N + 5).contains(&read.calls),
        format!("{} socket reads for {N} requests", read.calls),
    )?;
    check(
        (N..=N + 5).contains(&write.calls),
        format!("{} socket writes for {N} requests", write.calls),
    )?;
    // Redis waits in epoll_wait for every request. The first wait began before the probes
    // attached: it is reported apart, as a lower bound.
    let epoll = r.class("epoll").ok_or("redis made no epoll calls")?;
    let already_waiting = row(&r.lower_bound, "epoll_wait", None).calls;
    check(
        already_waiting == 1,
        format!(
            "{already_waiting} epoll_wait calls in flight at attach: {:?} {:?}",
            row(&r.lower_bound, "epoll_wait", None).latency_ns,
            r.counters
        ),
    )?;
    check(
        epoll.calls + already_waiting >= N,
        format!("{} epoll_wait calls for {N} requests", epoll.calls),
    )?;
    let ready_one = epoll
        .ready_events
        .buckets()
        .find(|b| b.0 == 1)
        .map_or(0, |b| b.2);
    check(
        ready_one >= N - 1,
        format!("{ready_one} epoll_wait calls returned one ready event"),
    )
}
