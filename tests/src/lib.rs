//! Shared helpers for multi-replica tests.
