//! A real server: redis-server under known requests.

use super::*;

/// Starts a throwaway redis-server on a free loopback port.
pub fn start_redis() -> (Child, u16) {
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

pub fn redis_server_under_load() -> TestResult {
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
    // The I/O-model verdict: one epoll reactor, level-triggered (redis's ae loop); its idle
    // background threads parked on futexes do not make it a runtime of workers.
    let verdict = r.io_model.as_ref().ok_or("no io_model")?;
    check(
        verdict.family == analysis::verdict::Family::EpollReactor
            && verdict.name.contains("level-triggered"),
        format!("redis judged {}: {:#?}", verdict.name, verdict.evidence),
    )?;
    let read = r.class(Class::SocketRead).ok_or("no socket reads")?;
    let write = r.class(Class::SocketWrite).ok_or("no socket writes")?;
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
    let epoll = r.class(Class::Epoll).ok_or("redis made no epoll calls")?;
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
