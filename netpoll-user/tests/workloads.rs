//! Every I/O model's server answers correctly under concurrent load, with tiny and large
//! payloads (64 KiB forces partial reads and writes). No privileges needed.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    process::Command,
    time::Duration,
};

mod common;

use analysis::models::Transport;
use common::{NETPOLL, Server, models, models_of, on_loopback};

/// `clients` connections at once, each sending `requests` distinct payloads and checking replies.
fn exercise(server: &Server, payload: usize, clients: usize, requests: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let mut reply = vec![0u8; payload];
                for r in 0..requests {
                    let request: Vec<u8> = (0..payload)
                        .map(|i| (i * 31 + c * 7 + r * 13) as u8)
                        .collect();
                    stream.write_all(&request).expect("send");
                    stream.read_exact(&mut reply).expect("reply");
                    assert!(reply == request, "client {c} request {r}: wrong echo");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client failed");
    }
}

#[test]
fn every_model_echoes_small_payloads_to_many_clients() {
    for model in models_of(Transport::Tcp) {
        let server = Server::start(model, 1, &[]);
        // blocking-iterative serves one client at a time: the others queue, and still finish.
        exercise(&server, 1, 16, 50);
    }
}

#[test]
fn every_model_echoes_64k_payloads_through_partial_reads_and_writes() {
    for model in models_of(Transport::Tcp) {
        let server = Server::start(model, 65536, &[]);
        exercise(&server, 65536, 4, 8);
    }
}

/// 1,000 datagrams of several sizes (up to the largest UDP payload), from 4 clients at once, each
/// waiting for its reply: every payload comes back intact, none is lost at this low rate.
#[test]
fn every_udp_model_echoes_1000_datagrams_of_every_size() {
    const SIZES: [usize; 5] = [1, 64, 1472, 9000, 65_507];
    // tests/netns.rs runs these, and af-xdp, over a veth pair too.
    for model in models_of(Transport::Udp).filter(|m| on_loopback(m)) {
        for extra in [&[][..], &["--sqpoll"][..]] {
            if !extra.is_empty() && model != "udp-io-uring" {
                continue;
            }
            let server = Server::start(model, 64, extra);
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    let addr = server.addr.clone();
                    std::thread::spawn(move || {
                        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                        socket.connect(&addr).expect("connect");
                        socket
                            .set_read_timeout(Some(Duration::from_secs(2)))
                            .expect("timeout");
                        let mut reply = vec![0u8; 65_536];
                        for r in 0..250 {
                            let size = SIZES[r % SIZES.len()];
                            let request: Vec<u8> =
                                (0..size).map(|i| (i * 31 + c * 7 + r * 13) as u8).collect();
                            socket.send(&request).expect("send");
                            let n = socket.recv(&mut reply).unwrap_or_else(|e| {
                                panic!("{model} client {c} datagram {r} ({size} B) lost: {e}")
                            });
                            assert!(
                                reply[..n] == request[..],
                                "{model} client {c} datagram {r}: wrong echo"
                            );
                        }
                    })
                })
                .collect();
            for c in clients {
                c.join().expect("client failed");
            }
        }
    }
}

#[test]
fn io_uring_with_sqpoll_echoes() {
    let server = Server::start("io-uring", 512, &["--sqpoll"]);
    exercise(&server, 512, 8, 20);
}

#[test]
fn per_request_work_is_done() {
    for model in ["epoll-lt", "tokio", "blocking-threads", "go-netpoller"] {
        let server = Server::start(model, 16, &["--think-us", "2000", "--disk-read", "4096"]);
        let start = std::time::Instant::now();
        exercise(&server, 16, 1, 10);
        // Ten requests, each spinning 2 ms, one after the other.
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "{model}: think time not spent"
        );
    }
}

