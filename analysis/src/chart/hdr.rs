//! The percentile distribution as HdrHistogram's plotter and wrk2 draw it: latency against the
//! percentile, on an axis of 1/(1-q) in log scale, so that 90 %, 99 %, 99.9 %, 99.99 % are evenly
//! spaced and the tail gets as much room as the body.

use plotters::prelude::*;

use super::{Chart, Result, Series, draw, legend, line, missing, style::*};
use crate::Histogram;

/// Steps per decade of 1/(1-q).
const STEPS: u32 = 20;

/// (1/(1-q), latency) points of a histogram, from the minimum (q = 0) to the
/// highest percentile its sample count resolves (1/(1-q) <= calls), then the maximum.
pub fn quantile_points(h: &Histogram) -> Vec<(f64, f64)> {
    let total = h.total();
    if total == 0 {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut k = 0;
    loop {
        let x = 10f64.powf(k as f64 / STEPS as f64);
        if x > total as f64 {
            break;
        }
        let q = 1.0 - 1.0 / x;
        if let Some(v) = h.quantile(q) {
            points.push((x, v.estimate().max(1) as f64));
        }
        k += 1;
    }
    if let Some(max) = h.max() {
        points.push(((total as f64).max(1.0), max.high.max(1) as f64));
    }
    points
}

/// `0%`, `90%`, `99%`, `99.9%` at x = 1, 10, 100, 1000.
fn percentile_label(x: f64) -> String {
    let decades = x.log10().round();
    if (x.log10() - decades).abs() > 0.01 {
        return String::new();
    }
    let q = 100.0 * (1.0 - 10f64.powf(-decades));
    let digits = (decades as usize).saturating_sub(2);
    format!("{q:.digits$}%")
}

pub fn percentile_distribution(
    name: &str,
    title: &str,
    note: Option<&str>,
    y_desc: &str,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(s, h)| (s, quantile_points(h)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if lines.is_empty() {
        return missing(name, title, "no latencies of this kind in these results");
    }
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut xmax, mut ylo, mut yhi) = (10.0f64, f64::MAX, 1.0f64);
    for &(x, y) in all {
        xmax = xmax.max(x);
        ylo = ylo.min(y);
        yhi = yhi.max(y);
    }
    // Whole decades, so the axis ends on a labelled percentile.
    let xmax = 10f64.powf(xmax.log10().ceil());
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .margin_right(40)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d((1.0..xmax).log_scale(), (ylo / 1.5..yhi * 1.5).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-q))")
            .y_desc(y_desc)
            .x_label_formatter(&|v| percentile_label(*v))
            .y_label_formatter(&|v| fmt_ns(*v))
            .axis_desc_style((FONT, AXIS_DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, points) in lines {
            line(&mut chart, s, points, None)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

#[cfg(test)]
mod tests {
    use netpoll_ebpf::histogram::LATENCY_BUCKETS;

    use super::*;

    #[test]
    fn labels_name_the_nines() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
        assert_eq!(percentile_label(20.0), "");
    }

    #[test]
    fn points_stop_where_the_samples_do_and_end_at_the_max() {
        let mut h = Histogram::new(LATENCY_BUCKETS);
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let points = quantile_points(&h);
        assert_eq!(points[0].0, 1.0);
        assert!(points.iter().all(|p| p.0 <= 1000.0));
        // At 1/(1-q) = 10: p90 ~900 µs; at 100: p99 ~990 µs; the last point is the maximum.
        let at = |x: f64| points.iter().find(|p| (p.0 - x).abs() < 1e-6).unwrap().1;
        assert!((at(10.0) / 900_000.0 - 1.0).abs() < 0.04, "{}", at(10.0));
        assert!((at(100.0) / 990_000.0 - 1.0).abs() < 0.04, "{}", at(100.0));
        assert!(points.last().unwrap().1 >= 1_000_000.0);
        assert!(points.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
    }
}
