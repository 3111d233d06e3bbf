//! The stacks view (`--stacks`) against a C fixture with two known call sites (100 fast reads
//! from `fast_reader`, 10 reads of about 20 ms each from `slow_reader`), built with and
//! without frame pointers; bpftrace on the same process at the same time sees the same stacks
//! (its `ustack` lacks the syscall wrapper's caller, which a uprobe on the wrapper's entry
//! counts instead).

use std::{collections::BTreeMap, path::Path, sync::OnceLock};

use analysis::stacks::CallStack;

use super::*;

const FAST_READS: u64 = 100;
const SLOW_READS: u64 = 10;
const SLOW_MS: u64 = 20;

/// The fixture, built once per test run (gcc is installed by `cargo xtask test`).
fn fixture_binary(frame_pointers: bool) -> PathBuf {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (with, without) = BUILT.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stacks/two_sites.c");
        let dir = std::env::temp_dir().join(format!("netpoll-stacks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let build = |name: &str, flags: &[&str]| {
            let out = dir.join(name);
            let status = Command::new("gcc")
                .args(flags)
                .args(["-pthread", "-o"])
                .arg(&out)
                .arg(&source)
                .status()
                .expect("gcc (installed by `cargo xtask test`)");
            assert!(status.success(), "gcc failed on {}", source.display());
            out
        };
        (
            build(
                "two_sites_fp",
                &[
                    "-O1",
                    "-fno-omit-frame-pointer",
                    "-fno-optimize-sibling-calls",
                ],
            ),
            build("two_sites_nofp", &["-O2", "-fomit-frame-pointer"]),
        )
    });
    if frame_pointers { with } else { without }.clone()
}

/// The C fixture: stopped before its calls, then stopped again after them.
struct CFixture {
    child: Child,
}

impl CFixture {
    fn start(binary: &Path) -> CFixture {
        let child = Command::new(binary).spawn().expect("start the C fixture");
        let fixture = CFixture { child };
        fixture.wait_stopped();
        fixture
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_stopped(&self) {
        match waitpid(
            Pid::from_raw(self.pid() as i32),
            Some(WaitPidFlag::WUNTRACED),
        ) {
            Ok(WaitStatus::Stopped(..)) => {}
            other => panic!("the C fixture did not stop: {other:?}"),
        }
    }

    /// Lets it make its calls and waits until it has made them all.
    fn run_calls(&self) {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT).expect("SIGCONT");
        self.wait_stopped();
    }

    fn finish(mut self) -> ExitStatus {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT).expect("SIGCONT");
        self.child.wait().expect("wait")
    }
}

impl Drop for CFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The results of a profile stopped with Ctrl-C (exit status 130, results written).
fn interrupted(run: &Finished) -> Result<&Results, libtest_mimic::Failed> {
    check(
        run.status.code() == Some(130),
        format!("netpoll: {}\n{}", run.status, run.stderr),
    )?;
    Ok(run.results.as_ref().ok_or("no results written")?)
}

/// The stacks of `class` whose frames hold `function`.
fn stacks_through<'a>(stacks: &'a [CallStack], class: &str, function: &str) -> Vec<&'a CallStack> {
    stacks
        .iter()
        .filter(|s| s.class == class && s.frames.iter().any(|f| f == function))
        .collect()
}

/// The frames innermost first, without the syscall's own `[read]` frame.
fn user_frames(s: &CallStack) -> Vec<&str> {
    analysis::stacks::innermost_first(s)
        .filter(|f| !f.starts_with('['))
        .collect()
}

/// bpftrace on the fixture: each read's user stack at its exit (what the kernel's walk gives,
/// as netpoll's), and the caller of libc's `read` from a uprobe at its entry (the return
/// address at the stack pointer there: the frame the walk skips).
fn bpftrace_stacks(pid: u32) -> Bpftrace {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
        .expect("the fixture maps libc")
        .to_string();
    let script = format!(
        "tracepoint:syscalls:sys_exit_read /pid == {pid}/ {{ @stack[ustack] = count(); }} \
         uprobe:{libc}:read /pid == {pid}/ {{ @caller[usym(*(uint64 *)reg(\"sp\"))] = count(); }}"
    );
    let bpftrace = Bpftrace::start(&script);
    // "Attaching 2 probes..." comes before the uprobe is in place: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    bpftrace
}

/// bpftrace's stacks: frames (names, innermost first) and count.
type PeerStacks = Vec<(Vec<String>, u64)>;

