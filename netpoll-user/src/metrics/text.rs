//! The Prometheus text exposition format (version 0.0.4), rendered from the protobuf model: what
//! curl, promtool and any Prometheus-compatible scraper read. (The client crates render their
//! own metric types, not this model; the format is small and `promtool check metrics` verifies
//! it in the tests.) Native histograms have no text form: only their classic buckets appear.

use std::fmt::{self, Write};

use super::model::{LabelPair, MetricFamily, MetricType};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label values escape backslash, double quote and newline.
fn escape_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

/// A float as Prometheus writes it: `+Inf`, `NaN`, else the shortest exact form.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn write_labels(
    out: &mut String,
    labels: &[LabelPair],
    extra: Option<(&str, &str)>,
) -> fmt::Result {
    if labels.is_empty() && extra.is_none() {
        return Ok(());
    }
    out.push('{');
    let pairs = labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .chain(extra);
    for (i, (name, value)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{name}=\"{}\"", escape_value(value))?;
    }
    out.push('}');
    Ok(())
}

pub fn encode(families: &[MetricFamily], out: &mut String) -> fmt::Result {
    for f in families {
        if f.metric.is_empty() {
            continue;
        }
        let kind = match f.kind() {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        };
        writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help))?;
        writeln!(out, "# TYPE {} {kind}", f.name)?;
        for m in &f.metric {
            if let Some(c) = &m.counter {
                out.push_str(&f.name);
                write_labels(out, &m.label, None)?;
                writeln!(out, " {}", number(c.value))?;
            }
            if let Some(g) = &m.gauge {
                out.push_str(&f.name);
                write_labels(out, &m.label, None)?;
                writeln!(out, " {}", number(g.value))?;
            }
            if let Some(h) = &m.histogram {
                for b in &h.bucket {
                    write!(out, "{}_bucket", f.name)?;
                    write_labels(out, &m.label, Some(("le", &number(b.upper_bound))))?;
                    writeln!(out, " {}", b.cumulative_count)?;
                }
                write!(out, "{}_bucket", f.name)?;
                write_labels(out, &m.label, Some(("le", "+Inf")))?;
                writeln!(out, " {}", h.sample_count)?;
                write!(out, "{}_sum", f.name)?;
                write_labels(out, &m.label, None)?;
                writeln!(out, " {}", number(h.sample_sum))?;
                write!(out, "{}_count", f.name)?;
                write_labels(out, &m.label, None)?;
                writeln!(out, " {}", h.sample_count)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{super::model::*, *};

    #[test]
    fn families_render_as_the_text_format() {
        let mut counter =
            MetricFamily::new("x_calls_total".into(), "Calls.\nMore", MetricType::Counter);
        counter.metric.push(Metric {
            label: labels(&[("syscall", "read"), ("comm", "a\"b\\c")]),
            counter: Some(Counter { value: 12.0 }),
            ..Metric::default()
        });
        let mut hist = MetricFamily::new("x_seconds".into(), "Time.", MetricType::Histogram);
        hist.metric.push(Metric {
            label: labels(&[("syscall", "read")]),
            histogram: Some(Histogram {
                sample_count: 5,
                sample_sum: 0.5,
                bucket: vec![Bucket {
                    cumulative_count: 3,
                    upper_bound: 1.28e-7,
                }],
                ..Histogram::default()
            }),
            ..Metric::default()
        });
        let mut out = String::new();
        encode(&[counter, hist], &mut out).expect("encode");
        let expected = "# HELP x_calls_total Calls.\\nMore\n\
            # TYPE x_calls_total counter\n\
            x_calls_total{syscall=\"read\",comm=\"a\\\"b\\\\c\"} 12\n\
            # HELP x_seconds Time.\n\
            # TYPE x_seconds histogram\n\
            x_seconds_bucket{syscall=\"read\",le=\"0.000000128\"} 3\n\
            x_seconds_bucket{syscall=\"read\",le=\"+Inf\"} 5\n\
            x_seconds_sum{syscall=\"read\"} 0.5\n\
            x_seconds_count{syscall=\"read\"} 5\n";
        assert_eq!(out, expected);
    }
}
