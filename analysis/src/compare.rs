//! Before and after: what changed between two sets of results files beyond the noise, in
//! benchstat's convention (`netpoll compare`, `netpoll report --baseline`). Documented in
//! docs/compare.md.
//!
//! Each side is one or more results files of one configuration (repeated runs). Every figure
//! (calls per second of a syscall, a latency percentile, switches per request...) is read from
//! each file; a side's figure is the median over its files, and the change is after / before
//! with a 95 % interval:
//! - four or more files a side: the exact interval from the ranks of the pairwise ratios (the
//!   Mann-Whitney U test inverted, [`stats::rank_ratio`]): the run-to-run noise is in it, and it
//!   holds its level whatever the figure's distribution (a bootstrap of 4 repeats claimed 7 % of
//!   A/A differences of a bimodal figure, this 2.7 %: `stats` tests);
//! - two or three a side: a bootstrap over the repeats ([`stats::ratio`]), said to be weaker;
//! - one file a side: from each figure's own sampling (calls as Poisson counts, shares as
//!   binomial, percentiles as order statistics of the histogram, means by their standard error),
//!   combined on the log scale. That leaves the run-to-run noise out, so it is weaker; the
//!   comparison says so.
//!
//! A change whose interval contains 1 is "~", within the noise. Like benchstat, each figure is
//! tested on its own: among many figures of two identical configurations, about one in twenty
//! can be claimed by chance.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    Histogram, Results,
    chart::style::{fmt_ns, fmt_number},
    results::{SyscallStats, TargetKind, Tool},
    stats::{self, Verdict},
};

/// Schema name and version of `netpoll compare --json`.
pub const SCHEMA: &str = "netpoll-compare/1";

/// z for a two-sided 95 % interval.
const Z: f64 = 1.959_964;

/// The latency percentiles compared, with their names.
const PERCENTILES: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompareError {
    #[error("nothing to compare {0} `--`: give results files or directories on both sides")]
    EmptySide(&'static str),
    #[error(
        "{side} mixes --lite profiles and full ones ({lite} of {files} are --lite): compare like \
         with like"
    )]
    MixedLite {
        side: &'static str,
        lite: usize,
        files: usize,
    },
    #[error(
        "before are {before} and after are {after}: --lite and full profiles measure different \
         things; compare like with like"
    )]
    LiteAgainstFull {
        before: &'static str,
        after: &'static str,
    },
}

/// How a figure is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Events per second of the window.
    PerSecond,
    BytesPerSecond,
    /// Time per second of the window (thread time summed), nanoseconds.
    NsPerSecond,
    Percent,
    Nanoseconds,
    Microseconds,
    /// A plain number (per request, per wait, threads).
    Number,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return "-".into();
        }
        match self {
            Unit::PerSecond => format!("{}/s", si(v)),
            Unit::BytesPerSecond => format!("{}B/s", si(v)),
            Unit::NsPerSecond => format!("{}/s", fmt_ns(v)),
            Unit::Percent => format!("{}%", fmt_number(v)),
            Unit::Nanoseconds => fmt_ns(v),
            Unit::Microseconds => fmt_ns(v * 1e3),
            Unit::Number => fmt_number(v),
        }
    }
}

/// 950, 12.3k, 4.5M.
fn si(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{}G", fmt_number(v / 1e9)),
        a if a >= 1e6 => format!("{}M", fmt_number(v / 1e6)),
        a if a >= 1e3 => format!("{}k", fmt_number(v / 1e3)),
        _ => fmt_number(v),
    }
}

/// One figure of one file: its value and the standard error of its logarithm from the file's
/// own sampling, where netpoll knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    value: f64,
    log_se: Option<f64>,
}

/// What identifies a figure across files: the kind of subject (run figures, threads, classes,
/// syscalls), the subject, the metric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: u8,
    subject: String,
    metric: String,
}

struct Found {
    /// The metric's place in its subject: a subject on one side only is shown by its first.
    order: u16,
    unit: Unit,
    /// A file without the figure has it at zero (a count), rather than not at all (a latency).
    absent_is_zero: bool,
    sample: Sample,
}

/// The figures of one results file.
#[derive(Default)]
struct Figures {
    map: BTreeMap<Key, Found>,
    order: u16,
    kind: u8,
    subject: String,
}

impl Figures {
    fn subject(&mut self, kind: u8, subject: &str) {
        (self.kind, self.subject, self.order) = (kind, subject.to_string(), 0);
    }

    fn put(&mut self, metric: &str, unit: Unit, absent_is_zero: bool, sample: Sample) {
        self.order += 1;
        if !sample.value.is_finite() {
            return;
        }
        let key = Key {
            kind: self.kind,
            subject: self.subject.clone(),
            metric: metric.to_string(),
        };
        self.map.insert(
            key,
            Found {
                order: self.order,
                unit,
                absent_is_zero,
                sample,
            },
        );
    }

    /// `count` events over `secs`: a Poisson count.
    fn rate(&mut self, metric: &str, unit: Unit, count: u64, secs: f64) {
        let log_se = (count > 0).then(|| 1.0 / (count as f64).sqrt());
        let value = count as f64 / secs;
        self.put(metric, unit, true, Sample { value, log_se });
    }