/// bpftrace's printed maps: `@caller[name]: n` lines, and `@stack[` blocks of frames
/// (`name+offset`, innermost first) closed by `]: n`.
fn parse_bpftrace(text: &str) -> (BTreeMap<String, u64>, PeerStacks) {
    let mut callers = BTreeMap::new();
    let mut stacks = Vec::new();
    let mut frames: Option<Vec<String>> = None;
    for line in text.lines().map(str::trim) {
        if line == "@stack[" {
            frames = Some(Vec::new());
        } else if let Some(count) = line.strip_prefix("]: ") {
            let count = count.parse().expect("a count");
            stacks.push((frames.take().unwrap_or_default(), count));
        } else if let Some(f) = frames.as_mut() {
            if !line.is_empty() {
                let name = line.rsplit_once('+').map_or(line, |(name, _)| name);
                f.push(name.to_string());
            }
        } else if let Some((key, count)) = line
            .strip_prefix("@caller[")
            .and_then(|l| l.split_once("]: "))
        {
            callers.insert(key.to_string(), count.parse().expect("a count"));
        }
    }
    (callers, stacks)
}

pub fn two_call_sites_found_with_their_calls_and_latency() -> TestResult {
    let fixture = CFixture::start(&fixture_binary(true));
    let pid = fixture.pid();
    let bpftrace = bpftrace_stacks(pid);
    let pid_arg = pid.to_string();
    let profile = Profile::start(&["--pid", &pid_arg, "--stacks", "--sched"]);
    fixture.run_calls();
    // Both peers stop while the fixture lives (bpftrace names addresses from its maps).
    profile.interrupt();
    let run = profile.finish();
    let text = bpftrace.stop();
    let status = fixture.finish();
    check(status.success(), format!("fixture failed: {status}"))?;
    let r = interrupted(&run)?;
    let st = r.stacks.as_ref().ok_or("no stacks section")?;
    check(st.lost.total() == 0 && st.sched, format!("{:?}", st.lost))?;
    let fast = stacks_through(&st.stacks, "socket_read", "fast_reader");
    let slow = stacks_through(&st.stacks, "socket_read", "slow_reader");
    check(
        fast.len() == 1 && slow.len() == 1,
        format!("one stack each: {:#?}", st.stacks),
    )?;
    let (fast, slow) = (fast[0], slow[0]);
    // Exactly their calls; the time of the slow ones is their waits, asleep.
    check(
        fast.calls == FAST_READS && slow.calls == SLOW_READS,
        format!("calls: fast {} slow {}", fast.calls, slow.calls),
    )?;
    let slow_ms = slow.latency_sum_ns as f64 / 1e6;
    let expected_ms = (SLOW_READS * SLOW_MS) as f64;
    check(
        (0.9 * expected_ms..2.0 * expected_ms).contains(&slow_ms),
        format!("slow reads took {slow_ms:.1} ms in all, expected about {expected_ms} ms"),
    )?;
    let split = slow.sched.ok_or("no split with --sched")?;
    check(
        split.blocked_ns as f64 > 0.8 * slow.latency_sum_ns as f64,
        format!("slow reads: {split:?}"),
    )?;
    check(
        fast.latency_sum_ns < FAST_READS * MS,
        format!("fast reads took {} ns", fast.latency_sum_ns),
    )?;
    // The right names at the top: libc's wrapper, then the function that called it (put back:
    // the frame-pointer walk skips it), then main, to the thread's first function.
    for (s, caller) in [(fast, "fast_reader"), (slow, "slow_reader")] {
        let frames = user_frames(s);
        check(
            frames.get(1) == Some(&caller)
                && frames.get(2) == Some(&"main")
                && s.recovered_caller
                && s.complete
                && s.frames.last().map(String::as_str) == Some("[read]"),
            format!("{caller}: {:?}", s.frames),
        )?;
    }
    // The peer. The uprobe at libc's read counted the same calls from each caller...
    let (callers, peer_stacks) = parse_bpftrace(&text);
    for (caller, n) in [("fast_reader", FAST_READS), ("slow_reader", SLOW_READS)] {
        check(
            callers.get(caller) == Some(&n),
            format!(
                "bpftrace: {caller} {:?}, expected {n}\n{text}",
                callers.get(caller)
            ),
        )?;
    }
    // ... and its ustack at the exit is netpoll's stack without the caller put back: the
    // same frames below the wrapper, the same count.
    for s in [fast, slow] {
        let ours: Vec<&str> = user_frames(s).into_iter().skip(2).collect();
        let same = peer_stacks.iter().find(|(frames, count)| {
            *count == s.calls
                && frames
                    .iter()
                    .skip(1)
                    .map(String::as_str)
                    .eq(ours.iter().copied())
        });
        check(
            same.is_some(),
            format!("no bpftrace stack like {ours:?} x{}\n{text}", s.calls),
        )?;
    }
    Ok(())
}

