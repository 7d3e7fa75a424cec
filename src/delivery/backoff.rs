//! Exponential backoff with jitter, shared by delivery workers, spool writers and the inbox.

use std::time::Duration;

/// Exponential backoff with jitter: each delay is drawn in [d/2, d], d doubling up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, never past `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        let d = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for d in [100u64, 200, 400, 800, 1000, 1000] {
            let got = b.next_delay();
            assert!(
                got >= ms(d / 2) && got <= ms(d),
                "{got:?} not in [{}, {d}] ms",
                d / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
    }
}
