//! Latency samples and the figures a run prints and writes.
use std::time::Duration;

use serde::Serialize;

/// Latencies of one kind of operation.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Duration>);

/// Throughput and latency percentiles of a batch of operations.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Operations measured.
    pub count: usize,
    /// Wall-clock seconds for all of them.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

impl Samples {
    /// Records one latency.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Adds another batch.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Percentile `p` (0–100) by nearest rank, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        ms(v[rank.clamp(1, v.len()) - 1])
    }

    /// The summary of these samples over `wall` seconds.
    pub fn summary(&self, wall: Duration) -> Summary {
        let secs = wall.as_secs_f64();
        Summary {
            count: self.0.len(),
            seconds: round(secs, 3),
            per_second: round(
                if secs > 0.0 {
                    self.0.len() as f64 / secs
                } else {
                    0.0
                },
                1,
            ),
            p50_ms: round(self.percentile_ms(50.0), 3),
            p99_ms: round(self.percentile_ms(99.0), 3),
            max_ms: round(self.percentile_ms(100.0), 3),
        }
    }
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `x` rounded to `places` decimals (figures, not measurements, so the JSON stays readable).
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Samples::default();
        for i in 1..=100u64 {
            s.push(Duration::from_millis(i));
        }
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
        let sum = s.summary(Duration::from_secs(2));
        assert_eq!((sum.count, sum.per_second), (100, 50.0));
        assert_eq!(Samples::default().percentile_ms(99.0), 0.0);
    }
}
