//! Charts and reports from fixture results: the SVGs carry their series and axis labels, the
//! PNGs decode to the chart size and are not blank, bad input gets a clear error, and the HTML
//! report opens in headless Chromium showing every chart.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use analysis::{
    Histogram, Results,
    chart::{self, HEIGHT, WIDTH},
    png::Renderer,
    report::{self, Run},
    results::{Counters, EndReason, HookKind, Host, SyscallStats, Target, TargetKind, Tool},
    run::{LoadMode, LoadResults, PerRequest, Percentiles, RunInfo, ServerProcess},
    workload::{ServerConfig, Workload},
};
use netpoll_ebpf::histogram::{LATENCY_BUCKETS, READY_BUCKETS};
use resvg::tiny_skia::Pixmap;

fn histogram(values: &[(u64, u64)], buckets: usize) -> Histogram {
    let mut h = Histogram::new(buckets);
    for &(v, n) in values {
        h.record_n(v, n);
    }
    h
}

fn stats(name: &str, calls: u64, latency: &[(u64, u64)], ready: &[(u64, u64)]) -> SyscallStats {
    SyscallStats {
        name: name.into(),
        calls,
        latency_sum_ns: latency.iter().map(|(v, n)| v * n).sum(),
        latency_ns: histogram(latency, LATENCY_BUCKETS),
        ready_events: histogram(ready, READY_BUCKETS),
        ..SyscallStats::default()
    }
}

/// A `netpoll run` result for `model`: blocking models read slowly, reactors wait in epoll.
fn run_results(model: &str, connections: usize, payload: usize) -> Results {
    let blocking = model.starts_with("blocking");
    let mut classes = vec![
        stats(
            "socket_read",
            1000,
            if blocking {
                &[(80_000, 900), (2_000_000, 100)]
            } else {
                &[(600, 1000)]
            },
            &[],
        ),
        stats("socket_write", 1000, &[(3_000, 1000)], &[]),
    ];
    if !blocking {
        classes.insert(
            0,
            stats("epoll", 250, &[(1_100, 200), (40_000, 50)], &[(4, 250)]),
        );
    }
    let p = |base: u64| Percentiles {
        min: base / 2,
        p50: base,
        p90: base * 2,
        p99: base * 4,
        p999: base * 10,
        max: base * 30,
        mean: base as f64 * 1.2,
    };
    Results {
        schema: analysis::SCHEMA.into(),
        tool: Tool::netpoll(),
        target: Target {
            kind: TargetKind::Run,
            pids: vec![42],
            follow_children: true,
            ..Target::default()
        },
        host: Host {
            hostname: "fixture".into(),
            kernel: "6.18.0".into(),
            arch: "x86_64".into(),
            cpus: 2,
        },
        hook: HookKind::TpBtf,
        socket_split: true,
        started_at: "2026-11-27T00:00:00.000Z".into(),
        ended_at: "2026-11-27T00:00:02.000Z".into(),
        duration_ns: 2_000_000_000,
        end_reason: EndReason::Duration,
        partial: false,
        command_exit_code: None,
        syscalls: classes.clone(),
        classes,
        lower_bound: vec![],
        processes: Default::default(),
        counters: Counters::default(),
        programs: Vec::new(),
        lite: None,
        io_model: None,
        go: None,
        ready: None,
        netpoll_cpu: None,
        memory: None,
        uring: None,
        stacks: None,
        scheduler: None,
        run: Some(RunInfo {
            workload: Workload {
                model: model.into(),
                server: ServerConfig {
                    listen: "127.0.0.1:1".into(),
                    payload,
                    ..ServerConfig::default()
                },
                external: None,
            },
            load: LoadResults {
                target: "127.0.0.1:1".into(),
                protocol: "echo".into(),
                payload: Some(payload),
                mode: LoadMode::Closed,
                connections,
                threads: 1,
                duration_ns: 2_000_000_000,
                requests: 1000,
                throughput_rps: 500.0 * connections as f64,
                latency_percentiles: p(if blocking { 90_000 } else { 50_000 }),
                latency_ns: {
                    let base = if blocking { 90_000 } else { 50_000 };
                    histogram(
                        &[(base, 900), (base * 4, 90), (base * 10, 10)],
                        LATENCY_BUCKETS,
                    )
                },
                ..LoadResults::default()
            },
            server_process: ServerProcess {
                pid: 42,
                cpu_user_ns: 1_000_000,
                cpu_system_ns: 9_000_000,
                voluntary_switches: if blocking { 1000 } else { 1 },
                peak_threads: if blocking { connections as u64 + 1 } else { 1 },
                ..ServerProcess::default()
            },
            per_request: PerRequest {
                syscalls: if blocking { 2.0 } else { 3.25 },
                epoll_waits: if blocking { 0.0 } else { 0.25 },
                eagain: if blocking { 0.0 } else { 1.0 },
                context_switches: if blocking { 1.0 } else { 0.001 },
                cpu_us: 10.0,
                sched: None,
                go: None,
                ready: None,
                uring: None,
            },
            xdp: None,
            memory: None,
            environment: None,
        }),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netpoll-report-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes results as files and loads them back the way `netpoll report` does.
fn runs(dir: &Path, results: &[Results]) -> Vec<Run> {
    let inputs: Vec<PathBuf> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = dir.join(format!("run{i}.json"));
            fs::write(&path, serde_json::to_string(r).expect("json")).expect("write");
            path
        })
        .collect();
    report::load(&inputs).expect("load")
}