    /// A quantity that grows with `count` events (bytes of calls, time of sleeps) per second:
    /// sampled like the count.
    fn rate_of(&mut self, metric: &str, unit: Unit, amount: f64, count: u64, secs: f64) {
        let log_se = (count > 0 && amount > 0.0).then(|| 1.0 / (count as f64).sqrt());
        let value = amount / secs;
        self.put(metric, unit, true, Sample { value, log_se });
    }

    /// `part` of `whole` events, in %: binomial.
    fn share(&mut self, metric: &str, part: u64, whole: u64) {
        if whole == 0 {
            return;
        }
        let p = part as f64 / whole as f64;
        let log_se = (part > 0).then(|| ((1.0 - p) / part as f64).sqrt());
        self.put(
            metric,
            Unit::Percent,
            false,
            Sample {
                value: 100.0 * p,
                log_se,
            },
        );
    }

    /// The mean `sum / count`, its standard error from the histogram's spread.
    fn mean(&mut self, metric: &str, unit: Unit, sum: f64, count: u64, h: &Histogram) {
        if count == 0 {
            return;
        }
        let value = sum / count as f64;
        let log_se = (value > 0.0).then(|| h.std_dev() / (count as f64).sqrt() / value);
        self.put(metric, unit, false, Sample { value, log_se });
    }

    /// Percentiles of a histogram of nanoseconds, each with its order-statistic interval
    /// widened to the buckets' edges.
    fn percentiles(&mut self, what: &str, h: &Histogram) {
        let n = h.total();
        for (q, name) in PERCENTILES {
            if n == 0 {
                continue;
            }
            let nf = n as f64;
            let rank = ((q * nf).ceil() as u64).clamp(1, n);
            let spread = Z * (nf * q * (1.0 - q)).sqrt();
            let low_rank = ((rank as f64 - spread).floor() as u64).clamp(1, n);
            let high_rank = ((rank as f64 + spread).ceil() as u64).clamp(1, n);
            let (Some(at), Some(low), Some(high)) = (
                h.value_at_rank(rank),
                h.at_rank(low_rank),
                h.at_rank(high_rank),
            ) else {
                continue;
            };
            let (low, high) = ((low.low as f64).max(1.0), (high.high as f64).max(1.0));
            let metric = format!("{what} {name}");
            self.put(
                &metric,
                Unit::Nanoseconds,
                false,
                Sample {
                    value: at,
                    log_se: Some((high / low).ln() / (2.0 * Z)),
                },
            );
        }
    }

    /// A figure without a sampling model (per-request ratios, thread counts).
    fn plain(&mut self, metric: &str, unit: Unit, value: f64) {
        self.put(
            metric,
            unit,
            false,
            Sample {
                value,
                log_se: None,
            },
        );
    }
}

/// Subject kinds, in the order they are listed.
const RUN: u8 = 0;
const THREADS: u8 = 1;
const CLASS: u8 = 2;
const SYSCALL: u8 = 3;

/// Every figure of a results file.
fn figures(r: &Results) -> Figures {
    let secs = (r.duration_ns as f64 / 1e9).max(1e-9);
    let mut f = Figures::default();
    if let Some(run) = &r.run {
        let load = &run.load;
        let window = (load.duration_ns as f64 / 1e9).max(1e-9);
        f.subject(RUN, "client");
        f.rate("requests", Unit::PerSecond, load.requests, window);
        f.rate(
            "failed requests",
            Unit::PerSecond,
            load.errors.total(),
            window,
        );
        f.percentiles("latency", &load.latency_ns);
        f.subject(RUN, "per request");
        if let Ok(value) = serde_json::to_value(run.per_request) {
            flatten(&mut f, "", &value);
        }
        f.subject(RUN, "server");
        f.plain(
            "peak threads",
            Unit::Number,
            run.server_process.peak_threads as f64,
        );
    }
    if let Some(s) = &r.scheduler {
        f.subject(THREADS, "threads");
        f.rate_of("run queue", Unit::NsPerSecond, s.runq_ns as f64, 0, secs);
        f.rate_of("asleep", Unit::NsPerSecond, s.blocked_ns as f64, 0, secs);
        f.rate("preemptions", Unit::PerSecond, s.preemptions, secs);
        f.rate("wakeups", Unit::PerSecond, s.wakeups.total(), secs);
    }
    // A class is shown when it sums several syscalls; otherwise its one syscall says it all.
    for class in &r.classes {
        let members = r
            .syscalls
            .iter()
            .filter(|s| s.class() == class.class())
            .count();
        if members > 1 {
            f.subject(CLASS, &format!("class {}", class.name));
            syscall_figures(&mut f, class, secs);
        }
    }
    for call in &r.syscalls {
        f.subject(SYSCALL, &call.label());
        syscall_figures(&mut f, call, secs);
    }
    if let Some(lite) = &r.lite {
        for call in &lite.syscalls {
            f.subject(SYSCALL, &call.name);
            f.rate(
                "socket transfers",
                Unit::PerSecond,
                call.socket_transfers,
                secs,
            );
            f.share("errors", call.errors, call.socket_transfers);
            f.share("EAGAIN", call.eagain, call.socket_transfers);
            f.rate_of(
                "bytes",
                Unit::BytesPerSecond,
                call.bytes as f64,
                call.socket_transfers,
                secs,
            );
            f.rate("sleeps", Unit::PerSecond, call.sleeps, secs);
            let off_cpu = &call.off_cpu_ns;
            f.mean(
                "off-CPU mean",
                Unit::Nanoseconds,
                call.off_cpu_sum_ns as f64,
                call.sleeps,
                off_cpu,
            );
            f.percentiles("off-CPU", off_cpu);
        }
    }
    f
}

