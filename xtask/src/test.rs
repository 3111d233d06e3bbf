//! `cargo xtask test`: every check and test, as CI runs them.

use anyhow::{Result, bail};

use crate::{cargo, run, setup};

pub fn test() -> Result<()> {
    setup::test_prerequisites()?;
    if !nix::unistd::geteuid().is_root() {
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
    step("tests", cargo().args(["test", "--workspace"]))?;
    Ok(())
}

fn step(what: &str, cmd: &mut std::process::Command) -> Result<()> {
    eprintln!("xtask: {what}: {cmd:?}");
    run(cmd)
}
