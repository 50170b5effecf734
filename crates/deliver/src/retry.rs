//! When to try a failed delivery again, and when to give up.
//!
//! Clair retries a failed set every `delivery_interval` (1 h) forever. tocsin backs off
//! exponentially instead: the n-th consecutive failure waits `initial × multiplier^(n-1)`, capped
//! at `max`, with jitter so that sets that failed together (a receiver outage) do not come back
//! together. Defaults:
//!
//! - `initial` = 5 s: a receiver that hiccups (a restart, a deploy) is retried promptly, but not
//!   so fast that a handful of attempts are burnt within the same outage.
//! - `max` = 1 h: Clair's `delivery_interval`, so a long outage is never retried *less* often
//!   than Clair would.
//! - `multiplier` = 2.
//! - jitter ±20 % ([`Jitter::Proportional`]): keeps the schedule readable in the attempt history
//!   (attempt n lands near its nominal time) while spreading a burst of failures over 40 % of the
//!   interval. [`Jitter::Full`] (uniform in `[0, delay]`) spreads more and is available.
//! - `dead_letter_after` = 7 days: a set still undelivered a week after its creation is given up
//!   on (its receipt becomes `dead_letter`), as is any set after a permanent failure.
//!
//! A receiver's `Retry-After` is honoured as a floor, clamped to `[initial, max]` so that a
//! receiver can neither make tocsin hammer it nor park a set beyond the normal cap.
//!
//! The functions here are pure: the clock and the RNG are the caller's.

use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use crate::DeliverError;

/// How the nominal delay is randomised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// No randomisation (for tests and deterministic setups).
    None,
    /// Uniform in `[0, delay]` ("full jitter").
    Full,
    /// Uniform in `[delay × (1 - f), delay × (1 + f)]`, `f` in `[0, 1]`.
    Proportional(f64),
}

