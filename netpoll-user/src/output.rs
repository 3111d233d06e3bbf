//! Terminal rendering: tables like `perf trace -s`, histograms like bpftrace's `hist()`.

use std::fmt::Write as _;

use analysis::{
    Histogram, Results,
    results::{Lite, SyscallStats},
    run::{LoadMode, LoadResults, Percentiles, RunInfo},
    verdict::Confidence,
};

/// 850ns, 12.3µs, 4.56ms, 1.23s: the charts' format (at most 3 significant digits).
pub fn fmt_ns(ns: u64) -> String {
    analysis::chart::fmt_ns(ns as f64)
}

/// 512B, 12.3KiB, 4.0MiB: `analysis::memory::format_bytes`, without the space (table columns).
pub fn fmt_bytes(b: u64) -> String {
    analysis::memory::format_bytes(b as f64).replace(' ', "")
}

/// bpftrace's bucket labels: 512, 1K, 2M.
fn power_label(v: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (scale, unit) in UNITS {
        if v >= scale && v.is_multiple_of(scale) {
            return format!("{}{unit}", v / scale);
        }
    }
    v.to_string()
}

fn quantile(h: &Histogram, q: f64) -> String {
    h.quantile(q).map_or("-".into(), |x| fmt_ns(x.estimate()))
}

fn row(out: &mut String, label: &str, s: &SyscallStats, seconds: f64) {
    let rate = if seconds > 0.0 {
        s.calls as f64 / seconds
    } else {
        0.0
    };
    let bytes = if s.bytes > 0 {
        fmt_bytes(s.bytes)
    } else {
        "-".into()
    };
    let max = s.latency_ns.max().map_or("-".into(), |m| fmt_ns(m.high));
    let _ = writeln!(
        out,
        "{label:<22} {:>9} {:>10.1} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        s.calls,
        rate,
        s.errors,
        s.eagain,
        bytes,
        quantile(&s.latency_ns, 0.5),
        quantile(&s.latency_ns, 0.9),
        quantile(&s.latency_ns, 0.99),
        quantile(&s.latency_ns, 0.999),
        max,
    );
}

/// One table of rows under a title column.
pub fn table(title: &str, rows: &[SyscallStats], seconds: f64) -> String {
    let mut out = format!(
        "{title:<22} {:>9} {:>10} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "CALLS", "RATE/s", "ERRORS", "EAGAIN", "BYTES", "P50", "P90", "P99", "P99.9", "MAX"
    );
    for s in rows {
        row(&mut out, &s.label(), s, seconds);
    }
    out
}

/// A histogram in bpftrace's style: one row per power of two, bars scaled to the largest row.
pub fn histogram(title: &str, h: &Histogram) -> String {
    let mut rows: Vec<(u64, u64)> = Vec::new(); // (power-of-two row start, count)
    for (low, _, count) in h.buckets() {
        let start = if low == 0 { 0 } else { 1 << low.ilog2() };
        match rows.last_mut() {
            Some((s, c)) if *s == start => *c += count,
            _ => rows.push((start, count)),
        }
    }
    let peak = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut out = format!("@{title}:\n");
    for (start, count) in rows {
        let range = match start {
            0 => "[0]".to_string(),
            1 => "[1]".to_string(),
            s => format!("[{}, {})", power_label(s), power_label(s * 2)),
        };
        let bar = "@".repeat((count * 52 / peak) as usize);
        let _ = writeln!(out, "{range:<13} {count:>8} |{bar:<52}|");
    }
    out
}

/// `--lite`: socket transfers and sleeps by syscall, and the off-CPU histograms.
pub fn lite_report(lite: &Lite, seconds: f64) -> String {
    let mut out = String::from(
        "lite mode: socket transfers (socket tracepoints) and sleeps inside syscalls \
         (sched_switch); calls that neither touch a socket nor sleep are not seen, none is timed\n\n",
    );
    if lite.syscalls.is_empty() {
        out.push_str("No socket transfer or sleep in a measured syscall was seen.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>10} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "SYSCALL",
        "TRANSFERS",
        "RATE/s",
        "ERRORS",
        "EAGAIN",
        "BYTES",
        "SLEEPS",
        "OFF P50",
        "OFF P99",
        "OFF MEAN"
    );
    for s in &lite.syscalls {
        let rate = if seconds > 0.0 {
            s.socket_transfers as f64 / seconds
        } else {
            0.0
        };
        let mean = s
            .off_cpu_sum_ns
            .checked_div(s.sleeps)
            .map_or("-".into(), fmt_ns);
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10.1} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9}",
            s.name,
            s.socket_transfers,
            rate,
            s.errors,
            s.eagain,
            if s.bytes > 0 {
                fmt_bytes(s.bytes)
            } else {
                "-".into()
            },
            s.sleeps,
            quantile(&s.off_cpu_ns, 0.5),
            quantile(&s.off_cpu_ns, 0.99),
            mean,
        );
    }
    for s in lite.syscalls.iter().filter(|s| s.sleeps > 0) {
        let _ = write!(
            out,
            "\n{}",
            histogram(
                &format!("{} off-CPU time per sleep (ns)", s.name),
                &s.off_cpu_ns
            )
        );
    }
    out
}

