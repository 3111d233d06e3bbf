//! Helpers shared by the integration tests that start netpoll's servers.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const NETPOLL: &str = env!("CARGO_BIN_EXE_netpoll");

/// Every model of the catalogue, in `netpoll models` order.
pub fn models() -> impl Iterator<Item = &'static str> {
    analysis::models::MODELS.iter().map(|m| m.name)
}

/// Models that run on loopback: all but kernel bypass, which needs a network device
/// (tests/netns.rs runs those over a veth pair).
pub fn on_loopback(model: &str) -> bool {
    analysis::models::model(model)
        .is_none_or(|m| m.family != analysis::verdict::Family::KernelBypass)
}

/// `netpoll run --model MODEL ARGS --quiet --json`, successful; the results.
pub fn run_model(model: &str, args: &[&str]) -> analysis::Results {
    let json =
        std::env::temp_dir().join(format!("netpoll-run-{}-{model}.json", std::process::id()));
    let json_arg = json.display().to_string();
    let mut all = vec!["run", "--model", model, "--quiet", "--json", &json_arg];
    all.extend_from_slice(args);
    let out = netpoll(&all);
    assert!(
        out.status.success(),
        "{model}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = analysis::Results::load(&json).expect("results");
    let _ = std::fs::remove_file(&json);
    results
}

/// The models of one transport (TCP: connections; UDP: datagrams).
pub fn models_of(transport: analysis::models::Transport) -> impl Iterator<Item = &'static str> {
    analysis::models::MODELS
        .iter()
        .filter(move |m| m.transport == transport)
        .map(|m| m.name)
}

/// A server started with `netpoll serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(model: &str, payload: usize, extra: &[&str]) -> Server {
        let mut child = Command::new(NETPOLL)
            .args([
                "serve",
                "--model",
                model,
                "--listen",
                "127.0.0.1:0",
                "--payload",
                &payload.to_string(),
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn netpoll serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let addr = line.trim().rsplit(' ').next().expect("address").to_string();
        assert!(
            line.contains("listening on") || line.contains("receiving UDP on"),
            "unexpected first line {line:?}"
        );
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs netpoll with `args`; its output, whatever the exit status.
pub fn netpoll(args: &[&str]) -> Output {
    Command::new(NETPOLL)
        .args(args)
        .output()
        .expect("run netpoll")
}

/// stderr of a run that must have failed with exit status `code` and a one-line message.
pub fn one_line_failure(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    let errors: Vec<&str> = err
        .lines()
        // Notes, and what was attached before the failure, are not errors.
        .filter(|l| !l.starts_with("netpoll: note") && !l.starts_with("netpoll: attached"))
        .collect();
    assert_eq!(errors.len(), 1, "not one line:\n{err}");
    err
}

/// Names of every netpoll program, as bpftool shows them (15 bytes).
fn our_program_names() -> Vec<String> {
    netpoll_ebpf::abi::program_names()
        .into_iter()
        .map(|name| name.chars().take(15).collect())
        .collect()
}

/// No netpoll program may stay loaded after a run. The kernel frees a program shortly after
/// its last fd closes (deferred work), so allow it a moment.
pub fn assert_nothing_attached() {
    let names = our_program_names();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .expect("bpftool (installed by `cargo xtask test`)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let loaded: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "name").nth(1))
            .filter(|n| names.iter().any(|ours| ours == n))
            .collect();
        if loaded.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "netpoll programs still loaded 5 s after netpoll exited: {loaded:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
