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

use super::*;

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

impl Hub {
    /// Group commit: the frames handled until `commit_batch` write in one
    /// transaction (one fsync). Outputs produced meanwhile must be held
    /// back until `commit_batch` returns Ok (persist before send).
    pub(crate) fn begin_batch(&mut self) -> Result<(), HubError> {
        Ok(self.db.begin_batch()?)
    }

    /// Make the batch durable. On error nothing in it was saved: the
    /// in-memory documents (which hold its changes) are dropped to reload
    /// from disk, and every connection is closed, because any session may
    /// believe it sent or was sent something the batch held; peers
    /// reconnect and sync again. The error's outputs replace the batch's.
    #[cfg(test)]
    pub(crate) fn commit_batch(&mut self) -> Result<(), Vec<Output>> {
        self.commit_batch_indexing(true)
    }

    /// [`Hub::commit_batch`], with the status index of the lists the batch
    /// changed written in the same transaction (`index_now`), or, when
    /// more frames are waiting, only marked due (in the same transaction)
    /// for `catch_up_index` once the hub is idle: sync comes first.
    pub(crate) fn commit_batch_indexing(&mut self, index_now: bool) -> Result<(), Vec<Output>> {
        let mut pending: Vec<DocumentId> = self.projection.take_pending();
        if index_now {
            // A list whose rows could not be written stays due.
            pending = std::mem::take(&mut pending)
                .into_iter()
                .filter(|doc| self.load(*doc).is_ok() && !self.reindex(*doc))
                .collect();
        }
        let marked = self.db.mark_index_due(&pending);
        match marked.and_then(|()| self.db.commit_batch()) {
            Ok(()) => {
                self.projection.mark_due(pending);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "could not commit a batch of frames; closing every connection");
                self.docs.clear();
                // The batch's index writes were rolled back too.
                self.projection.forget_rows();
                Err(self.close_unsaved(&e))
            }
        }
    }

    /// After a failed commit: close every connection, since any session
    /// may believe it sent or was sent something the batch held. When the
    /// commit failed because this node lost stores' leases, those stores'
    /// connections are told `moved` (reconnect at once, to whichever node
    /// serves them now) and forgotten without writing anything for them,
    /// the shell is told which stores to stop serving, and the other
    /// connections (whose writes were rolled back with the same
    /// transaction) are closed as after any failed commit, without naming
    /// the lost stores.
    fn close_unsaved(&mut self, e: &StorageError) -> Vec<Output> {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        let Some(lost) = e.lost_stores() else {
            let mut out = Vec::new();
            for c in conns {
                out.extend(self.fatal(c, format!("hub could not store changes: {e}")));
            }
            return out;
        };
        for store in &lost {
            self.forget_store(store);
        }
        let moved = Moved::new(None).encode();
        let other = "hub could not store changes: the batch was rolled back because this node \
                     lost another store's lease; reconnect to sync again"
            .to_owned();
        let mut out = vec![Output::LeaseLost {
            stores: lost.clone(),
        }];
        for c in conns {
            let of_lost = matches!(
                self.conns.get(&c).map(|c| &c.principal),
                Some(Principal::Store(s)) if lost.contains(s)
            );
            out.extend(if of_lost {
                self.close_conn(c, moved.clone(), false)
            } else {
                self.fatal(c, other.clone())
            });
        }
        out
    }

    /// Run an HQ operation (a publish: its list, owner, content hashes,
    /// index rows and directory entry) in one transaction, one fsync,
    /// instead of one per write. Its outputs are returned only once that
    /// commit succeeded (persist before send); if it fails, nothing of the
    /// batch was saved and every connection is closed (see `commit_batch`).
    pub fn batched<T>(
        &mut self,
        f: impl FnOnce(&mut Hub) -> Result<(T, Vec<Output>), HubError>,
    ) -> (Result<T, HubError>, Vec<Output>) {
        let split = |r: Result<(T, Vec<Output>), HubError>| match r {
            Ok((t, out)) => (Ok(t), out),
            Err(e) => (Err(e), Vec::new()),
        };
        if self.db.in_batch() {
            return split(f(self));
        }
        if let Err(e) = self.begin_batch() {
            return (Err(e), Vec::new());
        }
        let r = f(self);
        // An operation that failed half-way keeps what it wrote, as its
        // writes did when each committed on its own. A publish to many
        // stores leaves their status index for when the hub is idle (or
        // the index is read): the stores get their lists sooner.
        let index_now = self.projection.pending_count() <= 1;
        match self.commit_batch_indexing(index_now) {
            Ok(()) => split(r),
            Err(closing) => (Err(HubError::NotSaved), closing),
        }
    }
}