fn chart<'a>(charts: &'a [chart::Chart], name: &str) -> &'a chart::Chart {
    charts
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no chart {name}"))
}

#[test]
fn charts_carry_their_series_axes_and_titles() {
    let dir = temp_dir("series");
    let runs = runs(
        &dir,
        &[
            run_results("epoll-lt", 8, 64),
            run_results("blocking-threads", 8, 64),
        ],
    );
    let charts = report::charts(&runs).expect("charts");
    let latency = chart(&charts, "request_latency");
    for text in [
        "epoll-lt",
        "blocking-threads",
        "percentile",
        "request latency (log scale)",
        "p99.9",
    ] {
        assert!(latency.svg.contains(text), "request_latency lacks {text:?}");
    }
    let reads = chart(&charts, "socket_read_latency");
    assert!(reads.svg.contains("latency per call (log scale)"));
    assert!(reads.svg.contains("share of calls (%)"));
    // Runs are listed in `netpoll models` order, whatever the input order.
    assert_eq!(runs[0].label, "blocking-threads");
    // The blocking model has no waiting call; only the reactor appears.
    let waits = chart(&charts, "wait_latency");
    assert!(waits.svg.contains("epoll-lt (epoll)") && !waits.svg.contains("blocking-threads"));
    let bars = chart(&charts, "switches_per_request");
    assert!(bars.svg.contains("context switches per request") && bars.svg.contains("\n1\n"));
    assert!(chart(&charts, "ready_events").svg.contains("4-7"));
    // No run read files: no file-read chart.
    assert!(charts.iter().all(|c| c.name != "file_read_latency"));
    // One connection count per model: the chart says what is missing.
    assert!(
        chart(&charts, "throughput_vs_connections")
            .svg
            .contains("each model ran at one value of connections")
    );
    // A model keeps its colour from chart to chart.
    let color = chart::color_of("epoll-lt");
    let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
    for name in ["request_latency", "socket_read_latency", "throughput"] {
        assert!(
            chart(&charts, name).svg.to_uppercase().contains(&hex),
            "{name} lacks epoll-lt's colour {hex}"
        );
    }
}