pub fn a_target_without_frame_pointers_still_names_its_callers() -> TestResult {
    let fixture = CFixture::start(&fixture_binary(false));
    let pid = fixture.pid().to_string();
    let profile = Profile::start(&["--pid", &pid, "--stacks"]);
    fixture.run_calls();
    profile.interrupt();
    let run = profile.finish();
    check(fixture.finish().success(), "fixture failed")?;
    let st = interrupted(&run)?.stacks.clone().ok_or("no stacks")?;
    for (caller, n) in [("fast_reader", FAST_READS), ("slow_reader", SLOW_READS)] {
        let found = stacks_through(&st.stacks, "socket_read", caller);
        let calls: u64 = found.iter().map(|s| s.calls).sum();
        // Until netpoll has learnt the frame rules of this code (its .eh_frame), the walk
        // stops at the first function without a frame pointer: the stack says so (its
        // outermost frame), and the caller of the wrapper is still named, right under it. The
        // calls after (some of the slow ones) are unwound with the rules: whole.
        check(
            calls == n
                && found.iter().all(|s| {
                    user_frames(s).get(1) == Some(&caller)
                        && (s.complete
                            || s.frames.first().map(String::as_str) == Some("[incomplete]"))
                }),
            format!("{caller}: {calls} calls in {found:#?}"),
        )?;
    }
    // The fast ones come before any rule is learnt.
    check(
        stacks_through(&st.stacks, "socket_read", "fast_reader")
            .iter()
            .any(|s| !s.complete),
        "the first calls' stacks are cut short",
    )?;
    check(
        st.notes.iter().any(|n| n.contains("frame pointer")),
        format!("no note on frame pointers: {:?}", st.notes),
    )
}