fn syscall_figures(f: &mut Figures, s: &SyscallStats, secs: f64) {
    f.rate("calls", Unit::PerSecond, s.calls, secs);
    f.share("errors", s.errors, s.calls);
    f.share("EAGAIN", s.eagain, s.calls);
    f.rate_of("bytes", Unit::BytesPerSecond, s.bytes as f64, s.calls, secs);
    let latency = &s.latency_ns;
    f.mean(
        "latency mean",
        Unit::Nanoseconds,
        s.latency_sum_ns as f64,
        s.calls,
        latency,
    );
    f.percentiles("latency", latency);
    if !s.ready_events.is_empty() {
        let events = &s.ready_events;
        f.mean(
            "ready events/wait",
            Unit::Number,
            events.sum(),
            events.total(),
            events,
        );
    }
    if let Some(sched) = &s.sched {
        let parts = [
            ("on CPU/call", sched.on_cpu_sum_ns, &sched.on_cpu_ns),
            ("asleep/call", sched.blocked_sum_ns, &sched.blocked_ns),
            ("run queue/call", sched.runq_sum_ns, &sched.runq_ns),
        ];
        for (name, sum, h) in parts {
            f.mean(name, Unit::Nanoseconds, sum as f64, s.calls, h);
        }
    }
}

/// Every number of a JSON object (the per-request section), named by its path: new per-request
/// figures are compared without a change here.
fn flatten(f: &mut Figures, prefix: &str, value: &serde_json::Value) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (name, v) in object {
        let name = format!("{prefix}{}", name.replace('_', " "));
        match v {
            serde_json::Value::Number(n) => {
                let unit = if name.ends_with(" us") {
                    Unit::Microseconds
                } else {
                    Unit::Number
                };
                let shown = name.trim_end_matches(" us");
                f.plain(shown, unit, n.as_f64().unwrap_or(f64::NAN));
            }
            serde_json::Value::Object(_) => flatten(f, &format!("{name}: "), v),
            _ => {}
        }
    }
}

/// A side's figure: the median over its files, and its spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub median: f64,
    /// 95 % interval of the median: bootstrap with 3 or more files, the range of 2, the
    /// sampling interval of 1 (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Files the figure came from.
    pub files: usize,
}

impl Side {
    fn of(samples: &[Sample]) -> Side {
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let (median, interval) = match samples {
            [one] => (
                one.value,
                one.log_se
                    .map(|se| (one.value * (-Z * se).exp(), one.value * (Z * se).exp())),
            ),
            _ => {
                let e = stats::estimate(&values);
                (e.median, e.interval)
            }
        };
        Side {
            median,
            low: interval.map(|i| i.0),
            high: interval.map(|i| i.1),
            files: samples.len(),
        }
    }

    /// `12.3µs ±4%`: the median and half its interval's width, relative.
    pub fn display(&self, unit: Unit) -> String {
        let value = unit.format(self.median);
        match (self.low, self.high) {
            (Some(low), Some(high)) if self.median > 0.0 => {
                let pct = (high - low) / 2.0 / self.median * 100.0;
                if pct < 0.5 {
                    format!("{value} ±0%")
                } else {
                    format!("{value} ±{pct:.0}%")
                }
            }
            _ => value,
        }
    }
}

/// What happened to a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The interval lies above 1.
    Larger,
    Smaller,
    /// The interval contains 1: "~".
    WithinNoise,
    /// No interval: one file a side and no sampling model for the figure.
    Unknown,
    /// Only after has it (a syscall that appeared).
    New,
    /// Only before has it.
    Gone,
}

impl Outcome {
    fn of(v: Verdict) -> Outcome {
        match v {
            Verdict::Larger => Outcome::Larger,
            Verdict::Smaller => Outcome::Smaller,
            Verdict::WithinNoise => Outcome::WithinNoise,
            Verdict::Unknown => Outcome::Unknown,
        }
    }

    /// A change beyond the noise (or a figure on one side only).
    pub fn is_change(self) -> bool {
        !matches!(self, Outcome::WithinNoise | Outcome::Unknown)
    }
}

/// One figure, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `client`, `per request`, `threads`, `class socket_read`, `read (socket)`, `epoll_wait`.
    pub subject: String,
    /// `calls/s`, `latency p99`, `context switches`...
    pub metric: String,
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Side>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Side>,
    /// after / before (the medians); absent when either side lacks the figure or before is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Its 95 % interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_high: Option<f64>,
    pub outcome: Outcome,
}

