//! A hub node of a cluster serves only the stores whose lease it holds.
//! What the replica does when a store leaves it (handed off, or its lease
//! lost); a store's arrival is `Hub::store_arrived`. The leases themselves
//! (claim, renew, the fence) are the shell's and the backend's.

use super::*;

impl Hub {
    /// Close every connection of `store` with the `moved` reason: this
    /// node no longer serves it (its lease went to another node, which
    /// listens at `to` if known). Terminals reconnect at once, there.
    /// The caller commits the store's batch first (persist before send);
    /// each connection's sync state is saved as on any close.
    pub fn close_store_moved(&mut self, store: &StoreId, to: Option<&str>) -> Vec<Output> {
        let reason = Moved::new(to).encode();
        let out = self.close_principal(&Principal::Store(store.clone()), &reason);
        // Another node writes its documents from now on.
        self.forget_store(store);
        out
    }

    /// Forget what memory holds of `store`'s documents (cached documents,
    /// their index bookkeeping and due marks) and its roster: this node
    /// lost the store, and whatever it writes for it would be refused. The
    /// due marks stay in storage for the store's node. If the documents
    /// cannot be listed, every cached document is dropped, which is always
    /// safe: they reload from storage.
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
                warn!(%store, error = %e, "could not list a lost store's documents; dropping every cached document");
                self.docs.clear();
                self.seqs.clear();
                self.projection.forget_rows();
            }
        }
    }
}
