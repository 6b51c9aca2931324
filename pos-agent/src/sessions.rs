//! Signed-in workers at this terminal. A session is a random token the
//! browser (or the CLI) presents as `Authorization: Bearer <token>`.
//!
//! Sessions live in memory only: a restart of the agent signs everyone
//! out (the UI goes back to the sign-in screen), which at a shared POS
//! terminal is what you want anyway. A session holds only the worker id;
//! role and groups are read from the roster on every request, so an HQ
//! change (or removal) takes effect at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use engine::ids::WorkerId;
use rand::RngCore;

/// A session unused for this long is dropped (a worker who walked away).
pub const IDLE_TIMEOUT_MS: i64 = 12 * 3_600_000;

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

#[derive(Clone, Debug)]
struct Session {
    worker: WorkerId,
    last_used_ms: i64,
}

impl Sessions {
    /// Start a session for `worker` (the caller checked the PIN).
    pub fn start(&self, worker: WorkerId, now_ms: i64) -> String {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut m = self.inner.lock().expect("sessions lock poisoned");
        m.retain(|_, s| now_ms - s.last_used_ms < IDLE_TIMEOUT_MS);
        m.insert(
            token.clone(),
            Session {
                worker,
                last_used_ms: now_ms,
            },
        );
        token
    }

    /// The worker signed in with `token`, if the session is live.
    pub fn worker(&self, token: &str, now_ms: i64) -> Option<WorkerId> {
        let mut m = self.inner.lock().expect("sessions lock poisoned");
        let s = m.get_mut(token)?;
        if now_ms - s.last_used_ms >= IDLE_TIMEOUT_MS {
            m.remove(token);
            return None;
        }
        s.last_used_ms = now_ms;
        Some(s.worker.clone())
    }

    pub fn end(&self, token: &str) -> bool {
        self.inner
            .lock()
            .expect("sessions lock poisoned")
            .remove(token)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_names_its_worker_until_it_ends_or_idles_out() {
        let s = Sessions::default();
        let w: WorkerId = "w-1".parse().unwrap();
        let t = s.start(w.clone(), 0);
        assert_eq!(t.len(), 32);
        assert_eq!(s.worker(&t, 1_000), Some(w.clone()));
        assert_eq!(s.worker("nope", 1_000), None);
        assert!(s.end(&t));
        assert_eq!(s.worker(&t, 1_000), None);
        let t = s.start(w, 0);
        assert_eq!(s.worker(&t, IDLE_TIMEOUT_MS + 1), None, "idle too long");
    }
}
