//! Loads the real probes (as root) against fixture processes whose syscalls are known exactly,
//! and checks what `netpoll profile` reports.
//!
//! This binary is also the fixture: run with `NETPOLL_FIXTURE=<scenario>`, it sets up, stops
//! itself with SIGSTOP (not a syscall the probes measure), and, once continued, makes exactly the
//! syscalls of its scenario through `libc::syscall`, then `_exit`s. Tests run one at a time:
//! kernel state is shared.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

mod common;

// The tests, by what they check.
#[path = "probes/calls.rs"]
mod calls;
#[path = "probes/export.rs"]
mod export;
#[path = "probes/faults.rs"]
mod faults;
#[path = "probes/fixture.rs"]
mod fixture;
#[path = "probes/ready.rs"]
mod ready;
#[path = "probes/redis.rs"]
mod redis;
#[path = "probes/sched.rs"]
mod sched;
#[path = "probes/stacks.rs"]
mod stacks;
#[path = "probes/targets.rs"]
mod targets;
#[path = "probes/uring.rs"]
mod uring;

use analysis::{
    Results,
    results::{Class, EndReason, Fd, SyscallStats},
};
use common::assert_nothing_attached;
use fixture::Scenario;
use libtest_mimic::{Arguments, Trial};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

use common::NETPOLL;
const MS: u64 = 1_000_000;

/// The trials of `module::test` paths, and their names.
macro_rules! trials {
    ($($module:ident :: $test:ident),* $(,)?) => {
        (
            vec![$(Trial::test(stringify!($test), $module::$test)),*],
            [$(stringify!($test)),*],
        )
    };
}