#[test]
fn pngs_decode_to_the_chart_size_and_are_not_blank() {
    let dir = temp_dir("png");
    let runs = runs(&dir, &[run_results("poll", 4, 64)]);
    let charts = report::charts(&runs).expect("charts");
    let renderer = Renderer::new().expect("a sans-serif font (fonts-dejavu-core)");
    for c in &charts {
        let png = renderer.png(&c.name, &c.svg).expect("png");
        let pixmap = Pixmap::decode_png(&png).expect("decodes");
        assert_eq!(
            (pixmap.width(), pixmap.height()),
            (WIDTH, HEIGHT),
            "{}",
            c.name
        );
        let dark = pixmap
            .pixels()
            .iter()
            .filter(|p| p.red() < 100 && p.green() < 100 && p.blue() < 100)
            .count();
        // Title, labels and axes: hundreds of dark pixels, not an empty white page.
        assert!(dark > 500, "{}: only {dark} dark pixels", c.name);
    }
}

#[test]
fn mixed_parameters_are_stated_in_the_charts() {
    let dir = temp_dir("mixed");
    let runs = runs(
        &dir,
        &[
            run_results("epoll-lt", 8, 64),
            run_results("epoll-lt", 32, 64),
            run_results("poll", 8, 1024),
        ],
    );
    // Two epoll-lt runs: told apart by their connection counts.
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    assert!(labels.contains(&"epoll-lt c=8") && labels.contains(&"epoll-lt c=32"));
    let charts = report::charts(&runs).expect("charts");
    // epoll-lt ran at two connection counts: model comparisons use its largest, and say so.
    let latency = chart(&charts, "request_latency");
    assert!(
        latency
            .svg
            .contains("at 8/32 connections; mixed parameters: payload (B) 1024/64"),
        "no note"
    );
    assert!(latency.svg.contains("epoll-lt c=32") && !latency.svg.contains("epoll-lt c=8"));
    // Against connections, the connection count is the axis, not a mix.
    let curve = chart(&charts, "throughput_vs_connections");
    assert!(curve.svg.contains("payload (B) 1024/64") && !curve.svg.contains("connections 32/8"));
    let sentence = report::summary(&runs).expect("a sentence");
    assert!(
        sentence
            .starts_with("At 8/32 connections, epoll-lt c=32 served the most requests (16000/s"),
        "{sentence}"
    );
    assert!(
        sentence
            .contains("No model's throughput at 32 connections was more than 5% below its best.")
            && sentence.contains("server threads 1 for every model"),
        "{sentence}"
    );
}

#[test]
fn empty_data_gives_a_chart_that_says_so() {
    let mut r = run_results("epoll-lt", 8, 64);
    r.classes.clear();
    r.syscalls.clear();
    let dir = temp_dir("empty");
    let runs = runs(&dir, &[r]);
    let charts = report::charts(&runs).expect("charts");
    assert!(
        chart(&charts, "socket_read_latency")
            .svg
            .contains("no calls of this kind in these results")
    );
    assert!(
        chart(&charts, "ready_events")
            .svg
            .contains("no epoll, poll or select call returned ready events")
    );
}