impl Row {
    /// What the change column says: `2.00x (1.91-2.10x)`, `~ 1.03x (0.95-1.12x)`, `new`.
    pub fn change(&self) -> String {
        let x = |v: f64| match v {
            v if v >= 100.0 => format!("{v:.0}"),
            v if v >= 10.0 => format!("{v:.1}"),
            v => format!("{v:.2}"),
        };
        let ratio = match (self.ratio, self.ratio_low, self.ratio_high) {
            (Some(0.0), _, _) => "to 0".into(),
            (Some(r), Some(l), Some(h)) => format!("{}x ({}-{}x)", x(r), x(l), x(h)),
            (Some(r), _, _) => format!("{}x", x(r)),
            (None, _, _) => "from 0".into(),
        };
        match self.outcome {
            Outcome::New => "new".into(),
            Outcome::Gone => "gone".into(),
            Outcome::WithinNoise => format!("~ {ratio}"),
            Outcome::Unknown => format!("? {ratio}"),
            Outcome::Larger | Outcome::Smaller => ratio,
        }
    }

    /// How much it changed, for sorting: |log ratio|; a figure on one side only, or from 0,
    /// ranks above every ratio.
    fn magnitude(&self) -> f64 {
        match (self.outcome, self.ratio) {
            (Outcome::New | Outcome::Gone, _) | (_, None) => f64::INFINITY,
            (_, Some(r)) if r > 0.0 => r.ln().abs(),
            _ => f64::INFINITY,
        }
    }
}

/// How the intervals were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalKind {
    /// From the ranks of the repeated files (4 or more a side, about): the Mann-Whitney U test
    /// inverted ([`stats::rank_ratio`]), exact whatever the figures' distribution, run-to-run
    /// noise included.
    Ranks,
    /// Bootstrap over 2 or 3 files a side, too few for the rank interval: narrower than it
    /// should be.
    Bootstrap,
    /// One file on a side: each figure's own sampling only (weaker).
    Sampling,
}

/// What one side is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    pub files: Vec<String>,
    /// What was measured, as each file says (the model or server and its load for runs).
    pub targets: Vec<String>,
    /// The I/O-model verdicts, with how many files gave each.
    pub io_models: BTreeMap<String, usize>,
    pub kernels: Vec<String>,
    pub netpoll_versions: Vec<String>,
    /// Median window, seconds.
    pub duration_s: f64,
    /// Files cut short (Ctrl-C, a server that died).
    pub partial: usize,
}

/// A comparison, as `netpoll compare --json` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: String,
    pub tool: Tool,
    pub before: SideInfo,
    pub after: SideInfo,
    pub intervals: IntervalKind,
    /// What differs between the sides besides the change itself, and how far to trust the
    /// intervals: one sentence each.
    pub notes: Vec<String>,
    /// Every figure, what changed most first.
    pub rows: Vec<Row>,
}

/// A results file on one side, with the name it is shown by.
pub struct Input<'a> {
    pub name: String,
    pub results: &'a Results,
}

/// Compares `after` against `before`.
pub fn compare(before: &[Input], after: &[Input]) -> Result<Comparison, CompareError> {
    if before.is_empty() {
        return Err(CompareError::EmptySide("before"));
    }
    if after.is_empty() {
        return Err(CompareError::EmptySide("after"));
    }
    let kind = |side: &'static str, inputs: &[Input]| {
        let lite = inputs.iter().filter(|i| i.results.lite.is_some()).count();
        match lite {
            0 => Ok("full profiles"),
            n if n == inputs.len() => Ok("--lite profiles"),
            _ => Err(CompareError::MixedLite {
                side,
                lite,
                files: inputs.len(),
            }),
        }
    };
    let (kind_before, kind_after) = (kind("before", before)?, kind("after", after)?);
    if kind_before != kind_after {
        return Err(CompareError::LiteAgainstFull {
            before: kind_before,
            after: kind_after,
        });
    }
    let intervals = if stats::rank_cut(before.len(), after.len()).is_some() {
        IntervalKind::Ranks
    } else if before.len() >= 2 && after.len() >= 2 {
        IntervalKind::Bootstrap
    } else {
        IntervalKind::Sampling
    };
    let rows = rows(before, after, intervals);
    let (info_before, info_after) = (side_info(before), side_info(after));
    let notes = notes(&info_before, &info_after, intervals);
    Ok(Comparison {
        schema: SCHEMA.into(),
        tool: Tool::netpoll(),
        before: info_before,
        after: info_after,
        intervals,
        notes,
        rows,
    })
}