/// The I/O-model verdict and its evidence.
fn io_model(results: &Results) -> String {
    let Some(m) = &results.io_model else {
        return String::new();
    };
    let confidence = match m.confidence {
        Confidence::High => "high",
        Confidence::Medium => "medium",
        Confidence::Low => "low",
    };
    let mut out = format!("\nI/O model: {} ({confidence} confidence)\n", m.name);
    for line in &m.evidence {
        let _ = writeln!(out, "  - {line}");
    }
    out
}

/// The end-of-run report.
pub fn report(results: &Results) -> String {
    let seconds = results.duration_ns as f64 / 1e9;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nnetpoll {}: {} hooks, {:.2}s{}\n",
        if results.run.is_some() {
            "run (server side)"
        } else {
            "profile"
        },
        results.hook.name(),
        seconds,
        if results.partial {
            " (partial: interrupted)"
        } else {
            ""
        }
    );
    if let Some(lite) = &results.lite {
        out.push_str(&lite_report(lite, seconds));
    } else if results.syscalls.is_empty() {
        out.push_str("No measured syscalls were made by the target.\n");
    } else {
        out.push_str(&table("SYSCALL", &results.syscalls, seconds));
        out.push('\n');
        out.push_str(&table("CLASS", &results.classes, seconds));
    }
    for class in &results.classes {
        let _ = write!(
            out,
            "\n{}",
            histogram(&format!("{} latency (ns)", class.name), &class.latency_ns)
        );
        if class.ready_events.is_empty() {
            continue;
        }
        // recvmmsg/sendmmsg (in the socket classes) return a count of datagrams; the waits,
        // ready descriptors.
        let counted = if class.class().is_some_and(|c| c.is_socket()) {
            "datagrams per recvmmsg/sendmmsg"
        } else {
            let _ = writeln!(
                out,
                "{}: {} calls returned no ready event, {} were non-blocking (zero timeout), {} could block",
                class.name,
                class.zero_ready,
                class.nonblocking,
                class.calls - class.nonblocking
            );
            "ready events per call"
        };
        let _ = write!(
            out,
            "{}",
            histogram(&format!("{} {counted}", class.name), &class.ready_events)
        );
    }
    out.push_str(&scheduler(results));
    out.push_str(&program_costs(results));
    if !results.lower_bound.is_empty() {
        let _ = writeln!(
            out,
            "\nCalls already in progress when the probes attached (latency is a lower bound):"
        );
        out.push_str(&table("SYSCALL", &results.lower_bound, seconds));
    }
    for (pid, process) in &results.processes {
        let _ = writeln!(out);
        out.push_str(&table(
            &format!("PID {pid} ({})", process.comm),
            &process.classes,
            seconds,
        ));
    }
    for warning in results.counters.warnings() {
        let _ = writeln!(out, "warning: {warning}");
    }
    out.push_str(&io_model(results));
    out.push_str(&readiness(results));
    out.push_str(&uring(results));
    out.push_str(&go_runtime(results));
    out.push_str(&go_polls(results));
    out.push_str(&go_exact(results));
    out.push_str(&stacks(results));
    out
}

/// Stacks shown per class in the terminal, and frames per stack (innermost first, as bpftrace
/// prints `ustack`); the folded files and flame graphs have them all.
const STACKS_PER_CLASS: usize = 3;
const FRAMES_PER_STACK: usize = 14;

