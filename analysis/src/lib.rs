//! netpoll's analysis library: the histogram model shared with the probes' bucket layout, and the
//! versioned results files that `netpoll profile`, `load` and `run` write and later tools read back.

pub mod chart;
pub mod histogram;
pub mod png;
pub mod report;
pub mod results;
pub mod run;

pub use histogram::{Histogram, Quantile};
pub use results::{Results, SCHEMA};
