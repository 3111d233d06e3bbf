//! Latency distributions of syscalls on a log time axis: overlaid histograms and CDFs.

use plotters::prelude::*;

use super::{Chart, Result, Series, draw, latency_range, legend, line, mesh, missing, style::*};
use crate::Histogram;

/// Histogram counts regrouped into quarter-octaves: (geometric centre, share of all calls in %).
fn shares(h: &Histogram) -> Vec<(f64, f64)> {
    let total = h.total() as f64;
    let mut bins: Vec<(i64, u64)> = Vec::new();
    for (low, high, count) in h.buckets() {
        let mid = (low as f64 + high as f64) / 2.0;
        let key = (mid.max(1.0).log2() * 4.0).floor() as i64;
        match bins.last_mut() {
            Some((k, c)) if *k == key => *c += count,
            _ => bins.push((key, count)),
        }
    }
    // Empty bins between the first and last are zeros, not a line drawn across the gap.
    let (Some(first), Some(last)) = (bins.first().map(|b| b.0), bins.last().map(|b| b.0)) else {
        return Vec::new();
    };
    (first..=last)
        .map(|k| {
            let count = bins.iter().find(|b| b.0 == k).map_or(0, |b| b.1);
            (
                2f64.powf((k as f64 + 0.5) / 4.0),
                count as f64 / total * 100.0,
            )
        })
        .collect()
}

/// Cumulative share of calls at or below each bucket's upper bound, in %.
fn cdf(h: &Histogram) -> Vec<(f64, f64)> {
    let total = h.total() as f64;
    let mut seen = 0u64;
    h.buckets()
        .map(|(_, high, count)| {
            seen += count;
            ((high as f64).max(1.0), seen as f64 / total * 100.0)
        })
        .collect()
}

/// Overlaid latency histograms (share of calls per quarter-octave) on a log time axis.
pub fn latency_overlay(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    latency_lines(name, title, note, series, Shape::Shares, CALLS)
}

/// The same for durations other than calls: `axes` (x, y) descriptions.
pub fn duration_overlay(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
    axes: (&str, &str),
) -> Result<Chart> {
    latency_lines(name, title, note, series, Shape::Shares, axes)
}

/// Axis descriptions of call latencies.
const CALLS: (&str, &str) = ("latency per call (log scale)", "share of calls (%)");

/// Cumulative distributions of latency on a log time axis.
pub fn latency_cdf(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    latency_lines(
        name,
        title,
        note,
        series,
        Shape::Cumulative,
        (CALLS.0, "calls at or below (%)"),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Shares,
    Cumulative,
}

/// One line per histogram against a log time axis.
fn latency_lines(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
    shape: Shape,
    (x_desc, y_desc): (&str, &str),
) -> Result<Chart> {
    let series: Vec<_> = series.iter().filter(|(_, h)| h.total() > 0).collect();
    if series.is_empty() {
        return missing(name, title, "no calls of this kind in these results");
    }
    let (lo, hi) = latency_range(&series.iter().map(|s| s.1).collect::<Vec<_>>());
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(s, h)| match shape {
            Shape::Shares => (s, shares(h)),
            Shape::Cumulative => (s, cdf(h)),
        })
        .collect();
    let (ymax, position) = match shape {
        Shape::Shares => {
            let peak = lines
                .iter()
                .flat_map(|(_, p)| p.iter().map(|p| p.1))
                .fold(1.0, f64::max);
            (peak * 1.1, SeriesLabelPosition::UpperRight)
        }
        // Curves reach 100 % on the right: the lower right is free.
        Shape::Cumulative => (100.0, SeriesLabelPosition::LowerRight),
    };

    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..ymax)
            .map_err(|e| e.to_string())?;
        mesh(&mut chart, (x_desc, y_desc), &|v| fmt_ns(*v), &|v| {
            fmt_number(*v)
        })?;
        for (s, points) in lines {
            line(&mut chart, s, points, None)?;
        }
        legend(&mut chart, position)
    })
}
