//! `cargo xtask bench load`: is netpoll's load generator a trustworthy driver? Its requests/s
//! against wrk's, on the same nginx (one worker, a small static file, loopback), with the same
//! threads and connections, interleaved round by round. The generator must not be the
//! bottleneck: the target is at least wrk's rate.

use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use analysis::run::{LOAD_SCHEMA, LoadFile};
use anyhow::{Context as _, Result, bail};

use xtask::{median, release_netpoll, run, workspace_root};

use crate::setup;

/// nginx in the foreground with its own config and files; stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path) -> Result<Nginx> {
        // A free port: bind to 0, note it, release it for nginx.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
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
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Nginx { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || nginx.child.try_wait()?.is_some() {
                bail!("nginx did not start; see {}/error.log", dir.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its worker too (SIGKILL would orphan the worker).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn wrk(url: &str, threads: usize, connections: usize, seconds: u64) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            url.to_string(),
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk failed or saw errors:\n{text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))
}

fn netpoll_load(
    netpoll: &Path,
    url: &str,
    threads: usize,
    connections: usize,
    seconds: u64,
    json: &Path,
) -> Result<f64> {
    run(Command::new(netpoll).args([
        "load",
        url,
        "--client-threads",
        &threads.to_string(),
        "--connections",
        &connections.to_string(),
        "--duration",
        &seconds.to_string(),
        "--warmup",
        "0",
        "--quiet",
        "--json",
        &json.display().to_string(),
    ]))?;
    let file: LoadFile = serde_json::from_str(&fs::read_to_string(json)?)?;
    if file.schema != LOAD_SCHEMA {
        bail!("unexpected schema {}", file.schema);
    }
    if file.load.errors.total() > 0 {
        bail!("netpoll load saw errors: {:?}", file.load.errors);
    }
    Ok(file.load.throughput_rps)
}

pub fn load(rounds: usize, seconds: u64, threads: usize, connections: usize) -> Result<()> {
    setup::test_prerequisites()?;
    setup::apt_install(&["nginx-light", "wrk"])?;
    let netpoll = release_netpoll()?;
    let root = workspace_root()?;
    let dir = root.join("target/bench-load");
    let nginx = Nginx::start(&dir)?;
    let url = format!("http://127.0.0.1:{}/index.html", nginx.port);
    eprintln!(
        "xtask: nginx (1 worker) on {url}; {rounds} rounds of {seconds}s each for wrk and \
         netpoll load, {threads} thread(s), {connections} connections"
    );
    let (mut wrk_rps, mut netpoll_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift does not favour one.
        let mut pair = [0.0; 2];
        for k in 0..2 {
            let which = (k + round) % 2;
            pair[which] = if which == 0 {
                wrk(&url, threads, connections, seconds)?
            } else {
                netpoll_load(
                    &netpoll,
                    &url,
                    threads,
                    connections,
                    seconds,
                    &dir.join("load.json"),
                )?
            };
        }
        eprintln!(
            "xtask: round {}/{rounds}: wrk {:.0} req/s, netpoll load {:.0} req/s ({:.3}x)",
            round + 1,
            pair[0],
            pair[1],
            pair[1] / pair[0]
        );
        wrk_rps.push(pair[0]);
        netpoll_rps.push(pair[1]);
        ratios.push(pair[1] / pair[0]);
    }
    drop(nginx);
    println!(
        "\nrequests/s against nginx, median of {rounds} interleaved rounds ({threads} thread(s), \
         {connections} connections, {seconds}s):"
    );
    println!("wrk            {:>10.0}", median(&wrk_rps));
    println!("netpoll load   {:>10.0}", median(&netpoll_rps));
    println!(
        "netpoll load / wrk: median ratio {:.3} (per round {}) (target >= 1.0)",
        median(&ratios),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
