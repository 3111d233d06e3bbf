//! Ctrl-C and bad input: results kept, one line of error, nothing left attached.

use super::*;

pub fn ctrl_c_writes_partial_results_and_detaches() -> TestResult {
    let fixture = Fixture::start(Scenario::Sleepy);
    let pid = fixture.child.id().to_string();
    let profile = Profile::start(&["--pid", &pid]);
    fixture.go();
    std::thread::sleep(Duration::from_millis(500));
    profile.interrupt();
    let run = profile.finish();
    check(
        run.status.code() == Some(130),
        format!("exit code {:?}", run.status.code()),
    )?;
    let r = run.results.as_ref().ok_or("no partial results written")?;
    check(
        r.partial && r.end_reason == EndReason::Interrupted,
        format!("partial {} reason {:?}", r.partial, r.end_reason),
    )?;
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls >= 10,
        format!("{} writes in 500 ms", writes.calls),
    )
}

pub fn expect_error(args: &[&str], expected: &str) -> TestResult {
    let out = Command::new(NETPOLL)
        .args(args)
        .output()
        .expect("run netpoll");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(!out.status.success(), format!("{args:?} succeeded"))?;
    check(
        stderr.lines().count() == 1,
        format!("{args:?}: want one line, got:\n{stderr}"),
    )?;
    check(
        stderr.contains(expected) && !stderr.contains("panicked"),
        format!("{args:?}: {stderr}"),
    )?;
    assert_nothing_attached();
    Ok(())
}

pub fn bad_inputs_fail_with_one_line_and_attach_nothing() -> TestResult {
    expect_error(
        &["profile", "--pid", "999999999"],
        "--pid 999999999: no such process",
    )?;
    expect_error(
        &["profile", "--cgroup", "/tmp"],
        "not a cgroup v2 directory",
    )?;
    expect_error(
        &["profile", "--cgroup", "/nonexistent/cg"],
        "no such cgroup directory",
    )?;
    expect_error(
        &["profile", "--", "/nonexistent/program"],
        "cannot start `/nonexistent/program`",
    )?;
    expect_error(
        &["profile", "--all", "--json", "/proc/netpoll/x.json"],
        "--json /proc/netpoll/x.json: cannot write",
    )?;
    expect_error(&["profile"], "nothing to profile")?;
    expect_error(
        &["micro-costs", "--runs", "0"],
        "invalid value '0' for '--runs <RUNS>'",
    )?;
    expect_error(
        &["profile", "--all", "--duration", "0"],
        "0 must be a positive number of seconds",
    )?;
    expect_error(&["profile", "--bogus"], "unexpected argument '--bogus'")?;
    expect_error(
        &["profile", "--all", "--pid", "1"],
        "give one kind of target",
    )?;
    expect_error(
        &["profile", "--all", "--lite", "--stacks"],
        "--stacks needs the exit of every measured call: not with --lite",
    )?;
    // Not root: drop to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            NETPOLL,
            "profile",
            "--pid",
            "1",
        ])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success()
            && stderr.lines().count() == 1
            && stderr.contains("CAP_BPF and CAP_PERFMON"),
        format!("as nobody: {stderr}"),
    )
}
