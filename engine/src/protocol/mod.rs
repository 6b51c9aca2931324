//! automerge-repo sync protocol v1: wire messages and the per-connection state machine (sans-IO).
