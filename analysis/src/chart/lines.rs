//! Lines through (x, y) points per series: throughput against connections, say. Points may
//! carry an interval, drawn as an error bar.

use plotters::{coord::Shift, prelude::*};

use super::{Chart, Drawn, Result, Series, draw, legend, line, mesh, missing, style::*};

/// A point of a line, with the interval around `y` when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub interval: Option<(f64, f64)>,
}

pub fn lines(
    name: &str,
    title: &str,
    note: Option<&str>,
    (x_desc, y_desc): (&str, &str),
    series: &[(Series, Vec<Point>)],
) -> Result<Chart> {
    let points: Vec<&Point> = series.iter().flat_map(|s| s.1.iter()).collect();
    if points.is_empty() {
        return missing(name, title, "no runs in these results");
    }
    let xmin = points.iter().map(|p| p.x).fold(f64::MAX, f64::min);
    let xmax = points.iter().map(|p| p.x).fold(f64::MIN, f64::max);
    let ymax = points
        .iter()
        .map(|p| p.interval.map_or(p.y, |(_, high)| high.max(p.y)))
        .fold(1e-9, f64::max)
        * 1.15;
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
    series: &[(Series, Vec<Point>)],
) -> Drawn
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
    mesh(
        &mut chart,
        (axes.x_desc, axes.y_desc),
        &|v| fmt_number(*v),
        &|v| fmt_number(*v),
    )?;
    for (s, pts) in series {
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        for p in &pts {
            if let Some((low, high)) = p.interval {
                // A vertical bar from low to high; the caps are the line's dots' width apart.
                let style = s.color.stroke_width(2);
                chart
                    .draw_series([PathElement::new(vec![(p.x, low), (p.x, high)], style)])
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series([low, high].map(|y| {
                        EmptyElement::at((p.x, y)) + PathElement::new(vec![(-6, 0), (6, 0)], style)
                    }))
                    .map_err(|e| e.to_string())?;
            }
        }
        line(
            &mut chart,
            s,
            pts.iter().map(|p| (p.x, p.y)).collect(),
            Some(5),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)
}
