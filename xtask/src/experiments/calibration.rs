//! The A/A calibration's verdict: how much identical runs differ on this machine, and so the
//! smallest difference the suite can tell from noise with its repeat count.

use std::path::Path;

use analysis::{
    report,
    stats::{self, Estimate},
};
use anyhow::Result;
use serde::Serialize;

use super::suite::Calibration;

/// The spread of one figure over the calibration's runs.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    /// 95 % interval of the median.
    pub low: f64,
    pub high: f64,
    pub min: f64,
    pub max: f64,
    /// Coefficient of variation (standard deviation / mean).
    pub cv: f64,
    /// The smallest ratio between two configurations that `repeat` runs of each tell apart
    /// from noise (1.10: a 10 % difference).
    pub detectable_ratio: Option<f64>,
}

impl Spread {
    fn of(values: &[f64], repeat: usize) -> Spread {
        let Estimate {
            median, interval, ..
        } = stats::estimate(values);
        let (low, high) = interval.unwrap_or((median, median));
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
            / (values.len().max(2) - 1) as f64;
        Spread {
            median,
            low,
            high,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            cv: var.sqrt() / mean,
            detectable_ratio: stats::detectable_ratio(values, repeat),
        }
    }

    /// `-12 % to +9 % of the median (CV 6.3 %)`.
    fn describe(&self) -> String {
        format!(
            "runs from {:+.0} % to {:+.0} % of the median (CV {:.1} %)",
            (self.min / self.median - 1.0) * 100.0,
            (self.max / self.median - 1.0) * 100.0,
            self.cv * 100.0
        )
    }
}

/// What the calibration found.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseFloor {
    pub model: String,
    pub connections: usize,
    pub runs: usize,
    /// The repeat count of the experiments, which the detectable ratios are for.
    pub repeat: usize,
    pub throughput_rps: Spread,
    pub p99_ns: Spread,
    /// Where the server and the load generator ran.
    pub placement: String,
}

impl NoiseFloor {
    /// From the calibration's results files; None when fewer than 3 runs finished.
    pub fn measure(
        calibration: &Calibration,
        files: &[&Path],
        repeat: usize,
        placement: String,
    ) -> Result<Option<NoiseFloor>> {
        if files.len() < 3 {
            return Ok(None);
        }
        let paths: Vec<_> = files.iter().map(|p| p.to_path_buf()).collect();
        let runs = report::load(&paths)?;
        let figure = |f: fn(&analysis::run::RunInfo) -> f64| -> Vec<f64> {
            runs.iter().filter_map(|r| r.info()).map(f).collect()
        };
        Ok(Some(NoiseFloor {
            model: calibration.model.clone(),
            connections: calibration.connections,
            runs: runs.len(),
            repeat,
            throughput_rps: Spread::of(&figure(|i| i.load.throughput_rps), repeat),
            p99_ns: Spread::of(&figure(|i| i.load.latency_percentiles.p99 as f64), repeat),
            placement,
        }))
    }

    /// The sentence at the top of the suite's report.
    pub fn sentence(&self) -> String {
        let detectable = |s: &Spread| {
            s.detectable_ratio
                .map_or("?".into(), |r| format!("about {:.0} %", (r - 1.0) * 100.0))
        };
        format!(
            "{} c={} ran {} times against itself ({}): throughput {:.0}/s ({:.0}-{:.0}), {}; \
             p99 {} ({}-{}), {}. With {} runs per configuration, the suite tells apart \
             differences in throughput larger than {} and in p99 larger than {}; smaller ones \
             are reported as within noise.",
            self.model,
            self.connections,
            self.runs,
            self.placement,
            self.throughput_rps.median,
            self.throughput_rps.low,
            self.throughput_rps.high,
            self.throughput_rps.describe(),
            report::figures::ns(self.p99_ns.median),
            report::figures::ns(self.p99_ns.low),
            report::figures::ns(self.p99_ns.high),
            self.p99_ns.describe(),
            self.repeat,
            detectable(&self.throughput_rps),
            detectable(&self.p99_ns),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_state_the_noise() {
        let s = Spread::of(&[90.0, 100.0, 110.0, 105.0, 95.0, 100.0], 5);
        assert_eq!(s.median, 100.0);
        assert_eq!((s.min, s.max), (90.0, 110.0));
        assert!((s.cv - 0.0707).abs() < 0.001, "{}", s.cv);
        assert!(
            s.describe().starts_with("runs from -10 % to +10 %"),
            "{}",
            s.describe()
        );
        assert!(s.detectable_ratio.is_some_and(|r| r > 1.0 && r < 1.3));
    }
}
