//! Sign-in rate limiting: after `MAX_FAILURES` wrong passwords for one
//! account from one source within `WINDOW`, that pair is refused until the
//! oldest failure leaves the window. Per node and in memory: a restart
//! forgets, and each node of a cluster counts its own (a guesser gains a
//! factor of the node count, not unlimited tries).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Pairs remembered before expired ones are swept.
const SWEEP_AT: usize = 10_000;

/// Failed sign-ins per (account, source).
#[derive(Default)]
pub struct SignInLimiter {
    failures: Mutex<HashMap<(String, String), Vec<Instant>>>,
}

impl SignInLimiter {
    /// `Err(wait)` while `user` from `source` may not try again.
    pub fn check(&self, user: &str, source: &str, now: Instant) -> Result<(), Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get(&(user.to_owned(), source.to_owned())) else {
            return Ok(());
        };
        let recent: Vec<&Instant> = times
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .collect();
        if recent.len() < MAX_FAILURES {
            return Ok(());
        }
        let oldest = recent.into_iter().min().expect("MAX_FAILURES > 0");
        Err(WINDOW.saturating_sub(now.duration_since(*oldest)))
    }

    /// Count a wrong password.
    pub fn failed(&self, user: &str, source: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < WINDOW));
        }
        let times = map.entry((user.to_owned(), source.to_owned())).or_default();
        times.retain(|t| now.duration_since(*t) < WINDOW);
        times.push(now);
    }

    /// A right password clears the pair's failures.
    pub fn succeeded(&self, user: &str, source: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(user.to_owned(), source.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_pair_until_the_window_passes() {
        let l = SignInLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(l.check("anna", "10.0.0.1", t0).is_ok(), "try {i}");
            l.failed("anna", "10.0.0.1", t0);
        }
        let wait = l.check("anna", "10.0.0.1", t0).unwrap_err();
        assert_eq!(wait, WINDOW);
        assert!(l.check("anna", "10.0.0.2", t0).is_ok(), "another source");
        assert!(l.check("ben", "10.0.0.1", t0).is_ok(), "another account");
        assert!(
            l.check("anna", "10.0.0.1", t0 + WINDOW).is_ok(),
            "window passed"
        );
        l.succeeded("anna", "10.0.0.1");
        assert!(l.check("anna", "10.0.0.1", t0).is_ok(), "cleared");
    }
}
