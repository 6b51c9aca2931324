//! A token bucket in virtual time: messages per second per connection.

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_ms: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    pub(crate) fn new(per_second: u32, burst: u32, now_ms: i64) -> Self {
        TokenBucket {
            capacity: burst as f64,
            per_ms: per_second as f64 / 1000.0,
            tokens: burst as f64,
            last_ms: now_ms,
        }
    }

    /// Take one token; false when the sender is over its rate.
    pub(crate) fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut b = TokenBucket::new(10, 5, 0);
        assert!((0..5).all(|_| b.take(0)));
        assert!(!b.take(0));
        assert!(b.take(100), "one token refills in 100 ms at 10/s");
        assert!(!b.take(100));
    }
}
