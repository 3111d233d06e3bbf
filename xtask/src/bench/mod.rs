//! `cargo xtask bench ...`: benchmarks, each run side by side with its baseline in one run,
//! interleaved, reported as medians and ratios.

pub mod hooks;
pub mod load;
pub mod overhead;
pub mod real_server;
mod servers;
