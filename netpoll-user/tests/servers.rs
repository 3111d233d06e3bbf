//! Third-party servers under `netpoll run --server-cmd` (needs root, and the servers' Debian
//! packages, which `cargo xtask test` installs): every server declared in
//! xtask/experiments.toml, started from its package as the experiments start it, gets the
//! I/O-model verdict declared for it; servers that misbehave (exit at once, never listen,
//! listen elsewhere, go to the background, ignore SIGTERM, leave processes behind) get one clear
//! line, keep what was measured, and leave nothing behind. One run at a time.

mod common;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use analysis::{Results, servers};
use common::{NETPOLL, assert_nothing_attached, netpoll, one_line_failure};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netpoll-servers-{}-{name}", std::process::id()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|pid| {
            // Zombies are gone but for their parent's wait.
            fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

fn assert_nothing_left(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_nothing_attached();
}

/// The declared server `name` under `netpoll run`, as the third-party experiment runs it.
fn run_declared(name: &str) {
    let _one = ONE_AT_A_TIME.lock();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let declared = servers::declared(&root.join("xtask/experiments.toml")).expect("declared");
    let server = declared
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no [[server]] {name} in xtask/experiments.toml"));
    let dir = temp(name);
    let prepared = servers::prepare(&root.join("xtask/servers"), &dir, &[server])
        .unwrap_or_else(|e| panic!("{name}: {e} (packages installed by `cargo xtask test`)"));
    let ready = prepared.get(name).expect("prepared");
    let json = dir.join("results.json");
    let out = netpoll(&[
        "run",
        "--server-cmd",
        &ready.command,
        "--connect",
        &ready.target,
        "--name",
        name,
        "-c",
        "16",
        "-d",
        "1",
        "--warmup",
        "0.3",
        "--server-cpus",
        "1",
        "--client-cpus",
        "0",
        "--quiet",
        "--json",
        &json.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    let results = Results::load(&json).expect("results");
    let run = results.run.as_ref().expect("run section");
    assert_eq!(run.workload.model, name);
    assert_eq!(
        run.workload.external.as_ref().map(|e| e.command.as_str()),
        Some(ready.command.as_str())
    );
    assert!(run.load.requests > 100, "{name}: {:?}", run.load);
    assert_eq!(run.load.errors.total(), 0, "{name}: {:?}", run.load.errors);
    // The server's CPU covers its worker processes too.
    assert!(
        run.per_request.cpu_us > 0.0,
        "{name}: {:?}",
        run.per_request
    );
    let verdict = results.io_model.as_ref().expect("verdict");
    assert!(
        verdict.name.contains(&server.verdict),
        "{name}: the verdict is {:?}, expected it to say {:?}; evidence: {:#?}",
        verdict.name,
        server.verdict,
        verdict.evidence
    );
    assert!(!stderr.contains("warning"), "{name}: {stderr}");
    assert_nothing_left(&ready.dir.display().to_string());
    drop(prepared);
}

macro_rules! declared_servers {
    ($($test:ident: $name:literal;)*) => {$(
        #[test]
        fn $test() {
            run_declared($name);
        }
    )*};
}

declared_servers! {
    verdict_nginx_1_worker: "nginx-1-worker";
    verdict_nginx_2_workers: "nginx-2-workers";
    verdict_nginx_c100k: "nginx-c100k";
    verdict_apache2_prefork: "apache2-prefork";
    verdict_apache2_event: "apache2-event";
    verdict_go_net_http: "go-net-http";
    verdict_python_threading_http: "python-threading-http";
    verdict_redis: "redis";
    verdict_memcached: "memcached";
}

#[test]
fn every_declared_server_has_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let declared = servers::declared(&root.join("xtask/experiments.toml")).expect("declared");
    let source = include_str!("servers.rs");
    for s in declared {
        assert!(
            source.contains(&format!("\"{}\";", s.name)),
            "server {} has no verdict test here",
            s.name
        );
    }
}

/// The server's PID, from netpoll's "attached ... (PID N)" line.
fn server_pid(stderr: &str) -> u32 {
    stderr
        .split("(PID ")
        .nth(1)
        .and_then(|rest| rest.split(')').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no server PID in: {stderr}"))
}

/// The process is gone (reaped, or never a zombie for long).
fn assert_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `netpoll run --server-cmd CMD --connect 127.0.0.1:PORT ARGS`; its output.
fn run_cmd(command: &str, port: u16, args: &[&str]) -> std::process::Output {
    let connect = format!("127.0.0.1:{port}");
    let mut all = vec!["run", "--server-cmd", command, "--connect", &connect];
    all.extend_from_slice(args);
    netpoll(&all)
}

/// A Python echo server on `port` (netpoll's echo protocol), with `prelude` run first; `marker`
/// is its argument, to find it among the processes.
fn python_echo(port: u16, prelude: &str, marker: &str) -> String {
    format!(
        "/usr/bin/python3 -c \"{prelude}
import socket, threading
s = socket.create_server(('127.0.0.1', {port}))
def echo(c):
    while (d := c.recv(4096)):
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
\" {marker}"
    )
}

#[test]
fn a_server_that_exits_at_once_is_one_line() {
    let _one = ONE_AT_A_TIME.lock();
    let out = run_cmd("sh -c 'exit 3'", free_port(), &["-d", "1"]);
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains(
            "the server command ended (exited with status 3) before accepting connections"
        ),
        "{err}"
    );
    assert_gone(server_pid(&err));
    let out = run_cmd("netpoll-no-such-server", free_port(), &["-d", "1"]);
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains("cannot start `netpoll-no-such-server`: no such executable"),
        "{err}"
    );
    assert_nothing_attached();
}