#[test]
fn a_profile_gets_a_card() {
    let mut r = run_results("epoll-lt", 8, 64);
    r.run = None;
    r.target = Target {
        kind: TargetKind::Comm,
        comm: Some("redis-server".into()),
        ..Target::default()
    };
    let dir = temp_dir("card");
    let runs = runs(&dir, &[r]);
    let charts = report::charts(&runs).expect("charts");
    assert_eq!(
        charts.len(),
        1,
        "{:?}",
        charts.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let card = &charts[0];
    assert!(card.svg.contains("redis-server: 2250 calls in 2.0 s"));
    assert!(
        card.svg.contains("epoll (250 calls)") && card.svg.contains("socket_write (1000 calls)")
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = temp_dir("bad");
    let truncated = dir.join("truncated.json");
    let text = serde_json::to_string(&run_results("poll", 1, 1)).expect("json");
    fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    let err = report::load(&[truncated]).unwrap_err().to_string();
    assert!(
        err.contains("truncated.json is not a netpoll results file"),
        "{err}"
    );

    let future = dir.join("future.json");
    fs::write(
        &future,
        text.replace("netpoll-results/1", "netpoll-results/7"),
    )
    .expect("write");
    let err = report::load(&[future]).unwrap_err().to_string();
    assert!(err.contains("has schema \"netpoll-results/7\""), "{err}");

    let empty = temp_dir("bad-empty");
    let err = report::load(&[empty]).unwrap_err().to_string();
    assert!(err.contains("no results files"), "{err}");

    let err = report::load(&[dir.join("missing.json")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read"), "{err}");

    let good = runs(&temp_dir("bad-good"), &[run_results("poll", 1, 1)]);
    let blocker = dir.join("a-file");
    fs::write(&blocker, "").expect("write");
    let err = report::write(&blocker.join("report"), &good, &report::Heading::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot write"), "{err}");
}

#[test]
fn the_report_has_every_file_and_table() {
    let dir = temp_dir("files");
    let runs = runs(
        &dir,
        &[
            run_results("epoll-lt", 8, 64),
            run_results("blocking-threads", 8, 64),
        ],
    );
    let out = dir.join("report");
    let written = report::write(&out, &runs, &report::Heading::default()).expect("report");
    let charts = report::charts(&runs).expect("charts");
    for c in &charts {
        assert!(out.join(format!("{}.svg", c.name)).is_file());
        assert!(out.join(format!("{}.png", c.name)).is_file());
    }
    assert_eq!(written.len(), charts.len() * 2 + 3);
    let html = fs::read_to_string(out.join("index.html")).expect("html");
    assert_eq!(html.matches("<svg").count(), charts.len(), "charts inline");
    assert!(html.contains("<th>syscalls/req</th>") && html.contains("6.18.0"));
    let md = fs::read_to_string(out.join("report.md")).expect("md");
    assert_eq!(md.matches("](").count(), charts.len());
    let csv = fs::read_to_string(out.join("results.csv")).expect("csv");
    // Header, then one row per run and class: 3 classes for epoll-lt, 2 for blocking-threads.
    assert_eq!(csv.lines().count(), 1 + 3 + 2, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("blocking-threads,"))
    );
}

/// Stacks of two runs (`--stacks`): each run's flame graphs and folded stacks in a directory of
/// its own, and per run and class a table of the top stacks linking its flame graph.
#[test]
fn stacks_of_several_runs_are_drawn_and_linked_per_run() {
    use analysis::stacks::{CallStack, Stacks};
    let dir = temp_dir("stacks");
    let with_stacks = |model: &str, caller: &str| {
        let mut r = run_results(model, 8, 64);
        r.stacks = Some(Stacks {
            stacks: vec![CallStack {
                class: "socket_read".into(),
                syscall: "read".into(),
                frames: vec!["main".into(), caller.into(), "read".into(), "[read]".into()],
                complete: true,
                calls: 42,
                latency_sum_ns: 42_000,
                ..CallStack::default()
            }],
            ..Stacks::default()
        });
        r
    };
    let runs = runs(
        &dir,
        &[
            with_stacks("epoll-lt", "reactor"),
            with_stacks("blocking-threads", "handler"),
        ],
    );
    let out = dir.join("report");
    let written = report::write(&out, &runs, &report::Heading::default()).expect("report");
    for n in [1, 2] {
        let graph = out.join(format!("stacks/{n}/socket_read.latency_ns.svg"));
        assert!(written.contains(&graph), "{graph:?} in {written:?}");
        let folded = fs::read_to_string(out.join(format!("stacks/{n}/socket_read.calls.folded")))
            .expect("folded");
        assert!(folded.ends_with(";read;[read] 42\n"), "{folded}");
    }
    let html = fs::read_to_string(out.join("index.html")).expect("html");
    assert_eq!(html.matches("Call stacks: ").count(), 2);
    assert!(html.contains("stacks/1/socket_read.latency_ns.svg"));
    assert!(html.contains("stacks/2/socket_read.latency_ns.svg"));
    assert!(html.contains("read ← reactor ← main") && html.contains("read ← handler ← main"));
}

/// Headless Chromium (Debian `chromium`, installed by `cargo xtask test`) opens the report from
/// disk without errors, finds every chart in the page, and renders a non-blank screenshot.
#[test]
fn the_html_report_opens_in_chromium() {
    let dir = temp_dir("chromium");
    let runs = runs(
        &dir,
        &[
            run_results("epoll-lt", 8, 64),
            run_results("blocking-threads", 8, 64),
        ],
    );
    let out = dir.join("report");
    report::write(&out, &runs, &report::Heading::default()).expect("report");
    let charts = report::charts(&runs).expect("charts").len();
    let url = format!("file://{}", out.join("index.html").display());
    let chromium = |args: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .args(args)
            .arg(&url)
            .output()
            .expect("chromium (installed by `cargo xtask test`)")
    };
    let dom = chromium(&["--dump-dom"]);
    let page = String::from_utf8_lossy(&dom.stdout);
    let log = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "{log}");
    assert_eq!(page.matches("<svg").count(), charts, "charts in the DOM");
    assert_eq!(page.matches("<figure").count(), charts);
    assert!(
        !log.contains("Uncaught") && !log.contains("CONSOLE(") && !log.contains("ERR_FILE"),
        "page errors:\n{log}"
    );
    let shot = out.join("screenshot.png");
    let status = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,2400",
        "--hide-scrollbars",
    ]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let pixmap = Pixmap::load_png(&shot).expect("screenshot decodes");
    assert_eq!((pixmap.width(), pixmap.height()), (1200, 2400));
    let colored = pixmap
        .pixels()
        .iter()
        .filter(|p| {
            let (r, g, b) = (p.red() as i32, p.green() as i32, p.blue() as i32);
            (r - g).abs() > 60 || (g - b).abs() > 60 || (r - b).abs() > 60
        })
        .count();
    // Chart lines and bars are coloured; a page of text alone would have none.
    assert!(
        colored > 5000,
        "only {colored} coloured pixels in the screenshot"
    );
}

#[test]
fn sweeps_sort_numerically_and_failing_runs_are_marked() {
    let dir = temp_dir("sweep");
    let with_idle = |idle: usize| {
        let mut r = run_results("select", 10, 64);
        r.run.as_mut().expect("run").load.idle_connections = idle;
        r
    };
    // Files sort as idle0, idle1000, idle250; the rows must not.
    let runs = runs(&dir, &[with_idle(0), with_idle(1000), with_idle(250)]);
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        ["select idle=0", "select idle=250", "select idle=1000"]
    );

    let mut failing = run_results("blocking-iterative", 100, 64);
    failing.run.as_mut().expect("run").load.errors.timeouts = 30;
    let runs = self::runs(
        &temp_dir("failing"),
        &[failing, run_results("epoll-lt", 100, 64)],
    );
    let charts = report::charts(&runs).expect("charts");
    let latency = chart(&charts, "request_latency");
    assert!(
        latency
            .svg
            .contains("blocking-iterative (30 failed requests)"),
        "the legend does not mark the failing run"
    );
    assert!(!latency.svg.contains("epoll-lt (0 failed"));
    // Bar labels carry their unit; axis ticks have no spurious decimals.
    let p99 = chart(&charts, "p99");
    assert!(p99.svg.contains("200 µs"), "p99 bar label without unit");
    let throughput = chart(&charts, "throughput");
    assert!(throughput.svg.contains("50000/s"));
    assert!(!throughput.svg.contains("10000.0"));
    // The percentile distribution, as HdrHistogram plots it.
    let hdr = chart(&charts, "request_latency_distribution");
    assert!(hdr.svg.contains("percentile (log scale of 1/(1-q))") && hdr.svg.contains("99%"));
    assert!(
        chart(&charts, "socket_read_latency_distribution")
            .svg
            .contains("epoll-lt")
    );
}

