//! Reading what a request sends: JSON bodies and ids in paths, parsed at
//! the edge into the engine's types.

use axum::body::Bytes;
use engine::ids::TaskId;
use engine::model::Assignee;
use serde::de::DeserializeOwned;

use super::error::{bad, ApiError};

/// Parse a JSON body; an empty body reads as `{}`.
pub(super) fn json_body<T: DeserializeOwned>(b: &Bytes, shape: &str) -> Result<T, ApiError> {
    let text: &[u8] = if b.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        b
    };
    serde_json::from_slice(text).map_err(|e| bad(format!("bad JSON: {e}; send {shape}")))
}

pub(super) fn parse_task(s: &str) -> Result<TaskId, ApiError> {
    s.parse().map_err(|e| bad(format!("task: {e}")))
}

/// `worker:<id>`, `group:<id>`, or a bare worker id.
pub(super) fn parse_assignee(s: &str) -> Result<Assignee, ApiError> {
    let s = s.trim();
    let full = if s.contains(':') {
        s.to_owned()
    } else {
        format!("worker:{s}")
    };
    full.parse().map_err(|e| bad(format!("{e}")))
}