/// The stacks view (`--stacks`): per class, the stacks with the most time inside the calls.
fn stacks(results: &Results) -> String {
    let Some(st) = &results.stacks else {
        return String::new();
    };
    let mut out = format!(
        "\nCall stacks (--stacks{}): per class, the {STACKS_PER_CLASS} with the most time inside \
         the calls, innermost frame first\n",
        if st.kernel {
            ", kernel stacks where the call left the CPU"
        } else {
            ""
        }
    );
    if st.stacks.is_empty() {
        out.push_str("(no measured call of the targets)\n");
    }
    for class in st.classes() {
        let of_class: Vec<_> = st.stacks.iter().filter(|s| s.class == class).collect();
        let time: u64 = of_class.iter().map(|s| s.latency_sum_ns).sum();
        let calls: u64 = of_class.iter().map(|s| s.calls).sum();
        let _ = writeln!(
            out,
            "{class}: {} stack{}, {calls} calls, {} inside them",
            of_class.len(),
            if of_class.len() == 1 { "" } else { "s" },
            fmt_ns(time)
        );
        for s in of_class.iter().take(STACKS_PER_CLASS) {
            let errors = if s.errors > 0 {
                format!("; {} errors ({} EAGAIN)", s.errors, s.eagain)
            } else {
                String::new()
            };
            let split = s.sched.map_or(String::new(), |x| {
                format!(
                    "; on CPU {}, blocked {}, waiting for a CPU {}",
                    fmt_ns(x.on_cpu_ns),
                    fmt_ns(x.blocked_ns),
                    fmt_ns(x.runq_ns)
                )
            });
            let _ = writeln!(
                out,
                "  {} in {} calls ({} each, {:.0} % of the class){errors}{split}",
                fmt_ns(s.latency_sum_ns),
                s.calls,
                fmt_ns(s.latency_sum_ns / s.calls.max(1)),
                100.0 * s.latency_sum_ns as f64 / time.max(1) as f64,
            );
            for frame in analysis::stacks::innermost_first(s).take(FRAMES_PER_STACK) {
                let _ = writeln!(out, "      {frame}");
            }
            if s.frames.len() > FRAMES_PER_STACK {
                let _ = writeln!(
                    out,
                    "      ... {} outer frames",
                    s.frames.len() - FRAMES_PER_STACK
                );
            }
        }
    }
    let lost = st.lost;
    if lost.total() > 0 {
        let _ = writeln!(
            out,
            "calls without a stack: {} (stack map hash collisions {}, stack not walked {}, \
             stack table full {})",
            lost.total(),
            lost.collisions,
            lost.unwalked,
            lost.table_full
        );
    }
    for note in &st.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The Go view (`--go`): the runtime's scheduler state over the samples.
fn go_runtime(results: &Results) -> String {
    let Some(go) = results.go.as_ref().filter(|go| go.samples > 0) else {
        return String::new();
    };
    let mut out = format!(
        "
Go runtime of PID {} ({}{}): {} samples every {}{}
",
        go.pid,
        go.binary.version,
        if go.binary.pie { ", PIE" } else { "" },
        go.samples,
        fmt_ns(go.interval_ns),
        if go.failed_samples > 0 {
            format!(", {} could not be read", go.failed_samples)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "MIN", "MEAN", "P50", "P99", "MAX"
    );
    let mut rows: Vec<(String, &analysis::go::Gauge)> = vec![
        ("goroutines".into(), &go.goroutines),
        (
            "  parked on the network (IO wait)".into(),
            &go.network_waiters,
        ),
        ("  running".into(), &go.running),
        ("  runnable, waiting for a P".into(), &go.runnable),
        ("  in a system call".into(), &go.in_syscall),
    ];
    rows.extend(
        go.waiting
            .iter()
            .filter(|(reason, _)| reason.as_str() != analysis::go::IO_WAIT)
            .map(|(reason, g)| (format!("  waiting: {reason}"), g)),
    );
    rows.extend([
        ("runnable, global queue".into(), &go.global_runnable),
        ("runnable, Ps' local queues".into(), &go.local_runnable),
        ("Ps (GOMAXPROCS)".into(), &go.procs),
        ("idle Ps".into(), &go.idle_procs),
        ("threads (Ms)".into(), &go.threads),
        ("spinning threads".into(), &go.spinning_threads),
        ("idle threads".into(), &go.idle_threads),
    ]);
    for (name, g) in rows {
        let q = |p: f64| {
            g.histogram
                .quantile(p)
                .map_or("-".to_string(), |x| format!("{:.0}", x.estimate()))
        };
        let _ = writeln!(
            out,
            "{name:<40} {:>8} {:>8.1} {:>8} {:>8} {:>8}",
            g.min,
            g.mean,
            q(0.5),
            q(0.99),
            g.max
        );
    }
    let _ = writeln!(
        out,
        "a thread was blocked in netpoll in {:.0}% of the samples; a sample cost netpoll {}",
        100.0 * go.polling_share,
        fmt_ns(go.sample_cost_ns)
    );
    if !go.since_last_poll_ns.is_empty() {
        out.push_str(&histogram(
            "time since the network was last polled, when no thread was blocked polling it (ns)",
            &go.since_last_poll_ns,
        ));
    }
    out
}

/// The readiness-to-service view (`--ready`): delays by what ended them, and loop turns.
fn readiness(results: &Results) -> String {
    let Some(r) = &results.ready else {
        return String::new();
    };
    let q = |h: &Histogram, p: f64| h.quantile(p).map_or("-".into(), |q| fmt_ns(q.estimate()));
    let mut out = String::from(
        "\nreadiness to service: from a wait reporting a descriptor ready to the process's next call on it\n",
    );
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "ENDED BY", "COUNT", "MEAN", "P50", "P99", "MAX", "DEFERRED"
    );
    let all = r.all_delays();
    let rows = r
        .delays
        .iter()
        .filter(|(_, d)| d.count > 0)
        .map(|(name, d)| (name.as_str(), d))
        .chain((all.count > 0).then_some(("all", &all)));
    for (name, d) in rows {
        let _ = writeln!(
            out,
            "{name:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9}",
            d.count,
            fmt_ns(d.sum_ns / d.count.max(1)),
            q(&d.histogram, 0.5),
            q(&d.histogram, 0.99),
            d.histogram.max().map_or("-".into(), |m| fmt_ns(m.high)),
            d.deferred
        );
    }
    let _ = writeln!(
        out,
        "{} readiness reports stamped, {} reported again before service, {} stale (the next call found nothing: serviced before the report was read), {} still waiting at the end; \
         not measured: {} events with unknown epoll data, {} beyond 64 per wait{}",
        r.stamped,
        r.reported_again,
        r.stale,
        r.pending,
        r.unmapped,
        r.not_read,
        if r.seeded_registrations > 0 {
            format!(
                "; {} registrations read from fdinfo",
                r.seeded_registrations
            )
        } else {
            String::new()
        }
    );
    if r.turns > 0 {
        let _ = writeln!(
            out,
            "event-loop turns (a wait's return to the thread's next wait): {}, mean {} with {:.1} ready events, p99 {}, max {}",
            r.turns,
            fmt_ns(r.turn_sum_ns / r.turns),
            r.turn_events as f64 / r.turns as f64,
            q(&r.turn_ns, 0.99),
            r.turn_ns.max().map_or("-".into(), |m| fmt_ns(m.high))
        );
    }
    if all.count > 0 {
        out.push_str(&histogram(
            "readiness-to-service delay (ns)",
            &all.histogram,
        ));
    }
    if r.turns > 0 {
        out.push_str(&histogram("event-loop turn (ns)", &r.turn_ns));
    }
    out
}

/// The io_uring view (`--uring`): requests by operation and path, their latency and phases.
fn uring(results: &Results) -> String {
    let Some(u) = &results.uring else {
        return String::new();
    };
    let q = |h: &Histogram, p: f64| h.quantile(p).map_or("-".into(), |q| fmt_ns(q.estimate()));
    let mean = |sum: u64, n: u64| sum.checked_div(n).map_or("-".into(), fmt_ns);
    let mut out = String::from(
        "\nio_uring requests, from submission to completion (WAIT: poll armed to ready, io-wq queued to done; TASK WORK: ready to done)\n",
    );
    let _ = writeln!(
        out,
        "{:<15} {:<7} {:>9} {:>6} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "OP",
        "PATH",
        "REQUESTS",
        "SHARE",
        "ERRORS",
        "EAGAIN",
        "P50",
        "P99",
        "MAX",
        "WAIT",
        "TASK WORK"
    );
    let finished = u.finished().max(1) as f64;
    for r in &u.requests {
        let _ = writeln!(
            out,
            "{:<15} {:<7} {:>9} {:>5.1}% {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
            r.op,
            r.path,
            r.requests,
            100.0 * r.requests as f64 / finished,
            r.errors,
            r.eagain,
            q(&r.latency_ns, 0.5),
            q(&r.latency_ns, 0.99),
            r.latency_ns.max().map_or("-".into(), |m| fmt_ns(m.high)),
            mean(r.wait_sum_ns, r.waits),
            mean(r.task_work_sum_ns, r.task_works),
        );
    }
    let shares: Vec<String> = u
        .path_shares()
        .iter()
        .map(|(path, pct)| format!("{pct:.1} % {path}"))
        .collect();
    let sqpoll: u64 = u.requests.iter().map(|r| r.sqpoll).sum();
    let multishot: u64 = u
        .requests
        .iter()
        .map(|r| r.completions.saturating_sub(r.requests))
        .sum();
    let _ = writeln!(
        out,
        "{} requests submitted and followed, {} finished: {}; {} submitted by SQPOLL; {} more completions of multishot requests (and {} posted without their request, not timed); {} poll re-arms; {} still in flight; {} completions of requests submitted before netpoll attached (at least {} each on average: timed from the attach, lower bounds)",
        u.submitted,
        u.finished(),
        shares.join(", "),
        sqpoll,
        multishot,
        u.aux_completions,
        u.rearmed,
        u.in_flight,
        u.unfollowed,
        mean(u.unfollowed_sum_ns, u.unfollowed)
    );
    // The inline requests ran inside the io_uring_enter calls that submitted them (not for
    // SQPOLL submissions): those calls' time, shared out over them.
    let inline: u64 = u
        .requests
        .iter()
        .filter(|r| r.path == "inline")
        .map(|r| r.requests - r.sqpoll.min(r.requests))
        .sum();
    if let Some(enter) = results
        .syscall("io_uring_enter")
        .filter(|e| e.calls > 0 && inline > 0)
    {
        let on_cpu = enter
            .sched
            .as_ref()
            .map(|s| format!(", {} of it on CPU", fmt_ns(s.on_cpu_sum_ns / enter.calls)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "io_uring_enter: {} calls, {} each on average{on_cpu}; {:.1} inline requests completed per call",
            enter.calls,
            fmt_ns(enter.latency_sum_ns / enter.calls),
            inline as f64 / enter.calls as f64
        );
    }
    if let Some(t) = u.threads {
        let _ = writeln!(
            out,
            "io_uring's threads: io-wq workers {}, {} on CPU, {} waiting for a CPU; SQPOLL threads {}, {} on CPU, {} waiting for a CPU",
            t.io_wq.threads,
            fmt_ns(t.io_wq.on_cpu_ns),
            fmt_ns(t.io_wq.runq_ns),
            t.sqpoll.threads,
            fmt_ns(t.sqpoll.on_cpu_ns),
            fmt_ns(t.sqpoll.runq_ns)
        );
    }
    out.push_str(
        "(the time an application takes to reap a completion is not seen: it reads the completion queue from shared memory)\n",
    );
    for path in analysis::uring::PATHS {
        if let Some(all) = u.path(path).filter(|r| r.completions > 0) {
            out.push_str(&histogram(
                &format!("io_uring {path} request latency (ns)"),
                &all.latency_ns,
            ));
        }
    }
    out
}

/// Who polls the network (`--go`): the Go process's epoll_pwait calls by caller.
fn go_polls(results: &Results) -> String {
    let Some(go) = results.go.as_ref().filter(|go| !go.polls.is_empty()) else {
        return String::new();
    };
    let mut out = format!(
        "\nnetwork polls of PID {} by caller (from the user stack at each epoll_pwait){}\n",
        go.pid,
        go.sysmon_poll_share()
            .map(|s| format!(": sysmon made {:.1}%", 100.0 * s))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{:<36} {:<13} {:>9} {:>9} {:>11} {:>10}",
        "CALLER", "TIMEOUT", "CALLS", "EMPTY", "EVENTS/CALL", "MEAN"
    );
    for p in &go.polls {
        let per = |x: u64| x as f64 / p.calls.max(1) as f64;
        let _ = writeln!(
            out,
            "{:<36} {:<13} {:>9} {:>9} {:>11.2} {:>10}",
            p.caller,
            p.timeout,
            p.calls,
            p.empty,
            per(p.events),
            fmt_ns(per(p.time_ns) as u64)
        );
    }
    out
}

/// The exact Go view (`--go-exact`): every network park, wake-up and start, and hand-offs.
fn go_exact(results: &Results) -> String {
    let Some((go, e)) = results
        .go
        .as_ref()
        .and_then(|go| Some((go, go.exact.as_ref()?)))
    else {
        return String::new();
    };
    let mean = Histogram::mean;
    let mut out = format!(
        "
Go runtime of PID {} ({}), exact: {} uprobe hits at {} each (about {} of the process's CPU)
",
        go.pid,
        go.binary.version,
        e.hits,
        fmt_ns(e.cost_per_hit_ns),
        fmt_ns(e.hits.saturating_mul(e.cost_per_hit_ns))
    );
    let _ = writeln!(
        out,
        "goroutines parked on the network: {} (mean {} each); woken by netpoll: {} ({} parked before netpoll attached), from {} ready descriptors",
        e.parks,
        fmt_ns(mean(&e.parked_ns) as u64),
        e.wakes,
        e.wakes - e.wakes_of_seen_parks.min(e.wakes),
        e.ready_calls
    );
    let _ = writeln!(
        out,
        "woken, then running: {} (mean wait for a P {}, p99 {}); resumed without a netpoll wake-up: {}; goroutines scheduled: {}{}",
        e.runs_after_wake,
        fmt_ns(mean(&e.wake_to_run_ns) as u64),
        e.wake_to_run_ns
            .quantile(0.99)
            .map_or("-".into(), |q| fmt_ns(q.estimate())),
        e.resumed_otherwise,
        e.executes,
        if e.lost > 0 {
            format!("; {} not followed (maps full)", e.lost)
        } else {
            String::new()
        }
    );
    if !e.handoffs.is_empty() {
        let by: Vec<String> = e.handoffs.iter().map(|(f, n)| format!("{f} {n}")).collect();
        let _ = writeln!(out, "Ps handed off from blocked threads: {}", by.join(", "));
    }
    for (title, h) in [
        ("parked on the network, park to wake-up (ns)", &e.parked_ns),
        (
            "woken by netpoll to running: the wait for a P (ns; includes the probes' own traps)",
            &e.wake_to_run_ns,
        ),
    ] {
        if !h.is_empty() {
            out.push_str(&histogram(title, h));
        }
    }
    out
}

/// The scheduler view (`--sched`): how each class's time split, and the threads' scheduling.
fn scheduler(results: &Results) -> String {
    let Some(threads) = &results.scheduler else {
        return String::new();
    };
    let mut out = format!(
        "\nWhere the calls' time went (scheduler view):\n{:<14} {:>9} {:>10} {:>10} {:>10} {:>8} {:>22}\n",
        "CLASS", "CALLS", "ON CPU", "BLOCKED", "RUN QUEUE", "RUNQ %", "WOKEN BY IRQ/SAME/OTHER"
    );
    for class in &results.classes {
        let Some(s) = &class.sched else { continue };
        let share = if class.latency_sum_ns > 0 {
            100.0 * s.runq_sum_ns as f64 / class.latency_sum_ns as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "{:<14} {:>9} {:>10} {:>10} {:>10} {:>7.1}% {:>22}",
            class.name,
            class.calls,
            fmt_ns(s.on_cpu_sum_ns),
            fmt_ns(s.blocked_sum_ns),
            fmt_ns(s.runq_sum_ns),
            share,
            format!(
                "{}/{}/{}",
                s.wakeups.interrupt, s.wakeups.same_process, s.wakeups.other_process
            ),
        );
    }
    let q = |q: f64| quantile(&threads.runq_delay_ns, q);
    let _ = writeln!(
        out,
        "\nthreads: {} preemptions, {} sleeps; asleep {}, waiting for a CPU {} (run-queue delay p50 {}, p99 {}); woken {} times by interrupts, {} by their own process, {} by others",
        threads.preemptions,
        threads.sleeps,
        fmt_ns(threads.blocked_ns),
        fmt_ns(threads.runq_ns),
        q(0.5),
        q(0.99),
        threads.wakeups.interrupt,
        threads.wakeups.same_process,
        threads.wakeups.other_process,
    );
    if !threads.runq_delay_ns.is_empty() {
        out.push_str(&histogram("run-queue delay (ns)", &threads.runq_delay_ns));
    }
    out
}

/// `--bpf-stats`: what netpoll's own programs cost, and per measured call.
fn program_costs(results: &Results) -> String {
    let programs: Vec<_> = results.programs.iter().filter(|p| p.runs > 0).collect();
    if programs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "
netpoll's own cost (kernel BPF statistics):
{:<20} {:<28} {:>12} {:>9} {:>10}
",
        "PROGRAM", "EVENT", "RUNS", "NS/RUN", "TOTAL"
    );
    for p in &programs {
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:>12} {:>9.1} {:>10}",
            p.program,
            p.event,
            p.runs,
            p.ns_per_run(),
            fmt_ns(p.run_time_ns)
        );
    }
    let total: u64 = programs.iter().map(|p| p.run_time_ns).sum();
    let calls: u64 = results.syscalls.iter().map(|s| s.calls).sum();
    let per_call = if calls > 0 {
        format!(
            "; {:.1} ns per measured call of the targets",
            total as f64 / calls as f64
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "in all {} of BPF program time, paid by every process whose events ran them{per_call}",
        fmt_ns(total)
    );
    if let Some(c) = &results.netpoll_cpu {
        let _ = writeln!(
            out,
            "netpoll's own process: {} of CPU ({} user, {} system), {} per second of collection",
            fmt_ns(c.user_ns + c.system_ns),
            fmt_ns(c.user_ns),
            fmt_ns(c.system_ns),
            fmt_ns(c.per_second_ns)
        );
    }
    out
}

/// A row of percentiles; `mean`: whether `p.mean` is known (HdrHistogram) or not (buckets).
fn percentile_row(out: &mut String, label: &str, p: &Percentiles, mean: bool) {
    let _ = writeln!(
        out,
        "{label:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        fmt_ns(p.min),
        fmt_ns(p.p50),
        fmt_ns(p.p90),
        fmt_ns(p.p99),
        fmt_ns(p.p999),
        fmt_ns(p.max),
        if mean {
            fmt_ns(p.mean as u64)
        } else {
            "-".into()
        },
    );
}

fn bucket_percentiles(h: &Histogram) -> Percentiles {
    let q = |q: f64| h.quantile(q).map_or(0, |x| x.estimate());
    Percentiles {
        min: h.min().map_or(0, |x| x.low),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max().map_or(0, |x| x.high),
        mean: 0.0,
    }
}

/// The client side of a load run, like wrk's summary plus a bpftrace-style histogram.
pub fn load_report(load: &LoadResults) -> String {
    let seconds = load.duration_ns as f64 / 1e9;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nnetpoll load: {} requests in {seconds:.2}s{}, {} sent, {} received",
        load.requests,
        if load.partial { " (partial)" } else { "" },
        fmt_bytes(load.bytes_sent),
        fmt_bytes(load.bytes_received),
    );
    let _ = write!(out, "  throughput   {:.1} requests/s", load.throughput_rps);
    match load.rate {
        Some(rate) => {
            let _ = writeln!(
                out,
                " ({:.1}% of the {rate} req/s asked for)",
                load.throughput_rps / rate * 100.0
            );
        }
        None => out.push('\n'),
    }
    let e = &load.errors;
    if e.total() == 0 {
        let _ = writeln!(out, "  errors       none");
    } else {
        let _ = writeln!(
            out,
            "  errors       {} (connect {}, i/o {}, closed {}, bad reply {}, HTTP status {}, timeouts {})",
            e.total(),
            e.connect,
            e.io,
            e.closed,
            e.bad_response,
            e.http_status,
            e.timeouts
        );
    }
    if load.starved_connections > 0 {
        let _ = writeln!(
            out,
            "  starved      {} of {} connections got no reply in the measurement window",
            load.starved_connections, load.connections
        );
    }
    if load.unsent > 0 {
        let _ = writeln!(
            out,
            "  unsent       {} requests were due but never sent: the server fell behind the rate",
            load.unsent
        );
    }
    let _ = writeln!(
        out,
        "\n{:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "LATENCY", "MIN", "P50", "P90", "P99", "P99.9", "MAX", "MEAN"
    );
    let corrected = if load.mode == LoadMode::Open {
        "from intended start"
    } else {
        "from send"
    };
    percentile_row(
        &mut out,
        &format!("request latency ({corrected})"),
        &load.latency_percentiles,
        true,
    );
    if load.mode == LoadMode::Open {
        // What a closed-loop tool would have reported: hides time spent waiting to be sent.
        let service = bucket_percentiles(&load.service_time_ns);
        percentile_row(&mut out, "service time (from actual send)", &service, false);
    }
    if let Some(lag) = &load.send_lag {
        percentile_row(&mut out, "generator's own send lag", lag, true);
    }
    let _ = write!(
        out,
        "\n{}",
        histogram("request latency (ns)", &load.latency_ns)
    );
    out
}