/// `run_results` with throughput `rps` (and p99 scaled with it, so figures vary together).
fn with_throughput(model: &str, rps: f64) -> Results {
    let mut r = run_results(model, 8, 64);
    r.run.as_mut().expect("run").load.throughput_rps = rps;
    r
}

#[test]
fn repeats_give_intervals_and_findings_never_rank_within_noise() {
    let dir = temp_dir("repeats");
    let mut results = Vec::new();
    for (model, values) in [
        ("epoll-lt", [1000.0, 1050.0, 980.0, 1020.0, 1010.0]),
        ("poll", [1005.0, 990.0, 1030.0, 1000.0, 1015.0]),
        ("blocking-iterative", [330.0, 340.0, 320.0, 335.0, 325.0]),
    ] {
        results.extend(values.iter().map(|&v| with_throughput(model, v)));
    }
    let runs = runs(&dir, &results);
    // Repeats share their configuration's label: five runs, one configuration.
    assert!(runs.iter().filter(|r| r.label == "epoll-lt").count() == 5);
    assert_eq!(report::cells(&runs).len(), 3);
    let sentence = report::summary(&runs).expect("a sentence");
    // epoll-lt and poll cannot be told apart: neither is ranked above the other.
    assert!(
        sentence.contains("poll and epoll-lt served the most requests")
            && sentence.contains("within noise of each other"),
        "{sentence}"
    );
    // blocking-iterative is slower beyond the noise: by how much, with the interval.
    let ratio = regex_like_ratio(&sentence, "the requests of blocking-iterative");
    assert!((2.8..3.3).contains(&ratio), "{sentence}");
    assert!(
        !sentence.contains("One run per configuration"),
        "{sentence}"
    );

    let charts = report::charts(&runs).expect("charts");
    let throughput = chart(&charts, "throughput");
    assert!(
        throughput
            .svg
            .contains("median of 5 runs, bars: 95 % interval"),
        "no note on the bars"
    );
    let out = dir.join("report");
    report::write(&out, &runs, &report::Heading::default()).expect("report");
    let md = fs::read_to_string(out.join("report.md")).expect("md");
    // Tables print the median and its interval.
    assert!(md.contains("| epoll-lt | 8 | closed | 5 | 1010 (9"), "{md}");
    let csv = fs::read_to_string(out.join("results.csv")).expect("csv");
    let header = csv.lines().next().expect("header");
    for column in [
        "runs",
        "throughput_median",
        "throughput_low",
        "throughput_high",
    ] {
        assert!(header.split(',').any(|c| c == column), "{header}");
    }
}