#[test]
fn a_server_that_never_listens_or_listens_elsewhere_is_one_line_and_stopped() {
    let _one = ONE_AT_A_TIME.lock();
    let out = run_cmd(
        "sleep 300",
        free_port(),
        &["-d", "1", "--start-timeout", "0.5"],
    );
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains("did not accept connections on 127.0.0.1:")
            && err.contains("within 0.5 s (it listens on no TCP port)"),
        "{err}"
    );
    assert_gone(server_pid(&err));
    assert_nothing_attached();
    let (wanted, actual) = (free_port(), free_port());
    let elsewhere = python_echo(actual, "", "netpoll-listens-elsewhere");
    let out = run_cmd(&elsewhere, wanted, &["-d", "1", "--start-timeout", "1.5"]);
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains(&format!("(it listens on 127.0.0.1:{actual} instead)")),
        "{err}"
    );
    assert_nothing_left("netpoll-listens-elsewhere");
}

#[test]
fn a_server_that_goes_to_the_background_is_one_line_and_its_daemon_stopped() {
    let _one = ONE_AT_A_TIME.lock();
    let port = free_port();
    let command = format!(
        "redis-server --bind 127.0.0.1 --port {port} --save '' --daemonize yes --pidfile /dev/null"
    );
    let out = run_cmd(&command, port, &["--protocol", "redis", "-d", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("went to the background; run it in the foreground"),
        "{err}"
    );
    assert_nothing_left(&format!("127.0.0.1:{port}"));
}

#[test]
fn a_server_that_ignores_sigterm_is_killed_and_its_results_kept() {
    let _one = ONE_AT_A_TIME.lock();
    let port = free_port();
    let command = python_echo(
        port,
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        "netpoll-ignores-term",
    );
    let json = temp("ignores-term.json");
    let started = Instant::now();
    let out = run_cmd(
        &command,
        port,
        &[
            "-c",
            "2",
            "-d",
            "0.5",
            "--warmup",
            "0.1",
            "--stop-timeout",
            "1",
            "--quiet",
            "--json",
            &json.display().to_string(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the server did not exit within 1.0 s of SIGTERM; killed"),
        "{err}"
    );
    // SIGKILL came after the grace period, not long after.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let results = Results::load(&json).expect("results kept");
    let run = results.run.as_ref().expect("run");
    assert!(
        run.load.requests > 0 && run.load.errors.total() == 0,
        "{:?}",
        run.load
    );
    assert_eq!(run.workload.model, "python3");
    let _ = fs::remove_file(&json);
    assert_nothing_left("netpoll-ignores-term");
}

#[test]
fn processes_a_server_leaves_outside_its_group_are_found_and_killed() {
    let _one = ONE_AT_A_TIME.lock();
    let port = free_port();
    // `setsid` puts the sleeper in a session (and group) of its own: SIGTERM to the server's
    // group misses it.
    let command = format!(
        "setsid sleep 300 & {}",
        python_echo(port, "", "netpoll-leaves-one-behind")
    );
    let out = run_cmd(
        &command,
        port,
        &["-c", "2", "-d", "0.3", "--warmup", "0.1", "--quiet"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the server left 1 process (sleep ")
            && err.contains("running outside its process group; killed"),
        "{err}"
    );
    let sleeper = err
        .split("(sleep ")
        .nth(1)
        .and_then(|r| r.split(')').next()?.parse::<u32>().ok())
        .expect("the sleeper's PID");
    assert_gone(sleeper);
    assert_nothing_left("netpoll-leaves-one-behind");
}

#[test]
fn ctrl_c_while_the_server_starts_stops_it_and_measures_nothing() {
    let _one = ONE_AT_A_TIME.lock();
    let connect = format!("127.0.0.1:{}", free_port());
    let child = Command::new(NETPOLL)
        .args(["run", "--server-cmd", "sleep 300", "--connect", &connect])
        .stderr(Stdio::piped())
        .spawn()
        .expect("netpoll run");
    std::thread::sleep(Duration::from_millis(800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted before the server listened"),
        "{err}"
    );
    assert_gone(server_pid(&err));
    assert_nothing_attached();
}

#[test]
fn server_cmd_options_are_checked_before_anything_starts() {
    let out = netpoll(&["run", "--server-cmd", "true"]);
    let err = one_line_failure(&out, 2);
    assert!(err.contains("--connect"), "{err}");
    let out = netpoll(&[
        "run",
        "--model",
        "poll",
        "--server-cmd",
        "true",
        "--connect",
        "127.0.0.1:1",
    ]);
    let err = one_line_failure(&out, 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let out = netpoll(&[
        "run",
        "--server-cmd",
        "true",
        "--connect",
        "redis://127.0.0.1:1",
        "--protocol",
        "http",
    ]);
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains("is a redis URL but --protocol says http"),
        "{err}"
    );
    let out = netpoll(&[
        "run",
        "--server-cmd",
        "true",
        "--connect",
        "127.0.0.1:1",
        "--think-us",
        "5",
    ]);
    let err = one_line_failure(&out, 1);
    assert!(err.contains("options of netpoll's models"), "{err}");
    // Something already answering there: the load would go to it, not to the server started.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = netpoll(&["run", "--server-cmd", "true", "--connect", &addr]);
    let err = one_line_failure(&out, 1);
    assert!(
        err.contains(&format!("something already accepts connections on {addr}")),
        "{err}"
    );
}
