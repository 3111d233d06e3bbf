//! The io_uring view (`--uring`) against a fixture whose requests' paths are known: NOPs and
//! receives with their data there complete inline, receives whose data comes later wait for
//! their socket (poll), reads forced to io-wq go there; bpftrace on the same tracepoints, at
//! the same time, counts the same requests.

use super::*;
use fixture::{
    URING_ACCEPTS, URING_ASYNC_READS, URING_CACHED_READS, URING_CHILD_NOPS, URING_COLD_READS,
    URING_INLINE_RECVS, URING_NOPS, URING_OWN_NOPS, URING_POLLED_RECVS, URING_SQPOLL_NOPS,
    URING_WAIT_MS,
};

/// bpftrace's counts for one process, on the tracepoints netpoll follows requests with.
fn bpftrace_counts(pid: u32) -> Bpftrace {
    // Latency: submission to each completion that carries the request (opcode + 1 kept, so
    // that NOP's 0 is not "absent"). A multishot request's completion flagged MORE (2) that
    // carries it, which the kernel sometimes posts (once in about 40 runs here: bpftrace,
    // deleting there, then timed 221 µs against netpoll's mean of two, 254 µs), times the
    // next from itself, as netpoll does.
    let script = format!(
        "tracepoint:io_uring:io_uring_submit_req /pid == {pid}/ {{ @submit[args->opcode] = count(); \
           @t[args->ctx, args->req] = nsecs; @o[args->ctx, args->req] = args->opcode + 1; }} \
         tracepoint:io_uring:io_uring_complete /@o[args->ctx, args->req]/ {{ \
           @lat[@o[args->ctx, args->req] - 1] = avg(nsecs - @t[args->ctx, args->req]); \
           if (args->cflags & 2) {{ @t[args->ctx, args->req] = nsecs; }} \
           else {{ delete(@t[args->ctx, args->req]); delete(@o[args->ctx, args->req]); }} }} \
         tracepoint:io_uring:io_uring_poll_arm /pid == {pid}/ {{ @arm = count(); }} \
         tracepoint:io_uring:io_uring_queue_async_work /pid == {pid}/ {{ @async = count(); }}"
    );
    Bpftrace::start(&script)
}

