//! Many terminals and the coordinator's view of them: send commands to
//! all, wait for their reports with a deadline, count their reconnects.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::sync::{mpsc, oneshot};

use super::terminal::{self, Cmd, ReconnectPolicy, Report, Shared};

pub struct Fleet {
    pub shared: Arc<Shared>,
    reports: mpsc::UnboundedReceiver<Report>,
    pub terminals: Vec<mpsc::UnboundedSender<Cmd>>,
}

/// Terminal `t` (0 or 1) of store `s`.
pub fn terminal_of(s: usize, t: usize) -> usize {
    s * 2 + t
}

impl Fleet {
    /// `n` terminals named `<prefix>-<i>`.
    pub fn new(prefix: &str, n: usize) -> Fleet {
        Fleet::with_policy(prefix, n, ReconnectPolicy::DEFAULT)
    }

    /// As `new`, reconnecting after a drop as `policy` says.
    pub fn with_policy(prefix: &str, n: usize, policy: ReconnectPolicy) -> Fleet {
        let (shared, reports) = Shared::new(policy);
        let terminals = (0..n)
            .map(|i| terminal::spawn(i, format!("{prefix}-{i}"), shared.clone()))
            .collect();
        Fleet {
            shared,
            reports,
            terminals,
        }
    }

    pub fn send(&self, terminal: usize, cmd: Cmd) {
        // A terminal task only ends when its sender is dropped.
        let _ = self.terminals[terminal].send(cmd);
    }

    /// Disconnect every terminal and wait until each has.
    pub async fn disconnect_all(&self) {
        let mut waits = Vec::new();
        for t in &self.terminals {
            let (tx, rx) = oneshot::channel();
            let _ = t.send(Cmd::Disconnect { done: tx });
            waits.push(rx);
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// Collect reports until `done` says the last one completed the wait.
    /// A terminal that gave up reconnecting or an `error` from the server
    /// ends the wait with an error, as does the deadline (naming the
    /// terminals still trying to reconnect, if any).
    pub async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Report) -> bool,
    ) -> Result<Vec<Report>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            if let Some(e) = self.first_error() {
                bail!("{what}: the server sent an error: {e}");
            }
            let r = match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => bail!("{what}: every terminal stopped"),
                Err(_) => bail!(
                    "{what}: not done after {:.0} s ({} reports so far){}",
                    timeout.as_secs_f64(),
                    got.len(),
                    self.down_summary()
                ),
            };
            if let Report::Failed { terminal, reason } = &r {
                bail!("{what}: terminal {terminal}: {reason}");
            }
            let finished = done(&r);
            got.push(r);
            if finished {
                return Ok(got);
            }
        }
    }

    /// Wait until `n` reports match `pred`.
    pub async fn wait_count(
        &mut self,
        what: &str,
        timeout: Duration,
        n: usize,
        pred: impl Fn(&Report) -> bool,
    ) -> Result<Vec<Report>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut seen = 0;
        self.wait(what, timeout, |r| {
            if pred(r) {
                seen += 1;
            }
            seen >= n
        })
        .await
    }

    /// Terminals whose connection is down and which are trying again.
    pub fn reconnecting(&self) -> usize {
        self.shared.down.lock().expect("not poisoned").len()
    }

    /// Reconnects since the last call (or since the fleet started).
    pub fn take_reconnects(&self) -> u64 {
        self.shared.reconnects.swap(0, Ordering::Relaxed)
    }

    /// "; N terminals cannot reconnect: ..." for a timeout message, or "".
    fn down_summary(&self) -> String {
        let down = self.shared.down.lock().expect("not poisoned");
        if down.is_empty() {
            return String::new();
        }
        let mut some: Vec<(&usize, &String)> = down.iter().collect();
        some.sort();
        let shown: Vec<String> = some
            .iter()
            .take(3)
            .map(|(t, why)| format!("terminal {t}: {why}"))
            .collect();
        format!(
            "; {} terminals are still trying to reconnect, e.g. {}",
            down.len(),
            shown.join("; ")
        )
    }

    pub fn first_error(&self) -> Option<String> {
        self.shared
            .first_error
            .lock()
            .expect("not poisoned")
            .clone()
    }

    pub fn reset_counters(&self) {
        for c in [
            &self.shared.bytes_sent,
            &self.shared.bytes_received,
            &self.shared.frames_sent,
            &self.shared.frames_received,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    pub fn frames(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
            + self.shared.frames_received.load(Ordering::Relaxed)
    }

    /// Drop every report not yet read (e.g. `Opened` from a phase that
    /// did not wait for them).
    pub fn drain(&mut self) {
        while self.reports.try_recv().is_ok() {}
    }
}

/// Percentile (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Reports' times relative to `start`.
pub fn since(start: Instant, at: Instant) -> Duration {
    at.saturating_duration_since(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that never comes back: the terminal retries, then gives up
    /// with a message that says so, and the wait fails with it.
    #[tokio::test]
    async fn a_terminal_that_cannot_reconnect_fails_the_wait() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener); // Nothing listens there now: every attempt is refused.
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            give_up_after: Duration::from_millis(300),
        };
        let mut fleet = Fleet::with_policy("gone", 1, policy);
        fleet.send(
            0,
            Cmd::Connect {
                url: format!("ws://{addr}/"),
            },
        );
        let err = fleet
            .wait("connecting", Duration::from_secs(20), |_| false)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("terminal 0: gave up reconnecting") && err.contains("attempts"),
            "{err}"
        );
        assert_eq!(fleet.reconnecting(), 0, "it stopped trying");
    }
}
