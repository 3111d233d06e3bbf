//! Counts, bytes, EAGAINs, timeouts and latencies of fixtures whose syscalls are known exactly,
//! under every hook kind; calls that began before the probes attached, that resume on another
//! CPU, or whose thread dies.

use super::*;

pub fn epoll_wait_timeouts_batching_and_latency() -> TestResult {
    let run = profile_fixture(Scenario::Epoll, &[]);
    let r = run.results();
    check(
        r.end_reason == EndReason::TargetsExited,
        format!("end_reason {:?}", r.end_reason),
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
    let epoll = r.class(Class::Epoll).expect("epoll class");
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

pub fn check_io(r: &Results) -> TestResult {
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
    let socket_read = r.class(Class::SocketRead).expect("socket_read");
    check(
        socket_read.bytes == 500,
        format!("socket_read class bytes {}", socket_read.bytes),
    )?;
    check(
        r.class(Class::OtherWrite).map(|c| c.calls) == Some(1),
        "other_write calls",
    )
}

/// recvmmsg and sendmmsg: counted as socket reads and writes, their datagrams per call in the
/// batch histogram (exact below 64), bytes not claimed (their return value counts datagrams).
pub fn datagram_batches_are_counted_per_call() -> TestResult {
    let run = profile_fixture(Scenario::Mmsg, &[]);
    let r = run.results();
    for name in ["sendmmsg", "recvmmsg"] {
        // One row, on sockets: all calls moved datagrams.
        let rows: Vec<_> = r.syscalls.iter().filter(|s| s.name == name).collect();
        check(
            rows.len() == 1 && rows[0].fd == Some(analysis::results::Fd::Socket),
            format!("{name} rows {rows:?}"),
        )?;
        let s = rows[0];
        check(s.calls == 3, format!("{name} calls {}", s.calls))?;
        check(s.bytes == 0, format!("{name} bytes {}", s.bytes))?;
        let batches: Vec<(u64, u64)> = s
            .ready_events
            .buckets()
            .filter(|b| b.2 > 0)
            .map(|(low, _, count)| (low, count))
            .collect();
        check(
            batches == [(3, 1), (5, 1), (7, 1)],
            format!("{name} datagrams per call {batches:?}"),
        )?;
    }
    check(
        r.class(Class::SocketRead).map(|c| c.calls) == Some(3)
            && r.class(Class::SocketWrite).map(|c| c.calls) == Some(3),
        "socket classes",
    )
}

pub fn reads_and_writes_split_by_socket_with_exact_bytes() -> TestResult {
    let run = profile_fixture(Scenario::Io, &[]);
    let r = run.results();
    check(r.socket_split, "socket split")?;
    check_io(r)?;
    check(
        r.syscalls.iter().all(|s| s.latency_ns.total() == s.calls),
        "one latency sample per call",
    )
}

/// Every process's exit and socket transfer leaves the programs on a per-CPU cached "not a
/// target" verdict; a bystander hammering sockets on the target's CPU makes that cache flip
/// between the two threads all the time. The target's counts stay exact, the bystander's
/// calls are nowhere.
pub fn bystander_on_the_same_cpu_changes_nothing() -> TestResult {
    let bystander = Fixture::start(Scenario::BystanderOnCpu0);
    bystander.go();
    let run = profile_fixture(Scenario::IoOnCpu0, &[]);
    drop(bystander);
    let r = run.results();
    check_io(r)?;
    let socket_writes: u64 = r
        .syscalls
        .iter()
        .filter(|s| s.name == "write")
        .map(|s| s.calls)
        .sum();
    check(
        socket_writes == 2,
        format!("{socket_writes} write calls: the bystander's were counted"),
    )
}

/// `--bpf-stats`: netpoll's programs' runs and run time, and the kernel's statistics switched
/// off again afterwards.
pub fn bpf_stats_measure_the_programs() -> TestResult {
    let stats_on =
        || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").map(|v| v.trim() == "1");
    let before = stats_on()?;
    let run = profile_fixture(Scenario::Io, &["--bpf-stats"]);
    let r = run.results();
    check_io(r)?;
    let calls: u64 = r.syscalls.iter().map(|s| s.calls).sum();
    let exit = r
        .programs
        .iter()
        .find(|p| p.event == "raw_syscalls:sys_exit")
        .ok_or_else(|| format!("no sys_exit program in {:?}", r.programs))?;
    // Every process's syscalls run it, the fixture's among them.
    check(
        exit.runs >= calls && exit.run_time_ns > 0,
        format!("{exit:?} for {calls} measured calls"),
    )?;
    // netpoll's own CPU while it collected: reading the maps and /proc is not free.
    let own = r.netpoll_cpu.ok_or("no netpoll_cpu")?;
    check(
        own.user_ns + own.system_ns > 0 && own.per_second_ns > 0,
        format!("{own:?}"),
    )?;
    // The fixture's memory at the collection's edges (its last reading, as it exited first).
    let m = r.memory.as_ref().ok_or("no memory section")?;
    check(
        m.after.server.processes >= 1
            && m.after.server.rss_bytes > 0
            && m.before.server.threads >= 1,
        format!("{m:?}"),
    )?;
    check(
        stats_on()? == before,
        "kernel.bpf_stats_enabled is back as it was",
    )
}

/// `netpoll micro-costs`: every part of the hot path loads, runs under BPF_PROG_TEST_RUN and
/// gets a figure; a clock read (a helper call into the clocksource) costs more than the
/// per-CPU slot lookup (which the verifier inlines to a few instructions); the sums are those
/// of their parts. Nothing stays loaded.
pub fn micro_costs_measure_each_part() -> TestResult {
    let out = Command::new(NETPOLL)
        .args(["micro-costs", "--rounds", "3", "--runs", "200000"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    check(
        out.status.success(),
        format!(
            "exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    // `  micro_clock   32.0 (30.0-40.0)  a clock read ...`: the median.
    let part = |name: &str| -> Result<f64, String> {
        text.lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
            })
            .ok_or_else(|| format!("no figure for {name} in:\n{text}"))
    };
    for (program, _) in netpoll_ebpf::abi::MICRO_PROGRAMS.iter().skip(1) {
        part(program)?;
    }
    let (clock, slot) = (part("micro_clock")?, part("micro_current")?);
    check(
        clock > 5.0 && clock > slot,
        format!("a clock read {clock} ns, the slot lookup {slot} ns"),
    )?;
    check(
        text.contains("sys_enter") && text.contains("two clock reads"),
        format!("no sums in:\n{text}"),
    )?;
    assert_nothing_attached();
    Ok(())
}

pub fn every_hook_kind_measures_the_same() -> TestResult {
    for hook in ["tp-btf", "raw-tp", "tracepoint"] {
        let run = profile_fixture(Scenario::Io, &["--hook", hook]);
        let r = run.results();
        check(
            r.hook.cli_name() == hook,
            format!("hook {} for {hook}", r.hook.name()),
        )?;
        check_io(r)
            .map_err(|e| format!("with --hook {hook}: {}", e.message().unwrap_or_default()))?;
    }
    Ok(())
}

pub fn missing_tracefs_is_mounted() -> TestResult {
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
    let run = profile_fixture(Scenario::Io, &["--hook", "tracepoint"]);
    check(
        run.stderr
            .contains("mounted tracefs at /sys/kernel/tracing"),
        format!("no note in:\n{}", run.stderr),
    )?;
    check(tracefs.exists(), "tracefs is mounted afterwards")?;
    check_io(run.results())
}

pub fn accepts_and_connects_counted_exactly() -> TestResult {
    let run = profile_fixture(Scenario::Accept, &[]);
    let r = run.results();
    check(row(&r.syscalls, "accept4", None).calls == 5, "5 accept4")?;
    let connect = row(&r.syscalls, "connect", None);
    check(
        connect.calls == 5 && connect.errors == 0,
        format!("connect {connect:?}"),
    )?;
    check(
        r.class(Class::Accept).map(|c| c.calls) == Some(5),
        "accept class",
    )
}

pub fn poll_and_select_timeouts() -> TestResult {
    let run = profile_fixture(Scenario::Poll, &[]);
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
        r.class(Class::PollSelect).map(|c| c.calls) == Some(5),
        "poll_select class",
    )
}

pub fn call_blocked_before_attach_is_a_lower_bound() -> TestResult {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .env("NETPOLL_FIXTURE", Scenario::BlockedAccept.name())
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

pub fn call_resuming_on_another_cpu_is_measured() -> TestResult {
    check(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "this test needs 2 CPUs",
    )?;
    let fixture = Fixture::start(Scenario::Migrate);
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

pub fn thread_killed_inside_a_call_leaks_nothing() -> TestResult {
    let run = profile_fixture(Scenario::DieInCall, &[]);
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

/// `--lite` claims the socket figures of the full mode without its per-syscall hooks: on the
/// same fixture, every socket row of the full mode (calls, bytes, errors, EAGAINs) equals lite
/// mode's transfers of that syscall, and nothing else is counted as a transfer.
pub fn lite_mode_counts_socket_transfers_as_the_full_mode() -> TestResult {
    let full = profile_fixture(Scenario::Io, &[]);
    let full = full.results();
    check_io(full)?;
    let run = profile_fixture(Scenario::Io, &["--lite"]);
    let r = run.results();
    let lite = r.lite.as_ref().ok_or("no lite section in --lite results")?;
    check(
        r.syscalls.is_empty() && r.classes.is_empty(),
        "lite mode times no call",
    )?;
    let socket_rows: Vec<_> = full
        .syscalls
        .iter()
        .filter(|s| s.fd == Some(Fd::Socket))
        .collect();
    for s in &socket_rows {
        let l = lite
            .syscalls
            .iter()
            .find(|l| l.name == s.name)
            .ok_or_else(|| format!("lite mode has no {} row: {:?}", s.name, lite.syscalls))?;
        check(
            (l.socket_transfers, l.bytes, l.errors, l.eagain)
                == (s.calls, s.bytes, s.errors, s.eagain),
            format!(
                "{}: lite (transfers, bytes, errors, eagain) {:?}, full {:?}",
                s.name,
                (l.socket_transfers, l.bytes, l.errors, l.eagain),
                (s.calls, s.bytes, s.errors, s.eagain)
            ),
        )?;
    }
    let transfers: u64 = lite.syscalls.iter().map(|l| l.socket_transfers).sum();
    let socket_calls: u64 = socket_rows.iter().map(|s| s.calls).sum();
    check(
        transfers == socket_calls,
        format!("{transfers} transfers in lite mode, {socket_calls} socket calls in full mode"),
    )
}

/// `--lite` sees a read that sleeps until data arrives 20 ms later: one sleep in `read`, about
/// 20 ms off CPU, then its 5-byte transfer.
pub fn lite_mode_times_a_sleep_inside_a_read() -> TestResult {
    let run = profile_fixture(Scenario::SocketWake, &["--lite"]);
    let lite = run.results().lite.clone().ok_or("no lite section")?;
    let read = lite
        .syscalls
        .iter()
        .find(|l| l.name == "read")
        .ok_or_else(|| format!("no read row: {:?}", lite.syscalls))?;
    check(
        read.socket_transfers == 1 && read.bytes == 5,
        format!(
            "read: {} transfers, {} bytes",
            read.socket_transfers, read.bytes
        ),
    )?;
    check(
        read.sleeps >= 1 && read.off_cpu_ns.total() == read.sleeps,
        format!("read slept {} times", read.sleeps),
    )?;
    check(
        (15 * MS..2000 * MS).contains(&read.off_cpu_sum_ns),
        format!("read off CPU {} ns, ~20 ms expected", read.off_cpu_sum_ns),
    )
}
