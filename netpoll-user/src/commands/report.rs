//! `netpoll report`: results files in, charts and a report out.

use std::path::PathBuf;

use analysis::{
    compare,
    report::{self, Heading, baseline},
};
use anyhow::Result;

use super::compare::inputs;
use crate::sinks::announce_report;

#[derive(clap::Args)]
pub struct Args {
    /// Results files, or directories of them.
    #[arg(required = true, value_name = "RESULTS")]
    inputs: Vec<PathBuf>,
    /// Directory to write the report into (created if needed).
    #[arg(short, long, value_name = "DIR", default_value = "netpoll-report")]
    out: PathBuf,
    /// Title of the report (default: "netpoll report").
    #[arg(long)]
    title: Option<String>,
    /// The question the runs answer, stated above the findings.
    #[arg(long)]
    question: Option<String>,
    /// A note to state above the charts (a failed run, say); repeat for several.
    #[arg(long = "note", value_name = "TEXT")]
    notes: Vec<String>,
    /// Results (files or directories) to compare RESULTS with, as `netpoll compare BASELINE --
    /// RESULTS` does: the figures that changed on this page, and a page of its own (baseline/)
    /// with every figure and each class's latency before and after.
    #[arg(long, value_name = "RESULTS")]
    baseline: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<i32> {
    let runs = report::load(&args.inputs)?;
    let mut heading = Heading {
        title: args.title.unwrap_or_default(),
        question: args.question,
        notes: args.notes,
        ..Heading::default()
    };
    let mut written = Vec::new();
    if !args.baseline.is_empty() {
        let before = report::load(&args.baseline)?;
        let comparison = compare::compare(&inputs(&before), &inputs(&runs))?;
        heading.tables.push(baseline::table(&comparison, false));
        heading.links.push((
            "Before and after: every figure, and each class's latency".into(),
            baseline::link(),
        ));
        written = baseline::write(&args.out, &before, &runs, &comparison)?;
    }
    written.extend(report::write(&args.out, &runs, &heading)?);
    announce_report(written.len(), &args.out);
    Ok(0)
}
