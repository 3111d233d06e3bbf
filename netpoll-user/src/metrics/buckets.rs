//! From netpoll's log-linear buckets (nanoseconds, 32 per power of two, at most 3.1 % wide) to
//! Prometheus histograms in seconds.
//!
//! Classic buckets: 4 per power of two, at 2^p * (1, 1.25, 1.5, 1.75) ns, from 128 ns to 2^36 ns
//! (about 69 s), then +Inf. Each is a boundary of netpoll's own buckets (j/4 = 8j/32), so the
//! cumulative counts are exact: no call is put in the wrong bucket (a call of exactly the bound
//! is counted above it: netpoll's bucket starting there cannot tell it from larger ones).
//!
//! Native buckets: schema 5 (32 per power of two, each 2^(1/32) = 2.2 % wider than the last).
//! Their boundaries (powers of 2^(1/32) seconds) do not meet netpoll's (linear within a power of
//! two of nanoseconds), so each netpoll bucket's count goes to the native bucket holding its
//! midpoint: a quantile computed from them is off by at most half a netpoll bucket (1.6 %) plus
//! one native bucket (2.2 %).

use analysis::Histogram;

use super::model::{self, BucketSpan};

/// Native histogram schema: 2^5 buckets per power of two.
pub const SCHEMA: i32 = 5;
/// Width of the native zero bucket, the client libraries' default (2^-128).
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Classic bucket boundaries of latency histograms, nanoseconds.
pub fn latency_bounds_ns() -> Vec<u64> {
    (7..36)
        .flat_map(|p| (4..8).map(move |q| q << (p - 2)))
        .chain(std::iter::once(1 << 36))
        .collect()
}

/// Classic bucket boundaries of ready-event histograms: 0, 1, 2, 4 ... 8192.
pub fn ready_bounds() -> Vec<u64> {
    std::iter::once(0).chain((0..14).map(|p| 1 << p)).collect()
}

/// A histogram in Prometheus' terms: `per_unit` converts netpoll's unit (1e9: ns to seconds;
/// 1: counts as they are), `bounds` are the classic upper bounds in netpoll's unit, `sum` is the
/// exact sum in netpoll's unit when known (else the buckets' midpoints are summed).
pub fn histogram(
    h: &Histogram,
    bounds: &[u64],
    per_unit: f64,
    sum: Option<u64>,
) -> model::Histogram {
    let mut classic = Vec::with_capacity(bounds.len());
    let mut buckets = h.buckets().peekable();
    let mut cumulative = 0;
    for &bound in bounds {
        // Buckets lie wholly below or above each bound (bounds are bucket boundaries).
        while let Some(&(_, high, count)) = buckets.peek()
            && high <= bound
        {
            cumulative += count;
            buckets.next();
        }
        classic.push(model::Bucket {
            cumulative_count: cumulative,
            // Divided, not multiplied by 1e-9: 192e-9 then prints as 0.000000192.
            upper_bound: bound as f64 / per_unit,
        });
    }
    let total = h.total();
    let estimated_sum: f64 = h
        .buckets()
        .map(|(low, high, count)| (low as f64 + high as f64) / 2.0 * count as f64)
        .sum();
    let mut out = model::Histogram {
        sample_count: total,
        sample_sum: sum.map_or(estimated_sum, |s| s as f64) / per_unit,
        bucket: classic,
        schema: SCHEMA,
        zero_threshold: ZERO_THRESHOLD,
        ..model::Histogram::default()
    };
    native(h, per_unit, &mut out);
    out
}

/// Index of the schema-5 native bucket that holds `value` (> 0): ceil(log2(value) * 32).
pub fn native_index(value: f64) -> i32 {
    (value.log2() * f64::from(1 << SCHEMA)).ceil() as i32
}