/// Server-side figures of `netpoll run`, per request.
/// The processes' memory at the end (`who`: the server, the targets), and the kernel's change
/// since the start; `held`: what `m.connections` counts.
pub fn memory_report(m: &analysis::memory::RunMemory, who: &str, held: &str) -> String {
    use analysis::memory::format_bytes as b;
    let (s, k0, k1) = (&m.after.server, &m.before.kernel, &m.after.kernel);
    let delta = |a: u64, z: u64| b(z as f64 - a as f64);
    let mut out = format!(
        "memory: {who} {} resident ({} anonymous, {} file; peak {}), {} page tables, {} process{}, {} threads, {} descriptors, {} mappings; {} {held}\n",
        b(s.rss_bytes as f64),
        b(s.anon_bytes as f64),
        b(s.file_bytes as f64),
        b(m.peak_rss_bytes as f64),
        b(s.page_tables_bytes as f64),
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        s.threads,
        s.descriptors,
        s.mappings,
        m.connections,
    );
    let slabs: Vec<String> = k1
        .slabs
        .iter()
        .map(|(name, u)| format!("{name} {} ({})", u.objects, b(u.bytes as f64)))
        .collect();
    let _ = writeln!(
        out,
        "kernel: {} TCP sockets in use, {} in TIME_WAIT, {} TCP buffers; change since the start: kernel stacks {}, page tables {}, unreclaimable slab {}{}",
        k1.tcp_inuse,
        k1.tcp_time_wait,
        b(k1.tcp_buffer_bytes as f64),
        delta(k0.kernel_stack_bytes, k1.kernel_stack_bytes),
        delta(k0.page_tables_bytes, k1.page_tables_bytes),
        delta(k0.slab_unreclaimable_bytes, k1.slab_unreclaimable_bytes),
        if slabs.is_empty() {
            String::new()
        } else {
            format!("; slab objects: {}", slabs.join(", "))
        }
    );
    out
}

