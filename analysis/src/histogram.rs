//! User-space view of the probes' log-linear histograms (layout in `netpoll_ebpf::histogram`).

use std::fmt;

use netpoll_ebpf::histogram::{bucket_high, bucket_index, bucket_low};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeSeq};

/// Counts per bucket of the shared log-linear layout; dense, as read from the kernel.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Histogram {
    counts: Vec<u64>,
}

/// A quantile known to bucket precision: the true value lies in `low..=high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantile {
    pub low: u64,
    pub high: u64,
}

impl Quantile {
    /// Midpoint of the bucket: off from the true value by at most half a bucket (1.6 %).
    pub fn estimate(&self) -> u64 {
        self.low + (self.high - self.low) / 2
    }
}

impl Histogram {
    /// An empty histogram with `buckets` buckets of the shared layout.
    pub fn new(buckets: usize) -> Self {
        Self {
            counts: vec![0; buckets],
        }
    }

    /// Wraps bucket counts as read from a BPF map.
    pub fn from_counts(counts: &[u64]) -> Self {
        Self {
            counts: counts.to_vec(),
        }
    }

    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    pub fn record_n(&mut self, value: u64, n: u64) {
        let i = bucket_index(value).min(self.counts.len().saturating_sub(1));
        if let Some(c) = self.counts.get_mut(i) {
            *c += n;
        }
    }

    /// Adds `other`'s counts (per-CPU copies, processes, runs).
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Counts in `self` not in `earlier` (interval views of cumulative histograms).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
            .collect();
        Histogram { counts }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The sum of the values, each counted at its bucket's middle (a bucket is at most 3.1 %
    /// wide).
    pub fn sum(&self) -> f64 {
        self.buckets()
            .map(|(lo, hi, n)| (lo as f64 + hi as f64) / 2.0 * n as f64)
            .sum()
    }

    /// The mean, as [`Histogram::sum`] counts; 0 when empty.
    pub fn mean(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            n => self.sum() / n as f64,
        }
    }

    /// The standard deviation of the values, each at its bucket's middle; 0 when empty.
    pub fn std_dev(&self) -> f64 {
        let (n, mean) = (self.total(), self.mean());
        if n == 0 {
            return 0.0;
        }
        let squares: f64 = self
            .buckets()
            .map(|(lo, hi, c)| ((lo as f64 + hi as f64) / 2.0 - mean).powi(2) * c as f64)
            .sum();
        (squares / n as f64).sqrt()
    }

    /// Non-empty buckets as `(low, high, count)`, ascending; `high` is inclusive.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (bucket_low(i), bucket_high(i), *c))
    }

    /// The `q`-quantile (0 <= q <= 1): the bucket holding the value of rank ceil(q * total).
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        self.at_rank(((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1))
    }

    /// The bucket holding the value of `rank` (1 = the smallest value); none beyond the total.
    pub fn at_rank(&self, rank: u64) -> Option<Quantile> {
        let mut seen = 0;
        for (low, high, count) in self.buckets() {
            seen += count;
            if seen >= rank {
                return Some(Quantile { low, high });
            }
        }
        None
    }

    /// The value of `rank` interpolated inside its bucket, as if the bucket's values were
    /// spread evenly over it: scaling every value by a power of two scales this exactly.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0;
        for (low, high, count) in self.buckets() {
            if seen + count >= rank {
                let within = (rank.saturating_sub(seen) as f64 - 0.5) / count as f64;
                return Some(low as f64 + within * (high + 1 - low) as f64);
            }
            seen += count;
        }
        None
    }

    pub fn min(&self) -> Option<Quantile> {
        self.buckets()
            .next()
            .map(|(low, high, _)| Quantile { low, high })
    }

    pub fn max(&self) -> Option<Quantile> {
        self.buckets()
            .last()
            .map(|(low, high, _)| Quantile { low, high })
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.buckets()).finish()
    }
}

/// On disk: the non-empty buckets as `[low, high, count]` triples (see docs/results-format.md).
impl Serialize for Histogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for bucket in self.buckets() {
            seq.serialize_element(&[bucket.0, bucket.1, bucket.2])?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Histogram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let triples = Vec::<[u64; 3]>::deserialize(d)?;
        let mut hist = Histogram::default();
        for [low, high, count] in triples {
            let i = bucket_index(low);
            if bucket_low(i) != low || bucket_high(i) != high {
                return Err(D::Error::custom(format!(
                    "bucket [{low}, {high}] is not a bucket of netpoll's histogram layout"
                )));
            }
            if hist.counts.len() <= i {
                hist.counts.resize(i + 1, 0);
            }
            hist.counts[i] += count;
        }
        Ok(hist)
    }
}

#[cfg(test)]
mod tests {
    use netpoll_ebpf::histogram::LATENCY_BUCKETS;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn brute_force_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_bracket_the_brute_force_answer() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..50 {
            let n = rng.random_range(1..5000);
            let mut values: Vec<u64> = (0..n)
                .map(|_| {
                    // Log-uniform from 1 ns to ~100 s, like real latencies.
                    let exp = rng.random_range(0.0..37.0f64);
                    2f64.powf(exp) as u64
                })
                .collect();
            let mut hist = Histogram::new(LATENCY_BUCKETS);
            values.iter().for_each(|&v| hist.record(v));
            values.sort_unstable();
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let exact = brute_force_quantile(&values, q);
                let got = hist.quantile(q).expect("non-empty");
                assert!(
                    got.low <= exact && exact <= got.high,
                    "round {round} q={q}: {exact} not in {got:?}"
                );
                let err = (got.estimate() as f64 - exact as f64).abs() / exact.max(1) as f64;
                assert!(
                    err <= 1.0 / 32.0,
                    "estimate {} too far from {exact}",
                    got.estimate()
                );
            }
        }
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut rng = StdRng::seed_from_u64(11);
        let (mut a, mut b, mut all) = (
            Histogram::new(LATENCY_BUCKETS),
            Histogram::new(LATENCY_BUCKETS),
            Histogram::new(LATENCY_BUCKETS),
        );
        for i in 0..10_000 {
            let v = rng.random_range(0..1_000_000_000u64);
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(all.since(&b).total(), all.total() - b.total());
    }

    #[test]
    fn empty_histogram_has_no_quantiles() {
        let h = Histogram::new(LATENCY_BUCKETS);
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.max(), None);
    }

    #[test]
    fn json_round_trip_is_sparse_and_exact() {
        let mut h = Histogram::new(LATENCY_BUCKETS);
        for v in [0, 1, 63, 64, 1_000_000, u64::MAX] {
            h.record_n(v, v % 7 + 1);
        }
        let json = serde_json::to_string(&h).expect("serialize");
        assert!(json.starts_with("[[0,0,1],[1,1,2]"), "{json}");
        let back: Histogram = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(
            back.buckets().collect::<Vec<_>>(),
            h.buckets().collect::<Vec<_>>()
        );
        assert!(serde_json::from_str::<Histogram>("[[65,70,1]]").is_err());
    }
}