#[test]
fn identical_configurations_are_within_noise() {
    let dir = temp_dir("aa");
    let values = [1000.0, 1100.0, 950.0, 1050.0, 990.0];
    let results: Vec<Results> = values
        .iter()
        .map(|&v| with_throughput("epoll-lt", v))
        .chain(
            values
                .iter()
                .map(|&v| with_throughput("epoll-et", v * 1.02)),
        )
        .collect();
    let runs = runs(&dir, &results);
    let sentence = report::summary(&runs).expect("a sentence");
    assert!(
        sentence.contains("all 2 configurations served requests within noise of each other"),
        "{sentence}"
    );
    assert!(!sentence.contains("served the most"), "{sentence}");
}

/// The `2.9x` in `... 2.9x (2.6-3.3x) <after>`.
fn regex_like_ratio(sentence: &str, after: &str) -> f64 {
    let before = sentence
        .split(after)
        .next()
        .unwrap_or_else(|| panic!("no {after:?} in {sentence}"));
    let word = before
        .split_whitespace()
        .rev()
        .find(|w| w.ends_with('x') && !w.ends_with("x)"))
        .unwrap_or_else(|| panic!("no ratio before {after:?}: {sentence}"));
    word.trim_end_matches('x').parse().expect("a number")
}

#[test]
fn the_scheduler_view_gets_its_charts_and_table() {
    let with_sched = |model: &str, runq_us: f64| {
        let mut r = run_results(model, 100, 64);
        let run = r.run.as_mut().expect("run");
        run.per_request.sched = Some(analysis::run::SchedPerRequest {
            on_cpu_in_calls_us: 5.0,
            on_cpu_elsewhere_us: 3.0,
            runq_us,
            blocked_us: 40.0,
            wakeups: 1.0,
            wakeups_by_interrupt: 1.0,
            ..Default::default()
        });
        r.scheduler = Some(analysis::sched::Scheduler {
            runq_delay_ns: histogram(&[((runq_us * 1e3) as u64, 100)], LATENCY_BUCKETS),
            ..Default::default()
        });
        r
    };
    let dir = temp_dir("sched");
    let runs = runs(
        &dir,
        &[
            with_sched("blocking-threads", 2000.0),
            with_sched("epoll-lt", 0.5),
        ],
    );
    let charts = report::charts(&runs).expect("charts");
    let stacked = chart(&charts, "server_time_per_request");
    for text in ["running in measured calls", "waiting for a CPU", "2008 µs"] {
        assert!(stacked.svg.contains(text), "stacked chart lacks {text:?}");
    }
    assert!(
        chart(&charts, "runq_delay")
            .svg
            .contains("waiting for a CPU (log scale)")
    );
    assert!(chart(&charts, "runq_per_request").svg.contains("2000 µs"));
    let out = dir.join("report");
    report::write(&out, &runs, &report::Heading::default()).expect("report");
    let md = fs::read_to_string(out.join("report.md")).expect("md");
    assert!(
        md.contains("## Server thread time per request (scheduler view)"),
        "{md}"
    );
    let sentence = report::summary(&runs).expect("sentence");
    assert!(
        sentence.contains(
            "µs waiting for a CPU per request from 0.5 (epoll-lt) to 2000.0 (blocking-threads)"
        ),
        "{sentence}"
    );
}

