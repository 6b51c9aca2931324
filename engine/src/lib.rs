//! The engine: task model, status rules, recurrence, change validation and
//! storage for store task lists. Pure except for `storage`, which owns SQLite.

// For `delegate_storage_roles!`, whose expansion names automerge's types.
#[doc(hidden)]
pub use automerge;
#[cfg(test)]
mod clock_faults;
pub mod cluster;
pub mod compliance;
pub mod document;
pub mod due;
pub mod fleet;
pub mod hq_accounts;
pub mod ids;
pub mod model;
pub mod protocol;
pub mod publish;
pub mod recurrence;
pub mod replica;
pub mod status;
pub mod storage;
pub mod template;
pub mod validation;
#[cfg(test)]
mod validation_fuzz;
#[cfg(test)]
mod validation_fuzz_cases;
