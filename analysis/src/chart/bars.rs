//! Horizontal bars, one per run or model (first at the top), each labelled with its value and
//! unit, with an error bar where the value has an interval.

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{Chart, Result, Series, draw, missing, style::*};

/// One bar: its series, value, the interval around the value (when known), and the text
/// written beside it (the value with its unit).
#[derive(Debug, Clone)]
pub struct Bar {
    pub series: Series,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
    pub text: String,
}

pub fn bars(
    name: &str,
    title: &str,
    note: Option<&str>,
    x_desc: &str,
    bars: &[Bar],
) -> Result<Chart> {
    if bars.is_empty() {
        return missing(name, title, "no runs in these results");
    }
    let xmax = bars
        .iter()
        .map(|b| b.interval.map_or(b.value, |(_, high)| high.max(b.value)))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.2;
    let n = bars.len();
    // Row i from the top sits at y = n - 1 - i.
    let names: Vec<String> = bars.iter().rev().map(|b| b.series.label.clone()).collect();
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(190)
            .build_cartesian_2d(0.0..xmax, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v| fmt_number(*v))
            .x_desc(x_desc)
            .axis_desc_style((FONT, AXIS_DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, bar) in bars.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.35), (bar.value, y + 0.35)],
                    bar.series.color.filled(),
                )))
                .map_err(|e| e.to_string())?;
            let mut text_at = bar.value;
            if let Some((low, high)) = bar.interval {
                let whisker = INTERVAL_COLOR.stroke_width(2);
                chart
                    .draw_series([
                        PathElement::new(vec![(low, y), (high, y)], whisker),
                        PathElement::new(vec![(low, y - 0.15), (low, y + 0.15)], whisker),
                        PathElement::new(vec![(high, y - 0.15), (high, y + 0.15)], whisker),
                    ])
                    .map_err(|e| e.to_string())?;
                text_at = text_at.max(high);
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    bar.text.clone(),
                    (text_at + xmax * 0.01, y),
                    (FONT, LABEL_SIZE)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// One horizontal bar split into segments (the same segments, in the same order, for every
/// bar): what a total is made of.
#[derive(Debug, Clone)]
pub struct Stacked {
    pub label: String,
    pub values: Vec<f64>,
}

/// Stacked horizontal bars, one per row (first at the top), segments coloured as `segments`
/// says, with a legend; each bar labelled with its total.
pub fn stacked_bars(
    name: &str,
    title: &str,
    note: Option<&str>,
    x_desc: &str,
    segments: &[Series],
    rows: &[Stacked],
    text: fn(f64) -> String,
) -> Result<Chart> {
    if rows.is_empty() {
        return missing(name, title, "no runs with this figure in these results");
    }
    let total = |r: &Stacked| r.values.iter().sum::<f64>();
    let xmax = rows.iter().map(total).fold(0.0, f64::max).max(1e-9) * 1.25;
    let n = rows.len();
    let names: Vec<String> = rows.iter().rev().map(|r| r.label.clone()).collect();
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(190)
            .build_cartesian_2d(0.0..xmax, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_formatter(&|v| fmt_number(*v))
            .x_desc(x_desc)
            .axis_desc_style((FONT, AXIS_DESC_SIZE))
            .label_style((FONT, LABEL_SIZE))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, segment) in segments.iter().enumerate() {
            let color = segment.color;
            let bars: Vec<Rectangle<(f64, f64)>> = rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let y = (n - 1 - i) as f64;
                    let start: f64 = row.values[..k.min(row.values.len())].iter().sum();
                    let end = start + row.values.get(k).copied().unwrap_or(0.0);
                    Rectangle::new([(start, y - 0.35), (end, y + 0.35)], color.filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(segment.label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled())
                });
        }
        for (i, row) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            chart
                .draw_series(std::iter::once(Text::new(
                    text(total(row)),
                    (total(row) + xmax * 0.01, y),
                    (FONT, LABEL_SIZE)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(|e| e.to_string())?;
        }
        super::legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}