/// Exponential backoff with jitter, `Retry-After` and a dead-letter age.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of every delay.
    pub max: Duration,
    /// Growth per consecutive failure (≥ 1).
    pub multiplier: f64,
    /// Randomisation.
    pub jitter: Jitter,
    /// Age of a set after which a failure is final (dead letter).
    pub dead_letter_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            multiplier: 2.0,
            jitter: Jitter::Proportional(0.2),
            dead_letter_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// Checks that the numbers make sense.
    pub fn validate(&self) -> Result<(), DeliverError> {
        let bad = |field: &str, message: String| DeliverError::Config {
            channel: "delivery",
            field: format!("retry.{field}"),
            message,
        };
        if self.initial.is_zero() {
            return Err(bad("initial", "must be positive".into()));
        }
        if self.max < self.initial {
            return Err(bad(
                "max",
                format!("{:?} is below initial {:?}", self.max, self.initial),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(bad(
                "multiplier",
                format!("{} is not a finite number ≥ 1", self.multiplier),
            ));
        }
        if let Jitter::Proportional(f) = self.jitter {
            if !(0.0..=1.0).contains(&f) {
                return Err(bad("jitter", format!("{f} is outside [0, 1]")));
            }
        }
        Ok(())
    }

    /// The delay before the next attempt, after `attempts` consecutive failed attempts (counting
    /// the one that just failed; 0 is treated as 1), given the receiver's `Retry-After`.
    pub fn next_delay<R: Rng + ?Sized>(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let max = self.max.as_secs_f64();
        let exponent = attempts.saturating_sub(1).min(1024) as i32;
        let nominal = (self.initial.as_secs_f64() * self.multiplier.powi(exponent)).min(max);
        let jittered = match self.jitter {
            Jitter::None => nominal,
            Jitter::Full => rng.gen_range(0.0..=nominal),
            Jitter::Proportional(f) => {
                let f = f.clamp(0.0, 1.0);
                rng.gen_range(nominal * (1.0 - f)..=nominal * (1.0 + f))
            }
        };
        // NaN cannot arise from validated inputs; `clamp` maps an unvalidated one to the cap.
        let mut delay = Duration::from_secs_f64(jittered.clamp(0.0, max));
        if let Some(ra) = retry_after {
            delay = delay.max(ra.clamp(self.initial, self.max));
        }
        delay
    }

    /// Whether a failure of a set created at `created_at` is final at `now`.
    pub fn is_dead_letter(
        &self,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        permanent: bool,
    ) -> bool {
        permanent || now - created_at > self.dead_letter_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn fixed() -> RetryPolicy {
        RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let p = RetryPolicy::default();
        p.validate().unwrap();
        assert_eq!(p.initial, Duration::from_secs(5));
        assert_eq!(p.max, Duration::from_secs(3600));
        assert_eq!(p.dead_letter_after, Duration::from_secs(604_800));
    }

    #[test]
    fn exponential_and_capped() {
        let p = fixed();
        let mut rng = StdRng::seed_from_u64(1);
        let secs: Vec<u64> = (0..=12)
            .map(|n| p.next_delay(n, None, &mut rng).as_secs())
            .collect();
        assert_eq!(
            secs,
            [5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        // Huge attempt counts do not overflow.
        assert_eq!(p.next_delay(u32::MAX, None, &mut rng), p.max);
    }

    #[test]
    fn retry_after_is_a_clamped_floor() {
        let p = fixed();
        let mut rng = StdRng::seed_from_u64(1);
        // Longer than the backoff: honoured.
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(7)), &mut rng),
            Duration::from_secs(7)
        );
        // Shorter than the backoff: the backoff wins.
        assert_eq!(
            p.next_delay(4, Some(Duration::from_secs(7)), &mut rng),
            Duration::from_secs(40)
        );
        // Zero is raised to `initial`, a day is cut to `max`.
        assert_eq!(
            p.next_delay(1, Some(Duration::ZERO), &mut rng),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(86_400)), &mut rng),
            p.max
        );
    }

    #[test]
    fn proportional_jitter_stays_in_band_and_is_seeded() {
        let p = RetryPolicy::default();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=8)
                .map(|n| p.next_delay(n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42), "same seed, same schedule");
        assert_ne!(a, run(43), "different seeds differ");
        for (i, d) in a.iter().enumerate() {
            let nominal = 5.0 * 2f64.powi(i as i32);
            let s = d.as_secs_f64();
            assert!(
                (nominal * 0.8..=nominal * 1.2).contains(&s),
                "attempt {}: {s} outside ±20 % of {nominal}",
                i + 1
            );
        }
        // Near the cap, jitter never exceeds max.
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let d = p.next_delay(30, None, &mut rng);
            assert!(d <= p.max && d >= Duration::from_secs(2880), "{d:?}");
        }
    }

    #[test]
    fn full_jitter_spreads_below_nominal() {
        let p = RetryPolicy {
            jitter: Jitter::Full,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let ds: Vec<f64> = (0..500)
            .map(|_| p.next_delay(5, None, &mut rng).as_secs_f64())
            .collect();
        assert!(ds.iter().all(|&d| (0.0..=80.0).contains(&d)));
        let mean = ds.iter().sum::<f64>() / ds.len() as f64;
        assert!((30.0..50.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn dead_letter_by_age_or_permanence() {
        let p = RetryPolicy::default();
        let created = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let day = time::Duration::days(1);
        assert!(!p.is_dead_letter(created, created + day * 7, false));
        assert!(p.is_dead_letter(
            created,
            created + day * 7 + time::Duration::seconds(1),
            false
        ));
        assert!(p.is_dead_letter(created, created, true));
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            RetryPolicy {
                initial: Duration::ZERO,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                max: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            RetryPolicy {
                multiplier: 0.5,
                ..RetryPolicy::default()
            },
            RetryPolicy {
                jitter: Jitter::Proportional(1.5),
                ..RetryPolicy::default()
            },
        ];
        let fields: Vec<String> = cases
            .iter()
            .map(|p| match p.validate() {
                Err(DeliverError::Config { field, .. }) => field,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "retry.initial",
                "retry.max",
                "retry.multiplier",
                "retry.jitter"
            ]
        );
    }
}
