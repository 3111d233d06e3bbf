//! Sizes, fonts, colours and number formats: one place for the look of every chart.

use plotters::style::RGBColor;

use crate::models;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 540;
pub const FONT: &str = "sans-serif";
pub const TITLE_SIZE: u32 = 22;
pub const NOTE_SIZE: u32 = 15;
pub const AXIS_DESC_SIZE: u32 = 16;
pub const LABEL_SIZE: u32 = 13;
pub const LEGEND_SIZE: u32 = 14;
/// Notes above a chart (mixed parameters, what is missing).
pub const NOTE_COLOR: RGBColor = RGBColor(170, 60, 0);
pub const MISSING_COLOR: RGBColor = RGBColor(120, 120, 120);
pub const LEGEND_BORDER: RGBColor = RGBColor(180, 180, 180);
/// Error bars and whiskers.
pub const INTERVAL_COLOR: RGBColor = RGBColor(40, 40, 40);

/// Colours for what is not a model: syscall classes, profile targets (Tableau 10, then more).
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

/// The colour of a model or variant (from the catalogue), of a syscall class, or, for anything
/// else (profile targets), one picked from its name.
pub fn color_of(name: &str) -> RGBColor {
    if let Some(color) = models::color(name) {
        return color;
    }
    match crate::results::Class::ALL
        .iter()
        .position(|c| c.name() == name)
    {
        Some(i) => PALETTE[i % PALETTE.len()],
        None => {
            let hash = name
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
            PALETTE[hash as usize % PALETTE.len()]
        }
    }
}

/// 850ns, 12µs, 4.6ms, 1.2s: durations on axes and labels (at most 3 significant digits, no
/// trailing zeros).
pub fn fmt_ns(ns: f64) -> String {
    let (value, unit) = match ns {
        n if n < 1e3 => (n, "ns"),
        n if n < 1e6 => (n / 1e3, "µs"),
        n if n < 1e9 => (n / 1e6, "ms"),
        n => (n / 1e9, "s"),
    };
    format!("{}{unit}", fmt_number(value))
}

/// A plain number for ticks and labels, without spurious decimals: `10000`, `2.5`, `0.25`,
/// `0.0031`.
pub fn fmt_number(v: f64) -> String {
    let digits = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 0.01 => 2,
        _ => 4,
    };
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_no_spurious_decimals() {
        assert_eq!(fmt_number(10000.0), "10000");
        assert_eq!(fmt_number(292.6), "293");
        assert_eq!(fmt_number(2.50), "2.5");
        assert_eq!(fmt_number(0.25), "0.25");
        assert_eq!(fmt_number(0.0), "0");
        assert_eq!(fmt_ns(292_600.0), "293µs");
        assert_eq!(fmt_ns(1_500.0), "1.5µs");
        assert_eq!(fmt_ns(850.0), "850ns");
    }

    #[test]
    fn models_keep_their_catalogue_colour() {
        for m in models::MODELS {
            assert_eq!(color_of(m.name), m.color);
        }
        assert_eq!(color_of("epoll"), PALETTE[0]);
    }
}
