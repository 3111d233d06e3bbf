//! Third-party servers the benchmarks drive: nginx (one worker, a small static file) and
//! redis-server (no persistence), each in the foreground on a free loopback port with its own
//! files under `target/`, optionally pinned to one CPU, and stopped when dropped.

use std::{
    fs,
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use analysis::run::{LOAD_SCHEMA, LoadFile, LoadResults};
use anyhow::{Context as _, Result, bail};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Runs `cmd` on `cpu` only (inherited by its threads and children).
pub fn pin(cmd: &mut Command, cpu: Option<usize>) -> &mut Command {
    if let Some(cpu) = cpu {
        // SAFETY: pre_exec runs in the forked child before exec; sched_setaffinity is a plain
        // syscall that neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(move || {
                let mut set = CpuSet::new();
                set.set(cpu).map_err(std::io::Error::from)?;
                sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
            });
        }
    }
    cmd
}

/// CPU time of every thread of `pid` so far, ns (the scheduler's own accounting in
/// /proc/PID/task/TID/schedstat: exact, unlike the 10 ms ticks of /proc/PID/stat). Threads that
/// exited are not counted: the servers measured keep theirs.
pub fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("process {pid} is gone"))?
    {
        let stat = fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// A free loopback port: bind to 0, note it, release it for the server.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` accepts connections, or the server exits, or 10 s pass.
fn wait_listening(child: &mut Child, port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            bail!("{what} did not start listening on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// nginx in the foreground with its own config and files; stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Nginx> {
        let port = free_port()?;
        fs::create_dir_all(dir.join("html"))?;
        fs::write(
            dir.join("html/index.html"),
            "<p>netpoll bench</p>\n".repeat(4),
        )?;
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
               client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
               fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
               server {{ listen 127.0.0.1:{port}; root {dir}/html; }}\n}}\n",
            dir = dir.display()
        );
        fs::write(dir.join("nginx.conf"), conf)?;
        let child = pin(
            Command::new("nginx")
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .stderr(Stdio::inherit()),
            cpu,
        )
        .spawn()
        .context("starting nginx")?;
        let mut nginx = Nginx { child, port };
        wait_listening(&mut nginx.child, port, "nginx")
            .with_context(|| format!("see {}/error.log", dir.display()))?;
        Ok(nginx)
    }

    /// The worker process, which serves the requests (the master only supervises).
    pub fn worker(&self) -> Result<u32> {
        let master = self.child.id();
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children"))?;
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .context("nginx has no worker process")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its worker too (SIGKILL would orphan the worker).
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Go's net/http file server (xtask/servers/go-http.go, built with Debian's golang-go into
/// `dir`), serving a small file and Go's own profiles (/debug/pprof/); stopped on drop.
pub struct GoHttp {
    child: Child,
    pub port: u16,
}

impl GoHttp {
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<GoHttp> {
        let port = free_port()?;
        fs::create_dir_all(dir.join("www"))?;
        fs::write(
            dir.join("www/index.html"),
            "<p>netpoll bench</p>\n".repeat(4),
        )?;
        let source = xtask::workspace_root()?.join("xtask/servers/go-http.go");
        let binary = dir.join("go-http");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env("GOCACHE", dir.join("gocache"))
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0")
            .status()
            .context("running go build (golang-go)")?;
        if !built.success() {
            bail!("go build of {} failed ({built})", source.display());
        }
        let child = pin(
            Command::new(&binary)
                .arg(format!("127.0.0.1:{port}"))
                .arg(dir.join("www"))
                .stderr(Stdio::inherit()),
            cpu,
        )
        .spawn()
        .context("starting go-http")?;
        let mut server = GoHttp { child, port };
        wait_listening(&mut server.child, port, "go-http")?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GoHttp {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// netpoll's own io-uring model (`netpoll serve --model io-uring`): an io_uring server whose
/// requests the io_uring view follows; stopped on drop.
pub struct IoUringEcho {
    child: Child,
    pub port: u16,
}

impl IoUringEcho {
    pub fn start(netpoll: &Path, cpu: Option<usize>) -> Result<IoUringEcho> {
        let port = free_port()?;
        let child = pin(
            Command::new(netpoll)
                .args(["serve", "--model", "io-uring", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
            cpu,
        )
        .spawn()
        .context("starting netpoll serve --model io-uring")?;
        let mut server = IoUringEcho { child, port };
        wait_listening(&mut server.child, port, "netpoll serve --model io-uring")?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for IoUringEcho {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// redis-server in the foreground, in memory only; stopped on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Redis> {
        let port = free_port()?;
        fs::create_dir_all(dir)?;
        let child = pin(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .args(["--logfile", "redis.log"])
                .stdout(Stdio::null()),
            cpu,
        )
        .spawn()
        .context("starting redis-server")?;
        let mut redis = Redis { child, port };
        wait_listening(&mut redis.child, port, "redis-server")
            .with_context(|| format!("see {}/redis.log", dir.display()))?;
        Ok(redis)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// `netpoll load URL` (HTTP, closed loop, no warm-up), on `cpu`: its results, which must have
/// no error.
pub fn netpoll_load(
    netpoll: &Path,
    url: &str,
    threads: usize,
    connections: usize,
    seconds: u64,
    cpu: Option<usize>,
    json: &Path,
) -> Result<LoadResults> {
    let out = pin(&mut Command::new(netpoll), cpu)
        .args(["load", url, "--client-threads", &threads.to_string()])
        .args(["--connections", &connections.to_string()])
        .args([
            "--duration",
            &seconds.to_string(),
            "--warmup",
            "0",
            "--quiet",
        ])
        .arg("--json")
        .arg(json)
        .output()
        .context("running netpoll load")?;
    if !out.status.success() {
        bail!(
            "netpoll load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let file: LoadFile = serde_json::from_str(&fs::read_to_string(json)?)?;
    if file.schema != LOAD_SCHEMA {
        bail!("unexpected schema {}", file.schema);
    }
    if file.load.errors.total() > 0 {
        bail!("netpoll load saw errors: {:?}", file.load.errors);
    }
    Ok(file.load)
}
