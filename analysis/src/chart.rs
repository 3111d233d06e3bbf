//! Charts with plotters, drawn as SVG (and turned into PNG by [`crate::png`]). One function per
//! chart kind, each taking its data and returning a [`Chart`]; colours, sizes and fonts are the
//! constants below, so a model has the same colour in every chart.

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{
    Histogram,
    results::{Results, SyscallStats},
};

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 540;
const FONT: &str = "sans-serif";

/// A rendered chart: `name` is its file stem.
#[derive(Debug, Clone)]
pub struct Chart {
    pub name: String,
    pub title: String,
    pub svg: String,
}

#[derive(Debug, thiserror::Error)]
#[error("drawing chart {chart}: {message}")]
pub struct ChartError {
    chart: String,
    message: String,
}

type Result<T> = std::result::Result<T, ChartError>;

/// One line (or bar) of a chart: a run, a model, a syscall class.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
}

/// Colours by I/O model, in the order `netpoll models` lists them (Tableau 10, then more).
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
];

/// The models in `netpoll models` order: their colours never change between charts.
pub const MODEL_ORDER: [&str; 11] = [
    "blocking-threads",
    "blocking-iterative",
    "nonblocking-spin",
    "select",
    "poll",
    "epoll-lt",
    "epoll-et",
    "epoll-reactors",
    "tokio",
    "io-uring",
    "sigio",
];

/// A model's colour, or a syscall class's; anything else (profile targets) gets one from its
/// name.
pub fn color_of(name: &str) -> RGBColor {
    if name.contains("sqpoll") {
        return RGBColor(0, 100, 0);
    }
    let first = name.split(' ').next().unwrap_or(name);
    if let Some(i) = MODEL_ORDER.iter().position(|m| *m == first) {
        return PALETTE[i % PALETTE.len()];
    }
    match crate::results::CLASS_ORDER.iter().position(|c| *c == first) {
        Some(i) => PALETTE[i % PALETTE.len()],
        None => {
            let hash = name
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
            PALETTE[hash as usize % PALETTE.len()]
        }
    }
}

/// 850ns, 12µs, 4.6ms, 1.2s: axis labels (at most 3 decimals, no trailing zeros).
pub fn fmt_ns(ns: f64) -> String {
    let (value, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

fn err(chart: &str) -> impl Fn(String) -> ChartError + '_ {
    move |message| ChartError {
        chart: chart.to_string(),
        message,
    }
}

/// Draws into an SVG string with a white background, a title and an optional note line.
fn draw(
    name: &str,
    title: &str,
    note: Option<&str>,
    body: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<Chart> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(name)(e.to_string()))?;
        let (top, rest) = root.split_vertically(if note.is_some() { 60 } else { 40 });
        top.draw(&Text::new(
            title.to_string(),
            (WIDTH as i32 / 2, 8),
            (FONT, 22)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(|e| err(name)(e.to_string()))?;
        if let Some(note) = note {
            top.draw(&Text::new(
                note.to_string(),
                (WIDTH as i32 / 2, 36),
                (FONT, 15)
                    .into_font()
                    .color(&RGBColor(170, 60, 0))
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(|e| err(name)(e.to_string()))?;
        }
        body(&rest).map_err(err(name))?;
        root.present().map_err(|e| err(name)(e.to_string()))?;
    }
    Ok(Chart {
        name: name.to_string(),
        title: title.to_string(),
        svg,
    })
}

/// A chart that only says what is missing: never a blank image passed off as a chart.
pub fn missing(name: &str, title: &str, why: &str) -> Result<Chart> {
    draw(name, title, None, |area| {
        area.draw(&Text::new(
            why.to_string(),
            (WIDTH as i32 / 2, HEIGHT as i32 / 2 - 40),
            (FONT, 18)
                .into_font()
                .color(&RGBColor(120, 120, 120))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(|e| e.to_string())
    })
}

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

/// Latency range of several histograms, padded, for a log axis.
fn latency_range(hs: &[&Histogram]) -> (f64, f64) {
    let lo = hs
        .iter()
        .filter_map(|h| h.min())
        .map(|q| q.low.max(1) as f64)
        .fold(f64::MAX, f64::min);
    let hi = hs
        .iter()
        .filter_map(|h| h.max())
        .map(|q| q.high as f64)
        .fold(1.0, f64::max);
    (lo.min(hi) / 1.5, hi * 1.5)
}

/// Overlaid latency histograms (share of calls per quarter-octave) on a log time axis.
pub fn latency_overlay(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    let series: Vec<_> = series.iter().filter(|(_, h)| h.total() > 0).collect();
    if series.is_empty() {
        return missing(name, title, "no calls of this kind in these results");
    }
    let (lo, hi) = latency_range(&series.iter().map(|s| s.1).collect::<Vec<_>>());
    let lines: Vec<(&Series, Vec<(f64, f64)>)> =
        series.iter().map(|(s, h)| (s, shares(h))).collect();
    let ymax = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..ymax)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("latency per call (log scale)")
            .y_desc("share of calls (%)")
            .x_label_formatter(&|v| fmt_ns(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, points) in lines {
            line(&mut chart, s, points, None)?;
        }
        legend(&mut chart)
    })
}

/// Cumulative distributions of latency on a log time axis.
pub fn latency_cdf(
    name: &str,
    title: &str,
    note: Option<&str>,
    series: &[(Series, &Histogram)],
) -> Result<Chart> {
    let series: Vec<_> = series.iter().filter(|(_, h)| h.total() > 0).collect();
    if series.is_empty() {
        return missing(name, title, "no calls of this kind in these results");
    }
    let (lo, hi) = latency_range(&series.iter().map(|s| s.1).collect::<Vec<_>>());
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..100.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("latency per call (log scale)")
            .y_desc("calls at or below (%)")
            .x_label_formatter(&|v| fmt_ns(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, h) in &series {
            line(&mut chart, s, cdf(h), None)?;
        }
        // Curves reach 100 % on the right: the lower right is free.
        legend_at(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// One labelled series as a line, with its legend entry, and dots of radius `dots` at its
/// points when given.
fn line<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    s: &Series,
    points: Vec<(f64, f64)>,
    dots: Option<i32>,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = s.color;
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(s.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
    if let Some(radius) = dots {
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, radius, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::result::Result<(), String> {
    legend_at(chart, SeriesLabelPosition::UpperRight)
}

fn legend_at<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 14))
        .draw()
        .map_err(|e| e.to_string())
}

/// Percentile curves: one line per series through (percentile, latency) points, log latency.
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
    let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
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
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 0.01 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| fmt_ns(*v))
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
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
        legend_at(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// One horizontal bar per series (first at the top), labelled with its value.
pub fn bars(
    name: &str,
    title: &str,
    note: Option<&str>,
    x_desc: &str,
    series: &[(Series, f64)],
) -> Result<Chart> {
    if series.is_empty() {
        return missing(name, title, "no runs in these results");
    }
    let xmax = series.iter().map(|s| s.1).fold(0.0, f64::max).max(1e-9) * 1.15;
    let n = series.len();
    // Row i from the top sits at y = n - 1 - i.
    let names: Vec<String> = series.iter().rev().map(|s| s.0.label.clone()).collect();
    draw(name, title, note, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(150)
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
            .x_desc(x_desc)
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (s, v)) in series.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y - 0.35), (*v, y + 0.35)],
                    s.color.filled(),
                )))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format_value(*v),
                    (*v + xmax * 0.01, y),
                    (FONT, 13)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e15 && v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    match v.abs() {
        a if a >= 1000.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.01 || a == 0.0 => format!("{v:.2}"),
        _ => format!("{v:.4}"),
    }
}

