//! Many terminals and the coordinator's view of them: send commands to
//! all, wait for their reports with a deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::sync::{mpsc, oneshot};

use super::terminal::{self, Cmd, Report, Shared};

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
        let (shared, reports) = Shared::new();
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
    /// A failed connection or an `error` from the server ends the wait
    /// with an error, as does the deadline.
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
                    "{what}: not done after {:.0} s ({} reports so far)",
                    timeout.as_secs_f64(),
                    got.len()
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
