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
#[path = "probes/redis.rs"]
mod redis;
#[path = "probes/sched.rs"]
mod sched;
#[path = "probes/targets.rs"]
mod targets;

use calls::*;
use export::*;
use faults::*;
use redis::*;
use sched::*;
use targets::*;

use analysis::{
    Results,
    results::{EndReason, Fd, SyscallStats},
};
use common::assert_nothing_attached;
use libtest_mimic::{Arguments, Trial};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

const NETPOLL: &str = env!("CARGO_BIN_EXE_netpoll");
const MS: u64 = 1_000_000;

fn main() {
    if let Ok(scenario) = std::env::var("NETPOLL_FIXTURE") {
        fixture::run(&scenario);
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests = [
        Trial::test(
            "epoll_wait_timeouts_batching_and_latency",
            epoll_wait_timeouts_batching_and_latency,
        ),
        Trial::test(
            "reads_and_writes_split_by_socket_with_exact_bytes",
            reads_and_writes_split_by_socket_with_exact_bytes,
        ),
        Trial::test(
            "datagram_batches_are_counted_per_call",
            datagram_batches_are_counted_per_call,
        ),
        Trial::test(
            "bystander_on_the_same_cpu_changes_nothing",
            bystander_on_the_same_cpu_changes_nothing,
        ),
        Trial::test(
            "bpf_stats_measure_the_programs",
            bpf_stats_measure_the_programs,
        ),
        Trial::test(
            "every_hook_kind_measures_the_same",
            every_hook_kind_measures_the_same,
        ),
        Trial::test("missing_tracefs_is_mounted", missing_tracefs_is_mounted),
        Trial::test(
            "lite_mode_counts_socket_transfers_as_the_full_mode",
            lite_mode_counts_socket_transfers_as_the_full_mode,
        ),
        Trial::test(
            "lite_mode_times_a_sleep_inside_a_read",
            lite_mode_times_a_sleep_inside_a_read,
        ),
        Trial::test(
            "exporter_lite_serves_transfers_and_sleeps",
            exporter_lite_serves_transfers_and_sleeps,
        ),
        Trial::test(
            "accepts_and_connects_counted_exactly",
            accepts_and_connects_counted_exactly,
        ),
        Trial::test("poll_and_select_timeouts", poll_and_select_timeouts),
        Trial::test(
            "call_blocked_before_attach_is_a_lower_bound",
            call_blocked_before_attach_is_a_lower_bound,
        ),
        Trial::test(
            "children_followed_and_broken_down_per_pid",
            children_followed_and_broken_down_per_pid,
        ),
        Trial::test(
            "no_follow_sees_the_parent_only",
            no_follow_sees_the_parent_only,
        ),
        Trial::test(
            "spawned_command_profiled_from_its_first_syscall",
            spawned_command_profiled_from_its_first_syscall,
        ),
        Trial::test("comm_filter", comm_filter),
        Trial::test(
            "children_that_existed_before_attach_are_included",
            children_that_existed_before_attach_are_included,
        ),
        Trial::test("cgroup_filter", cgroup_filter),
        Trial::test(
            "call_resuming_on_another_cpu_is_measured",
            call_resuming_on_another_cpu_is_measured,
        ),
        Trial::test(
            "thread_killed_inside_a_call_leaks_nothing",
            thread_killed_inside_a_call_leaks_nothing,
        ),
        Trial::test(
            "ctrl_c_writes_partial_results_and_detaches",
            ctrl_c_writes_partial_results_and_detaches,
        ),
        Trial::test(
            "bad_inputs_fail_with_one_line_and_attach_nothing",
            bad_inputs_fail_with_one_line_and_attach_nothing,
        ),
        Trial::test("redis_server_under_load", redis_server_under_load),
        Trial::test(
            "exporter_serves_what_the_fixture_did",
            exporter_serves_what_the_fixture_did,
        ),
        Trial::test(
            "prometheus_scrapes_the_exporter_and_answers_queries",
            prometheus_scrapes_the_exporter_and_answers_queries,
        ),
        Trial::test(
            "exporter_bad_inputs_and_clean_stop",
            exporter_bad_inputs_and_clean_stop,
        ),
        Trial::test(
            "a_blocked_read_is_blocked_time_woken_by_its_sibling",
            a_blocked_read_is_blocked_time_woken_by_its_sibling,
        ),
        Trial::test(
            "a_busy_thread_on_the_same_cpu_shows_as_run_queue_time",
            a_busy_thread_on_the_same_cpu_shows_as_run_queue_time,
        ),
        Trial::test(
            "a_call_that_copies_runs_on_cpu",
            a_call_that_copies_runs_on_cpu,
        ),
        Trial::test(
            "wakeups_are_attributed_to_interrupts_and_siblings",
            wakeups_are_attributed_to_interrupts_and_siblings,
        ),
        Trial::test("sched_needs_task_pointers", sched_needs_task_pointers),
    ];
    libtest_mimic::run(&args, tests.into()).exit();
}

type TestResult = Result<(), libtest_mimic::Failed>;

// ---------------------------------------------------------------------------------------------
// The test side.

/// A fixture process, stopped and waiting for the probes.
struct Fixture {
    child: Child,
}

impl Fixture {
    fn start(scenario: &str) -> Fixture {
        Self::start_with(scenario, &[])
    }

    fn start_with(scenario: &str, env: &[(&str, &str)]) -> Fixture {
        let exe = std::env::current_exe().expect("current_exe");
        let child = Command::new(exe)
            .env("NETPOLL_FIXTURE", scenario)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fixture");
        let fixture = Fixture { child };
        match waitpid(fixture.pid(), Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(..)) => fixture,
            other => panic!("fixture {scenario} did not stop: {other:?}"),
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

/// Profiles a stopped fixture by PID until it exits.
fn profile_fixture(scenario: &str, extra: &[&str]) -> Finished {
    let fixture = Fixture::start(scenario);
    let pid = fixture.child.id().to_string();
    let mut args = vec!["--pid", pid.as_str()];
    args.extend_from_slice(extra);
    let profile = Profile::start(&args);
    fixture.go();
    let status = fixture.wait();
    assert!(status.success(), "fixture {scenario} failed: {status}");
    profile.finish()
}
