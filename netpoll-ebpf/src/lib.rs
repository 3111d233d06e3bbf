//! The kernel<->user ABI of netpoll, defined once: `no_std` inside the BPF programs, `std` on the
//! host (with the `user` feature adding `aya::Pod` for the map types).
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod abi;
pub mod histogram;
pub mod syscalls;
pub mod x86;
