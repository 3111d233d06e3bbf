//! Log-linear (HDR-style) bucket layout, computed identically in the kernel and in user space.
//!
//! Values below `2^(GROUPING_POWER + 1)` get one bucket each. Above that, every power of two
//! `[2^p, 2^(p+1))` is cut into `2^GROUPING_POWER` equal buckets, so a bucket is never wider than
//! `1 / 2^GROUPING_POWER` (3.1 %) of the values it holds. Latency histograms cover the whole `u64`
//! range (1 ns to 584 years) in [`LATENCY_BUCKETS`] buckets; the ready-events histogram stops at
//! [`READY_MAX`] and clamps larger values into its last bucket.

/// Sub-buckets per power of two, as a power of two: 2^5 = 32, so relative bucket width <= 3.125 %.
pub const GROUPING_POWER: u32 = 5;

const EXACT_BELOW: u64 = 1 << (GROUPING_POWER + 1);

/// Number of buckets needed to hold every value below `2^max_power` (`max_power` > `GROUPING_POWER`).
pub const fn buckets_for_power(max_power: u32) -> usize {
    // 2^(G+1) exact buckets, then 2^G for each power of two from G+1 to max_power-1.
    ((max_power - GROUPING_POWER + 1) as usize) << GROUPING_POWER
}

/// Buckets of a latency histogram in nanoseconds: the whole u64 range.
pub const LATENCY_BUCKETS: usize = buckets_for_power(64);

/// Buckets of the scheduler view's histograms (on CPU, blocked, run-queue delay): up to 2^36 ns
/// (69 s), so that three of them fit a per-CPU map value; longer values share the last bucket.
pub const SCHED_BUCKETS: usize = buckets_for_power(36);

/// Buckets of the ready-events-per-call histogram: exact to 63, then log-linear up to 8191.
pub const READY_BUCKETS: usize = buckets_for_power(13);

/// Largest ready-event count the ready histogram tells apart; larger counts share the last bucket.
pub const READY_MAX: u64 = (1 << 13) - 1;

/// Floor of log2(v) for v > 0, without loops or `leading_zeros` so the BPF verifier and the BPF
/// backend both accept it.
#[inline(always)]
pub const fn ilog2(mut v: u64) -> u32 {
    let mut r = 0;
    if v >= 1 << 32 {
        v >>= 32;
        r += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        r += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        r += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        r += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        r += 2;
    }
    if v >= 1 << 1 {
        r += 1;
    }
    r
}

/// Index of the bucket that holds `value`.
#[inline(always)]
pub const fn bucket_index(value: u64) -> usize {
    if value < EXACT_BELOW {
        return value as usize;
    }
    let shift = ilog2(value) - GROUPING_POWER;
    ((shift as usize) << GROUPING_POWER) + (value >> shift) as usize
}

/// Smallest value that lands in bucket `index`.
pub const fn bucket_low(index: usize) -> u64 {
    if (index as u64) < EXACT_BELOW {
        return index as u64;
    }
    let shift = (index >> GROUPING_POWER) as u32 - 1;
    let mantissa = (index as u64 & ((1 << GROUPING_POWER) - 1)) | (1 << GROUPING_POWER);
    mantissa << shift
}

/// Largest value that lands in bucket `index` (inclusive).
pub const fn bucket_high(index: usize) -> u64 {
    if (index as u64) < EXACT_BELOW {
        return index as u64;
    }
    let shift = (index >> GROUPING_POWER) as u32 - 1;
    bucket_low(index) + ((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ilog2_matches_std() {
        for v in (1..5000u64).chain([u64::MAX, 1 << 63, (1 << 40) + 3]) {
            assert_eq!(ilog2(v), v.ilog2(), "v={v}");
        }
    }

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        assert_eq!(bucket_low(0), 0);
        for i in 1..LATENCY_BUCKETS {
            assert_eq!(
                bucket_low(i),
                bucket_high(i - 1) + 1,
                "gap before bucket {i}"
            );
        }
        assert_eq!(bucket_high(LATENCY_BUCKETS - 1), u64::MAX);
        assert_eq!(bucket_index(u64::MAX), LATENCY_BUCKETS - 1);
        assert_eq!(LATENCY_BUCKETS, 1920);
    }

    #[test]
    fn every_value_lands_between_its_bucket_bounds() {
        let mut v = 1u64;
        while v < u64::MAX / 2 {
            for x in [v - 1, v, v + 1, v + v / 3] {
                let i = bucket_index(x);
                assert!(i < LATENCY_BUCKETS, "x={x} i={i}");
                assert!(bucket_low(i) <= x && x <= bucket_high(i), "x={x} i={i}");
            }
            v += v / 4 + 1;
        }
    }

    #[test]
    fn relative_width_is_at_most_one_in_thirty_two() {
        for i in EXACT_BELOW as usize..LATENCY_BUCKETS {
            let width = (bucket_high(i) - bucket_low(i) + 1) as f64;
            assert!(
                width / bucket_low(i) as f64 <= 1.0 / 32.0 + 1e-12,
                "bucket {i}"
            );
        }
    }

    #[test]
    fn ready_histogram_reaches_its_max() {
        assert_eq!(bucket_index(READY_MAX), READY_BUCKETS - 1);
        assert_eq!(bucket_high(READY_BUCKETS - 1), READY_MAX);
    }
}
