//! Shared helpers for multi-replica tests: the deterministic simulator.

pub mod sim;
