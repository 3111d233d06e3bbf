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

fn json_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netpoll-netns-{}-{name}.json", std::process::id()))
}

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
        let json = json_path(model);
        let out = netpoll(&[
            "run",
            "--model",
            model,
            "--netns",
            "-c",
            "4",
            "-d",
            "0.5",
            "--warmup",
            "0.2",
            "--quiet",
            "--json",
            &json.display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{model}: {err}");
        let results = Results::load(&json).expect("results");
        let _ = fs::remove_file(&json);
        let run = results.run.as_ref().expect("run");
        assert!(run.load.requests > 50, "{model}: {:?}", run.load);
        assert_eq!(run.load.errors.total(), 0, "{model}: {:?}", run.load.errors);
        let network = run
            .environment
            .as_ref()
            .and_then(|e| e.network.clone())
            .unwrap_or_default();
        assert!(
            network.contains("veth") && network.contains("198.18."),
            "{model}: {network:?}"
        );
        // The server listened on its namespace's address, not on loopback.
        assert!(run.workload.server.listen.starts_with("198.18."), "{model}");
        assert_clean();
    }
}

#[test]
fn interrupted_and_dead_servers_leave_no_namespace() {
    let _one = ONE_AT_A_TIME.lock();
    for kill_server in [false, true] {
        let child = Command::new(NETPOLL)
            .args([
                "run",
                "--model",
                "udp-blocking",
                "--netns",
                "-c",
                "2",
                "-d",
                "30",
                "--quiet",
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