pub fn run_report(run: &RunInfo) -> String {
    let p = &run.server_process;
    let r = &run.per_request;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nserver {} (PID {}): CPU {} user + {} system, {} voluntary + {} involuntary context switches, at most {} threads",
        run.workload.label(),
        p.pid,
        fmt_ns(p.cpu_user_ns),
        fmt_ns(p.cpu_system_ns),
        p.voluntary_switches,
        p.involuntary_switches,
        p.peak_threads
    );
    let _ = writeln!(
        out,
        "per request: {:.2} syscalls, {:.2} epoll waits, {:.2} EAGAINs, {:.2} context switches, {:.1}µs server CPU",
        r.syscalls, r.epoll_waits, r.eagain, r.context_switches, r.cpu_us
    );
    if let Some(m) = &run.memory {
        out.push_str(&memory_report(m, "server", "connections held"));
    }
    if let Some(x) = &run.xdp {
        let _ = writeln!(
            out,
            "XDP program: {} packets to the AF_XDP socket, {} passed to the kernel, {} dropped",
            x.redirected, x.passed, x.dropped
        );
    }
    if let Some(s) = &r.sched {
        let _ = writeln!(
            out,
            "server thread time per request: {:.1}µs running in measured calls, {:.1}µs running elsewhere, {:.1}µs waiting for a CPU, {:.1}µs asleep ({:.1}µs of it in measured calls); {:.2} wakeups ({:.2} by interrupts, {:.2} by the server's own threads, {:.2} by other processes), {:.2} preemptions",
            s.on_cpu_in_calls_us,
            s.on_cpu_elsewhere_us,
            s.runq_us,
            s.blocked_us,
            s.blocked_in_calls_us,
            s.wakeups,
            s.wakeups_by_interrupt,
            s.wakeups_by_same_process,
            s.wakeups_by_other_process,
            s.preemptions
        );
    }
    if let Some(u) = &r.uring {
        let _ = writeln!(
            out,
            "io_uring per request: {:.2} io_uring requests, {:.1} % inline, {:.1} % poll (waited {:.1}µs for readiness, then {:.1}µs of task work), {:.1} % io-wq, {:.1} % deferred; io_uring's own threads ran {:.2}µs (io-wq) and {:.2}µs (SQPOLL)",
            u.uring_requests,
            u.inline_pct,
            u.poll_pct,
            u.poll_wait_us,
            u.task_work_us,
            u.io_wq_pct,
            u.deferred_pct,
            u.io_wq_cpu_us,
            u.sqpoll_cpu_us
        );
    }
    if let Some(ready) = &r.ready {
        let _ = writeln!(
            out,
            "readiness per request: a readable descriptor waited {:.1}µs on average for its read or accept (p99 {:.1}µs); {:.3} loop turns, each {:.1}µs on average with {:.1} ready events",
            ready.delay_mean_us,
            ready.delay_p99_us,
            ready.turns,
            ready.turn_mean_us,
            ready.events_per_turn
        );
    }
    if let Some(g) = &r.go {
        let mut line = format!(
            "Go runtime per request: {:.2} network polls ({:.3} by sysmon)",
            g.network_polls, g.sysmon_polls
        );
        if let (Some(parks), Some(wait), Some(handoffs), Some(cost)) = (
            g.network_parks,
            g.wake_to_run_us,
            g.handoffs,
            g.probe_cost_us,
        ) {
            let _ = write!(
                line,
                ", {parks:.2} goroutine parks on the network, {wait:.1}µs from a netpoll wake-up to running (mean), {handoffs:.3} P hand-offs; --go-exact's probes cost {cost:.1}µs"
            );
        }
        let _ = writeln!(out, "{line}");
    }
    if let Some(e) = &run.environment {
        let pinned = |cpus: &Option<Vec<usize>>| {
            cpus.as_deref().map_or("any CPU".into(), |c| {
                format!("CPUs {}", analysis::workload::format_cpu_list(c))
            })
        };
        let _ = writeln!(
            out,
            "placement: server on {}, load generator on {}; during the window: load generator CPU {}, other CPU use {}, steal {}",
            pinned(&e.server_cpus),
            pinned(&e.client_cpus),
            fmt_ns(e.client_cpu_ns),
            fmt_ns(e.other_cpu_ns),
            fmt_ns(e.steal_ns)
        );
    }
    if let Some(died) = &p.died {
        let _ = writeln!(out, "the server died during the run: {died}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_340), "12.3µs");
        assert_eq!(fmt_ns(4_560_000), "4.56ms");
        assert_eq!(fmt_ns(1_230_000_000), "1.23s");
    }

    #[test]
    fn histogram_rows_are_powers_of_two_like_bpftrace() {
        let mut h = Histogram::new(netpoll_ebpf::histogram::LATENCY_BUCKETS);
        h.record_n(1500, 10);
        h.record_n(1900, 10);
        h.record_n(3000, 5);
        let text = histogram("x", &h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "@x:");
        assert!(
            lines[1].starts_with("[1K, 2K)") && lines[1].contains(" 20 |"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("[2K, 4K)") && lines[2].contains(" 5 |"),
            "{text}"
        );
        assert_eq!(lines[1].matches('@').count(), 52);
        assert_eq!(lines[2].matches('@').count(), 13);
    }
}
