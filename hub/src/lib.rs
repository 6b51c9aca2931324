//! The HQ hub: the authoritative replica of every store's task lists,
//! served over WebSockets (automerge-repo protocol) with an admin API.
//! `server::run` is the entry point `main` and the tests share.

pub mod api;
pub mod api_admin;
pub mod cli;
pub mod cli_admin;
pub mod config;
pub mod connection_slots;
pub mod connectivity;
pub mod dashboard;
pub mod metrics;
pub mod read_pool;
pub mod runtime;
pub mod server;
