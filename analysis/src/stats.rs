//! Statistics for contrasts on a noisy machine: the median of repeated runs with a 95 %
//! confidence interval, and the interval of the ratio of two configurations' medians, both by
//! bootstrap resampling with a fixed seed (so that a report is the same every time it is drawn).
//!
//! A contrast is a [`Ratio`]: "A is 2.9x B (2.6-3.3x)". It is a finding only when its interval
//! excludes 1 ([`Ratio::verdict`]); otherwise the difference is within the noise.

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Confidence level of every interval.
pub const LEVEL: f64 = 0.95;
/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 4000;
/// The seed of every resampling: reports are reproducible.
pub const SEED: u64 = 0x6e65_7470_6f6c_6c21;

/// The median of repeated measurements, and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub median: f64,
    /// 95 % interval: bootstrap with 3 or more samples, else the range of the samples (or
    /// none for one sample).
    pub interval: Option<(f64, f64)>,
    pub samples: usize,
}

impl Estimate {
    /// `median (low-high)`, each figure written by `fmt`.
    pub fn display(&self, fmt: impl Fn(f64) -> String) -> String {
        match self.interval {
            Some((low, high)) if self.samples > 1 => {
                format!("{} ({}-{})", fmt(self.median), fmt(low), fmt(high))
            }
            _ => fmt(self.median),
        }
    }

    /// Whether the interval is a bootstrap one (3 or more samples) rather than a min-max range.
    pub fn is_bootstrap(&self) -> bool {
        self.samples >= 3
    }
}

/// The middle value (the mean of the middle two for an even count); NaN for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Percentile of sorted values, linearly interpolated.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A bootstrap resample's median, in `buf` (no allocation per resample).
fn resampled_median(xs: &[f64], rng: &mut StdRng, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..xs.len()).map(|_| xs[rng.random_range(0..xs.len())]));
    buf.sort_unstable_by(f64::total_cmp);
    let n = buf.len();
    if n % 2 == 1 {
        buf[n / 2]
    } else {
        (buf[n / 2 - 1] + buf[n / 2]) / 2.0
    }
}

/// The (LEVEL) percentile interval of bootstrap replicates.
fn interval_of(mut replicates: Vec<f64>) -> (f64, f64) {
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    (
        percentile(&replicates, tail),
        percentile(&replicates, 1.0 - tail),
    )
}

fn finite(xs: &[f64]) -> Vec<f64> {
    xs.iter().copied().filter(|x| x.is_finite()).collect()
}

/// The median of `xs` with its interval.
pub fn estimate(xs: &[f64]) -> Estimate {
    let xs = finite(xs);
    let m = median(&xs);
    let interval = match xs.len() {
        0 | 1 => None,
        2 => Some((xs[0].min(xs[1]), xs[0].max(xs[1]))),
        _ => {
            let mut rng = StdRng::seed_from_u64(SEED);
            let mut buf = Vec::with_capacity(xs.len());
            let replicates = (0..RESAMPLES)
                .map(|_| resampled_median(&xs, &mut rng, &mut buf))
                .collect();
            Some(interval_of(replicates))
        }
    };
    Estimate {
        median: m,
        interval,
        samples: xs.len(),
    }
}

/// The ratio of two configurations' medians, `a / b`, with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub ratio: f64,
    /// Bootstrap interval (each side resampled on its own); none without 2 samples a side.
    pub interval: Option<(f64, f64)>,
}

/// What a ratio says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The interval lies above 1: a is larger.
    Larger,
    /// The interval lies below 1: a is smaller.
    Smaller,
    /// The interval includes 1: the difference is within the noise.
    WithinNoise,
    /// Too few samples for an interval: a single run says nothing about noise.
    Unknown,
}

impl Ratio {
    pub fn verdict(&self) -> Verdict {
        match self.interval {
            Some((low, _)) if low > 1.0 => Verdict::Larger,
            Some((_, high)) if high < 1.0 => Verdict::Smaller,
            Some(_) => Verdict::WithinNoise,
            None => Verdict::Unknown,
        }
    }