/// `@name[key]: count` and `@name: count` lines.
fn bpftrace_map(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (key, count) = l.trim().split_once(": ")?;
            Some((key.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

pub fn each_request_takes_its_known_path() -> TestResult {
    let fixture = Fixture::start(Scenario::Uring);
    let pid = fixture.child.id();
    let bpftrace = bpftrace_counts(pid);
    let pid_arg = pid.to_string();
    let profile = Profile::start(&["--pid", &pid_arg, "--uring"]);
    fixture.go();
    let status = fixture.wait();
    let run = profile.finish();
    let text = bpftrace.stop();
    check(status.success(), format!("fixture failed: {status}"))?;
    let r = run.results();
    let u = r.uring.as_ref().ok_or("no uring section")?;
    let row = |op: &str, path: &str| {
        u.requests
            .iter()
            .find(|r| r.op == op && r.path == path)
            .cloned()
    };
    let count = |op: &str, path: &str| row(op, path).map_or(0, |r| r.requests);
    let recvs = URING_INLINE_RECVS + URING_POLLED_RECVS;
    let reads = URING_ASYNC_READS + URING_CACHED_READS + URING_COLD_READS;
    let nops = URING_NOPS + URING_SQPOLL_NOPS;
    // The multishot accept and the request that cancelled it.
    let submitted = nops + recvs + reads + 2;
    check(
        u.submitted == submitted && u.finished() == submitted && u.in_flight == 0,
        format!("{u:#?}"),
    )?;
    let expected = [
        ("nop", "inline", nops),
        ("recv", "inline", URING_INLINE_RECVS),
        ("recv", "poll", URING_POLLED_RECVS),
        ("read", "io-wq", URING_ASYNC_READS),
        ("accept", "poll", 1),
        ("async_cancel", "inline", 1),
    ];
    for (op, path, n) in expected {
        check(
            count(op, path) == n,
            format!(
                "{op} {path}: {} requests, expected {n}: {u:#?}",
                count(op, path)
            ),
        )?;
    }
    // Reads of the cached file: inline, microseconds each. Reads of pages not in the cache:
    // retried from task work when the page came (async buffered reads), not handed to io-wq:
    // deferred, as the process then waited on the ring; but a disk read that is done before
    // its io_uring_enter would wait completed within its submission, which is `inline` by
    // definition (once in about 40 runs here: a 90 µs read beside 7 deferred ones of 54-459
    // µs). So: exactly the cached ones are fast, and the rest, deferred or slow, are the cold.
    let disk_read = 20 * 1_000;
    let inline_reads = row("read", "inline").ok_or("no inline reads")?;
    let fast = inline_reads
        .latency_ns
        .buckets()
        .filter(|(_, hi, _)| *hi < disk_read)
        .map(|(_, _, n)| n)
        .sum::<u64>();
    let slow = inline_reads.requests - fast;
    let deferred = count("read", "deferred");
    check(
        fast == URING_CACHED_READS
            && slow + deferred == URING_COLD_READS
            && deferred >= URING_COLD_READS / 2,
        format!(
            "reads: {fast} inline under 20 µs (cached: {URING_CACHED_READS}), {slow} inline from the disk, {deferred} deferred (cold: {URING_COLD_READS}): {u:#?}"
        ),
    )?;
    check(u.requests.len() == expected.len() + 2, format!("{u:#?}"))?;
    // The receive in flight at attach: one completion, not followed, at least the wait since.
    let lower = u.unfollowed_ns.min().map_or(0, |q| q.high);
    check(
        u.unfollowed == 1 && u.unfollowed_ns.total() == 1 && lower >= URING_WAIT_MS * MS,
        format!(
            "in flight at attach: {} ({:?})",
            u.unfollowed, u.unfollowed_ns
        ),
    )?;
    // The SQPOLL ring's NOPs were submitted by its kernel thread.
    let nop = row("nop", "inline").ok_or("no nops")?;
    check(nop.sqpoll == URING_SQPOLL_NOPS, format!("{nop:?}"))?;
    // One multishot accept: a completion per connection (posted without their request on
    // this kernel: counted apart), then the cancelled one's last (-ECANCELED).
    let accept = row("accept", "poll").ok_or("no accept")?;
    let more = accept.completions - accept.requests + u.aux_completions;
    check(
        more == URING_ACCEPTS && accept.errors == 1,
        format!("{accept:?}, {} auxiliary completions", u.aux_completions),
    )?;
    // A polled receive waited its data's URING_WAIT_MS for the socket (plus the sleep's
    // overshoot: up to 15 ms allowed on a busy machine), then a little task work (about 20 µs
    // here; under 10 ms allowed): nothing like an inline request's microseconds.
    let polled = row("recv", "poll").ok_or("no polled receives")?;
    let wait = URING_WAIT_MS * MS;
    let waited = polled
        .wait_ns
        .buckets()
        .all(|(lo, hi, _)| hi >= wait && lo < wait + 15 * MS);
    check(
        polled.waits == URING_POLLED_RECVS && waited,
        format!("poll waits: {:?}", polled.wait_ns),
    )?;
    let latency_ok = polled
        .latency_ns
        .buckets()
        .all(|(lo, hi, _)| hi >= wait && lo < wait + 25 * MS);
    let task_work_ok = polled.task_work_ns.max().is_some_and(|m| m.high < 10 * MS);
    check(
        latency_ok && task_work_ok && polled.task_works == URING_POLLED_RECVS,
        format!(
            "latency {:?}, task work {:?}",
            polled.latency_ns, polled.task_work_ns
        ),
    )?;
    // Inline requests never waited: well under a millisecond each, no phases.
    let inline = row("recv", "inline").ok_or("no inline receives")?;
    check(
        inline.latency_ns.max().is_some_and(|m| m.high < MS) && inline.waits == 0,
        format!("inline: {:?}", inline.latency_ns),
    )?;
    let worker_reads = row("read", "io-wq").ok_or("no io-wq reads")?;
    check(
        worker_reads.waits == URING_ASYNC_READS && worker_reads.errors == 0,
        format!("io-wq: {worker_reads:?}"),
    )?;
    // The peer: bpftrace on the same tracepoints counted the same requests.
    let peer = bpftrace_map(&text);
    let expected = [
        ("@submit[0]", nops),
        ("@submit[27]", recvs),
        ("@submit[22]", reads),
        ("@submit[13]", 1),
        ("@arm", URING_POLLED_RECVS + 1),
        ("@async", URING_ASYNC_READS),
    ];
    for (key, n) in expected {
        check(
            peer.get(key) == Some(&n),
            format!("bpftrace {key}: {:?}, expected {n}\n{text}", peer.get(key)),
        )?;
    }
    // And the same mean latency per operation (the two programs run one after the other on
    // each event: a few microseconds apart at most).
    for (op, code) in [("nop", 0), ("recv", 27), ("read", 22), ("accept", 13)] {
        let rows = u.requests.iter().filter(|r| r.op == op);
        let (sum, n) = rows.fold((0u64, 0u64), |(s, n), r| {
            (s + r.latency_sum_ns, n + r.completions)
        });
        let ours = sum as f64 / n.max(1) as f64;
        let theirs = *peer
            .get(&format!("@lat[{code}]"))
            .ok_or_else(|| format!("no bpftrace latency for {op}\n{text}"))?
            as f64;
        eprintln!("{op}: mean latency {ours:.0} ns, bpftrace {theirs:.0} ns");
        check(
            (ours - theirs).abs() <= 0.05 * theirs + 3_000.0,
            format!("{op}: mean latency {ours:.0} ns, bpftrace {theirs:.0} ns\n{text}"),
        )?;
    }
    check(
        run.results().syscall("io_uring_enter").is_some(),
        "io_uring_enter not measured beside the view",
    )
}

/// A ring shared with a process that is not a target (a child forked after the probes
/// attached, not followed): only the target's requests are followed, and the other's
/// completions are not counted as the target's.
pub fn a_shared_ring_counts_only_the_targets_requests() -> TestResult {
    let run = profile_fixture(Scenario::UringShared, &["--uring", "--no-follow"]);
    let u = run.results().uring.as_ref().ok_or("no uring section")?;
    let nops = u
        .requests
        .iter()
        .filter(|r| r.op == "nop")
        .map(|r| r.requests)
        .sum::<u64>();
    check(
        u.submitted == URING_OWN_NOPS
            && nops == URING_OWN_NOPS
            && u.unfollowed == 0
            && u.aux_completions == 0,
        format!(
            "the target made {URING_OWN_NOPS} of the ring's {} requests: {u:#?}",
            URING_OWN_NOPS + URING_CHILD_NOPS
        ),
    )
}