/// Each side's samples of every figure seen on either side.
fn rows(before: &[Input], after: &[Input], intervals: IntervalKind) -> Vec<Row> {
    let figures_of =
        |inputs: &[Input]| -> Vec<Figures> { inputs.iter().map(|i| figures(i.results)).collect() };
    let (fb, fa) = (figures_of(before), figures_of(after));
    let mut keys: BTreeMap<&Key, (Unit, bool)> = BTreeMap::new();
    // A subject on one side only is one row (its first figure: calls, transfers, requests),
    // not one per figure.
    let mut first_of: BTreeMap<(u8, &str), (u16, &Key)> = BTreeMap::new();
    for (key, found) in fb.iter().chain(&fa).flat_map(|f| &f.map) {
        keys.entry(key)
            .or_insert((found.unit, found.absent_is_zero));
        let first = first_of
            .entry((key.kind, key.subject.as_str()))
            .or_insert((found.order, key));
        if found.order < first.0 {
            *first = (found.order, key);
        }
    }
    // The subjects each side has, gathered once.
    let subjects = |side: &[Figures]| -> BTreeSet<(u8, String)> {
        side.iter()
            .flat_map(|f| f.map.keys())
            .map(|k| (k.kind, k.subject.clone()))
            .collect()
    };
    let (subjects_b, subjects_a) = (subjects(&fb), subjects(&fa));
    let samples = |side: &[Figures], key: &Key, absent_is_zero: bool| -> Vec<Sample> {
        let zero = Sample {
            value: 0.0,
            log_se: None,
        };
        let present = side.iter().any(|f| f.map.contains_key(key));
        side.iter()
            .filter_map(|f| match f.map.get(key) {
                Some(found) => Some(found.sample),
                None => (present && absent_is_zero).then_some(zero),
            })
            .collect()
    };
    let mut rows: Vec<Row> = keys
        .into_iter()
        .filter_map(|(key, (unit, absent_is_zero))| {
            let b = samples(&fb, key, absent_is_zero);
            let a = samples(&fa, key, absent_is_zero);
            let all_zero = b.iter().chain(&a).all(|s| s.value == 0.0);
            let subject = (key.kind, key.subject.clone());
            let one_sided = !subjects_b.contains(&subject) || !subjects_a.contains(&subject);
            let first = first_of[&(key.kind, key.subject.as_str())].1;
            if all_zero || (one_sided && first != key) {
                return None;
            }
            Some(row(key, unit, &b, &a, intervals))
        })
        .collect();
    rows.sort_by(|x, y| {
        y.outcome
            .is_change()
            .cmp(&x.outcome.is_change())
            .then(y.magnitude().total_cmp(&x.magnitude()))
    });
    rows
}

fn row(key: &Key, unit: Unit, b: &[Sample], a: &[Sample], intervals: IntervalKind) -> Row {
    let mut row = Row {
        subject: key.subject.clone(),
        metric: key.metric.clone(),
        unit,
        before: (!b.is_empty()).then(|| Side::of(b)),
        after: (!a.is_empty()).then(|| Side::of(a)),
        ratio: None,
        ratio_low: None,
        ratio_high: None,
        outcome: Outcome::Unknown,
    };
    let (before, after) = match (&row.before, &row.after) {
        (None, _) => {
            row.outcome = Outcome::New;
            return row;
        }
        (_, None) => {
            row.outcome = Outcome::Gone;
            return row;
        }
        (Some(b), Some(a)) => (b.median, a.median),
    };
    if before > 0.0 {
        row.ratio = Some(after / before);
    }
    let values = |s: &[Sample]| s.iter().map(|s| s.value).collect::<Vec<_>>();
    match intervals {
        IntervalKind::Ranks => {
            let (va, vb) = (values(a), values(b));
            let r = stats::rank_ratio(&va, &vb);
            // With zeros the rank interval says a direction, not a ratio.
            if va.iter().chain(&vb).all(|x| *x > 0.0) {
                (row.ratio_low, row.ratio_high) =
                    (r.interval.map(|i| i.0), r.interval.map(|i| i.1));
            }
            row.outcome = Outcome::of(r.verdict());
        }
        IntervalKind::Bootstrap => {
            let (va, vb) = (values(a), values(b));
            if before > 0.0 {
                let r = stats::ratio(&va, &vb);
                (row.ratio_low, row.ratio_high) =
                    (r.interval.map(|i| i.0), r.interval.map(|i| i.1));
            }
            row.outcome = Outcome::of(stats::compare(&va, &vb));
        }
        IntervalKind::Sampling => {
            // Medians of one file each (or one side of several: its own median's sampling is
            // not known, so that side counts as its median file's).
            let se = |s: &[Sample], median: f64| {
                s.iter()
                    .min_by(|x, y| {
                        (x.value - median)
                            .abs()
                            .total_cmp(&(y.value - median).abs())
                    })
                    .and_then(|s| s.log_se)
            };
            match (se(b, before), se(a, after), row.ratio) {
                (Some(sb), Some(sa), Some(r)) if r > 0.0 => {
                    let half = Z * (sb * sb + sa * sa).sqrt();
                    let (low, high) = (r * (-half).exp(), r * half.exp());
                    (row.ratio_low, row.ratio_high) = (Some(low), Some(high));
                    row.outcome = if low > 1.0 {
                        Outcome::Larger
                    } else if high < 1.0 {
                        Outcome::Smaller
                    } else {
                        Outcome::WithinNoise
                    };
                }
                // From nothing to something: a count of 4 or more is beyond Poisson's 95 %
                // reach of zero (P(N >= 4 | mean 0.8) < 5 %, and a true zero gives none).
                (_, Some(sa), None) if after > 0.0 => {
                    row.outcome = if sa <= 0.5 {
                        Outcome::Larger
                    } else {
                        Outcome::WithinNoise
                    };
                }
                _ => row.outcome = Outcome::Unknown,
            }
        }
    }
    row
}

fn describe(r: &Results) -> String {
    if let Some(run) = &r.run {
        let l = &run.load;
        let rate = l.rate.map(|r| format!(", {r} req/s")).unwrap_or_default();
        let idle = match l.idle_connections {
            0 => String::new(),
            n => format!(", {n} idle"),
        };
        return format!(
            "run of {}, {} connections{idle}{rate}",
            run.workload.label(),
            l.connections
        );
    }
    let t = &r.target;
    match t.kind {
        TargetKind::Pid => {
            let pids: Vec<String> = t.pids.iter().map(|p| p.to_string()).collect();
            format!("pid {}", pids.join(","))
        }
        TargetKind::Comm => format!("comm {}", t.comm.as_deref().unwrap_or("?")),
        TargetKind::Cgroup => format!("cgroup {}", t.cgroup.as_deref().unwrap_or("?")),
        TargetKind::Command => format!("command `{}`", t.command.join(" ")),
        TargetKind::All => "every process".into(),
        TargetKind::Run => "a netpoll run".into(),
    }
}