    /// `2.9x (2.6-3.3x)`.
    pub fn display(&self) -> String {
        let x = |v: f64| {
            if v >= 10.0 {
                format!("{v:.0}x")
            } else {
                format!("{v:.2}x")
            }
        };
        match self.interval {
            Some((low, high)) => format!(
                "{} ({}-{})",
                x(self.ratio),
                x(low).trim_end_matches('x'),
                x(high)
            ),
            None => x(self.ratio),
        }
    }
}

/// `median(a) / median(b)` with a bootstrap interval: both sides resampled independently.
/// Medians of zero on both sides are a ratio of 1 (nothing against nothing); resamples whose
/// ratio is not finite are left out.
pub fn ratio(a: &[f64], b: &[f64]) -> Ratio {
    let (a, b) = (finite(a), finite(b));
    let (a, b) = (a.as_slice(), b.as_slice());
    if a.iter().chain(b).all(|x| *x == 0.0) {
        return Ratio {
            ratio: 1.0,
            interval: (a.len() >= 2 && b.len() >= 2).then_some((1.0, 1.0)),
        };
    }
    let r = median(a) / median(b);
    if a.len() < 2 || b.len() < 2 {
        return Ratio {
            ratio: r,
            interval: None,
        };
    }
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    let replicates: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            resampled_median(a, &mut rng, &mut buf_a) / resampled_median(b, &mut rng, &mut buf_b)
        })
        .filter(|r| r.is_finite())
        .collect();
    Ratio {
        ratio: r,
        interval: (!replicates.is_empty()).then(|| interval_of(replicates)),
    }
}

/// Whether `a` is larger or smaller than `b`, beyond the noise: the ratio's verdict, taken the
/// other way round when `b`'s median is zero (then `a / b` has no finite interval).
pub fn compare(a: &[f64], b: &[f64]) -> Verdict {
    if median(b) != 0.0 {
        return ratio(a, b).verdict();
    }
    match ratio(b, a).verdict() {
        Verdict::Larger => Verdict::Smaller,
        Verdict::Smaller => Verdict::Larger,
        other => other,
    }
}

/// A least-squares slope (`y` per unit of `x`) with its 95 % interval: the runs of a sweep
/// (each a point) resampled with replacement (the pairs bootstrap, which assumes nothing about
/// the noise at each `x`). "One more connection costs 4.1 KiB (3.9-4.4)".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slope {
    pub slope: f64,
    pub intercept: f64,
    /// None with fewer than 3 points or fewer than 2 distinct `x`.
    pub interval: Option<(f64, f64)>,
    pub points: usize,
}

/// The ordinary least-squares line through the points; None without two distinct `x`.
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| {
        let slope = sxy / sxx;
        (slope, mean_y - slope * mean_x)
    })
}

/// The slope of `y` against `x` over the points (finite ones only), with a bootstrap interval.
pub fn slope(points: &[(f64, f64)]) -> Option<Slope> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (slope, intercept) = least_squares(&points)?;
    let interval = (points.len() >= 3).then(|| {
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut sample = Vec::with_capacity(points.len());
        let replicates: Vec<f64> = (0..RESAMPLES)
            .filter_map(|_| {
                sample.clear();
                sample.extend((0..points.len()).map(|_| points[rng.random_range(0..points.len())]));
                // A resample with a single x has no slope: left out.
                least_squares(&sample).map(|(s, _)| s)
            })
            .collect();
        interval_of(replicates)
    });
    Some(Slope {
        slope,
        intercept,
        interval,
        points: points.len(),
    })
}

/// How many of the n x m pairwise differences between two samples to leave out at each end for
/// an exact 95 % interval of the shift between them: the Mann-Whitney U test inverted (the
/// interval excludes 0 exactly when the test rejects "no shift" at 5 %), distribution-free, so
/// right with 4 or 5 repeats where a bootstrap's interval is too narrow. `None` when the samples
/// are too small for one (3 or fewer on a side).
pub fn rank_cut(n: usize, m: usize) -> Option<usize> {
    let tail = (1.0 - LEVEL) / 2.0;
    if n == 0 || m == 0 {
        return None;
    }
    if n * m > 2500 {
        return rank_cut_normal(n, m);
    }
    // counts[j][u]: arrangements of i values of one sample and j of the other with U = u, built
    // up over i (the i-th value placed last is above all j others: U grows by j).
    let mut counts: Vec<Vec<f64>> = (0..=m).map(|_| vec![1.0]).collect();
    for i in 1..=n {
        let mut next: Vec<Vec<f64>> = vec![vec![1.0]];
        for j in 1..=m {
            let mut row = vec![0.0; i * j + 1];
            for (u, c) in counts[j].iter().enumerate() {
                row[u + j] += c;
            }
            for (u, c) in next[j - 1].iter().enumerate() {
                row[u] += c;
            }
            next.push(row);
        }
        counts = next;
    }
    let all: f64 = counts[m].iter().sum();
    let mut below = 0.0;
    let mut cut = None;
    for (u, c) in counts[m].iter().enumerate() {
        below += c;
        if below / all > tail {
            break;
        }
        cut = Some(u);
    }
    cut
}

