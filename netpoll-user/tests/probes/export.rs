//! `netpoll export` against fixtures with known syscalls: the counts and histograms it serves,
//! `promtool check metrics` on its text, a real Prometheus scraping it (native histograms) and
//! answering PromQL, and its bad inputs.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
};

use super::*;

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// GET `path` from 127.0.0.1:`port`: (status line and headers, body).
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    (
        String::from_utf8_lossy(&response[..split]).into_owned(),
        response[split + 4..].to_vec(),
    )
}

/// A running `netpoll export`, serving; stopped (SIGINT) on drop.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(args: &[&str]) -> Exporter {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(NETPOLL)
            .args(["export", "--listen", &listen])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("netpoll export");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("serving http://") => break,
                Some(Ok(_)) => {}
                _ => panic!("netpoll export did not start: {:?}", child.wait()),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Exporter { child, port }
    }

    fn metrics(&self) -> String {
        let (head, body) = http_get(self.port, "/metrics", None);
        assert!(
            head.contains("200 OK") && head.contains("version=0.0.4"),
            "{head}"
        );
        String::from_utf8(body).expect("text")
    }

    /// SIGINT; the exit status.
    fn stop(mut self) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).expect("SIGINT");
        let status = self.child.wait().expect("wait");
        assert_nothing_attached();
        status
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let _ = self.child.wait();
    }
}

/// The value of the sample `name{labels...}` in text exposition, all `labels` present.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|want| l.contains(want))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until `pid` sits in syscall `nr` (/proc/PID/syscall).
fn wait_in_syscall(pid: u32, nr: i64) {
    let nr = nr.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split_whitespace().next() == Some(nr.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "fixture never reached syscall {nr}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `promtool check metrics` accepts the text exposition.
fn promtool_accepts(text: &str) -> TestResult {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by `cargo xtask test`)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let checked = promtool.wait_with_output().expect("promtool");
    check(
        checked.status.success(),
        format!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ),
    )
}

pub fn exporter_serves_what_the_fixture_did() -> TestResult {
    let mut fixture = Fixture::start(Scenario::EpollThenHold);
    let pid = fixture.child.id();
    let exporter = Exporter::start(&["--pid", &pid.to_string()]);
    fixture.go();
    // The fixture's epoll scenario is done when it waits on its stdin.
    wait_in_syscall(pid, libc::SYS_read);
    let text = exporter.metrics();
    let wait = ["syscall=\"epoll_wait\"", "class=\"epoll\""];
    check(
        sample(&text, "netpoll_syscall_calls_total", &wait) == Some(27.0),
        format!("epoll_wait calls in:\n{text}"),
    )?;
    check(
        sample(&text, "netpoll_syscall_zero_ready_total", &wait) == Some(27.0)
            && sample(&text, "netpoll_syscall_nonblocking_total", &wait) == Some(7.0),
        "zero-ready and non-blocking counts",
    )?;
    // The 20 calls that waited 10 ms: above 9.4 ms (a bucket bound), 7 below; the sum is the
    // in-kernel one, about 20 x 10 ms.
    let below = sample(
        &text,
        "netpoll_syscall_latency_seconds_bucket",
        &[wait[0], "le=\"0.008388608\""],
    );
    check(below == Some(7.0), format!("calls below 8.4 ms: {below:?}"))?;
    let count = sample(&text, "netpoll_syscall_latency_seconds_count", &wait);
    check(count == Some(27.0), format!("histogram count {count:?}"))?;
    let sum = sample(&text, "netpoll_syscall_latency_seconds_sum", &wait).unwrap_or(0.0);
    check(
        (0.200..0.260).contains(&sum),
        format!("latency sum {sum} s"),
    )?;
    let ready = sample(
        &text,
        "netpoll_syscall_ready_events_bucket",
        &["syscall=\"epoll_pwait\"", "le=\"1\""],
    );
    check(
        ready == Some(1.0),
        format!("epoll_pwait ready events: {ready:?}"),
    )?;
    check(
        sample(
            &text,
            "netpoll_syscall_bytes_total",
            &["syscall=\"write\"", "fd=\"socket\""],
        ) == Some(1.0),
        "one socket byte written",
    )?;
    // promtool, from Debian's prometheus package, accepts the exposition.
    promtool_accepts(&text)?;
    // Protobuf when asked, text otherwise.
    let (head, body) = http_get(
        exporter.port,
        "/metrics",
        Some(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        ),
    );
    check(
        head.contains("application/vnd.google.protobuf") && body.len() > 100,
        format!("protobuf exposition: {head}"),
    )?;
    drop(fixture.child.stdin.take());
    fixture.wait();
    check(exporter.stop().success(), "exporter exit status")
}

