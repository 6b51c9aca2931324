//! The HQ hub: the authoritative replica of every store's task lists,
//! served over WebSockets (automerge-repo protocol) with an admin API.
//! `data_dir::open` and `server::run` are the entry points `main` and the
//! tests share.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod connection_slots;
pub mod data_dir;
pub mod http;
pub mod metrics;
pub mod passwords;
pub mod pg;
pub mod read_pool;
pub mod replicas;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod sign_in;