#[test]
fn unknown_model_and_busy_port_fail_with_one_line() {
    let out = Command::new(NETPOLL)
        .args(["serve", "--model", "carrier-pigeon"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.lines().count() == 1
            && err.contains("the models are: blocking-threads"),
        "{err}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(NETPOLL)
        .args(["serve", "--model", "poll", "--listen", &addr])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.lines().count() == 1, "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn models_lists_every_model() {
    let out = Command::new(NETPOLL).arg("models").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for model in models() {
        assert!(
            text.lines().any(|l| l.starts_with(model)),
            "{model} missing from:\n{text}"
        );
    }
}

#[test]
fn go_netpoller_keeps_its_disk_file_across_garbage_collections() {
    // With GOGC=5 the runtime collects garbage many times a second: the disk file's descriptor
    // must survive them (an unreachable *os.File is closed by its finalizer; every later
    // connection then failed to open /proc/self/fd/N: 74,872 errors in 3 s before the fix).
    let json = std::env::temp_dir().join(format!("netpoll-gogc-{}.json", std::process::id()));
    let out = Command::new(NETPOLL)
        .args([
            "run",
            "--model",
            "go-netpoller",
            "--disk-read",
            "4096",
            "-c",
            "20",
        ])
        .args(["-d", "1", "--warmup", "0.2", "--quiet", "--json"])
        .arg(&json)
        .env("GOGC", "5")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = analysis::Results::load(&json).expect("results");
    let _ = std::fs::remove_file(&json);
    let load = results.run.expect("run section").load;
    assert!(
        load.requests > 1000 && load.errors.total() == 0,
        "{} requests, errors {:?}",
        load.requests,
        load.errors
    );
}

/// `netpoll serve --model blocking-threads` from `exe`, stdout and stderr piped; `setup` may
/// change the command (limits, user) before it starts. Returns once it printed its address.
fn blocking_threads_server(exe: &std::path::Path, setup: impl FnOnce(&mut Command)) -> Server {
    use std::io::{BufRead as _, BufReader};
    let mut command = Command::new(exe);
    command
        .args([
            "serve",
            "--model",
            "blocking-threads",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--payload", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    setup(&mut command);
    let mut child = command.spawn().expect("spawn netpoll serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let addr = line.trim().rsplit(' ').next().expect("address").to_string();
    Server { child, addr }
}

/// Kills the server: what it wrote on stderr.
fn stop_for_stderr(mut server: Server) -> String {
    server.child.kill().expect("kill");
    server.child.wait().expect("wait");
    let mut said = String::new();
    server
        .child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut said)
        .expect("stderr");
    said
}

/// A thread per connection past the machine's limit (a thread's mappings under
/// vm.max_map_count, here about 16,300): the server closes the connections past it, says so once
/// on stderr, keeps serving those it holds, and serves again once they end; it never aborts
/// (it did, at 16,925 threads, when a new thread could not map its signal stack).
#[test]
fn blocking_threads_closes_connections_past_its_thread_limit_and_lives() {
    let (most, _) = analysis::models::ProcessLimits::read().threads();
    let past = 100;
    // Both ends' descriptors: the server's (inherited limit) and ours.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    assert!(
        hard as usize > most + past + 64,
        "this test needs {} descriptors, the hard limit is {hard}",
        most + past + 64
    );
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        .expect("setrlimit");
    let server = blocking_threads_server(std::path::Path::new(NETPOLL), |_| {});
    let echo = |stream: &mut TcpStream| -> bool {
        stream.write_all(b"x").is_ok() && {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).is_ok() && byte == *b"x"
        }
    };
    let connections: Vec<TcpStream> = (0..most + past)
        .map(|i| {
            let stream =
                TcpStream::connect(&server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            stream
        })
        .collect();
    // One listener, accepted in order: the last `past` are the ones past the limit. Each of
    // those is closed by the server (end of file, or reset when our byte arrived first).
    for (i, stream) in connections.iter().enumerate().skip(most) {
        let mut byte = [0u8; 1];
        let read = (&*stream).read(&mut byte);
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "connection {i}, past {most}: {read:?}"
        );
    }
    let mut connections = connections;
    for i in [0, most / 2, most - 1] {
        assert!(
            echo(&mut connections[i]),
            "connection {i} of {most} not served"
        );
    }
    let pid = server.child.id();
    let threads = || -> usize {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the server lives")
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("Threads:")
    };
    let held = threads();
    assert!(
        (most..=most + 4).contains(&held),
        "{held} threads for {most} connections"
    );
    // Once they end, their threads end, and a new connection is served again.
    drop(connections);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while threads() > 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} threads left",
            threads()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut again = TcpStream::connect(&server.addr).expect("connect after");
    again
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert!(echo(&mut again), "not served after the others closed");
    drop(again);
    let said = stop_for_stderr(server);
    assert!(
        said.lines().count() == 1
            && said.contains(&format!("closing new connections while {most} are open"))
            && said.contains("vm.max_map_count"),
        "stderr: {said:?}"
    );
}

/// A thread that cannot start (here: RLIMIT_NPROC of 40 threads for an unprivileged user, the
/// server run as `nobody` when we are root, for whom the limit does not count): its connection
/// is closed, said once, and the server keeps serving the connections it holds.
#[test]
fn blocking_threads_closes_a_connection_whose_thread_cannot_start() {
    use std::os::unix::process::CommandExt as _;

    const NPROC: u64 = 40;
    // `nobody` may not reach target/ (a CI checkout's parents): a link or copy in /tmp.
    let dir = std::env::temp_dir().join(format!("netpoll-nproc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let exe = dir.join("netpoll");
    if std::fs::hard_link(NETPOLL, &exe).is_err() {
        std::fs::copy(NETPOLL, &exe).expect("copy netpoll");
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    let server = blocking_threads_server(&exe, |command| unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NPROC,
                rlim_max: NPROC,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::geteuid() == 0
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
    // In order: served (echoed) while threads start, closed once they cannot.
    let answers: Vec<(TcpStream, bool)> = (0..2 * NPROC)
        .map(|i| {
            let mut stream =
                TcpStream::connect(&server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let mut byte = [0u8; 1];
            let served = stream.write_all(b"x").is_ok()
                && match stream.read(&mut byte) {
                    Ok(1) => byte == *b"x",
                    Ok(0) => false,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
                    other => panic!("connection {i}: {other:?}"),
                };
            (stream, served)
        })
        .collect();
    let served = answers.iter().take_while(|(_, served)| *served).count();
    assert!(
        (NPROC as usize / 2..NPROC as usize).contains(&served)
            && answers[served..].iter().all(|(_, served)| !served),
        "served: {:?}",
        answers.iter().map(|(_, s)| *s as u8).collect::<Vec<_>>()
    );
    // The held ones are still served; after they end, a new one is.
    let mut answers = answers;
    for (stream, _) in answers.iter_mut().take(served) {
        let mut byte = [0u8; 1];
        stream.write_all(b"y").expect("write");
        stream.read_exact(&mut byte).expect("read");
        assert_eq!(byte, *b"y");
    }
    drop(answers);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let served_again = loop {
        let mut stream = TcpStream::connect(&server.addr).expect("connect after");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        if stream.write_all(b"z").is_ok() && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(served_again, "not served after the others closed");
    let said = stop_for_stderr(server);
    assert!(
        said.lines().count() == 1
            && said.contains("closing new connections: cannot start a thread"),
        "stderr: {said:?}"
    );
}