/// Fills the native buckets: spans of consecutive indices, counts as deltas.
fn native(h: &Histogram, per_unit: f64, out: &mut model::Histogram) {
    let mut counts: Vec<(i32, u64)> = Vec::new();
    for (low, high, count) in h.buckets() {
        if high == 0 {
            out.zero_count += count;
            continue;
        }
        let mid = (low as f64 + high as f64) / 2.0 / per_unit;
        let index = native_index(mid);
        match counts.last_mut() {
            Some((i, c)) if *i == index => *c += count,
            _ => counts.push((index, count)),
        }
    }
    let (mut previous_index, mut previous_count) = (None::<i32>, 0i64);
    for (index, count) in counts {
        match previous_index {
            Some(p) if index == p + 1 => {
                if let Some(span) = out.positive_span.last_mut() {
                    span.length += 1;
                }
            }
            Some(p) => out.positive_span.push(BucketSpan {
                offset: index - p - 1,
                length: 1,
            }),
            None => out.positive_span.push(BucketSpan {
                offset: index,
                length: 1,
            }),
        }
        out.positive_delta.push(count as i64 - previous_count);
        (previous_index, previous_count) = (Some(index), count as i64);
    }
    if out.positive_span.is_empty() {
        // A native histogram without observations: a no-op span says it is one.
        out.positive_span.push(BucketSpan {
            offset: 0,
            length: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use netpoll_ebpf::histogram::{LATENCY_BUCKETS, bucket_high, bucket_index, bucket_low};

    use super::*;

    #[test]
    fn classic_bounds_are_netpoll_bucket_boundaries() {
        let bounds = latency_bounds_ns();
        assert_eq!(bounds[0], 128);
        assert_eq!(bounds[1], 160);
        assert_eq!(*bounds.last().unwrap(), 1 << 36);
        assert_eq!(bounds.len(), 29 * 4 + 1);
        for b in bounds {
            // A netpoll bucket starts at the bound: none straddles it.
            assert_eq!(bucket_low(bucket_index(b)), b, "{b}");
            assert_eq!(bucket_high(bucket_index(b) - 1), b - 1, "{b}");
        }
    }

    #[test]
    fn classic_counts_are_exact_and_cumulative() {
        let mut h = Histogram::new(LATENCY_BUCKETS);
        h.record_n(100, 3); // below the first bound
        h.record_n(1_000_000, 5); // 1 ms
        h.record_n(10_000_000_000, 2); // 10 s
        let p = histogram(&h, &latency_bounds_ns(), 1e9, Some(20_003_000_300));
        assert_eq!(p.sample_count, 10);
        assert!((p.sample_sum - 20.0030003).abs() < 1e-9);
        let at = |le: f64| {
            p.bucket
                .iter()
                .find(|b| (b.upper_bound - le).abs() < le * 1e-9)
                .unwrap_or_else(|| panic!("no bucket {le}"))
                .cumulative_count
        };
        assert_eq!(at(128e-9), 3);
        // 1 ms lies between 917504 ns and 1048576 ns: counted at and after the latter.
        assert_eq!(at(917_504e-9), 3);
        assert_eq!(at(1_048_576e-9), 8);
        assert_eq!(p.bucket.last().unwrap().cumulative_count, 10);
    }

    #[test]
    fn native_buckets_hold_the_values_within_the_stated_error() {
        let mut h = Histogram::new(LATENCY_BUCKETS);
        for v in [1_000u64, 1_500, 10_000_000, 10_200_000] {
            h.record(v);
        }
        let p = histogram(&h, &latency_bounds_ns(), 1e9, None);
        // Decode spans and deltas back into (index, count).
        let mut decoded = Vec::new();
        let (mut index, mut count, mut deltas) = (0i32, 0i64, p.positive_delta.iter());
        for (n, span) in p.positive_span.iter().enumerate() {
            index += span.offset + if n == 0 { 0 } else { 1 };
            for k in 0..span.length {
                if k > 0 {
                    index += 1;
                }
                count += deltas.next().expect("a delta per bucket");
                decoded.push((index, count));
            }
        }
        assert_eq!(decoded.iter().map(|d| d.1).sum::<i64>(), 4);
        let base = 2f64.powf(1.0 / 32.0);
        for v in [1e-6, 1.5e-6, 10e-3, 10.2e-3] {
            let (i, _) = decoded
                .iter()
                .find(|(i, _)| {
                    let (lo, hi) = (base.powi(i - 1), base.powi(*i));
                    lo / 1.04 < v && v <= hi * 1.04
                })
                .unwrap_or_else(|| panic!("{v} s in no bucket: {decoded:?}"));
            let upper = base.powi(*i);
            assert!((upper / v - 1.0).abs() < 0.04, "{v} in bucket {i}");
        }
        let empty = histogram(&Histogram::new(8), &ready_bounds(), 1.0, Some(0));
        assert_eq!(
            empty.positive_span,
            [BucketSpan {
                offset: 0,
                length: 0
            }]
        );
    }
}
