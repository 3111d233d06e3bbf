//! `netpoll run --netns`: the server in a network namespace of the run's own behind a veth pair
//! (needs root). Models of both transports run over it; afterwards no namespace and no veth
//! stays, whether the run ended normally, was interrupted, its server was killed, or an earlier
//! run crashed and left its namespace. One run at a time.

mod common;

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use analysis::Results;
use common::{NETPOLL, assert_nothing_attached, netpoll};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// netpoll's namespaces and veth ends present now.
fn leftovers() -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("netpoll-"))
        .collect();
    found.extend(
        fs::read_dir("/sys/class/net")
            .expect("/sys/class/net")
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("np") && n.ends_with('h')),
    );
    found
}

fn assert_clean() {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !leftovers().is_empty() {
        assert!(Instant::now() < deadline, "left behind: {:?}", leftovers());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_nothing_attached();
}

#[test]
fn tcp_and_udp_models_run_over_a_veth_pair_and_leave_nothing() {
    let _one = ONE_AT_A_TIME.lock();
    for model in ["epoll-lt", "udp-epoll", "udp-blocking"] {
        let results = run(model, &["-c", "4", "-d", "0.5", "--warmup", "0.2"]);
        let run = results.run.as_ref().expect("run");
        assert!(run.load.requests > 50, "{model}: {:?}", run.load);
        assert_eq!(run.load.errors.total(), 0, "{model}: {:?}", run.load.errors);
        let network = run
            .environment
            .as_ref()
            .and_then(|e| e.network.clone())
            .unwrap_or_default();
        assert!(
            network.contains("veth") && network.contains(" (198.1"),
            "{model}: {network:?}"
        );
        // The server listened on its namespace's address, not on loopback.
        // The server listened on its namespace's address (198.18.0.0/15), not on loopback.
        let ip: std::net::Ipv4Addr = run
            .workload
            .server
            .listen
            .rsplit_once(':')
            .and_then(|(ip, _)| ip.parse().ok())
            .expect("an IPv4 address");
        assert_eq!(
            ip.octets()[..2],
            [198, 18 + (ip.octets()[1] & 1)],
            "{model}"
        );
        assert_clean();
    }
}

/// `netpoll run --model M --netns ARGS`, successful; the results.
fn run(model: &str, args: &[&str]) -> Results {
    let mut all = vec!["--netns"];
    all.extend_from_slice(args);
    common::run_model(model, &all)
}

/// Every UDP model, AF_XDP included, through the veth path at a low rate: about 1,000
/// datagrams of three sizes (up to a full 1500-byte frame), every reply intact (the load
/// generator compares each byte and the sequence number), none lost.
#[test]
fn every_udp_model_echoes_datagrams_intact_over_veth() {
    let _one = ONE_AT_A_TIME.lock();
    for model in [
        "udp-blocking",
        "udp-epoll",
        "udp-io-uring",
        "af-xdp",
        "af-xdp+busy-poll",
    ] {
        let mut datagrams = 0;
        for payload in ["8", "512", "1472"] {
            let r = run(
                model,
                &[
                    "--payload",
                    payload,
                    "-c",
                    "4",
                    "-R",
                    "1000",
                    "-d",
                    "0.35",
                    "--warmup",
                    "0.05",
                ],
            );
            let load = &r.run.as_ref().expect("run").load;
            assert_eq!(
                load.errors.total(),
                0,
                "{model} {payload} B: {:?}",
                load.errors
            );
            assert_eq!(load.unsent, 0, "{model} {payload} B");
            assert!(
                load.requests >= 340,
                "{model} {payload} B: {}",
                load.requests
            );
            datagrams += load.requests;
        }
        assert!(datagrams >= 1000, "{model}: {datagrams}");
        assert_clean();
    }
}

/// AF_XDP receives without any syscall (the XDP program puts frames in its RX ring); in
/// copy mode (all veth offers) sending still takes a `sendto` kick per batch, and waiting a
/// `poll` unless it busy-polls. So: no receive call at all, fewer syscalls per request than a
/// blocking loop's two, and with busy polling little more than the kicks. The verdict names it.
#[test]
fn af_xdp_receives_without_syscalls() {
    let _one = ONE_AT_A_TIME.lock();
    let args = ["-c", "16", "-d", "1", "--warmup", "0.2"];
    let per = |r: &Results| r.run.as_ref().expect("run").per_request.syscalls;
    let blocking = per(&run("udp-blocking", &args));
    for (model, at_most) in [("af-xdp", 0.8), ("af-xdp+busy-poll", 0.6)] {
        let xdp = run(model, &args);
        assert!(
            per(&xdp) < at_most * blocking,
            "syscalls per request: {model} {}, udp-blocking {blocking}",
            per(&xdp)
        );
        assert!(
            xdp.classes.iter().all(|c| !c.name.ends_with("read")),
            "{model}: {:?}",
            xdp.classes
        );
        let verdict = xdp.io_model.as_ref().expect("verdict");
        assert!(verdict.name.contains("AF_XDP"), "{model}: {verdict:?}");
        // The XDP program's own counts: every request's datagram went to the socket, give or
        // take the window's edges (read by a thread that may wait for a CPU: 2 %, as in
        // tests/run.rs), and none was dropped.
        let run = xdp.run.as_ref().expect("run");
        let counts = run.xdp.expect("XDP counts");
        let requests = run.load.requests;
        let slack = requests / 50 + 64;
        assert!(
            counts.redirected + slack >= requests && counts.redirected <= requests + slack,
            "{model}: {counts:?} for {requests} requests"
        );
        assert_eq!(counts.dropped, 0, "{model}: {counts:?}");
        assert_clean();
    }
}

#[test]
fn af_xdp_on_loopback_is_refused_in_one_line() {
    let out = netpoll(&["run", "--model", "af-xdp", "-d", "1"]);
    let err = common::one_line_failure(&out, 1);
    assert!(err.contains("loopback has none: add --netns"), "{err}");
}

#[test]
fn interrupted_and_dead_servers_leave_no_namespace() {
    let _one = ONE_AT_A_TIME.lock();
    for (model, kill_server) in [
        ("udp-blocking", false),
        ("udp-blocking", true),
        ("af-xdp", false),
        ("af-xdp", true),
    ] {
        let child = Command::new(NETPOLL)
            .args([
                "run", "--model", model, "--netns", "-c", "2", "-d", "30", "--quiet",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .expect("netpoll run");
        let ns = format!("/run/netns/netpoll-{}", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !PathBuf::from(&ns).exists() {
            assert!(Instant::now() < deadline, "no namespace {ns}");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1500));
        if kill_server {
            let server =
                fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                    .expect("children")
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
                    .expect("the server");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(server),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill server");
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .expect("SIGINT");
        }
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if kill_server { 1 } else { 130 }),
            "{err}"
        );
        assert_clean();
    }
}

#[test]
fn a_crashed_runs_namespace_is_removed_by_the_next_run() {
    let _one = ONE_AT_A_TIME.lock();
    // A PID no process has: the namespace of a run that was killed with SIGKILL.
    let dead = (4_000_000..4_100_000)
        .find(|p| !PathBuf::from(format!("/proc/{p}")).exists())
        .expect("a free PID");
    let name = format!("netpoll-{dead}");
    let status = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip");
    assert!(status.success());
    let out = netpoll(&[
        "run",
        "--model",
        "udp-blocking",
        "--netns",
        "-c",
        "2",
        "-d",
        "0.3",
        "--warmup",
        "0.1",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "removed network namespace {name}, left by a run that crashed"
        )),
        "{err}"
    );
    assert_clean();
}