fn main() {
    if let Ok(name) = std::env::var("NETPOLL_FIXTURE") {
        let scenario = Scenario::from_name(&name)
            .unwrap_or_else(|| panic!("NETPOLL_FIXTURE={name}: no such scenario"));
        fixture::run(scenario);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let (mut tests, listed) = trials![
        calls::epoll_wait_timeouts_batching_and_latency,
        calls::reads_and_writes_split_by_socket_with_exact_bytes,
        calls::datagram_batches_are_counted_per_call,
        calls::bystander_on_the_same_cpu_changes_nothing,
        calls::bpf_stats_measure_the_programs,
        calls::micro_costs_measure_each_part,
        calls::every_hook_kind_measures_the_same,
        calls::missing_tracefs_is_mounted,
        calls::lite_mode_counts_socket_transfers_as_the_full_mode,
        calls::lite_mode_times_a_sleep_inside_a_read,
        export::exporter_lite_serves_transfers_and_sleeps,
        calls::accepts_and_connects_counted_exactly,
        calls::poll_and_select_timeouts,
        calls::call_blocked_before_attach_is_a_lower_bound,
        targets::children_followed_and_broken_down_per_pid,
        targets::no_follow_sees_the_parent_only,
        targets::spawned_command_profiled_from_its_first_syscall,
        targets::comm_filter,
        targets::comm_filter_sees_a_rename,
        targets::children_that_existed_before_attach_are_included,
        targets::cgroup_filter,
        targets::cgroup_filter_sees_a_move,
        calls::call_resuming_on_another_cpu_is_measured,
        calls::thread_killed_inside_a_call_leaks_nothing,
        faults::ctrl_c_writes_partial_results_and_detaches,
        faults::bad_inputs_fail_with_one_line_and_attach_nothing,
        redis::redis_server_under_load,
        export::exporter_serves_what_the_fixture_did,
        export::prometheus_scrapes_the_exporter_and_answers_queries,
        export::exporter_bad_inputs_and_clean_stop,
        sched::a_blocked_read_is_blocked_time_woken_by_its_sibling,
        sched::a_busy_thread_on_the_same_cpu_shows_as_run_queue_time,
        sched::a_call_that_copies_runs_on_cpu,
        sched::wakeups_are_attributed_to_interrupts_and_siblings,
        sched::sched_needs_task_pointers,
        ready::ready_sockets_serviced_in_order_wait_a_gap_each,
        ready::a_ready_socket_left_alone_is_reported_again_and_deferred,
        ready::bogus_pointers_and_reused_descriptors_give_no_wrong_delay,
        uring::each_request_takes_its_known_path,
        uring::a_shared_ring_counts_only_the_targets_requests,
        stacks::two_call_sites_found_with_their_calls_and_latency,
        stacks::a_target_without_frame_pointers_still_names_its_callers,
        stacks::a_deleted_binary_that_exits_mid_profile_loses_nothing,
        stacks::a_full_stack_table_is_counted_never_silent,
        stacks::redis_stacks_agree_with_bpftrace,
    ];
    tests.push(Trial::test("every_test_is_listed", move || {
        every_test_is_listed(&listed)
    }));
    libtest_mimic::run(&args, tests).exit();
}

type TestResult = Result<(), libtest_mimic::Failed>;

/// A test written but left out of `trials!` would never run: every `pub fn NAME() ->
/// TestResult` of the test modules must be listed.
fn every_test_is_listed(listed: &[&str]) -> TestResult {
    let sources = [
        include_str!("probes/calls.rs"),
        include_str!("probes/export.rs"),
        include_str!("probes/faults.rs"),
        include_str!("probes/ready.rs"),
        include_str!("probes/redis.rs"),
        include_str!("probes/sched.rs"),
        include_str!("probes/stacks.rs"),
        include_str!("probes/targets.rs"),
        include_str!("probes/uring.rs"),
    ];
    let written: Vec<&str> = sources
        .iter()
        .flat_map(|s| s.lines())
        .filter_map(|l| {
            l.strip_prefix("pub fn ")?
                .strip_suffix("() -> TestResult {")
        })
        .collect();
    let unlisted: Vec<&&str> = written.iter().filter(|w| !listed.contains(w)).collect();
    check(
        unlisted.is_empty() && written.len() == listed.len(),
        format!("tests not listed in trials!: {unlisted:?}"),
    )
}

// ---------------------------------------------------------------------------------------------
// The test side.

/// A fixture process, stopped and waiting for the probes.
struct Fixture {
    child: Child,
}

impl Fixture {
    fn start(scenario: Scenario) -> Fixture {
        Self::start_with(scenario, &[])
    }

    fn start_with(scenario: Scenario, env: &[(&str, &str)]) -> Fixture {
        let exe = std::env::current_exe().expect("current_exe");
        let child = Command::new(exe)
            .env("NETPOLL_FIXTURE", scenario.name())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let fixture = Fixture { child };
        match waitpid(fixture.pid(), Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(..)) => fixture,
            other => panic!("fixture {scenario:?} did not stop: {other:?}"),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn go(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT");
    }

    fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait fixture")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `netpoll profile`, attached.
struct Profile {
    child: Child,
    json: PathBuf,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

struct Finished {
    status: ExitStatus,
    stderr: String,
    results: Option<Results>,
}

fn temp_json() -> PathBuf {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("netpoll-test-{}-{run}.json", std::process::id()))
}

impl Profile {
    /// Starts `netpoll profile ARGS --json F --quiet` and waits until it says it attached.
    fn start(args: &[&str]) -> Profile {
        Self::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Profile {
        let json = temp_json();
        let _ = std::fs::remove_file(&json);
        let mut cmd = Command::new(NETPOLL);
        cmd.arg("profile").args(["--quiet", "--json"]).arg(&json);
        // Options before `--`, the command after it.
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        cmd.args(&args[..split]).args(&args[split..]);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn netpoll");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut profile = Profile {
            child,
            json,
            stderr: rx,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match profile.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let attached = line.contains("attached");
                    profile.lines.push(line);
                    if attached {
                        return profile;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = profile.child.try_wait() {
                        panic!(
                            "netpoll exited ({status}) before attaching:\n{}",
                            profile.lines.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("netpoll did not attach:\n{}", profile.lines.join("\n"));
    }

    fn interrupt(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).expect("SIGINT");
    }

    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "netpoll did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.lines.push(line);
        }
        let results = std::fs::read_to_string(&self.json).ok().map(|text| {
            Results::parse(&text, &self.json.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let _ = std::fs::remove_file(&self.json);
        assert_nothing_attached();
        Finished {
            status,
            stderr: self.lines.join("\n"),
            results,
        }
    }
}

impl Finished {
    fn results(&self) -> &Results {
        assert!(
            self.status.success(),
            "netpoll failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self.results
            .as_ref()
            .unwrap_or_else(|| panic!("no results written:\n{}", self.stderr))
    }
}

fn row<'a>(rows: &'a [SyscallStats], name: &str, fd: Option<&str>) -> &'a SyscallStats {
    rows.iter()
        .find(|r| r.name == name && r.fd.map(Fd::name) == fd)
        .unwrap_or_else(|| {
            panic!(
                "no row {name} {fd:?} in {:?}",
                rows.iter().map(|r| r.label()).collect::<Vec<_>>()
            )
        })
}

fn check(cond: bool, what: impl std::fmt::Display) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what.to_string().into())
    }
}

/// bpftrace running a script beside netpoll: the peer instrument of the views' tests.
struct Bpftrace {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Bpftrace {
    /// Starts `script` and waits until bpftrace says it attaches.
    fn start(script: &str) -> Bpftrace {
        let mut child = Command::new("bpftrace")
            .args(["-e", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bpftrace starts (cargo xtask test installs it)");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while !line.contains("Attaching") {
            line.clear();
            let n = stdout.read_line(&mut line).expect("bpftrace output");
            assert!(n > 0, "bpftrace exited before attaching");
        }
        Bpftrace { child, stdout }
    }

    /// Stops it (SIGINT: it prints its maps) and returns what it printed.
    fn stop(mut self) -> String {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        let mut text = String::new();
        self.stdout
            .read_to_string(&mut text)
            .expect("bpftrace's maps");
        let _ = self.child.wait();
        text
    }
}

/// Profiles a stopped fixture by PID until it exits.
fn profile_fixture(scenario: Scenario, extra: &[&str]) -> Finished {
    let fixture = Fixture::start(scenario);
    let pid = fixture.child.id().to_string();
    let mut args = vec!["--pid", pid.as_str()];
    args.extend_from_slice(extra);
    let profile = Profile::start(&args);
    fixture.go();
    let status = fixture.wait();
    assert!(status.success(), "fixture {scenario:?} failed: {status}");
    profile.finish()
}