/// Third-party servers sit in the report beside the models, under their names, and every
/// configuration's I/O-model verdict is in a table with its evidence.
#[test]
fn third_party_servers_and_verdicts_are_reported() {
    use analysis::verdict::{Confidence, Family, IoModel};
    let dir = temp_dir("verdicts");
    let verdict = |name: &str, evidence: &str| IoModel {
        family: Family::EpollReactor,
        name: name.into(),
        confidence: Confidence::High,
        evidence: vec![evidence.into()],
        observed: Default::default(),
    };
    let mut model = run_results("epoll-lt", 8, 64);
    model.io_model = Some(verdict(
        "epoll, level-triggered, single reactor",
        "1 thread(s)",
    ));
    let mut nginx = run_results("nginx-1-worker", 8, 64);
    if let Some(run) = nginx.run.as_mut() {
        run.workload = Workload::external(
            "nginx-1-worker",
            "nginx -g 'daemon off;'",
            "http://127.0.0.1:1/",
        );
    }
    let mut other = nginx.clone();
    nginx.io_model = Some(verdict(
        "epoll, edge-triggered, single reactor",
        "17 edge-triggered",
    ));
    other.io_model = Some(verdict("epoll, mixed", "x"));
    let mut third = nginx.clone();
    third.started_at = "2026-11-27T00:00:05.000Z".into();
    let runs = runs(&dir, &[model, nginx, other, third]);
    let out = dir.join("report");
    report::write(&out, &runs, &report::Heading::default()).expect("report");
    let md = fs::read_to_string(out.join("report.md")).expect("md");
    assert!(md.contains("I/O model, as the probes see it"), "{md}");
    let row = md
        .lines()
        .find(|l| l.contains("nginx-1-worker") && l.contains("edge-triggered"))
        .unwrap_or_else(|| panic!("no nginx verdict row in {md}"));
    assert!(
        row.contains("2 of 3") && row.contains("17 edge-triggered"),
        "{row}"
    );
    assert!(md.contains("epoll, level-triggered, single reactor"));
}

