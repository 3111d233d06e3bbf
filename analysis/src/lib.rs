//! netpoll's analysis library: the histogram model shared with the probes' bucket layout, and the
//! versioned results file that `netpoll profile` writes and later tools read back.

pub mod histogram;
pub mod results;

pub use histogram::{Histogram, Quantile};
pub use results::{Results, SCHEMA};
