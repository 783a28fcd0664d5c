//! Per-IP limits on failures (forged webhooks, wrong passwords). Only failures are counted, so a
//! sender whose requests succeed (Meta with valid signatures, a person who signs in) is never
//! locked out by the limit, however much traffic it sends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on remembered addresses: a flood from many addresses cannot grow memory without limit.
const MAX_TRACKED: usize = 100_000;

/// Allows `max_failures` per `window` per IP (a token bucket refilled evenly over the window).
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let rate = self.max_failures as f64 / self.window.as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.max_failures as f64);
        bucket.at = now;
    }

    /// Ok if `ip` may try; Err(how long to wait) if it used up its failures.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        let Some(bucket) = map.get_mut(&ip) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            let rate = self.max_failures as f64 / self.window.as_secs_f64().max(0.001);
            Err(Duration::from_secs_f64(
                ((1.0 - bucket.tokens) / rate).max(1.0),
            ))
        }
    }

    /// Counts one failure of `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            // Forget addresses whose buckets are full again; if none, start over.
            let before = map.len();
            let full = self.max_failures as f64;
            let rate = full / self.window.as_secs_f64().max(0.001);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < full
            });
            if map.len() == before {
                map.clear();
            }
        }
        let bucket = map.entry(ip).or_insert(Bucket {
            tokens: self.max_failures as f64,
            at: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// A success forgets the address's failures (a person who finally typed the right password).
    pub fn record_success(&self, ip: IpAddr) {
        if let Ok(mut map) = self.buckets.lock() {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_out_one_address_and_not_another() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(3600));
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.record_failure(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        assert!(limiter.check(b).is_ok());
        limiter.record_success(a);
        assert!(limiter.check(a).is_ok());
    }
}
