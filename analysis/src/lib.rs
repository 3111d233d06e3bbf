//! netpoll's analysis library: the results model (the histogram shared with the probes' bucket
//! layout, the versioned results files, the model catalogue and the workload definition) and
//! what is made from results (charts and reports).

pub mod chart;
pub mod compare;
pub mod go;
pub mod histogram;
pub mod memory;
pub mod models;
pub mod png;
pub mod ready;
pub mod report;
pub mod results;
pub mod run;
pub mod sched;
pub mod servers;
pub mod stacks;
pub mod stats;
pub mod uring;
pub mod verdict;
pub mod workload;

pub use histogram::{Histogram, Quantile};
pub use results::{Results, SCHEMA};