/// [`rank_cut`] for large samples, where U is close to normal.
fn rank_cut_normal(n: usize, m: usize) -> Option<usize> {
    let nm = (n * m) as f64;
    let sd = (nm * (n + m + 1) as f64 / 12.0).sqrt();
    let u = (nm / 2.0 - 1.959_964 * sd - 0.5).floor();
    (u >= 0.0).then_some(u as usize)
}

/// `median(a) / median(b)` with the exact rank interval of the ratio ([`rank_cut`]) over the
/// pairwise ratios `a_i / b_j`; none when the samples are too small for one. With zeros, whose
/// ratios have no logarithm, the interval is that of the differences and says only the
/// direction: it is returned as (1, 1) when it contains 0, else as the ratio of medians.
pub fn rank_ratio(a: &[f64], b: &[f64]) -> Ratio {
    let (a, b) = (finite(a), finite(b));
    let r = median(&a) / median(&b);
    let Some(cut) = rank_cut(a.len(), b.len()) else {
        return Ratio {
            ratio: r,
            interval: None,
        };
    };
    let positive = a.iter().chain(&b).all(|x| *x > 0.0);
    let mut d: Vec<f64> = a
        .iter()
        .flat_map(|x| {
            b.iter()
                .map(move |y| if positive { (x / y).ln() } else { x - y })
        })
        .collect();
    d.sort_by(f64::total_cmp);
    let (low, high) = (d[cut], d[d.len() - 1 - cut]);
    let interval = if positive {
        (low.exp(), high.exp())
    } else if low > 0.0 || high < 0.0 {
        // A direction without a ratio: the interval is degenerate at the point estimate (or
        // infinite above it when b's median is zero).
        (r, r)
    } else {
        (1.0, 1.0)
    };
    Ratio {
        ratio: r,
        interval: Some(interval),
    }
}

