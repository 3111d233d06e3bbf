//! What is profiled: children followed or not, a spawned command, the comm and cgroup filters.

use super::{calls::check_io, *};

pub fn children_followed_and_broken_down_per_pid() -> TestResult {
    let run = profile_fixture(Scenario::Fork, &["--per-pid"]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 4 && writes.bytes == 13,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )?;
    check(r.counters.followed_tasks >= 1, "followed the child")?;
    check(
        r.processes.len() == 2,
        format!("{} processes", r.processes.len()),
    )?;
    let mut per_process: Vec<u64> = r
        .processes
        .values()
        .map(|p| p.syscalls.iter().map(|s| s.bytes).sum())
        .collect();
    per_process.sort();
    check(
        per_process == [4, 9],
        format!("bytes per process {per_process:?}"),
    )
}

pub fn children_that_existed_before_attach_are_included() -> TestResult {
    let run = profile_fixture(Scenario::Tree, &[]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 2 && writes.bytes == 9,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )
}

pub fn no_follow_sees_the_parent_only() -> TestResult {
    let run = profile_fixture(Scenario::Fork, &["--no-follow"]);
    let r = run.results();
    let writes = row(&r.syscalls, "write", Some("other"));
    check(
        writes.calls == 1 && writes.bytes == 4,
        format!("writes {} bytes {}", writes.calls, writes.bytes),
    )
}

pub fn spawned_command_profiled_from_its_first_syscall() -> TestResult {
    let exe = std::env::current_exe().expect("current_exe");
    let exe = exe.to_str().expect("utf-8 path");
    let profile = Profile::start_with(&["--", exe], &[("NETPOLL_FIXTURE", "io-nostop")]);
    let run = profile.finish();
    let r = run.results();
    check(
        r.end_reason == EndReason::CommandExited && r.command_exit_code == Some(0),
        format!("{:?} {:?}", r.end_reason, r.command_exit_code),
    )?;
    // The program's start-up reads files (the dynamic loader), but makes no socket I/O.
    check(
        r.class(Class::SocketRead).map(|c| c.bytes) == Some(500),
        "socket bytes read",
    )?;
    check(
        r.class(Class::SocketWrite).map(|c| c.bytes) == Some(500),
        "socket bytes written",
    )?;
    check(
        r.lower_bound.is_empty(),
        format!("nothing in flight at attach: {:?}", r.lower_bound),
    )
}

pub fn comm_filter() -> TestResult {
    let fixture = Fixture::start(Scenario::Comm);
    let profile = Profile::start(&["--comm", "npfixture", "--duration", "1.5"]);
    fixture.go();
    fixture.wait();
    let run = profile.finish();
    let r = run.results();
    check(r.end_reason == EndReason::Duration, "ends at --duration")?;
    check_io(r)
}

/// The cgroup v2 mount point, mounting one when none is mounted.
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Some(dir) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) {
        return dir;
    }
    let dir = std::env::temp_dir().join("netpoll-test-cgroup2");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot mount cgroup2");
    dir
}

pub fn cgroup_filter() -> TestResult {
    let cgroup = cgroup2_root().join(format!("netpoll-test-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).expect("create cgroup");
    let fixture = Fixture::start(Scenario::Io);
    std::fs::write(cgroup.join("cgroup.procs"), fixture.child.id().to_string())
        .expect("move fixture");
    let path = cgroup.to_str().expect("utf-8").to_string();
    let profile = Profile::start(&["--cgroup", &path, "--duration", "1.5"]);
    fixture.go();
    fixture.wait();
    let run = profile.finish();
    let _ = std::fs::remove_dir(&cgroup);
    check_io(run.results())
}
