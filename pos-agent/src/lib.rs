//! The pos-agent: a store terminal's replica of its task lists. Works with
//! the hub down; syncs whenever it can. `agent::start` wires the pieces:
//! the replica thread, the hub connection loop, the local HTTP API.

pub mod agent;
pub mod api;
pub mod cli;
pub mod lan;
pub mod runtime;
pub mod sessions;
pub mod sync_client;
pub mod views;
pub mod web;