/// A run of `model` holding `held` connections whose server has `per_connection` bytes of
/// anonymous memory per connection over 8 MiB, and whose wait call (`wait`) takes
/// `wait_per_connection` ns per connection over 2 µs.
fn with_memory(
    model: &str,
    wait: &str,
    held: u64,
    per_connection: u64,
    wait_per_connection: u64,
) -> Results {
    use analysis::memory::{MemoryEdge, ProcessMemory, RunMemory};
    let mut r = run_results(model, 10, 64);
    let mean = 2_000 + wait_per_connection * held;
    r.classes
        .retain(|c| !c.name.starts_with("epoll") && c.name != "poll_select");
    let mut class = stats(wait, 1000, &[(mean, 1000)], &[]);
    class.latency_sum_ns = mean * 1000;
    class.total = true;
    r.classes.push(class);
    let info = r.run.as_mut().expect("run");
    info.load.idle_connections = held as usize - 10;
    let server = ProcessMemory {
        processes: 1,
        threads: 1,
        anon_bytes: (8 << 20) + per_connection * held,
        rss_bytes: (12 << 20) + per_connection * held,
        ..ProcessMemory::default()
    };
    info.memory = Some(RunMemory {
        connections: held,
        after: MemoryEdge {
            server,
            ..MemoryEdge::default()
        },
        ..RunMemory::default()
    });
    r
}

#[test]
fn memory_per_connection_is_a_slope_with_an_interval() {
    let dir = temp_dir("memory");
    let mut results = Vec::new();
    for held in [10, 1010, 5010, 19010] {
        for _ in 0..3 {
            results.push(with_memory("epoll-lt", "epoll", held, 200, 0));
            results.push(with_memory("poll", "poll_select", held, 120, 640));
        }
    }
    let runs = runs(&dir, &results);
    let table = report::memory::table(&runs);
    let row = |model: &str| {
        table
            .rows
            .iter()
            .find(|r| r[0] == model)
            .unwrap_or_else(|| panic!("no row for {model}: {table:?}"))
            .clone()
    };
    // Exact lines: the slope is the bytes per connection, its interval a point.
    assert!(
        row("epoll-lt")[3].starts_with("200 B"),
        "{:?}",
        row("epoll-lt")
    );
    assert!(row("poll")[3].starts_with("120 B"), "{:?}", row("poll"));
    assert_eq!(row("poll")[2], "10-19010");
    assert!(row("poll")[6].starts_with("640.00 ns"), "{:?}", row("poll"));
    assert!(
        row("epoll-lt")[6].starts_with("0.00 ns"),
        "{:?}",
        row("epoll-lt")
    );
    let sentence = report::memory::sentence(&runs).expect("sentence");
    assert!(
        sentence.contains("poll (poll_select) 640.00 ns"),
        "{sentence}"
    );
    assert!(sentence.contains("OLS 2004"), "{sentence}");
    let charts = report::memory::charts(&runs).expect("charts");
    for name in ["memory_vs_connections", "wait_time_vs_connections"] {
        assert!(chart(&charts, name).svg.contains("epoll-lt"), "{name}");
    }
    // One number of connections per model: no slope, no table row.
    let flat = runs_of_one_size(&dir);
    assert!(report::memory::table(&flat).rows.is_empty());
}

fn runs_of_one_size(dir: &Path) -> Vec<Run> {
    runs(
        dir,
        &[
            with_memory("epoll-lt", "epoll", 10, 200, 0),
            with_memory("epoll-lt", "epoll", 10, 200, 0),
        ],
    )
}