fn side_info(inputs: &[Input]) -> SideInfo {
    let set = |f: &dyn Fn(&Results) -> String| -> Vec<String> {
        let s: BTreeSet<String> = inputs.iter().map(|i| f(i.results)).collect();
        s.into_iter().collect()
    };
    let mut io_models = BTreeMap::new();
    for i in inputs {
        if let Some(m) = &i.results.io_model {
            *io_models.entry(m.name.clone()).or_insert(0) += 1;
        }
    }
    let durations: Vec<f64> = inputs
        .iter()
        .map(|i| i.results.duration_ns as f64 / 1e9)
        .collect();
    SideInfo {
        files: inputs.iter().map(|i| i.name.clone()).collect(),
        targets: set(&describe),
        io_models,
        kernels: set(&|r| r.host.kernel.clone()),
        netpoll_versions: set(&|r| r.tool.version.clone()),
        duration_s: stats::median(&durations),
        partial: inputs.iter().filter(|i| i.results.partial).count(),
    }
}

fn notes(b: &SideInfo, a: &SideInfo, intervals: IntervalKind) -> Vec<String> {
    let mut notes = Vec::new();
    if intervals == IntervalKind::Bootstrap {
        notes.push(format!(
            "{} files before and {} after: too few for an exact rank interval (4 a side are \
             needed), so intervals are a bootstrap over the files, which is too narrow with so \
             few (it claims more changes than it should). Give 5 files a side.",
            b.files.len(),
            a.files.len()
        ));
    }
    if intervals == IntervalKind::Sampling {
        notes.push(format!(
            "{} file(s) before and {} after: with one file on a side, intervals come from each \
             figure's own sampling (Poisson counts, order statistics of the histograms) and leave \
             out the run-to-run noise (often ±20 %), so they are weaker than repeats; figures \
             without a sampling model show \"?\". Give 5 files a side for intervals from the repeats.",
            b.files.len(),
            a.files.len()
        ));
    }
    let list = |v: &[String]| v.join("; ");
    let differs = |what: &str, x: &[String], y: &[String]| {
        (x != y).then(|| format!("{what} differ: before {}; after {}.", list(x), list(y)))
    };
    notes.extend(differs("Targets", &b.targets, &a.targets));
    notes.extend(differs("Kernels", &b.kernels, &a.kernels));
    notes.extend(differs(
        "netpoll versions",
        &b.netpoll_versions,
        &a.netpoll_versions,
    ));
    for (side, info) in [("before", b), ("after", a)] {
        if info.targets.len() > 1 {
            notes.push(format!(
                "The files {side} are not all of one target ({}): are they repeats?",
                list(&info.targets)
            ));
        }
        if info.partial > 0 {
            notes.push(format!(
                "{} file(s) {side} were cut short: their figures cover the time collected.",
                info.partial
            ));
        }
    }
    let (db, da) = (b.duration_s, a.duration_s);
    if db > 0.0 && da > 0.0 && (db / da - 1.0).abs() > 0.1 {
        notes.push(format!(
            "Windows differ: before {} s, after {} s (medians); rates are per second of each \
             file's window.",
            fmt_number(db),
            fmt_number(da)
        ));
    }
    let verdicts = |m: &BTreeMap<String, usize>| -> Vec<String> { m.keys().cloned().collect() };
    if !b.io_models.is_empty() && verdicts(&b.io_models) != verdicts(&a.io_models) {
        notes.push(format!(
            "The I/O-model verdict changed: before {}; after {}.",
            counted(&b.io_models),
            counted(&a.io_models)
        ));
    }
    notes
}

/// `epoll, level-triggered (5 of 5)`.
pub fn counted(models: &BTreeMap<String, usize>) -> String {
    let total: usize = models.values().sum();
    let parts: Vec<String> = models
        .iter()
        .map(|(name, n)| format!("{name} ({n} of {total})"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

impl Comparison {
    /// The rows as CSV (one per figure), with a header.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "subject,metric,unit,before,before_low,before_high,before_files,after,after_low,\
             after_high,after_files,ratio,ratio_low,ratio_high,outcome\n",
        );
        let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        let side = |s: &Option<Side>| match s {
            Some(s) => format!("{},{},{},{}", s.median, num(s.low), num(s.high), s.files),
            None => ",,,0".into(),
        };
        for r in &self.rows {
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            let unit = serde_json::to_value(r.unit)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let outcome = serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            out.push_str(&format!(
                "{},{},{unit},{},{},{},{},{},{outcome}\n",
                quote(&r.subject),
                quote(&r.metric),
                side(&r.before),
                side(&r.after),
                num(r.ratio),
                num(r.ratio_low),
                num(r.ratio_high),
            ));
        }
        out
    }

    /// The figures that changed beyond the noise (or appeared, or went).
    pub fn changes(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.outcome.is_change())
    }
}

