//! netpoll's BPF programs. Built for the BPF target by `netpoll-user/build.rs` (aya-build); on the
//! host this file compiles to an empty binary so workspace-wide commands keep working.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod probe;

#[cfg(target_arch = "bpf")]
mod hooks;

#[cfg(target_arch = "bpf")]
mod sched;

#[cfg(target_arch = "bpf")]
mod lite;

#[cfg(target_arch = "bpf")]
mod xdp;

#[cfg(target_arch = "bpf")]
mod go;

#[cfg(target_arch = "bpf")]
mod ready;

#[cfg(target_arch = "bpf")]
mod uring;

#[cfg(target_arch = "bpf")]
mod stacks;

#[cfg(target_arch = "bpf")]
mod micro;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies `no_std`.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