pub fn a_deleted_binary_that_exits_mid_profile_loses_nothing() -> TestResult {
    // A copy of the fixture, deleted once running: named from the mapping netpoll keeps open.
    let copy = std::env::temp_dir().join(format!("netpoll-deleted-{}", std::process::id()));
    std::fs::copy(fixture_binary(true), &copy).expect("copy the fixture");
    let fixture = CFixture::start(&copy);
    std::fs::remove_file(&copy).expect("delete the running binary");
    let pid = fixture.pid().to_string();
    let out = std::env::temp_dir().join(format!("netpoll-stacks-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let out_arg = out.display().to_string();
    let profile = Profile::start(&["--pid", &pid, "--stacks", "--out", &out_arg]);
    fixture.run_calls();
    // It exits before the profile ends: the profile ends with it.
    check(fixture.finish().success(), "fixture failed")?;
    let run = profile.finish();
    let r = run.results();
    check(
        r.end_reason == EndReason::TargetsExited,
        format!("{:?}", r.end_reason),
    )?;
    let st = r.stacks.as_ref().ok_or("no stacks")?;
    let fast = stacks_through(&st.stacks, "socket_read", "fast_reader");
    check(
        fast.iter().map(|s| s.calls).sum::<u64>() == FAST_READS,
        format!("{:#?}", st.stacks),
    )?;
    check(
        st.notes.iter().any(|n| n.contains("(deleted)")),
        format!("no note on the deleted binary: {:?}", st.notes),
    )?;
    // The files: folded stacks and flame graphs per class and weight, linked from the report.
    let dir = out.join("stacks");
    let folded = std::fs::read_to_string(dir.join("socket_read.calls.folded"))
        .map_err(|e| format!("socket_read.calls.folded: {e}"))?;
    check(
        folded
            .lines()
            .any(|l| l.contains(";fast_reader;") && l.ends_with(&format!(" {FAST_READS}"))),
        format!("folded:\n{folded}"),
    )?;
    let svg = std::fs::read_to_string(dir.join("socket_read.latency_ns.svg"))
        .map_err(|e| format!("socket_read.latency_ns.svg: {e}"))?;
    check(
        svg.starts_with("<?xml") && svg.contains("slow_reader"),
        "the flame graph names slow_reader",
    )?;
    let html = std::fs::read_to_string(out.join("index.html")).map_err(|e| e.to_string())?;
    check(
        html.contains("stacks/socket_read.latency_ns.svg") && html.contains("fast_reader"),
        "the report links the flame graph and lists the stacks",
    )?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

pub fn a_full_stack_table_is_counted_never_silent() -> TestResult {
    let fixture = CFixture::start(&fixture_binary(true));
    let pid = fixture.pid().to_string();
    // Room for one (process, syscall, stack) only.
    let profile = Profile::start(&["--pid", &pid, "--stacks", "--stack-table", "1"]);
    fixture.run_calls();
    profile.interrupt();
    let run = profile.finish();
    check(fixture.finish().success(), "fixture failed")?;
    let r = interrupted(&run)?;
    let st = r.stacks.as_ref().ok_or("no stacks")?;
    let in_stacks: u64 = st.stacks.iter().map(|s| s.calls).sum();
    let measured: u64 = r.syscalls.iter().map(|s| s.calls).sum();
    // Every measured call is in a stack or counted as left out; the totals keep them all.
    check(
        st.stacks.len() == 1
            && st.lost.table_full > 0
            && r.counters.stack_stats_full == st.lost.table_full
            && in_stacks + st.lost.table_full == measured,
        format!(
            "{} stacks, {in_stacks} calls in them, {:?}, {measured} measured",
            st.stacks.len(),
            st.lost
        ),
    )
}

/// bpftrace's name for an address it could not name (`0x55e0...`, in a stripped binary) as
/// netpoll names it: the file and the offset of the byte before the return address.
fn as_netpoll_names(pid: u32, caller: &str) -> String {
    let Some(addr) = caller
        .strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
    else {
        return caller.to_string();
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some((start, end)) = f.first().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap_or(0),
            u64::from_str_radix(end, 16).unwrap_or(0),
        );
        if (start..end).contains(&addr) && f.len() >= 6 {
            let offset = u64::from_str_radix(f[2], 16).unwrap_or(0) + addr - start;
            let file = f[5].rsplit('/').next().unwrap_or(f[5]);
            return format!("{file}+0x{:x}", offset - 1);
        }
    }
    caller.to_string()
}

pub fn redis_stacks_agree_with_bpftrace() -> TestResult {
    const N: u64 = 2000;
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    let (mut redis, port) = super::redis::start_redis();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    let pid = redis.id();
    let bpftrace = bpftrace_stacks(pid);
    let pid_arg = pid.to_string();
    let profile = Profile::start(&["--pid", &pid_arg, "--stacks"]);
    let mut reply = [0u8; 7];
    for i in 0..N {
        // In rounds with pauses between them: netpoll learns the frame rules of the code the
        // kernel has unwound so far and tells the kernel, which unwinds one frame further at
        // the next calls. Every round must name the same caller.
        if i % (N / 20) == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        conn.write_all(PING).expect("send");
        conn.read_exact(&mut reply).expect("reply");
    }
    std::thread::sleep(Duration::from_millis(100));
    profile.interrupt();
    let run = profile.finish();
    let text = bpftrace.stop();
    let (callers, peer_stacks) = parse_bpftrace(&text);
    let peer_callers: BTreeMap<String, u64> = callers
        .iter()
        .map(|(c, n)| (as_netpoll_names(pid, c), *n))
        .collect();
    let _ = redis.kill();
    let _ = redis.wait();
    let r = interrupted(&run)?;
    let st = r.stacks.as_ref().ok_or("no stacks")?;
    // Every socket read is one request's, made from one caller of libc's read (redis's
    // connection layer: static, so named by file and offset in Debian's stripped binary),
    // before and after the kernel was told where to find it.
    let reads: Vec<&CallStack> = st
        .stacks
        .iter()
        .filter(|s| s.class == "socket_read")
        .collect();
    let mut by_caller: BTreeMap<String, u64> = BTreeMap::new();
    for s in &reads {
        let caller = user_frames(s).get(1).map_or("-".into(), |f| f.to_string());
        *by_caller.entry(caller).or_default() += s.calls;
    }
    check(
        reads.iter().map(|s| s.calls).sum::<u64>() == N && by_caller.len() == 1,
        format!("socket reads: {by_caller:?}"),
    )?;
    // Redis keeps no frame pointers: once netpoll has learnt its frame rules (.eh_frame), the
    // kernel unwinds the reads of the later rounds whole, through redis's exported functions.
    let whole: u64 = reads
        .iter()
        .filter(|s| {
            ["readQueryFromClient", "aeMain", "main"]
                .iter()
                .all(|f| s.frames.iter().any(|x| x == f))
        })
        .map(|s| s.calls)
        .sum();
    check(
        whole >= N / 2,
        format!("{whole} reads unwound through redis's functions: {reads:#?}"),
    )?;
    // The peer: the uprobe saw the same calls from the same caller, and the kernel's walk
    // gave bpftrace a stack with as many (its frames beyond the wrapper are the walk's
    // garbage in code without frame pointers, which netpoll cuts off).
    for (caller, n) in &by_caller {
        check(
            peer_callers.get(caller) == Some(n),
            format!("bpftrace's callers {peer_callers:?}, netpoll's {by_caller:?}\n{text}"),
        )?;
    }
    check(
        peer_stacks.iter().any(|(_, count)| *count == N),
        format!("no bpftrace stack with {N} reads\n{text}"),
    )
}
