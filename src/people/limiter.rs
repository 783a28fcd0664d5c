//! Failed sign-ins per client address, in memory. Behind a trait so the operations service can
//! supply the appliance-wide limiter instead; only failures count, so a busy office behind one
//! address is never limited for signing in correctly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::Clock;

pub trait FailureLimiter: Send + Sync {
    /// Ok if `ip` may try now; Err(seconds to wait) if it used up its failures.
    fn check(&self, ip: IpAddr) -> Result<(), u64>;
    fn failed(&self, ip: IpAddr);
    fn succeeded(&self, ip: IpAddr);
}

/// Bound on remembered addresses: a flood from many addresses cannot grow memory without limit.
const MAX_TRACKED: usize = 100_000;

/// A sliding count: at most `max` failures within `window_ms` of each other.
pub struct MemoryLimiter {
    max: u32,
    window_ms: u64,
    clock: Clock,
    failures: Mutex<HashMap<IpAddr, Vec<i64>>>,
}

impl MemoryLimiter {
    pub fn new(max: u32, window_ms: u64, clock: Clock) -> Self {
        Self {
            max: max.max(1),
            window_ms: window_ms.max(1),
            clock,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn prune(&self, times: &mut Vec<i64>, now: i64) {
        let since = now - self.window_ms as i64;
        times.retain(|t| *t > since);
    }
}

impl FailureLimiter for MemoryLimiter {
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = self.clock.now_ms();
        let Ok(mut map) = self.failures.lock() else {
            return Ok(());
        };
        let Some(times) = map.get_mut(&ip) else {
            return Ok(());
        };
        self.prune(times, now);
        if (times.len() as u32) < self.max {
            return Ok(());
        }
        let oldest = times.first().copied().unwrap_or(now);
        let wait_ms = (oldest + self.window_ms as i64 - now).max(1000);
        Err((wait_ms as u64).div_ceil(1000))
    }

    fn failed(&self, ip: IpAddr) {
        let now = self.clock.now_ms();
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let since = now - self.window_ms as i64;
            map.retain(|_, times| times.last().is_some_and(|t| *t > since));
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let times = map.entry(ip).or_default();
        self.prune(times, now);
        times.push(now);
        if times.len() > self.max as usize {
            let excess = times.len() - self.max as usize;
            times.drain(..excess);
        }
    }

    fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failures_limit_one_address_until_the_window_passes() {
        let clock = Clock::default();
        let limiter = MemoryLimiter::new(3, 60_000, clock.clone());
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        let wait = limiter.check(a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.check(b).is_ok());
        clock.advance(Duration::from_secs(61));
        assert!(limiter.check(a).is_ok());
        limiter.failed(a);
        limiter.succeeded(a);
        assert!(limiter.check(a).is_ok());
    }
}
