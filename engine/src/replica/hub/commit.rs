//! Group commit at the hub: the unit of work a `Batch` (and an HQ
//! operation, `batched`) runs in.

use super::*;

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
        let mut pending: Vec<DocumentId> = self.index_pending.drain().collect();
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
                self.index_due.extend(pending);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "could not commit a batch of frames; closing every connection");
                self.docs.clear();
                // The batch's index writes were rolled back too.
                self.indexed.clear();
                self.views.clear();
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                let mut out = Vec::new();
                for c in conns {
                    out.extend(self.fatal(c, format!("hub could not store changes: {e}")));
                }
                Err(out)
            }
        }
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
        let index_now = self.index_pending.len() <= 1;
        match self.commit_batch_indexing(index_now) {
            Ok(()) => split(r),
            Err(closing) => (Err(HubError::NotSaved), closing),
        }
    }
}
