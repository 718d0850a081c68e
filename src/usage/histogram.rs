//! A small log-linear histogram of request times (milliseconds) whose
//! percentiles are within about 3% of the true value and which merges exactly.

/// Bucket index: exact below 64 ms, then 32 buckets per power of two.
fn bucket(ms: u32) -> u16 {
    if ms < 64 {
        return ms as u16;
    }
    let e = 31 - ms.leading_zeros(); // >= 6
    let sub = (ms >> (e - 5)) & 31;
    (64 + (e - 6) * 32 + sub) as u16
}

/// The smallest value that falls in bucket `b`.
fn lower_bound(b: u16) -> u32 {
    let b = u32::from(b);
    if b < 64 {
        return b;
    }
    let e = (b - 64) / 32 + 6;
    let sub = (b - 64) % 32;
    (32 + sub) << (e - 5)
}

/// Counts per bucket, indexed directly (a few hundred buckets at most,
/// allocated only up to the largest value seen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, ms: u32) {
        let b = usize::from(bucket(ms));
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The counts as little-endian u64s, for the store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.counts.iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    /// Reads what [`Histogram::to_bytes`] wrote; `None` if it is not that.
    pub fn from_bytes(b: &[u8]) -> Option<Histogram> {
        if !b.len().is_multiple_of(8) || b.len() / 8 > usize::from(u16::MAX) {
            return None;
        }
        let counts: Vec<u64> = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let total = counts.iter().sum();
        Some(Histogram { counts, total })
    }

    /// The `q` quantile (0..=1) in milliseconds, `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(b as u16));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for ms in (0..5_000_000u32).step_by(997) {
            let b = bucket(ms);
            assert!(b >= prev);
            prev = b;
            let lo = lower_bound(b);
            assert!(
                lo <= ms && f64::from(ms - lo) <= f64::from(ms) * 0.032,
                "{ms} -> {lo}"
            );
        }
        assert_eq!(lower_bound(bucket(u32::MAX)), 0xFC00_0000);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.95), Some(94));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
