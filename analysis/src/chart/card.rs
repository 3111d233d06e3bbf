//! A `netpoll profile` result at a glance: every syscall class's latency histogram.

use super::{Chart, Result, Series, latency_overlay};
use crate::{Histogram, results::Results};

pub fn profile_card(name: &str, label: &str, results: &Results) -> Result<Chart> {
    let seconds = results.duration_ns as f64 / 1e9;
    let calls: u64 = results.classes.iter().map(|c| c.calls).sum();
    let title = format!("{label}: {calls} calls in {seconds:.1} s, latency by class");
    let series: Vec<(Series, &Histogram)> = results
        .classes
        .iter()
        .map(|c| {
            (
                Series {
                    label: format!("{} ({} calls)", c.name, c.calls),
                    ..Series::named(&c.name)
                },
                &c.latency_ns,
            )
        })
        .collect();
    let note = results
        .partial
        .then_some("partial: the collection was interrupted");
    latency_overlay(name, &title, note, &series)
}
