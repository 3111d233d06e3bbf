//! `netpoll report`: results files in, charts and a report out.

use std::path::PathBuf;

use analysis::report::{self, Heading};
use anyhow::Result;

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
}

pub fn run(args: Args) -> Result<i32> {
    let runs = report::load(&args.inputs)?;
    let heading = Heading {
        title: args.title.unwrap_or_default(),
        question: args.question,
        notes: args.notes,
        ..Heading::default()
    };
    let written = report::write(&args.out, &runs, &heading)?;
    announce_report(written.len(), &args.out);
    Ok(0)
}
