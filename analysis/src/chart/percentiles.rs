//! Request latency percentiles: one line per run through (percentile, latency) points.

use plotters::prelude::*;

use super::{Chart, Result, Series, draw, legend, line, missing, style::*};

/// Percentile curves, log latency; `labels` name the x positions (`p50`, `p99`, ...).
pub fn percentiles(
    name: &str,
    title: &str,
    note: Option<&str>,
    labels: &[&str],
    series: &[(Series, Vec<f64>)],
) -> Result<Chart> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    if values.is_empty() {
        return missing(name, title, "no request latencies in these results");
    }
    let lo = values.iter().copied().fold(f64::MAX, f64::min) / 1.5;
    let hi = values.iter().copied().fold(1.0, f64::max) * 1.5;
    let n = labels.len();
    let at = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 0.01 && i >= 0.0 {
            labels
                .get(i as usize)
                .map_or(String::new(), |l| l.to_string())
        } else {
            String::new()
        }
    };
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), (lo..hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("request latency (log scale)")
            .x_labels(n)
            .x_label_formatter(&at)
            .y_label_formatter(&|v| fmt_ns(*v))
            .axis_desc_style((FONT, AXIS_DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, ys) in series {
            let points: Vec<(f64, f64)> = ys
                .iter()
                .enumerate()
                .filter(|(_, y)| **y > 0.0)
                .map(|(i, y)| (i as f64, *y))
                .collect();
            line(&mut chart, s, points, Some(4))?;
        }
        // Latency rises to the right: the upper left is free.
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}
