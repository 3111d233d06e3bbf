//! `cargo xtask test`: every check and test, as CI runs them.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use xtask::{cargo, is_root, run, workspace_root};

use crate::setup;

/// Disk a test build from scratch fills under target/: 4.2 GiB at the peak of a clean clone's CI
/// run (both profiles, the Go toolchains, the quick experiments' output), rounded up.
const FRESH_BUILD_GIB: f64 = 5.0;

pub fn test() -> Result<()> {
    disk_space()?;
    setup::test_prerequisites()?;
    if !is_root() {
        bail!(
            "the probe tests load BPF programs into the kernel: run as root (e.g. `sudo -E cargo xtask test`)"
        );
    }
    step("formatting", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "lints",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Unit tests of every crate, then the privileged integration tests (one at a time: they
    // share kernel state; the probes test binary sets that itself).
    eprintln!("xtask: tests: cargo test --workspace");
    let (passed, failed) = cargo_test(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    // Last, the experiment suite in its short form, checked.
    let quick = workspace_root()?.join("target/experiments/quick");
    let _ = std::fs::remove_dir_all(&quick);
    eprintln!("xtask: experiments --quick into {}", quick.display());
    let repeat = crate::experiments::QUICK_REPEAT;
    let experiments = crate::experiments::experiments(crate::experiments::Options {
        quick: true,
        only: None,
        out: Some(quick.clone()),
        repeat: Some(repeat),
        calibrate: false,
        file: None,
        no_pin: false,
    })
    .and_then(|out| crate::experiments::check_quick(&out, repeat));
    let (passed, failed) = match &experiments {
        Ok(()) => (passed + 1, failed),
        Err(e) => {
            eprintln!("xtask: experiments --quick FAILED: {e:#}");
            (passed, failed + 1)
        }
    };
    // One closing line for the whole run (cargo prints one per test binary, doc tests last).
    println!("tests: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        bail!("{failed} tests failed, {passed} passed");
    }
    Ok(())
}

/// Says how much disk target/ has, and warns when a build from scratch would not fit: a full disk
/// otherwise shows up minutes later as a linker's "No space left on device".
fn disk_space() -> Result<()> {
    let target = workspace_root()?.join("target");
    let dir = if target.is_dir() {
        target
    } else {
        workspace_root()?
    };
    let stat =
        nix::sys::statvfs::statvfs(&dir).with_context(|| format!("statvfs {}", dir.display()))?;
    let free_gib =
        stat.blocks_available() as f64 * stat.fragment_size() as f64 / (1u64 << 30) as f64;
    if free_gib < FRESH_BUILD_GIB {
        eprintln!(
            "xtask: warning: {free_gib:.1} GiB free under {}; a test build from scratch takes about {FRESH_BUILD_GIB} GiB",
            dir.display()
        );
    } else {
        eprintln!("xtask: {free_gib:.1} GiB free under {}", dir.display());
    }
    Ok(())
}

fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}: {cmd:?}");
    run(cmd)
}

/// Runs `cargo test`, echoing its output, and adds up its "test result:" lines.
fn cargo_test(cmd: &mut Command) -> Result<(u64, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                passed += count_before(rest, " passed");
                failed += count_before(rest, " failed");
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && failed == 0 {
        bail!("{cmd:?} failed ({status})");
    }
    Ok((passed, failed))
}

/// In "ok. 15 passed; 0 failed; ...", the number before `word`.
fn count_before(text: &str, word: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(word.trim_start_matches(' '))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_come_from_cargo_test_result_lines() {
        let line =
            "ok. 15 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 11.12s";
        assert_eq!(super::count_before(line, " passed"), 15);
        assert_eq!(super::count_before(line, " failed"), 2);
        assert_eq!(
            super::count_before("FAILED. 7 passed; 3 failed;", " failed"),
            3
        );
    }
}
