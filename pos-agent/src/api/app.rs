//! The state every handler shares (the terminal, its sign-in sessions, the
//! settings) and the one way a handler reaches the replica thread.

use std::sync::Arc;

use chrono::DateTime;
use chrono_tz::Tz;
use engine::ids::{DocumentId, TaskId};
use engine::replica::agent::Agent;
use engine::replica::Output;

use super::error::{no_task, ApiError};
use crate::agent::Terminal;
use crate::sessions::Sessions;
use crate::views::Clock;

/// Settings of the local API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Tasks due within this many minutes are "upcoming" (default for
    /// `GET /api/notifications`, which takes `?window=` too).
    pub notify_window_minutes: i64,
    /// The store's time zone; `None`: the zone of the newest list held.
    pub time_zone: Option<Tz>,
    /// Status changes and claims need a signed-in worker (a PIN): a
    /// request that only names a worker (`pos-agent complete --worker`)
    /// is refused. Off by default: then anyone who can reach the
    /// loopback port may record work under a roster worker's name.
    pub cli_needs_pin: bool,
    /// Where a task's `pos:<operation>` goes when a worker opens it
    /// (`pos-agent run --pos-callback`); `None`: the POS is told by hand.
    pub pos_callback: Option<reqwest::Url>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            notify_window_minutes: 30,
            time_zone: None,
            cli_needs_pin: false,
            pos_callback: None,
        }
    }
}

#[derive(Clone)]
pub(super) struct App {
    pub(super) t: Terminal,
    pub(super) sessions: Sessions,
    pub(super) cfg: Arc<ApiConfig>,
}

/// Run `f` on the replica thread; its outputs go to the hub if connected.
pub(super) async fn on_agent<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut Agent, i64) -> Result<(T, Vec<Output>), ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    app.t
        .handle
        .call(move |a, now| match f(a, now) {
            Ok((v, out)) => (Ok(v), out),
            Err(e) => (Err(e), Vec::new()),
        })
        .await?
}

/// A read on the replica thread (no outputs).
pub(super) async fn read_agent<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut Agent, i64) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    on_agent(app, move |a, now| Ok((f(a, now)?, Vec::new()))).await
}

/// The store's clock: the configured zone, or the zone of the newest list.
pub(super) fn clock(a: &Agent, cfg: &ApiConfig, now_ms: i64) -> Clock {
    let tz = cfg.time_zone.unwrap_or_else(|| {
        a.lists()
            .iter()
            .rev()
            .find_map(|l| l.meta.time_zone.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC)
    });
    Clock {
        tz,
        now: DateTime::from_timestamp_millis(now_ms).unwrap_or_default(),
    }
}

/// The list holding `task` (task ids are unique across lists).
pub(super) fn find_list(a: &Agent, task: TaskId) -> Result<DocumentId, ApiError> {
    a.list_of_task(task).ok_or_else(|| no_task(task))
}
