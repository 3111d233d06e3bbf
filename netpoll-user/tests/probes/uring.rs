//! The io_uring view (`--uring`) against a fixture whose requests' paths are known: NOPs and
//! receives with their data there complete inline, receives whose data comes later wait for
//! their socket (poll), reads forced to io-wq go there; bpftrace on the same tracepoints, at
//! the same time, counts the same requests.

use super::*;
use fixture::{
    URING_ASYNC_READS, URING_INLINE_RECVS, URING_NOPS, URING_POLLED_RECVS, URING_WAIT_MS,
};

/// bpftrace's counts for one process, on the tracepoints netpoll follows requests with.
fn bpftrace_counts(pid: u32) -> (Child, BufReader<std::process::ChildStdout>) {
    let script = format!(
        "tracepoint:io_uring:io_uring_submit_req /pid == {pid}/ {{ @submit[args->opcode] = count(); }} \
         tracepoint:io_uring:io_uring_poll_arm /pid == {pid}/ {{ @arm = count(); }} \
         tracepoint:io_uring:io_uring_queue_async_work /pid == {pid}/ {{ @async = count(); }}"
    );
    let mut bpftrace = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace starts (cargo xtask test installs it)");
    let mut stdout = BufReader::new(bpftrace.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("Attaching") {
        line.clear();
        let n = stdout.read_line(&mut line).expect("bpftrace output");
        assert!(n > 0, "bpftrace exited before attaching");
    }
    (bpftrace, stdout)
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
    let (bpftrace, mut bpftrace_out) = bpftrace_counts(pid);
    let pid_arg = pid.to_string();
    let profile = Profile::start(&["--pid", &pid_arg, "--uring"]);
    fixture.go();
    let status = fixture.wait();
    let run = profile.finish();
    let _ = kill(Pid::from_raw(bpftrace.id() as i32), Signal::SIGINT);
    let mut text = String::new();
    bpftrace_out
        .read_to_string(&mut text)
        .expect("bpftrace's maps");
    let mut bpftrace = bpftrace;
    let _ = bpftrace.wait();
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
    let submitted = URING_NOPS + recvs + URING_ASYNC_READS;
    check(
        u.submitted == submitted
            && u.finished() == submitted
            && count("nop", "inline") == URING_NOPS
            && count("recv", "inline") == URING_INLINE_RECVS
            && count("recv", "poll") == URING_POLLED_RECVS
            && count("read", "io-wq") == URING_ASYNC_READS
            && u.requests.len() == 4
            && u.in_flight == 0
            && u.unfollowed == 0,
        format!("{u:#?}"),
    )?;
    // A polled receive waited its data's URING_WAIT_MS for the socket, then a little task work.
    let polled = row("recv", "poll").ok_or("no polled receives")?;
    let wait = URING_WAIT_MS * MS;
    let waited = polled
        .wait_ns
        .buckets()
        .all(|(lo, hi, _)| hi >= wait && lo < wait + 5 * MS);
    check(
        polled.waits == URING_POLLED_RECVS && waited,
        format!("poll waits: {:?}", polled.wait_ns),
    )?;
    let latency_ok = polled
        .latency_ns
        .buckets()
        .all(|(lo, hi, _)| hi >= wait && lo < wait + 6 * MS);
    let task_work_ok = polled.task_work_ns.max().is_some_and(|m| m.high < 2 * MS);
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
    let async_reads = row("read", "io-wq").ok_or("no io-wq reads")?;
    check(
        async_reads.waits == URING_ASYNC_READS && async_reads.errors == 0,
        format!("io-wq: {async_reads:?}"),
    )?;
    // The peer: bpftrace on the same tracepoints counted the same requests.
    let peer = bpftrace_map(&text);
    let expected = [
        ("@submit[0]", URING_NOPS),
        ("@submit[27]", recvs),
        ("@submit[22]", URING_ASYNC_READS),
        ("@arm", URING_POLLED_RECVS),
        ("@async", URING_ASYNC_READS),
    ];
    for (key, n) in expected {
        check(
            peer.get(key) == Some(&n),
            format!("bpftrace {key}: {:?}, expected {n}\n{text}", peer.get(key)),
        )?;
    }
    check(
        run.results().syscall("io_uring_enter").is_some(),
        "io_uring_enter not measured beside the view",
    )
}
