//! The scheduler view (`--sched`) against fixtures whose scheduling is known: blocked time,
//! run-queue time behind a busy thread on the same CPU (and not on another), on-CPU time of a
//! call that copies, and who woke the threads.

use analysis::{results::SyscallStats, sched::CallSched};

use super::*;

fn sched_of(row: &SyscallStats) -> Result<&CallSched, libtest_mimic::Failed> {
    row.sched
        .as_ref()
        .ok_or_else(|| format!("{} has no scheduler view", row.label()).into())
}

/// on + blocked + runq = latency for every call, so for their sums.
fn adds_up(row: &SyscallStats) -> TestResult {
    let s = sched_of(row)?;
    check(
        s.on_cpu_sum_ns + s.blocked_sum_ns + s.runq_sum_ns == row.latency_sum_ns,
        format!(
            "{}: on {} + blocked {} + runq {} != latency {}",
            row.label(),
            s.on_cpu_sum_ns,
            s.blocked_sum_ns,
            s.runq_sum_ns,
            row.latency_sum_ns
        ),
    )?;
    check(
        s.on_cpu_ns.total() == row.calls && s.runq_ns.total() == row.calls,
        "one sample per call in each histogram",
    )
}

pub fn a_blocked_read_is_blocked_time_woken_by_its_sibling() -> TestResult {
    let run = profile_fixture(Scenario::PipeWake, &["--sched"]);
    let r = run.results();
    let reads = row(&r.syscalls, "read", Some("other"));
    let s = sched_of(reads)?;
    check(reads.calls == 5, format!("{} reads", reads.calls))?;
    adds_up(reads)?;
    // Each read waited ~20 ms for the write: asleep, not running, hardly queued.
    check(
        s.blocked_sum_ns >= 5 * 19 * MS && s.blocked_sum_ns <= reads.latency_sum_ns,
        format!("blocked {} ns", s.blocked_sum_ns),
    )?;
    check(
        s.runq_sum_ns < 5 * MS && s.on_cpu_sum_ns < 5 * MS,
        format!("runq {} on {}", s.runq_sum_ns, s.on_cpu_sum_ns),
    )?;
    check(
        s.wakeups.same_process == 5 && s.wakeups.interrupt == 0,
        format!("woken by {:?}", s.wakeups),
    )?;
    for r in r.syscalls.iter().filter(|r| r.sched.is_some()) {
        adds_up(r)?;
    }
    check(
        r.scheduler.as_ref().is_some_and(|t| t.sleeps >= 5),
        "threads' sleeps counted",
    )
}

/// The epoll_wait calls' run-queue time, and the threads' preemptions, of a contended fixture.
fn contended(scenario: Scenario) -> Result<(u64, u64, u64), libtest_mimic::Failed> {
    let run = profile_fixture(scenario, &["--sched"]);
    let r = run.results();
    let wait = row(&r.syscalls, "epoll_wait", None);
    adds_up(wait)?;
    let s = sched_of(wait)?;
    let slowest = s.runq_ns.max().map_or(0, |b| b.low);
    let preemptions = r.scheduler.as_ref().map_or(0, |t| t.preemptions);
    Ok((s.runq_sum_ns, slowest, preemptions))
}

pub fn a_busy_thread_on_the_same_cpu_shows_as_run_queue_time() -> TestResult {
    check(
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2,
        "this test needs 2 CPUs",
    )?;
    // Interleaved pairs, compared by their medians: whatever else runs on the waiter's CPU
    // (a kernel worker, another process) adds run-queue time to one run of either kind (once
    // 18.8 ms to a run beside an idle CPU, 3.8x less than behind the busy thread), not to most.
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        same.push(contended(Scenario::RunqSameCpu)?);
        other.push(contended(Scenario::RunqOtherCpu)?);
    }
    eprintln!(
        "run-queue time of 100 1-ms waits (ns, longest) behind a busy thread on the same CPU: {:?}; on another: {:?}",
        same.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        other.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>()
    );
    let median = |runs: &[(u64, u64, u64)], field: fn(&(u64, u64, u64)) -> u64| {
        let mut values: Vec<u64> = runs.iter().map(field).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    let (same_sum, same_max) = (median(&same, |s| s.0), median(&same, |s| s.1));
    let other_sum = median(&other, |s| s.0);
    // Woken, the (low-priority) waiter queues behind the spinning thread: a time slice in some
    // calls.
    check(
        same_max >= 1_000_000 && same_sum > 5 * other_sum.max(1),
        format!(
            "medians: same CPU runq {same_sum} ns (longest {same_max}); other CPU {other_sum} ns"
        ),
    )?;
    check(
        same.iter().all(|s| s.2 > 0),
        "the spinning thread was preempted",
    )?;
    Ok(())
}

pub fn a_call_that_copies_runs_on_cpu() -> TestResult {
    let run = profile_fixture(Scenario::BigWrite, &["--sched"]);
    let r = run.results();
    let write = row(&r.syscalls, "write", Some("other"));
    adds_up(write)?;
    let s = sched_of(write)?;
    check(
        write.calls == 1 && write.bytes == 16 << 20,
        format!("{write:?}"),
    )?;
    // Copying 16 MiB takes milliseconds of CPU (and the pipe fills, so it blocks too).
    check(
        s.on_cpu_sum_ns >= MS,
        format!(
            "on CPU {} ns of {} ns",
            s.on_cpu_sum_ns, write.latency_sum_ns
        ),
    )
}

pub fn wakeups_are_attributed_to_interrupts_and_siblings() -> TestResult {
    // Loopback data is delivered by the network stack's softirq: the reader is woken by it.
    let run = profile_fixture(Scenario::SocketWake, &["--sched"]);
    let r = run.results();
    let read = row(&r.syscalls, "read", Some("socket"));
    adds_up(read)?;
    let s = sched_of(read)?;
    check(
        s.wakeups.interrupt == 1 && s.wakeups.same_process == 0,
        format!("socket read woken by {:?}", s.wakeups),
    )?;
    check(
        s.blocked_sum_ns >= 19 * MS,
        format!("blocked {}", s.blocked_sum_ns),
    )?;
    // A futex (not a measured call) woken by a sibling: counted among the threads' wakeups.
    let run = profile_fixture(Scenario::FutexWake, &["--sched"]);
    let r = run.results();
    let threads = r.scheduler.as_ref().ok_or("no scheduler view")?;
    check(
        threads.wakeups.same_process >= 1,
        format!("threads woken by {:?}", threads.wakeups),
    )
}

pub fn sched_needs_task_pointers() -> TestResult {
    let out = Command::new(NETPOLL)
        .args(["profile", "--sched", "--hook", "tracepoint", "--pid", "1"])
        .output()
        .expect("netpoll");
    let err = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success() && err.lines().count() == 1 && err.contains("--sched needs BTF"),
        format!("{err}"),
    )?;
    assert_nothing_attached();
    Ok(())
}
