//! `netpoll compare`: results files before and after a change, what changed beyond the noise.

use std::{fmt::Write as _, fs, io::Write as _, path::PathBuf};

use analysis::{
    compare::{self, Comparison, Input, IntervalKind, table_line},
    report::{self, Run},
};
use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Results files (or directories of them) before the change: repeated runs of one
    /// configuration.
    #[arg(value_name = "BEFORE")]
    before: Vec<PathBuf>,
    /// After `--`: the results files (or directories) after the change.
    #[arg(last = true, value_name = "AFTER")]
    after: Vec<PathBuf>,
    /// Show every figure, also those within the noise.
    #[arg(long)]
    all: bool,
    /// Write the comparison as JSON (schema netpoll-compare/1, docs/compare.md).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the comparison as CSV, one row per figure.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

fn load(paths: &[PathBuf]) -> Result<Vec<Run>> {
    Ok(report::load(paths)?)
}

/// `text` in lines of at most `WIDTH` columns, the first led by `lead`, the rest indented.
fn wrapped(lead: &str, text: &str) -> String {
    const WIDTH: usize = 100;
    let indent = " ".repeat(lead.chars().count());
    let mut lines = vec![lead.to_string()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line");
        let fresh = line.trim().is_empty() || line.as_str() == lead;
        if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
            lines.push(format!("{indent}{word}"));
        } else {
            if !fresh {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.join("\n")
}

/// Loaded runs as one side of a comparison.
pub fn inputs(runs: &[Run]) -> Vec<Input<'_>> {
    runs.iter()
        .map(|r| Input {
            name: r.path.display().to_string(),
            results: &r.results,
        })
        .collect()
}

pub fn run(args: Args) -> Result<i32> {
    for (side, paths) in [("before", &args.before), ("after", &args.after)] {
        if paths.is_empty() {
            return Err(compare::CompareError::EmptySide(side).into());
        }
    }
    if let Some(option) = args
        .after
        .iter()
        .find(|p| p.to_string_lossy().starts_with("--"))
    {
        anyhow::bail!(
            "{} comes after `--`, where only AFTER files go: put options before `--`",
            option.display()
        );
    }
    let (before, after) = (load(&args.before)?, load(&args.after)?);
    let comparison = compare::compare(&inputs(&before), &inputs(&after))?;
    print(&comparison, args.all);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&comparison)?;
        fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        fs::write(path, comparison.csv())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}

/// `writeln!` into a String (which cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// The comparison in benchstat's shape: what each side is, then one line per figure.
pub fn print(c: &Comparison, all: bool) {
    let mut out = String::new();
    for (name, side) in [("before", &c.before), ("after", &c.after)] {
        let what = format!(
            "{} file(s), {}; window {} s (median)",
            side.files.len(),
            side.targets.join("; "),
            analysis::chart::style::fmt_number(side.duration_s)
        );
        outln!(out, "{}", wrapped(&format!("{name:<6} "), &what));
    }
    let intervals = match c.intervals {
        IntervalKind::Ranks => "from the ranks of the repeats (Mann-Whitney)",
        IntervalKind::Bootstrap => "bootstrap over the repeats (weaker: see the note)",
        IntervalKind::Sampling => "each file's own sampling (weaker: see the note)",
    };
    outln!(out, "95 % intervals: {intervals}; \"~\": within the noise");
    if !c.before.io_models.is_empty() || !c.after.io_models.is_empty() {
        let models = format!(
            "before {}; after {}",
            compare::counted(&c.before.io_models),
            compare::counted(&c.after.io_models)
        );
        outln!(out, "{}", wrapped("I/O model: ", &models));
    }
    for note in &c.notes {
        outln!(out, "{}", wrapped("note: ", note));
    }
    out.push('\n');
    outln!(
        out,
        "{}",
        table_line("", "before", "after", "after/before (95 % CI)")
    );
    let mut hidden = 0;
    for row in &c.rows {
        if !all && !row.outcome.is_change() {
            hidden += 1;
            continue;
        }
        let side = |s: &Option<compare::Side>| s.map_or("-".into(), |s| s.display(row.unit));
        outln!(
            out,
            "{}",
            table_line(
                &format!("{}  {}", row.subject, row.metric),
                &side(&row.before),
                &side(&row.after),
                &row.change()
            )
        );
    }
    let changed = c.rows.len() - c.rows.iter().filter(|r| !r.outcome.is_change()).count();
    if changed == 0 && !all {
        outln!(out, "(no figure changed beyond the noise)");
    }
    if hidden > 0 {
        let summary = format!(
            "{changed} of {} figures changed beyond the noise; {hidden} within it (or without an \
             interval) are not shown: --all shows them.",
            c.rows.len()
        );
        outln!(out, "\n{}", wrapped("", &summary));
    }
    // Written at once; a reader that stops early (`| head`) is not an error.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}
