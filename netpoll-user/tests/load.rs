//! The load generator measures what it claims: injected server delays, requested open-loop
//! rates, the queueing a closed-loop tool would hide, HTTP servers, and bad input. No privileges
//! needed. Timing tests run one at a time (a 2-core machine has no room for two).

mod common;

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use analysis::run::{LOAD_SCHEMA, LoadFile, LoadMode, LoadResults};
use common::{Server, netpoll, one_line_failure};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netpoll-test-{}-{name}", std::process::id()))
}

/// Runs `netpoll load TARGET ARGS --json`, and reads the results back.
fn load(target: &str, args: &[&str]) -> LoadResults {
    let json = temp("load.json");
    let json_arg = json.display().to_string();
    let mut all = vec!["load", target, "--quiet", "--json", &json_arg];
    all.extend_from_slice(args);
    let out = netpoll(&all);
    assert!(
        out.status.success(),
        "netpoll load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&json).expect("results file");
    let _ = fs::remove_file(&json);
    let file: LoadFile = serde_json::from_str(&text).expect("a netpoll-load file");
    assert_eq!(file.schema, LOAD_SCHEMA);
    file.load
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[test]
fn a_known_server_delay_is_measured() {
    let _one = ONE_AT_A_TIME.lock();
    let server = Server::start("epoll-lt", 64, &["--think-us", "5000"]);
    let r = load(&server.addr, &["-c", "1", "-d", "1", "--warmup", "0.2"]);
    let p = r.latency_percentiles;
    // One connection, 5 ms of server CPU per request: every latency is 5 ms and a little.
    assert!(
        ms(p.min) >= 5.0 && ms(p.p50) >= 5.0 && ms(p.p50) < 6.5,
        "{p:?}"
    );
    assert!(r.requests >= 140 && r.requests <= 200, "{}", r.requests);
    assert_eq!(r.errors.total(), 0);
    assert_eq!(r.latency_ns.total(), r.requests);
    assert_eq!(r.mode, LoadMode::Closed);
}

#[test]
fn the_open_loop_holds_its_rate() {
    let _one = ONE_AT_A_TIME.lock();
    let server = Server::start("epoll-lt", 64, &[]);
    let r = load(
        &server.addr,
        &["-c", "8", "-R", "2000", "-d", "2", "--warmup", "0.5"],
    );
    let achieved = r.throughput_rps / 2000.0;
    assert!(
        (0.98..=1.02).contains(&achieved),
        "{} req/s",
        r.throughput_rps
    );
    assert_eq!(r.unsent, 0);
    assert_eq!(r.errors.total(), 0);
    assert_eq!(r.mode, LoadMode::Open);
    // The generator itself sends on time: its own lag is far below a request's period (0.5 ms).
    let lag = r.send_lag.expect("open loop reports its lag");
    assert!(lag.p50 < 50_000, "{lag:?}");
}

#[test]
fn open_loop_latency_counts_the_queueing_a_closed_loop_hides() {
    let _one = ONE_AT_A_TIME.lock();
    // 4 ms per request: the server manages 250 req/s; ask for 400 for one second.
    let server = Server::start("epoll-lt", 64, &["--think-us", "4000"]);
    let open = load(
        &server.addr,
        &["-c", "4", "-R", "400", "-d", "1", "--warmup", "0"],
    );
    // Requests fall further behind the schedule as the second goes on: by its end, about
    // 150 requests (0.6 s of work) are late. Measured from the send, each takes ~16 ms.
    let service_p50 = open
        .service_time_ns
        .quantile(0.5)
        .expect("service")
        .estimate();
    assert!(
        ms(open.latency_percentiles.p99) > 200.0,
        "{:?}",
        open.latency_percentiles
    );
    assert!(ms(service_p50) < 40.0, "service p50 {}", ms(service_p50));
    assert!(open.unsent > 50, "unsent {}", open.unsent);
    assert!(open.throughput_rps < 300.0, "{}", open.throughput_rps);
    // A closed loop on the same server reports only the service time.
    let closed = load(&server.addr, &["-c", "4", "-d", "1", "--warmup", "0"]);
    assert!(
        ms(closed.latency_percentiles.p99) < 40.0,
        "{:?}",
        closed.latency_percentiles
    );
}

#[test]
fn idle_connections_stay_open_and_silent() {
    let _one = ONE_AT_A_TIME.lock();
    let server = Server::start("poll", 64, &[]);
    let r = load(
        &server.addr,
        &[
            "-c",
            "2",
            "--idle-connections",
            "300",
            "-d",
            "0.5",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(r.idle_connections, 300);
    assert!(r.requests > 100 && r.errors.total() == 0, "{r:?}");
    // Only the active connections sent anything.
    assert_eq!(r.bytes_sent % 64, 0);
}

#[test]
fn connections_the_server_never_accepts_do_not_stall_the_others() {
    let _one = ONE_AT_A_TIME.lock();
    // blocking-iterative serves one connection and never accepts another: the other 99 time out,
    // are reopened, fill the listen backlog and then cannot connect. The served connection must
    // keep its pace meanwhile (reconnecting is non-blocking).
    let server = Server::start("blocking-iterative", 64, &[]);
    let r = load(
        &server.addr,
        &[
            "-c",
            "100",
            "--timeout",
            "0.3",
            "-d",
            "2",
            "--warmup",
            "0.5",
        ],
    );
    assert!(r.errors.timeouts + r.errors.connect > 0, "{:?}", r.errors);
    assert!(r.throughput_rps > 1000.0, "{} req/s", r.throughput_rps);
    // ... and the 99 others are counted as starved: no reply in the whole window.
    assert_eq!(r.starved_connections, 99, "{r:?}");
}

/// nginx, installed by `cargo xtask test`, serving a small file on a free port; stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = temp("nginx");
        fs::create_dir_all(dir.join("html")).expect("nginx dir");
        fs::write(dir.join("html/index.html"), "hello from nginx\n").expect("index");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{ access_log off; client_body_temp_path {d};\n\
             server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n"
        );
        fs::write(dir.join("nginx.conf"), conf).expect("conf");
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (nginx-light, installed by `cargo xtask test`)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master takes its worker with it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

#[test]
fn http_mode_loads_nginx_and_counts_bad_statuses() {
    let _one = ONE_AT_A_TIME.lock();
    let nginx = Nginx::start();
    let url = format!("http://127.0.0.1:{}/index.html", nginx.port);
    let ok = load(&url, &["-c", "4", "-d", "0.5", "--warmup", "0.1"]);
    assert_eq!(ok.protocol, "http");
    assert!(ok.requests > 100, "{ok:?}");
    assert_eq!(ok.errors.total(), 0, "{:?}", ok.errors);
    // Each reply carries the 17-byte file, with headers.
    assert!(ok.bytes_received > ok.requests * 17 * 2, "{ok:?}");

    let missing = format!("http://127.0.0.1:{}/nothing-here", nginx.port);
    let r = load(&missing, &["-c", "2", "-d", "0.3", "--warmup", "0"]);
    assert!(r.requests > 10);
    assert_eq!(r.errors.http_status, r.requests, "every reply was a 404");
    remove(&temp("load.json"));
}

#[test]
fn bad_input_gets_one_line() {
    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let closed = format!("127.0.0.1:{port}");
    let err = one_line_failure(&netpoll(&["load", &closed, "-d", "0.2"]), 1);
    assert!(
        err.contains("cannot connect") && err.contains("refused"),
        "{err}"
    );
    // UDP has no connection to refuse: the load sends one datagram first and stops there,
    // refused (nothing bound) or unanswered (a socket that never echoes).
    let udp = |addr: &str| format!("udp://{addr}");
    let err = one_line_failure(&netpoll(&["load", &udp(&closed), "-d", "0.2"]), 1);
    assert!(
        err.contains("cannot reach") && err.contains("refused"),
        "{err}"
    );
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let silent = silent.local_addr().expect("addr").to_string();
    let err = one_line_failure(
        &netpoll(&["load", &udp(&silent), "-d", "0.2", "--timeout", "0.3"]),
        1,
    );
    assert!(err.contains("did not echo a datagram"), "{err}");
    for (args, expected) in [
        (vec!["-d", "0"], "positive number of seconds"),
        (vec!["-R", "-5"], "positive number of requests per second"),
        (vec!["-c", "0"], "--connections must be at least 1"),
        (vec!["--payload", "0"], "--payload must be at least 1 byte"),
    ] {
        let mut all = vec!["load", "127.0.0.1:9"];
        all.extend(args);
        let out = netpoll(&all);
        let code = out.status.code();
        let err = one_line_failure(&out, code.unwrap_or(-1));
        assert!(
            err.contains(expected) && matches!(code, Some(1 | 2)),
            "{all:?}: {err}"
        );
    }
    let err = one_line_failure(&netpoll(&["load", "https://example.org/"]), 1);
    assert!(err.contains("the targets are"), "{err}");
    // More connections than any descriptor limit allows: refused before connecting.
    let err = one_line_failure(&netpoll(&["load", "127.0.0.1:9", "-c", "5000000"]), 1);
    assert!(err.contains("file descriptors"), "{err}");
}

#[test]
fn report_refuses_what_it_cannot_read_with_one_line() {
    let err = one_line_failure(&netpoll(&["report", "/nonexistent/results.json"]), 1);
    assert!(
        err.contains("cannot read /nonexistent/results.json"),
        "{err}"
    );
    let bad = temp("bad.json");
    fs::write(&bad, "{\"schema\": \"netpoll-results/1\", \"tool\"").expect("write");
    let err = one_line_failure(&netpoll(&["report", &bad.display().to_string()]), 1);
    assert!(err.contains("is not a netpoll results file"), "{err}");
    remove(&bad);
    let out = netpoll(&["report"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts `cmd` and waits until `port` accepts; killed and reaped on drop.
struct Daemon(Child);

impl Daemon {
    fn start(cmd: &mut Command, port: u16) -> Daemon {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .expect("server (installed by `cargo xtask test`)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{cmd:?} did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// RESP against redis-server and memcached's text protocol against memcached: the key is set
/// before the run, every GET's reply matches byte for byte (no error); a server that speaks
/// another protocol is refused with one line before the run.
#[test]
fn redis_and_memcached_modes_load_the_real_servers() {
    let _one = ONE_AT_A_TIME.lock();
    let redis_port = free_port();
    let _redis = Daemon::start(
        Command::new("redis-server").args([
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
        redis_port,
    );
    let memcached_port = free_port();
    let _memcached = Daemon::start(
        Command::new("memcached").args([
            "-u",
            "root",
            "-l",
            "127.0.0.1",
            "-p",
            &memcached_port.to_string(),
        ]),
        memcached_port,
    );
    for (scheme, port) in [("redis", redis_port), ("memcached", memcached_port)] {
        let target = format!("{scheme}://127.0.0.1:{port}");
        let r = load(&target, &["-c", "4", "-d", "0.5", "--payload", "100"]);
        assert_eq!(r.protocol, scheme);
        assert!(r.requests > 100, "{scheme}: {} requests", r.requests);
        assert_eq!(r.errors.total(), 0, "{scheme}: {:?}", r.errors);
        // Every reply carries the 100-byte value.
        assert!(r.bytes_received >= r.requests * 100, "{scheme}");
    }
    let wrong = netpoll(&[
        "load",
        &format!("memcached://127.0.0.1:{redis_port}"),
        "-d",
        "0.2",
    ]);
    let line = one_line_failure(&wrong, 1);
    assert!(line.contains("is it a memcached server"), "{line}");
}
