//! Builds the BPF programs of `netpoll-ebpf` (nightly, `-Z build-std=core`, bpf-linker) and leaves
//! the object in OUT_DIR for `include_bytes!`. `cargo xtask setup` installs what this needs.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("netpoll-user has no parent directory"))?
        .join("netpoll-ebpf");
    let root_dir = root.to_str().context("non-UTF-8 path to netpoll-ebpf")?;
    let package = aya_build::Package {
        name: "netpoll-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the eBPF programs failed; run `cargo xtask setup` to install bpf-linker, LLVM 22 and nightly rust-src")
}