/// A Prometheus server of its own: loopback, a temporary data directory, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("netpoll-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: netpoll\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=native-histograms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (installed by `cargo xtask test`)");
        let prometheus = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !TcpStream::connect(("127.0.0.1", port))
            .is_ok_and(|_| http_get(port, "/-/ready", None).0.contains("200"))
        {
            assert!(Instant::now() < deadline, "prometheus did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// The value of an instant PromQL query with one result.
    fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (_, body) = http_get(self.port, &format!("/api/v1/query?query={encoded}"), None);
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `export --lite`: the fixture's socket write as a transfer, its 20 epoll_waits that slept
/// 10 ms as sleeps with their off-CPU time, nothing in the per-call families; promtool accepts it.
pub fn exporter_lite_serves_transfers_and_sleeps() -> TestResult {
    let mut fixture = Fixture::start(Scenario::EpollThenHold);
    let pid = fixture.child.id();
    let exporter = Exporter::start(&["--lite", "--pid", &pid.to_string()]);
    fixture.go();
    wait_in_syscall(pid, libc::SYS_read);
    let text = exporter.metrics();
    let write = ["syscall=\"write\""];
    check(
        sample(&text, "netpoll_lite_socket_transfers_total", &write) == Some(1.0)
            && sample(&text, "netpoll_lite_socket_transfer_bytes_total", &write) == Some(1.0),
        format!("one 1-byte socket write in:\n{text}"),
    )?;
    // The truth: how many of its waits slept, by the kernel's count (usually all 20 that wait
    // 10 ms; one whose 10 ms passed before it could sleep, on a loaded machine, does not), and
    // the waits' wall time.
    let (slept, wall_s) = fixture_slept(&mut fixture);
    let wait = ["syscall=\"epoll_wait\""];
    let sleeps = sample(&text, "netpoll_lite_sleeps_total", &wait).unwrap_or(0.0);
    check(
        sleeps == slept as f64 && (15..=27).contains(&slept),
        format!("{sleeps} epoll_wait sleeps, {slept} by the kernel's count (about 20)"),
    )?;
    // Each sleep is most of a 10 ms wait; all of them fit in the waits' wall time.
    let off = sample(&text, "netpoll_lite_off_cpu_seconds_sum", &wait).unwrap_or(0.0);
    check(
        off >= 0.008 * slept as f64 && off <= wall_s,
        format!("epoll_wait off CPU {off} s, {slept} sleeps of about 10 ms in {wall_s} s"),
    )?;
    check(
        sample(&text, "netpoll_syscall_calls_total", &wait).is_none(),
        "lite mode times no call",
    )?;
    promtool_accepts(&text)?;
    drop(fixture.child.stdin.take());
    fixture.wait();
    check(exporter.stop().success(), "exporter exit status")
}

/// The line the epoll-then-hold fixture prints: its waits' voluntary context switches (sleeps)
/// and their wall time in seconds.
fn fixture_slept(fixture: &mut Fixture) -> (i64, f64) {
    let mut line = String::new();
    BufReader::new(fixture.child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("the fixture's line");
    let mut fields = line.split_whitespace().map(|f| f.parse::<i64>().ok());
    match (fields.next().flatten(), fields.next().flatten()) {
        (Some(slept), Some(wall_ns)) => (slept, wall_ns as f64 / 1e9),
        _ => panic!("the fixture printed {line:?}"),
    }
}

pub fn prometheus_scrapes_the_exporter_and_answers_queries() -> TestResult {
    let fixture = Fixture::start_with(Scenario::Steady, &[("NETPOLL_FIXTURE_SECONDS", "40")]);
    let pid = fixture.child.id();
    let exporter = Exporter::start(&["--pid", &pid.to_string()]);
    let prometheus = Prometheus::start(exporter.port);
    fixture.go();
    // Scrapes every second; the rate needs a few of them.
    std::thread::sleep(Duration::from_secs(3));
    // The truth: the exporter's own counter over the 6 s the rate covers. A scrape that fails
    // (a busy machine while Prometheus starts) leaves a gap that makes rate() low by Prometheus'
    // own rules: then measure again.
    let wait = ["syscall=\"epoll_wait\""];
    let count = |text: &str| sample(text, "netpoll_syscall_calls_total", &wait).unwrap_or(0.0);
    let mut measured = Vec::new();
    let mut text = String::new();
    for _ in 0..3 {
        let (c1, t1) = (count(&exporter.metrics()), Instant::now());
        std::thread::sleep(Duration::from_secs(6));
        text = exporter.metrics();
        let truth = (count(&text) - c1) / t1.elapsed().as_secs_f64();
        let rate =
            prometheus.query("rate(netpoll_syscall_calls_total{syscall=\"epoll_wait\"}[6s])");
        let scrapes = prometheus.query("min_over_time(up[6s])");
        measured.push((truth, rate, scrapes));
        // epoll_wait with a 10 ms timeout, back to back: up to 100 calls a second (fewer when
        // the machine is busy).
        if (50.0..=101.0).contains(&truth) && rate.is_some_and(|r| (r / truth - 1.0).abs() < 0.1) {
            break;
        }
    }
    let &(truth, rate, _) = measured.last().expect("measured");
    check(
        (50.0..=101.0).contains(&truth) && rate.is_some_and(|r| (r / truth - 1.0).abs() < 0.1),
        format!("(fixture's calls/s, Prometheus' rate, every scrape up) per attempt: {measured:?}"),
    )?;
    // The median of the waits, from the native histogram: within the buckets' error (1.6 % +
    // 2.2 %) of the exact mean the kernel summed (the waits hardly vary).
    let mean = sample(&text, "netpoll_syscall_latency_seconds_sum", &wait).unwrap_or(0.0)
        / sample(&text, "netpoll_syscall_latency_seconds_count", &wait).unwrap_or(1.0);
    let median = prometheus.query(
        "histogram_quantile(0.5, rate(netpoll_syscall_latency_seconds{syscall=\"epoll_wait\"}[5s]))",
    );
    check(
        (0.0099..0.015).contains(&mean) && median.is_some_and(|m| (m / mean - 1.0).abs() < 0.06),
        format!("histogram_quantile(0.5) = {median:?} s; mean wait {mean:.5} s"),
    )?;
    eprintln!(
        "PromQL: rate(netpoll_syscall_calls_total{{syscall=\"epoll_wait\"}}[6s]) = {:.1}; \
         histogram_quantile(0.5, rate(netpoll_syscall_latency_seconds{{syscall=\"epoll_wait\"}}[5s])) = {:.5}",
        rate.unwrap_or_default(),
        median.unwrap_or_default()
    );
    drop(prometheus);
    drop(fixture);
    let _ = exporter.stop();
    Ok(())
}

pub fn exporter_bad_inputs_and_clean_stop() -> TestResult {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for (args, expected) in [
        (
            vec!["--all", "--listen", addr.as_str()],
            format!("cannot listen on {addr}"),
        ),
        (
            vec!["--all", "--metrics-prefix", "9bad"],
            "not a metric name".to_string(),
        ),
        (vec!["--pid", "999999999"], "no such process".to_string()),
        (vec![], "nothing to profile".to_string()),
    ] {
        let out = Command::new(NETPOLL)
            .arg("export")
            .args(&args)
            .output()
            .expect("netpoll export");
        let err = String::from_utf8_lossy(&out.stderr);
        check(
            !out.status.success() && err.lines().count() == 1 && err.contains(&expected),
            format!("{args:?}: {err}"),
        )?;
    }
    assert_nothing_attached();
    // /healthz, an unknown path, and SIGTERM: a clean stop, nothing left attached.
    let fixture = Fixture::start(Scenario::Sleepy);
    let exporter = Exporter::start(&["--pid", &fixture.child.id().to_string(), "--per-pid"]);
    fixture.go();
    check(
        http_get(exporter.port, "/healthz", None).0.contains("200"),
        "/healthz",
    )?;
    check(
        http_get(exporter.port, "/nope", None).0.contains("404"),
        "404",
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let text = exporter.metrics();
    let pid = format!("pid=\"{}\"", fixture.child.id());
    check(
        sample(
            &text,
            "netpoll_syscall_calls_total",
            &[&pid, "syscall=\"write\""],
        )
        .is_some_and(|n| n >= 10.0),
        format!("--per-pid labels in:\n{text}"),
    )?;
    kill(Pid::from_raw(exporter.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let mut exporter = exporter;
    let status = exporter.child.wait().expect("wait");
    check(
        status.success(),
        format!("exit status after SIGTERM: {status}"),
    )?;
    assert_nothing_attached();
    let _ = Path::new("/");
    Ok(())
}
