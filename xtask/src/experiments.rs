//! `cargo xtask experiments`: until the designed experiment suite lands, a demo that profiles a
//! real epoll server (redis-server) under load from redis-benchmark and keeps the results.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{bench::workspace_root, cargo, run, setup};

pub fn experiments(out: Option<PathBuf>) -> Result<()> {
    setup::test_prerequisites()?;
    if !nix::unistd::geteuid().is_root() {
        bail!("profiling loads BPF programs: run as root (e.g. `sudo -E cargo xtask experiments`)");
    }
    run(cargo().args(["build", "--release", "--package", "netpoll-user"]))?;
    let root = workspace_root()?;
    let netpoll = root.join("target/release/netpoll");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let out = out.unwrap_or_else(|| root.join("target/experiments").join(stamp.to_string()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = redis.kill();
            bail!("redis-server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let json = out.join("redis-profile.json");
    let report = std::fs::File::create(out.join("redis-profile.txt"))?;
    eprintln!(
        "xtask: demo: profiling redis-server (PID {}) under redis-benchmark",
        redis.id()
    );
    let mut profile = Command::new(&netpoll)
        .args(["profile", "--pid", &redis.id().to_string(), "--json"])
        .arg(&json)
        .stdout(report)
        .stderr(Stdio::piped())
        .spawn()?;
    // Give the probes a moment to attach before the load starts.
    std::thread::sleep(Duration::from_secs(2));
    let bench = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "ping_inline,set,get",
            "-n",
            "20000",
            "-c",
            "20",
            "-q",
        ])
        .status();
    let _ = kill(Pid::from_raw(profile.id() as i32), Signal::SIGINT);
    let profiled = profile.wait();
    let _ = redis.kill();
    let _ = redis.wait();
    bench.context("running redis-benchmark")?;
    profiled?;
    let text = std::fs::read_to_string(out.join("redis-profile.txt"))?;
    println!("{text}");
    eprintln!(
        "xtask: results in {} (the designed experiment suite is not built yet)",
        out.display()
    );
    Ok(())
}
