//! `cargo xtask bench ...`: benchmarks, each run side by side with its baseline in one run,
//! interleaved, reported as medians and ratios.

pub mod hooks;
pub mod load;
pub mod overhead;
pub mod real_server;
mod servers;

use anyhow::Result;

/// Measures every setup once per round, `rounds` times, rotating the order each round so that
/// no setup always runs first or last; `measure(round, setup)` takes one sample. Returns each
/// setup's samples in round order: sample `r` of every setup comes from round `r`, which is
/// what [`paired`] relies on.
pub fn interleaved<T>(
    rounds: usize,
    setups: usize,
    mut measure: impl FnMut(usize, usize) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    let mut samples: Vec<Vec<T>> = (0..setups).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for k in 0..setups {
            let i = (k + round) % setups;
            samples[i].push(measure(round, i)?);
        }
    }
    Ok(samples)
}

/// `figure(sample, baseline)` of each round, the baseline from the same round: pairing the
/// rounds of an [`interleaved`] run cancels the machine's slow drift.
pub fn paired<T>(samples: &[T], baseline: &[T], figure: impl Fn(&T, &T) -> f64) -> Vec<f64> {
    samples
        .iter()
        .zip(baseline)
        .map(|(s, b)| figure(s, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_and_samples_pair_by_round() {
        let mut order = Vec::new();
        let samples = interleaved(3, 2, |round, setup| {
            order.push((round, setup));
            Ok(10 * round + setup)
        })
        .unwrap();
        assert_eq!(order, [(0, 0), (0, 1), (1, 1), (1, 0), (2, 0), (2, 1)]);
        assert_eq!(samples, [vec![0, 10, 20], vec![1, 11, 21]]);
        let added = paired(&samples[1], &samples[0], |s, b| (*s - *b) as f64);
        assert_eq!(added, [1.0, 1.0, 1.0]);
    }
}
