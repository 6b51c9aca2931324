//! Group commit, persist before send by construction.
//!
//! The hub's shell hands the replica what arrived since the last batch
//! (connections opened, frames, connections closed) through a [`Batch`].
//! Everything the inputs write (changes, owners, sync times, the status
//! index of the lists they change) goes into one unit of work, one fsync,
//! and the batch gives its outputs back only from [`Batch::commit`], after
//! that unit of work committed. There is no other way to get them: the
//! shell cannot send a reply whose changes are not on disk, and it never
//! touches storage or drives a transaction itself.

use tracing::warn;

use super::hub::Hub;
use super::{ConnId, Output};
use crate::ids::Principal;

/// A batch of at least this many frames means the hub is under load: the
/// status index of the lists it changed waits for an idle moment (sync
/// first, and a list changed by many batches is indexed once) instead of
/// being written in the batch's own transaction.
pub const LOADED_BATCH: usize = 4;

/// Inputs handled in one unit of work; see the module doc.
#[must_use = "a batch's outputs come only from `commit`"]
pub struct Batch<'h> {
    hub: &'h mut Hub,
    out: Vec<Output>,
    frames: usize,
    /// Whether the unit of work opened. If it could not (the database
    /// refused to start a transaction), each write commits on its own as
    /// it is made, which keeps persist-before-send, only with more fsyncs.
    open: bool,
}

impl Hub {
    /// Start a batch of inputs (see [`Batch`]).
    pub fn batch(&mut self) -> Batch<'_> {
        let open = match self.begin_batch() {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "could not start a group commit; each write commits on its own");
                false
            }
        };
        Batch {
            hub: self,
            out: Vec::new(),
            frames: 0,
            open,
        }
    }
}

impl Batch<'_> {
    /// A connection passed authentication as `principal`.
    pub fn connected(&mut self, conn: ConnId, principal: Principal, now_ms: i64) {
        self.hub.connect(conn, principal, now_ms);
    }

    /// One frame from `conn`.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8], now_ms: i64) {
        self.frames += 1;
        let out = self.hub.receive(conn, frame, now_ms);
        self.out.extend(out);
    }

    /// `conn` closed (or is to be forgotten: it was too slow).
    pub fn disconnected(&mut self, conn: ConnId) {
        self.hub.disconnect(conn);
    }

    /// Commit the unit of work and return what to send. If the commit
    /// fails, nothing of the batch was saved: the outputs returned instead
    /// close every connection (see `Hub::commit_batch`), and the peers
    /// sync again when they reconnect.
    pub fn commit(mut self) -> Vec<Output> {
        let out = std::mem::take(&mut self.out);
        if !std::mem::take(&mut self.open) {
            return out;
        }
        match self.hub.commit_batch_indexing(self.frames < LOADED_BATCH) {
            Ok(()) => out,
            Err(closing) => closing,
        }
    }
}

impl Drop for Batch<'_> {
    /// A batch dropped without `commit` (a panic on the hub thread) still
    /// ends its unit of work, so the next one starts clean; its outputs
    /// are lost, which the peers' sync repairs (their next messages ask
    /// again).
    fn drop(&mut self) {
        if std::mem::take(&mut self.open) {
            warn!(
                outputs = self.out.len(),
                "a batch was dropped without commit; committing it, its outputs are not sent"
            );
            let _ = self.hub.commit_batch_indexing(false);
        }
    }
}