/// Lines through (x, y) points per series, linear axes: throughput against connections, say.
pub fn lines(
    name: &str,
    title: &str,
    note: Option<&str>,
    (x_desc, y_desc): (&str, &str),
    series: &[(Series, Vec<(f64, f64)>)],
) -> Result<Chart> {
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if points.is_empty() {
        return missing(name, title, "no runs in these results");
    }
    let xmin = points.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let xmax = points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    let ymax = points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.15;
    let axes = Axes {
        x_desc,
        y_desc,
        ymax,
    };
    // Values spanning decades (1, 10, 100 connections) get a log axis.
    if xmin > 0.0 && xmax / xmin >= 20.0 {
        let x = (xmin / 1.5..xmax * 1.5).log_scale();
        return draw(name, title, note, |area| draw_lines(area, x, &axes, series));
    }
    // A single x value sits in the middle; several span the axis with some room.
    let pad = if xmax > xmin {
        (xmax - xmin) * 0.1
    } else {
        xmin.abs().max(1.0) * 0.5
    };
    let x = (xmin - pad).max(0.0)..xmax + pad;
    draw(name, title, note, |area| draw_lines(area, x, &axes, series))
}

struct Axes<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    ymax: f64,
}

fn draw_lines<XR>(
    area: &DrawingArea<SVGBackend, Shift>,
    x: XR,
    axes: &Axes,
    series: &[(Series, Vec<(f64, f64)>)],
) -> std::result::Result<(), String>
where
    XR: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    XR::CoordDescType: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(x, 0.0..axes.ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .y_label_formatter(&|v| format_value(*v))
        .x_label_formatter(&|v| format_value(*v))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 13))
        .draw()
        .map_err(|e| e.to_string())?;
    for (s, pts) in series {
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        line(&mut chart, s, pts, Some(5))?;
    }
    legend_at(&mut chart, SeriesLabelPosition::LowerLeft)
}

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
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, pts) in lines {
            line(&mut chart, s, pts, Some(4))?;
        }
        legend(&mut chart)
    })
}

/// A single run at a glance: every syscall class's latency histogram.
pub fn profile_card(name: &str, label: &str, results: &Results) -> Result<Chart> {
    let seconds = results.duration_ns as f64 / 1e9;
    let calls: u64 = results.classes.iter().map(|c| c.calls).sum();
    let title = format!("{label}: {calls} calls in {seconds:.1} s, latency by class");
    let series: Vec<(Series, &Histogram)> = results
        .classes
        .iter()
        .map(|c: &SyscallStats| {
            (
                Series {
                    label: format!("{} ({} calls)", c.name, c.calls),
                    color: color_of(&c.name),
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
