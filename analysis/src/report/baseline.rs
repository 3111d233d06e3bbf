//! `netpoll report --baseline`: the runs compared with a baseline's ([`crate::compare`]), as a
//! page of its own in `baseline/`: every figure before and after, and per syscall class the
//! latency distributions of both sides overlaid. The report's own page gets the figures that
//! changed and a link.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use super::{Document, Link, ReportError, Run, Table, write_charts, write_document, write_file};
use crate::{
    Histogram,
    chart::{self, Chart, Series},
    compare::Comparison,
    results::Class,
};

/// The page's directory, inside the report's.
pub const DIR: &str = "baseline";

/// The link from the report's page to the comparison's.
pub fn link() -> Link {
    Link {
        html: format!("{DIR}/index.html"),
        markdown: format!("{DIR}/report.md"),
    }
}

/// The figures of a comparison as a table: those that changed, or all of them.
pub fn table(c: &Comparison, all: bool) -> Table {
    let title = if all {
        "Every figure, before (the baseline) and after"
    } else {
        "Compared with the baseline: what changed beyond the noise"
    };
    let mut table = Table::new(
        title,
        &["figure", "before", "after", "after/before (95 % CI)"],
    );
    for row in c.rows.iter().filter(|r| all || r.outcome.is_change()) {
        let side = |s: &Option<crate::compare::Side>| s.map_or("-".into(), |s| s.display(row.unit));
        table.rows.push(vec![
            format!("{} {}", row.subject, row.metric),
            side(&row.before),
            side(&row.after),
            row.change(),
        ]);
    }
    table
}

/// Each class's latency histogram, summed over a side's runs.
fn merged(runs: &[Run], class: Class) -> Histogram {
    let mut h = Histogram::default();
    for run in runs {
        if let Some(row) = run.results.class(class) {
            h.merge(&row.latency_ns);
        }
    }
    h
}

/// Per class measured on either side: both sides' latency distributions overlaid.
pub fn charts(before: &[Run], after: &[Run]) -> Result<Vec<Chart>, ReportError> {
    let mut charts = Vec::new();
    for class in Class::ALL {
        let (b, a) = (merged(before, class), merged(after, class));
        if b.is_empty() && a.is_empty() {
            continue;
        }
        let series = [
            (Series::named("before (baseline)"), &b),
            (Series::named("after"), &a),
        ];
        let shown: Vec<(Series, &Histogram)> =
            series.into_iter().filter(|(_, h)| !h.is_empty()).collect();
        let note = format!(
            "{} run(s) before, {} after, each side's calls summed",
            before.len(),
            after.len()
        );
        charts.push(chart::latency_overlay(
            &format!("baseline_{}", class.name()),
            &format!("{}: latency before and after", class.name()),
            Some(&note),
            &shown,
        )?);
    }
    Ok(charts)
}

/// Writes the comparison's page (charts, index.html, report.md, compare.csv) into
/// `dir/baseline/`.
pub fn write(
    dir: &Path,
    before: &[Run],
    after: &[Run],
    comparison: &Comparison,
) -> Result<Vec<PathBuf>, ReportError> {
    let dir = dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|error| ReportError::Write {
        path: dir.display().to_string(),
        error,
    })?;
    let charts = charts(before, after)?;
    let mut paths = write_charts(&dir, &charts)?;
    let mut doc = Document::new("Before and after");
    let side = |info: &crate::compare::SideInfo| {
        format!("{} file(s): {}", info.files.len(), info.targets.join("; "))
    };
    doc.paragraph(Some("Before (the baseline)."), &side(&comparison.before));
    doc.paragraph(Some("After."), &side(&comparison.after));
    doc.paragraph(
        None,
        "Each figure is the median over a side's files; the change is after / before with a 95 % \
         interval, \"~\" where it contains 1 (within the noise). See docs/compare.md.",
    );
    for note in &comparison.notes {
        doc.blocks.push(super::Block::Note(note.clone()));
    }
    doc.blocks
        .push(super::Block::Table(table(comparison, false)));
    doc.heading("Latency per class, before and after");
    for c in &charts {
        doc.blocks.push(super::Block::Figure {
            name: c.name.clone(),
            title: c.title.clone(),
            svg: c.svg.clone(),
        });
    }
    doc.blocks
        .push(super::Block::Table(table(comparison, true)));
    paths.extend(write_document(&dir, &doc)?);
    paths.push(write_file(&dir.join("compare.csv"), |w| {
        w.write_all(comparison.csv().as_bytes())
    })?);
    Ok(paths)
}
