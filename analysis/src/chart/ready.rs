//! Ready descriptors per epoll/poll/select call: what one wake-up batches.

use plotters::prelude::*;

use super::{Chart, Result, Series, draw, legend, line, missing, style::*};
use crate::Histogram;

/// Distribution of ready events per waiting call: share of calls per power-of-two bucket.
pub fn ready_events(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    let series: Vec<_> = series.iter().filter(|(_, h)| h.total() > 0).collect();
    if series.is_empty() {
        return missing(
            name,
            title,
            "no epoll, poll or select call returned ready events in these results",
        );
    }
    let lines: Vec<(&Series, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(s, h)| {
            let total = h.total() as f64;
            let mut rows: Vec<(u32, u64)> = Vec::new();
            for (low, _, count) in h.buckets() {
                let row = if low == 0 { 0 } else { low.ilog2() + 1 };
                match rows.last_mut() {
                    Some((r, c)) if *r == row => *c += count,
                    _ => rows.push((row, count)),
                }
            }
            let pts = rows
                .into_iter()
                .map(|(r, c)| (r as f64, c as f64 / total * 100.0))
                .collect();
            (s, pts)
        })
        .collect();
    let xmax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.3..(xmax + 0.3), 0.0..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("ready descriptors returned per call")
            .y_desc("share of calls (%)")
            .x_labels(xmax as usize + 1)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() > 0.01 || i < 0.0 {
                    return String::new();
                }
                match i as u32 {
                    0 => "0".into(),
                    1 => "1".into(),
                    r => format!("{}-{}", 1u64 << (r - 1), (1u64 << r) - 1),
                }
            })
            .y_label_formatter(&|v| fmt_number(*v))
            .axis_desc_style((FONT, AXIS_DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, pts) in lines {
            line(&mut chart, s, pts, Some(4))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
