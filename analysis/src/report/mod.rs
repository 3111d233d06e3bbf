//! From results to a report: charts (SVG + PNG), `index.html` (self-contained, charts inline),
//! `report.md` (the same document, linking the PNGs) and `results.csv` (one row per run and
//! syscall class).
//!
//! One job per file: [`runs`] loads and labels results, [`figures`] chooses the charts,
//! [`table`] and [`sentence`] say what the numbers are, [`document`] arranges all of it, and the
//! writers ([`html`], [`markdown`], [`csv`]) render it.

pub mod baseline;
pub mod csv;
pub mod document;
pub mod figures;
pub mod html;
pub mod markdown;
pub mod memory;
pub mod runs;
pub mod sentence;
pub mod stacks;
pub mod table;

use std::{
    fs::{self, File},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

pub use document::{Block, Document, Link};
pub use figures::charts;
pub use runs::{Axis, Cell, Run, arrange, at_largest, cells, load, mixed_parameters};
pub use sentence::summary;
pub use table::Table;

use crate::{
    chart::{self, Chart},
    png::Renderer,
    results::LoadError,
};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}: no results files (*.json) in this directory")]
    EmptyDirectory(String),
    #[error("no results files given")]
    NoInputs,
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    #[error(transparent)]
    Png(#[from] crate::png::PngError),
    #[error("{path}: cannot write: {error}")]
    Write { path: String, error: std::io::Error },
}

/// What a report says above its charts. Empty fields are left out; without a sentence, one is
/// generated from the data ([`summary`]).
#[derive(Debug, Clone, Default)]
pub struct Heading {
    pub title: String,
    pub question: Option<String>,
    pub sentence: Option<String>,
    /// Warnings and failures, one line each.
    pub notes: Vec<String>,
    /// Extra tables, before the report's own.
    pub tables: Vec<Table>,
    /// Pages of their own linked from this one (the baseline comparison), after the tables.
    pub links: Vec<(String, Link)>,
}

/// The report as a document: heading, tables, charts.
pub fn document(runs: &[Run], charts: &[Chart], heading: &Heading) -> Document {
    let title = if heading.title.is_empty() {
        "netpoll report"
    } else {
        &heading.title
    };
    let mut doc = Document::new(title);
    if let Some(q) = &heading.question {
        doc.paragraph(Some("Question."), q);
    }
    if let Some(sentence) = heading.sentence.clone().or_else(|| summary(runs)) {
        doc.paragraph(Some("Measured."), &sentence);
    }
    for note in &heading.notes {
        doc.blocks.push(Block::Note(note.clone()));
    }
    doc.paragraph(
        None,
        &format!(
            "{} result file(s). Latencies are measured in the kernel per call (server side) and \
             per request by the load generator (client side); see docs/results-format.md.",
            runs.len()
        ),
    );
    for table in &heading.tables {
        doc.blocks.push(Block::Table(table.clone()));
    }
    for (text, link) in &heading.links {
        doc.blocks.push(Block::Heading {
            text: text.clone(),
            link: Some(link.clone()),
        });
    }
    let cells = runs::cells(runs);
    let workloads = table::workloads(&cells);
    if !workloads.rows.is_empty() {
        if let Some(sentence) = figures::repeats_sentence(&cells) {
            doc.paragraph(None, &sentence);
        }
        doc.blocks.push(Block::Table(workloads));
    }
    let verdicts = table::verdicts(&cells);
    if !verdicts.rows.is_empty() {
        doc.blocks.push(Block::Table(verdicts));
    }
    let memory = memory::table(runs);
    if !memory.rows.is_empty() {
        if let Some(sentence) = memory::sentence(runs) {
            doc.paragraph(Some("Per connection."), &sentence);
        }
        doc.blocks.push(Block::Table(memory));
    }
    let scheduler = table::scheduler(&cells);
    if !scheduler.rows.is_empty() {
        doc.blocks.push(Block::Table(scheduler));
    }
    for go in [
        table::ready(&cells),
        table::uring(&cells),
        table::go_runtime(&cells),
        table::go_exact(&cells),
    ] {
        if !go.rows.is_empty() {
            doc.blocks.push(Block::Table(go));
        }
    }
    doc.blocks.extend(stacks::blocks(runs));
    doc.heading("Charts");
    for c in charts {
        doc.blocks.push(Block::Figure {
            name: c.name.clone(),
            title: c.title.clone(),
            svg: c.svg.clone(),
        });
    }
    doc.blocks.push(Block::Table(table::classes(&cells)));
    doc.blocks.push(Block::Table(table::runs(runs)));
    doc
}

/// Creates `path` and lets `fill` write it; errors name the file.
pub fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<PathBuf, ReportError> {
    let failed = |error| ReportError::Write {
        path: path.display().to_string(),
        error,
    };
    let mut w = BufWriter::new(File::create(path).map_err(failed)?);
    fill(&mut w).and_then(|()| w.flush()).map_err(failed)?;
    Ok(path.to_path_buf())
}

/// Writes a document as `index.html` and `report.md` into `dir`.
pub fn write_document(dir: &Path, doc: &Document) -> Result<Vec<PathBuf>, ReportError> {
    Ok(vec![
        write_file(&dir.join("index.html"), |w| html::write(w, doc))?,
        write_file(&dir.join("report.md"), |w| markdown::write(w, doc))?,
    ])
}

/// Writes each chart as SVG and PNG into `dir`; the paths written.
pub fn write_charts(dir: &Path, charts: &[Chart]) -> Result<Vec<PathBuf>, ReportError> {
    let renderer = Renderer::new()?;
    let mut paths = Vec::new();
    for chart in charts {
        let svg = dir.join(format!("{}.svg", chart.name));
        paths.push(write_file(&svg, |w| w.write_all(chart.svg.as_bytes()))?);
        let png = renderer.png(&chart.name, &chart.svg)?;
        let png_path = dir.join(format!("{}.png", chart.name));
        paths.push(write_file(&png_path, |w| w.write_all(&png))?);
    }
    Ok(paths)
}

/// Writes every chart (SVG and PNG), index.html, report.md and results.csv into `dir`.
/// Returns the paths written.
pub fn write(dir: &Path, runs: &[Run], heading: &Heading) -> Result<Vec<PathBuf>, ReportError> {
    fs::create_dir_all(dir).map_err(|error| ReportError::Write {
        path: dir.display().to_string(),
        error,
    })?;
    let charts = charts(runs)?;
    let mut paths = write_charts(dir, &charts)?;
    paths.extend(stacks::write(dir, runs)?);
    paths.extend(write_document(dir, &document(runs, &charts, heading))?);
    paths.push(write_file(&dir.join("results.csv"), |w| {
        csv::write(w, runs).map_err(std::io::Error::other)
    })?);
    Ok(paths)
}
