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
