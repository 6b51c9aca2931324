//! A hub node of a cluster serves only the stores whose lease it holds.
//! What the replica does when a store comes to it or leaves it; the
//! leases themselves (claim, renew, the fence) are the shell's and the
//! backend's.

use super::*;

impl Hub {
    /// Close every connection of `store` with the `moved` reason: this
    /// node no longer serves it (its lease went to another node, which
    /// listens at `to` if known). Terminals reconnect at once, there.
    /// The caller commits the store's batch first (persist before send);
    /// each connection's sync state is saved as on any close.
    pub fn close_store_moved(&mut self, store: &StoreId, to: Option<&str>) -> Vec<Output> {
        let reason = Moved::new(to).encode();
        self.close_principal(&Principal::Store(store.clone()), &reason)
    }

    /// Hand `store` to another node (listening at `to` if known), after
    /// its last batch here committed and while this node still holds its
    /// lease: its connections are closed with `moved`, and what this node
    /// holds in memory of the store's documents is dropped, so that if the
    /// store comes back later it is read again with whatever the other
    /// node wrote. Its lists whose status index is behind stay marked in
    /// storage for the new owner ([`Hub::serve_store`]); this node no
    /// longer indexes them (a write for a store it does not hold would be
    /// refused by the fence, and with it the rest of that transaction).
    pub fn release_store(&mut self, store: &StoreId, to: Option<&str>) -> Vec<Output> {
        let out = self.close_store_moved(store, to);
        self.forget_store(store);
        out
    }

    /// This node now holds `store`'s lease: its lists whose status index
    /// another node left behind are caught up here (when idle, as after a
    /// restart). Documents load lazily, from storage, on first use.
    pub fn serve_store(&mut self, store: &StoreId) -> Result<(), HubError> {
        let due: HashSet<DocumentId> = self.db.index_due()?.into_iter().collect();
        let of_store = self.db.documents_of_store(store)?;
        self.projection
            .mark_due(of_store.into_iter().filter(|d| due.contains(d)));
        Ok(())
    }

    /// Forget what memory holds of `store`'s documents (cached documents,
    /// their index bookkeeping and due marks) and its roster. If the
    /// documents cannot be listed, every cached document is dropped, which
    /// is always safe: they reload from storage.
    pub(super) fn forget_store(&mut self, store: &StoreId) {
        self.rosters.remove(store);
        match self.db.documents_of_store(store) {
            Ok(docs) => {
                for d in docs {
                    self.uncache(d);
                    self.projection.take_due(d);
                }
            }
            Err(e) => {
                warn!(%store, error = %e, "could not list a released store's documents; dropping every cached document");
                self.docs.clear();
                self.seqs.clear();
                self.projection.forget_rows();
            }
        }
    }
}
