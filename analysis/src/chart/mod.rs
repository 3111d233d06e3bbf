//! Charts with plotters, drawn as SVG (and turned into PNG by [`crate::png`]). One file per chart
//! kind, each a function of (name, title, note, data) returning a [`Chart`]; the look is in
//! [`style`], so a model has the same colour in every chart. Shared drawing helpers are here.

mod bars;
mod card;
mod hdr;
mod latency;
mod lines;
mod percentiles;
mod ready;
pub mod style;

pub use bars::{Bar, Stacked, bars, stacked_bars};
pub use card::profile_card;
pub use hdr::{percentile_distribution, quantile_points};
pub use latency::{duration_overlay, latency_cdf, latency_overlay};
pub use lines::{Point, lines};
pub use percentiles::percentiles;
pub use ready::ready_events;
pub use style::{HEIGHT, WIDTH, color_of, fmt_ns};

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use style::*;

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

pub type Result<T> = std::result::Result<T, ChartError>;

/// What drawing code inside a chart returns: plotters' errors as text.
type Drawn = std::result::Result<(), String>;

/// One line (or bar) of a chart: a run, a model, a syscall class.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
}

impl Series {
    /// A series coloured by its name (a model, a variant, a class).
    pub fn named(label: &str) -> Series {
        Series {
            label: label.to_string(),
            color: color_of(label),
        }
    }
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
    body: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<Chart> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(name)(e.to_string()))?;
        let (top, rest) = root.split_vertically(if note.is_some() { 60 } else { 40 });
        top.draw(&Text::new(
            title.to_string(),
            (WIDTH as i32 / 2, 8),
            (FONT, TITLE_SIZE)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(|e| err(name)(e.to_string()))?;
        if let Some(note) = note {
            top.draw(&Text::new(
                note.to_string(),
                (WIDTH as i32 / 2, 36),
                (FONT, NOTE_SIZE)
                    .into_font()
                    .color(&NOTE_COLOR)
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
                .color(&MISSING_COLOR)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(|e| e.to_string())
    })
}

/// One labelled series as a line, with its legend entry, and dots of radius `dots` at its
/// points when given.
fn line<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    s: &Series,
    points: Vec<(f64, f64)>,
    dots: Option<i32>,
) -> Drawn
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
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(LEGEND_BORDER)
        .label_font((FONT, LEGEND_SIZE))
        .draw()
        .map_err(|e| e.to_string())
}

/// A mesh with the shared fonts, axis descriptions and tick formatters.
fn mesh<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    (x_desc, y_desc): (&str, &str),
    x_ticks: &dyn Fn(&X::ValueType) -> String,
    y_ticks: &dyn Fn(&Y::ValueType) -> String,
) -> Drawn
where
    DB: DrawingBackend + 'a,
    X: Ranged + plotters::coord::ranged1d::ValueFormatter<X::ValueType>,
    Y: Ranged + plotters::coord::ranged1d::ValueFormatter<Y::ValueType>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(x_ticks)
        .y_label_formatter(y_ticks)
        .axis_desc_style((FONT, AXIS_DESC_SIZE))
        .label_style((FONT, LABEL_SIZE))
        .draw()
        .map_err(|e| e.to_string())
}

/// Latency range of several histograms, padded, for a log axis.
fn latency_range(hs: &[&crate::Histogram]) -> (f64, f64) {
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
