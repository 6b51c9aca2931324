//! The engine: task model, status rules, recurrence, change validation and
//! storage for store task lists. Pure except for `storage`, which owns SQLite.

pub mod ids;
pub mod protocol;
pub mod recurrence;
pub mod storage;
pub mod model;
pub mod status;
pub mod document;
pub mod validation;
pub mod replica;
pub mod template;