/// The smallest ratio between two configurations that `repeats` runs of each would tell apart
/// from noise, judged from runs of one configuration against itself (an A/A calibration): pairs
/// of groups of `repeats` are drawn from `samples`, and half the spread of their ratio interval
/// (in log terms) is what a real difference must exceed. `1.12` means 12 %.
pub fn detectable_ratio(samples: &[f64], repeats: usize) -> Option<f64> {
    let samples = finite(samples);
    if samples.len() < 2 || repeats < 2 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xaa);
    let draw = |rng: &mut StdRng| -> Vec<f64> {
        (0..repeats)
            .map(|_| samples[rng.random_range(0..samples.len())])
            .collect()
    };
    let spreads: Vec<f64> = (0..200)
        .filter_map(|_| {
            let (a, b) = (draw(&mut rng), draw(&mut rng));
            let (low, high) = ratio(&a, &b).interval?;
            (low > 0.0).then(|| (high / low).sqrt())
        })
        .collect();
    (!spreads.is_empty()).then(|| median(&spreads))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_slope_is_found_with_an_interval_around_it() {
        // y = 4096 x + 1 MiB, with noise of a few KiB that does not grow with x.
        let noise = [3e3, -2e3, 1e3, -4e3, 2e3, 0.0, -1e3, 3e3];
        let points: Vec<(f64, f64)> = [0.0, 1000.0, 5000.0, 19000.0]
            .iter()
            .flat_map(|&x| [x, x])
            .zip(noise)
            .map(|(x, e)| (x, 4096.0 * x + 1048576.0 + e))
            .collect();
        let s = super::slope(&points).expect("slope");
        assert!((s.slope - 4096.0).abs() < 1.0, "{s:?}");
        let (low, high) = s.interval.expect("interval");
        assert!(
            low <= s.slope && s.slope <= high && high - low < 2.0,
            "{s:?}"
        );
        assert!((s.intercept - 1048576.0).abs() < 5e3, "{s:?}");
        // One x only: no slope.
        assert!(super::slope(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
        assert!(
            super::slope(&[(0.0, 0.0), (1.0, 2.0)])
                .unwrap()
                .interval
                .is_none()
        );
    }

    use rand_distr_free::log_normal;

    use super::*;

    /// Log-normal samples without another crate: exp(mu + sigma * z), z by Box-Muller.
    mod rand_distr_free {
        use rand::{Rng, rngs::StdRng};

        pub fn log_normal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
            let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            median * (sigma * z).exp()
        }
    }

    fn samples(rng: &mut StdRng, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n).map(|_| log_normal(rng, median, sigma)).collect()
    }

    #[test]
    fn medians_are_the_middle_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let one = estimate(&[7.0]);
        assert_eq!((one.median, one.interval), (7.0, None));
        assert_eq!(estimate(&[2.0, 1.0]).interval, Some((1.0, 2.0)));
        assert_eq!(
            estimate(&[5.0, 1.0, 3.0]).display(|v| format!("{v:.0}")),
            "3 (1-5)"
        );
    }

    /// Over many data sets drawn from a known distribution (±15 % noise, as measured on this
    /// machine kind), the intervals cover the true median, and the true ratio, at about the
    /// nominal 95 %, with the suite's 5 repeats.
    #[test]
    fn intervals_cover_the_truth_at_about_the_nominal_rate() {
        let mut rng = StdRng::seed_from_u64(1);
        let trials = 400;
        let (mut median_covered, mut ratio_covered) = (0, 0);
        for _ in 0..trials {
            let a = samples(&mut rng, 5, 3000.0, 0.15);
            let b = samples(&mut rng, 5, 1000.0, 0.15);
            let (low, high) = estimate(&a).interval.expect("5 samples");
            median_covered += usize::from(low <= 3000.0 && 3000.0 <= high);
            let (low, high) = ratio(&a, &b).interval.expect("5 samples a side");
            ratio_covered += usize::from(low <= 3.0 && 3.0 <= high);
        }
        let rate = |n: usize| n as f64 / trials as f64;
        assert!(
            (0.90..=0.99).contains(&rate(median_covered)),
            "median intervals covered the truth {:.3} of the time",
            rate(median_covered)
        );
        assert!(
            (0.92..=0.995).contains(&rate(ratio_covered)),
            "ratio intervals covered the truth {:.3} of the time",
            rate(ratio_covered)
        );
    }

    #[test]
    fn rank_cuts_are_the_exact_mann_whitney_ones() {
        // Published critical values of U (two-sided 5 %): none below 4 a side, 0 for 4 and 4,
        // 2 for 5 and 5, 5 for 6 and 6, 23 for 10 and 10.
        assert_eq!(rank_cut(3, 3), None);
        assert_eq!(rank_cut(4, 4), Some(0));
        assert_eq!(rank_cut(5, 5), Some(2));
        assert_eq!(rank_cut(6, 6), Some(5));
        assert_eq!(rank_cut(10, 10), Some(23));
        assert_eq!(rank_cut(3, 5), Some(0));
        // The normal approximation, used above 2500 pairs, is close to exact where both run.
        let (exact, normal) = (rank_cut(50, 50).unwrap(), rank_cut_normal(50, 50).unwrap());
        assert!(exact.abs_diff(normal) <= 2, "{exact} {normal}");
    }

    /// The rank interval claims a difference between two samples of one distribution at most
    /// 5 % of the time, also for 4 or 5 repeats of a bimodal figure (where the bootstrap claims
    /// more: the figure printed is what docs/compare.md cites).
    #[test]
    fn rank_intervals_hold_their_level_with_few_repeats() {
        let mut rng = StdRng::seed_from_u64(5);
        let trials = 2000;
        for n in [4, 5] {
            let (mut rank_claims, mut bootstrap_claims) = (0, 0);
            for _ in 0..trials {
                let draw = |rng: &mut StdRng| -> Vec<f64> {
                    (0..n)
                        .map(|_| {
                            let mode = if rng.random_bool(0.5) { 0.25 } else { 0.5 };
                            log_normal(rng, mode, 0.1)
                        })
                        .collect()
                };
                let (a, b) = (draw(&mut rng), draw(&mut rng));
                rank_claims += usize::from(rank_ratio(&a, &b).verdict() != Verdict::WithinNoise);
                bootstrap_claims += usize::from(ratio(&a, &b).verdict() != Verdict::WithinNoise);
            }
            let rate = |c: usize| c as f64 / trials as f64;
            println!(
                "{n} a side, A/A: rank interval claims {:.3}, bootstrap {:.3}",
                rate(rank_claims),
                rate(bootstrap_claims)
            );
            assert!(rate(rank_claims) <= 0.06, "{}", rate(rank_claims));
        }
        // And a real 3x shift is found with 4 a side.
        let a = samples(&mut rng, 4, 3000.0, 0.1);
        let b = samples(&mut rng, 4, 1000.0, 0.1);
        let r = rank_ratio(&a, &b);
        assert_eq!(r.verdict(), Verdict::Larger, "{r:?}");
        assert!(r.interval.unwrap().0 > 2.0, "{r:?}");
        assert_eq!(
            rank_ratio(&[0.0; 4], &[0.0; 4]).verdict(),
            Verdict::WithinNoise
        );
        assert_eq!(
            rank_ratio(&[1.0, 2.0, 1.5, 1.2], &[0.0; 4]).verdict(),
            Verdict::Larger
        );
    }

    #[test]
    fn identical_inputs_are_within_noise_and_a_3x_effect_is_found() {
        let mut rng = StdRng::seed_from_u64(2);
        let a = samples(&mut rng, 5, 1000.0, 0.2);
        assert_eq!(ratio(&a, &a).verdict(), Verdict::WithinNoise);
        let b = samples(&mut rng, 5, 1000.0, 0.2);
        assert_eq!(ratio(&a, &b).verdict(), Verdict::WithinNoise);
        let big = samples(&mut rng, 5, 3000.0, 0.2);
        let r = ratio(&big, &a);
        assert_eq!(r.verdict(), Verdict::Larger, "{r:?}");
        assert!((2.0..4.5).contains(&r.ratio), "{r:?}");
        assert_eq!(ratio(&a, &big).verdict(), Verdict::Smaller);
        assert_eq!(ratio(&[1.0], &[2.0]).verdict(), Verdict::Unknown);
    }

    #[test]
    fn zeros_compare_sensibly() {
        let zeros = [0.0; 5];
        assert_eq!(ratio(&zeros, &zeros).verdict(), Verdict::WithinNoise);
        let some = [1.0, 1.1, 0.9, 1.0, 1.05];
        assert_eq!(ratio(&some, &zeros).verdict(), Verdict::Unknown);
        assert_eq!(ratio(&zeros, &some).verdict(), Verdict::Smaller);
        assert_eq!(compare(&some, &zeros), Verdict::Larger);
        assert_eq!(compare(&zeros, &zeros), Verdict::WithinNoise);
    }

    #[test]
    fn reports_are_reproducible() {
        let mut rng = StdRng::seed_from_u64(3);
        let (a, b) = (
            samples(&mut rng, 6, 10.0, 0.3),
            samples(&mut rng, 6, 12.0, 0.3),
        );
        assert_eq!(ratio(&a, &b), ratio(&a, &b));
        assert_eq!(estimate(&a), estimate(&a));
    }

    #[test]
    fn the_detectable_difference_grows_with_noise_and_shrinks_with_repeats() {
        let mut rng = StdRng::seed_from_u64(4);
        let quiet = samples(&mut rng, 12, 1000.0, 0.05);
        let noisy = samples(&mut rng, 12, 1000.0, 0.25);
        let d = |s: &[f64], n| detectable_ratio(s, n).expect("enough samples");
        assert!(
            d(&quiet, 5) < d(&noisy, 5),
            "{} {}",
            d(&quiet, 5),
            d(&noisy, 5)
        );
        assert!(
            d(&noisy, 10) < d(&noisy, 3),
            "{} {}",
            d(&noisy, 10),
            d(&noisy, 3)
        );
        assert!(d(&quiet, 5) > 1.0 && d(&quiet, 5) < 1.15);
        assert_eq!(detectable_ratio(&[1.0], 5), None);
    }
}
