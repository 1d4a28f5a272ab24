//! Append latencies in a histogram of fixed size, so that `load`'s memory
//! does not grow with the number of records.
//!
//! Microseconds below 128 have a bucket each; above, every power of two is
//! split into 64 buckets, so a percentile is reported within 1/64 (1.6%) of
//! the true value, rounded down.

use std::time::Duration;

/// Values with a bucket of their own.
const EXACT_BELOW: u64 = 128;
/// Buckets per power of two above `EXACT_BELOW`.
const BUCKETS_PER_OCTAVE: u64 = 64;
/// log2 of `EXACT_BELOW`.
const EXACT_BITS: u32 = EXACT_BELOW.trailing_zeros();
/// Buckets for every `u64`: the exact ones, then 64 for each power of two
/// from `EXACT_BELOW` up to 2^63.
const BUCKETS: usize = (EXACT_BELOW + (64 - EXACT_BITS as u64) * BUCKETS_PER_OCTAVE) as usize;

/// Counts of latencies, in microseconds.
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0 }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts.iter()) {
            *count += more;
        }
        self.total += other.total;
    }

    /// Latencies recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The latency (µs) that a fraction `p` (0 to 1) of the recorded ones
    /// are at or below; 0 when none is recorded.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return lowest_in(bucket);
            }
        }
        unreachable!("the counts add up to the total")
    }
}

/// The bucket holding `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < EXACT_BELOW {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros(); // EXACT_BITS..=63
    let shift = octave - BUCKETS_PER_OCTAVE.trailing_zeros();
    let within = (micros >> shift) - BUCKETS_PER_OCTAVE; // 0..BUCKETS_PER_OCTAVE
    (EXACT_BELOW + u64::from(octave - EXACT_BITS) * BUCKETS_PER_OCTAVE + within) as usize
}

/// The smallest value in `bucket`.
fn lowest_in(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < EXACT_BELOW {
        return bucket;
    }
    let octave = EXACT_BITS as u64 + (bucket - EXACT_BELOW) / BUCKETS_PER_OCTAVE;
    let within = (bucket - EXACT_BELOW) % BUCKETS_PER_OCTAVE;
    (BUCKETS_PER_OCTAVE + within) << (octave - u64::from(BUCKETS_PER_OCTAVE.trailing_zeros()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_lowest_value_is_within_one_sixty_fourth_below_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..64).flat_map(|bits| [1u64 << bits, (1u64 << bits).wrapping_sub(1), (1u64 << bits) + 1]));
        values.push(u64::MAX);
        for value in values {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value} in bucket {bucket}");
            let low = lowest_in(bucket);
            assert!(low <= value && value - low <= value / 64, "{value} reported as {low}");
            assert_eq!(bucket_of(low), bucket, "{value}");
        }
    }

    #[test]
    fn percentiles_of_known_latencies() {
        let mut histogram = Histogram::new();
        assert_eq!(histogram.percentile(0.5), 0, "empty");
        for micros in 1..=100u64 {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!((histogram.percentile(0.5), histogram.percentile(0.99), histogram.percentile(1.0)), (50, 99, 100));
        let mut slow = Histogram::new();
        slow.record(Duration::from_secs(10));
        histogram.merge(&slow);
        assert_eq!(histogram.len(), 101);
        let top = histogram.percentile(1.0);
        assert!((10_000_000 - 10_000_000 / 64..=10_000_000).contains(&top), "{top}");
    }
}