/// One line for the terminal: label, before, after, change, in `width` columns.
pub fn table_line(label: &str, before: &str, after: &str, change: &str) -> String {
    let label: String = if label.chars().count() > LABEL {
        let mut s: String = label.chars().take(LABEL - 1).collect();
        s.push('…');
        s
    } else {
        label.to_string()
    };
    format!("{label:<LABEL$} {before:>SIDE$} {after:>SIDE$}  {change}")
        .trim_end()
        .to_string()
}

/// Widths of the terminal table's columns: label, each side (the change takes the rest, at
/// most 25, so that a line fits 100 columns).
pub const LABEL: usize = 38;
pub const SIDE: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Counters, EndReason, Fd, Host, Target};
    use netpoll_ebpf::abi::HookKind;

    /// A profile of `secs` seconds with these syscall rows (classes summed from them).
    fn profile(secs: f64, rows: Vec<SyscallStats>) -> Results {
        Results {
            schema: crate::SCHEMA.into(),
            tool: Tool::netpoll(),
            target: Target {
                kind: TargetKind::Comm,
                comm: Some("server".into()),
                ..Target::default()
            },
            host: Host {
                hostname: "h".into(),
                kernel: "6.8".into(),
                arch: "x86_64".into(),
                cpus: 2,
            },
            hook: HookKind::TpBtf,
            socket_split: true,
            started_at: String::new(),
            ended_at: String::new(),
            duration_ns: (secs * 1e9) as u64,
            end_reason: EndReason::Duration,
            partial: false,
            command_exit_code: None,
            classes: crate::results::classes_of(&rows),
            syscalls: rows,
            lower_bound: Vec::new(),
            processes: BTreeMap::new(),
            counters: Counters::default(),
            scheduler: None,
            run: None,
            programs: Vec::new(),
            lite: None,
            io_model: None,
            go: None,
            ready: None,
            netpoll_cpu: None,
            memory: None,
            uring: None,
            stacks: None,
        }
    }

    /// `calls` calls of `name` with latencies spread over 100 µs .. 200 µs times `scale`.
    fn call(name: &str, fd: Option<Fd>, calls: u64, scale: u64) -> SyscallStats {
        let mut h = Histogram::new(netpoll_ebpf::histogram::LATENCY_BUCKETS);
        let mut sum = 0;
        for i in 0..calls {
            let v = (100_000 + (i * 7919) % 100_000) * scale;
            h.record(v);
            sum += v;
        }
        SyscallStats {
            name: name.into(),
            fd,
            calls,
            latency_sum_ns: sum,
            latency_ns: h,
            ..SyscallStats::default()
        }
    }

    fn inputs(results: &[Results]) -> Vec<Input<'_>> {
        results
            .iter()
            .enumerate()
            .map(|(i, r)| Input {
                name: format!("{i}.json"),
                results: r,
            })
            .collect()
    }

    fn find<'a>(c: &'a Comparison, subject: &str, metric: &str) -> &'a Row {
        c.rows
            .iter()
            .find(|r| r.subject == subject && r.metric == metric)
            .unwrap_or_else(|| panic!("no row {subject} {metric}"))
    }

    fn covers(r: &Row, truth: f64) -> bool {
        r.ratio_low.unwrap() <= truth && truth <= r.ratio_high.unwrap()
    }

    /// Five repeats a side with known differences, each repeat off by up to ±8 % (the noise):
    /// epoll_wait's latencies exactly 2x, read's rate unchanged, write's rate up 30 %.
    fn sides() -> (Vec<Results>, Vec<Results>) {
        let noise = [1.0, 0.94, 1.05, 0.97, 1.08];
        let side = |latency_scale: u64, write_gain: f64| -> Vec<Results> {
            noise
                .iter()
                .map(|n| {
                    let calls = |base: f64| (base * n) as u64;
                    profile(
                        1.0,
                        vec![
                            call("epoll_wait", None, calls(10_000.0), latency_scale),
                            call("read", Some(Fd::Socket), calls(20_000.0), 1),
                            call("write", Some(Fd::Socket), calls(20_000.0 * write_gain), 1),
                        ],
                    )
                })
                .collect()
        };
        (side(1, 1.0), side(2, 1.3))
    }

    #[test]
    fn known_differences_are_found_with_intervals_that_cover_them() {
        let (before, after) = sides();
        let c = compare(&inputs(&before), &inputs(&after)).unwrap();
        assert_eq!(c.intervals, IntervalKind::Ranks);
        for p in ["p50", "p90", "p99", "p99.9"] {
            let r = find(&c, "epoll_wait", &format!("latency {p}"));
            assert_eq!(r.outcome, Outcome::Larger, "{r:?}");
            assert!(covers(r, 2.0), "{r:?}");
            assert!((r.ratio.unwrap() - 2.0).abs() < 0.05, "{r:?}");
        }
        let mean = find(&c, "epoll_wait", "latency mean");
        assert!(covers(mean, 2.0) && mean.outcome == Outcome::Larger);
        let read = find(&c, "read (socket)", "calls");
        assert_eq!(read.outcome, Outcome::WithinNoise, "{read:?}");
        assert!(covers(read, 1.0));
        let write = find(&c, "write (socket)", "calls");
        assert_eq!(write.outcome, Outcome::Larger, "{write:?}");
        assert!(covers(write, 1.3), "{write:?}");
        // A class of one syscall is that syscall's rows; the biggest changes come first.
        assert!(!c.rows.iter().any(|r| r.subject == "class socket_write"));
        assert!(c.rows[0].outcome.is_change());
        let first_noise = c.rows.iter().position(|r| !r.outcome.is_change()).unwrap();
        assert!(c.rows[first_noise..].iter().all(|r| !r.outcome.is_change()));
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn identical_inputs_are_within_the_noise_everywhere() {
        let (before, _) = sides();
        let c = compare(&inputs(&before), &inputs(&before)).unwrap();
        assert!(!c.rows.is_empty());
        for r in &c.rows {
            assert_eq!(r.outcome, Outcome::WithinNoise, "{r:?}");
            assert_eq!(r.ratio, Some(1.0));
            assert!(r.change().starts_with("~ 1.00x"), "{}", r.change());
        }
        // One file a side: the sampling intervals say the same, and say they are weaker.
        let c = compare(&inputs(&before[..1]), &inputs(&before[..1])).unwrap();
        assert_eq!(c.intervals, IntervalKind::Sampling);
        assert!(c.notes[0].contains("weaker"), "{:?}", c.notes);
        assert!(c.rows.iter().all(|r| r.outcome == Outcome::WithinNoise));
    }

    #[test]
    fn one_file_a_side_finds_large_changes_from_the_histograms_sampling() {
        let (before, after) = sides();
        let c = compare(&inputs(&before[..1]), &inputs(&after[..1])).unwrap();
        let p99 = find(&c, "epoll_wait", "latency p99");
        assert_eq!(p99.outcome, Outcome::Larger);
        assert!(covers(p99, 2.0), "{p99:?}");
        let write = find(&c, "write (socket)", "calls");
        assert!(
            covers(write, 1.3) && write.outcome == Outcome::Larger,
            "{write:?}"
        );
    }

    #[test]
    fn syscalls_on_one_side_only_are_new_or_gone_and_differences_are_stated() {
        let before = vec![profile(1.0, vec![call("poll", None, 500, 1)])];
        let mut after = vec![profile(2.0, vec![call("epoll_wait", None, 500, 1)])];
        after[0].host.kernel = "6.12".into();
        let c = compare(&inputs(&before), &inputs(&after)).unwrap();
        let poll: Vec<&Row> = c.rows.iter().filter(|r| r.subject == "poll").collect();
        assert_eq!(poll.len(), 1, "one row for a syscall gone: {poll:?}");
        assert_eq!(
            (poll[0].metric.as_str(), poll[0].outcome),
            ("calls", Outcome::Gone)
        );
        assert_eq!(find(&c, "epoll_wait", "calls").outcome, Outcome::New);
        assert_eq!(find(&c, "epoll_wait", "calls").change(), "new");
        let notes = c.notes.join("\n");
        assert!(
            notes.contains("Kernels differ: before 6.8; after 6.12"),
            "{notes}"
        );
        assert!(
            notes.contains("Windows differ: before 1 s, after 2 s"),
            "{notes}"
        );
    }

    #[test]
    fn rates_are_per_second_of_each_window() {
        // Twice the calls in twice the time: the same rate.
        let before: Vec<Results> = (0..3)
            .map(|_| profile(1.0, vec![call("read", Some(Fd::Other), 1000, 1)]))
            .collect();
        let after: Vec<Results> = (0..3)
            .map(|_| profile(2.0, vec![call("read", Some(Fd::Other), 2000, 1)]))
            .collect();
        let c = compare(&inputs(&before), &inputs(&after)).unwrap();
        let rate = find(&c, "read (other)", "calls");
        assert_eq!(
            (rate.ratio, rate.outcome),
            (Some(1.0), Outcome::WithinNoise)
        );
    }

    #[test]
    fn empty_sides_and_mixed_kinds_are_refused_in_one_line() {
        let (before, _) = sides();
        let err = compare(&[], &inputs(&before)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "nothing to compare before `--`: give results files or directories on both sides"
        );
        assert_eq!(
            compare(&inputs(&before), &[]).unwrap_err(),
            CompareError::EmptySide("after")
        );
        let mut lite = before[0].clone();
        lite.lite = Some(crate::results::Lite::default());
        let err = compare(
            &inputs(&[lite.clone(), before[1].clone()]),
            &inputs(&before),
        );
        assert!(matches!(err, Err(CompareError::MixedLite { lite: 1, .. })));
        let err = compare(&inputs(&[lite]), &inputs(&before)).unwrap_err();
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn the_terminal_line_fits_100_columns_and_csv_has_a_row_per_figure() {
        let (before, after) = sides();
        let c = compare(&inputs(&before), &inputs(&after)).unwrap();
        for r in &c.rows {
            let line = table_line(
                &format!("{} {}", r.subject, r.metric),
                &r.before.map_or("-".into(), |s| s.display(r.unit)),
                &r.after.map_or("-".into(), |s| s.display(r.unit)),
                &r.change(),
            );
            assert!(line.chars().count() <= 100, "{line}");
        }
        let csv = c.csv();
        assert_eq!(csv.lines().count(), c.rows.len() + 1);
        assert!(csv.lines().nth(1).unwrap().split(',').count() >= 15);
    }
}
