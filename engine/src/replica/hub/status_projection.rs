//! The status index as a projection of the instance documents: written
//! when they change, or marked due and caught up when the hub is idle.

use super::*;

/// The status index as a projection of the instance documents: what it
/// knows of them, apart from the hub. It is told which instances changed
/// (`changed`), writes a changed instance's rows (`write`: only the rows
/// that differ from the last write), and keeps which lists are behind
/// their documents (`due`), so the index can catch up when the hub is
/// idle. Its writes go through the `StatusIndex` trait, in whatever unit
/// of work is open. The hub feeds it (`Hub::index_changed`, the batch's
/// commit, the catch-up below); with several hub nodes it can run wherever
/// a document changes.
#[derive(Default)]
pub(super) struct StatusProjection {
    /// Lists changed in the current batch: marked due at its commit.
    pending: HashSet<DocumentId>,
    /// Lists whose status index rows are behind their documents (marked
    /// in storage too). Sync comes first: they are indexed when the hub
    /// is idle (`catch_up_index`) or before the index is read
    /// (`indexed_store`), each once however many batches changed it.
    due: HashSet<DocumentId>,
    /// What the status index holds for instances in the hub's cache, as
    /// `write` last wrote it, so the next `write` writes only what
    /// changed. An entry goes with its document, and whenever the table
    /// may no longer match it (a failed write, a rolled-back batch, a
    /// purge).
    indexed: HashMap<DocumentId, IndexedRows>,
    /// The view each cached instance had when last indexed, and its heads:
    /// what a change that only appends status events is read against
    /// (`instance::refresh`) instead of parsing the whole log again.
    views: HashMap<DocumentId, (Vec<ChangeHash>, instance::InstanceView)>,
}

impl StatusProjection {
    /// The projection of a database; the lists a crash left behind in the
    /// index are due.
    pub(super) fn open(db: &(impl StatusIndex + ?Sized)) -> Result<Self, StorageError> {
        Ok(StatusProjection {
            due: db.index_due()?.into_iter().collect(),
            ..Default::default()
        })
    }

    /// Bring the index rows of instance `doc_id` to `doc`, writing only
    /// the rows that differ from what the last write wrote (all of them
    /// when that is not known). The index is derived data: a failure is
    /// logged, never fatal; false then (the list is still due).
    pub(super) fn write(
        &mut self,
        db: &mut (impl StatusIndex + ?Sized),
        doc_id: DocumentId,
        doc: &Automerge,
    ) -> bool {
        let heads = doc.get_heads();
        let refreshed = self
            .views
            .remove(&doc_id)
            .and_then(|(since, old)| instance::refresh(doc, &since, &old));
        let view = match refreshed.map(Ok).unwrap_or_else(|| instance::read(doc)) {
            Ok(view) => view,
            Err(e) => {
                // Not a readable instance: nothing to index, now or later.
                debug!(doc = %doc_id, error = %e, "not indexed");
                return true;
            }
        };
        // Taken out before the write: if it fails, the next refresh
        // rewrites every row of the list.
        let last = self.indexed.remove(&doc_id);
        let written = match db.update_index(&view, last.as_ref()) {
            Ok(update) => {
                self.indexed.insert(doc_id, update.rows);
                true
            }
            Err(e) => {
                warn!(doc = %doc_id, error = %e, "could not update the status index");
                false
            }
        };
        // The view is the document's, whatever became of the write.
        self.views.insert(doc_id, (heads, view));
        written
    }

    /// An instance changed inside the open batch: it is written (or
    /// marked due) at the batch's commit.
    pub(super) fn changed(&mut self, doc_id: DocumentId) {
        self.pending.insert(doc_id);
    }

    /// A change to `doc_id` in the open batch was undone.
    pub(super) fn unchanged(&mut self, doc_id: DocumentId) {
        self.pending.remove(&doc_id);
    }

    /// How many instances the open batch changed.
    pub(super) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The instances the batch changed, for its commit.
    pub(super) fn take_pending(&mut self) -> Vec<DocumentId> {
        self.pending.drain().collect()
    }

    /// These lists' rows are behind their documents.
    pub(super) fn mark_due(&mut self, docs: impl IntoIterator<Item = DocumentId>) {
        self.due.extend(docs);
    }

    /// `doc_id` is about to be indexed, or is gone: no longer due
    /// (unless marked again).
    /// Forget every due mark (the storage keeps them): a cluster node
    /// serves no store yet, and reads each store's marks again when it
    /// takes the store over (`Hub::store_arrived`).
    pub(super) fn forget_due(&mut self) {
        self.due.clear();
    }

    pub(super) fn take_due(&mut self, doc_id: DocumentId) {
        self.due.remove(&doc_id);
    }

    pub(super) fn is_due(&self, doc_id: &DocumentId) -> bool {
        self.due.contains(doc_id)
    }

    pub(super) fn due(&self) -> impl Iterator<Item = &DocumentId> {
        self.due.iter()
    }

    pub(super) fn due_count(&self) -> usize {
        self.due.len()
    }

    /// What it remembers of `doc_id` goes with the document (evicted,
    /// deleted).
    pub(super) fn forget(&mut self, doc_id: DocumentId) {
        self.indexed.remove(&doc_id);
        self.views.remove(&doc_id);
    }

    /// The rows may no longer match what it remembers (a rolled-back
    /// transaction): the next write of each list rewrites all its rows.
    pub(super) fn forget_rows(&mut self) {
        self.indexed.clear();
        self.views.clear();
    }

    /// Keep only what it remembers of documents `cached` says are still
    /// held (a document dropped after a failed write leaves its entries
    /// behind: still true, but only bounded by the cache once swept).
    pub(super) fn retain_cached(&mut self, cached: impl Fn(&DocumentId) -> bool, max: usize) {
        if self.indexed.len() > max {
            self.indexed.retain(|d, _| cached(d));
        }
        if self.views.len() > max {
            self.views.retain(|d, _| cached(d));
        }
    }

    #[cfg(test)]
    pub(super) fn indexed_count(&self) -> usize {
        self.indexed.len()
    }

    #[cfg(test)]
    pub(super) fn viewed_count(&self) -> usize {
        self.views.len()
    }
}

impl Hub {
    /// Lists whose status index is behind their documents.
    pub fn index_backlog(&self) -> usize {
        self.projection.due_count()
    }

    /// Bring every due list's status index up to date, in one
    /// transaction; returns how many were indexed. A failure is logged and
    /// the lists stay due: the index is derived data.
    pub fn catch_up_index(&mut self) -> usize {
        self.catch_up_index_while(|| true)
    }

    /// Lists of `store` (of every store for `None`) whose status index is
    /// behind their documents: what a query over that store would miss.
    pub fn index_due_of(&self, store: Option<&StoreId>) -> Result<Vec<DocumentId>, HubError> {
        Ok(match store {
            None => self.projection.due().copied().collect(),
            Some(s) => self
                .db
                .documents_of_store(s)?
                .into_iter()
                .filter(|d| self.projection.is_due(d))
                .collect(),
        })
    }

    /// Bring the status index of those of `docs` still due up to date, in
    /// one transaction; returns how many were indexed. A failure is
    /// logged and they stay due, as in `catch_up_index`.
    pub fn catch_up_index_of(&mut self, docs: &[DocumentId]) -> usize {
        let mut docs = docs.iter().copied();
        self.catch_up_each(|hub| docs.find(|d| hub.projection.is_due(d) && hub.serves_doc(*d)))
    }

    /// Bring due lists' status index up to date one after another, in one
    /// transaction, for as long as `more()` says (asked after each list;
    /// at least one is indexed if any is due): the idle hub thread's
    /// catch-up, which stops as soon as a command arrives. Returns how many
    /// were indexed; failures as in `catch_up_index`.
    pub fn catch_up_index_while(&mut self, mut more: impl FnMut() -> bool) -> usize {
        let mut first = true;
        // Taken once: looking for the first entry of a set being emptied
        // scans its emptied buckets again every time.
        let mut due: Vec<DocumentId> = self.projection.due().copied().collect();
        self.catch_up_each(|hub| {
            if !std::mem::take(&mut first) && !more() {
                return None;
            }
            while let Some(d) = due.pop() {
                // Another node's store: its node catches it up.
                if hub.projection.is_due(&d) && hub.serves_doc(d) {
                    return Some(d);
                }
            }
            None
        })
    }

    /// Index the lists `next` names, until it says None, in one
    /// transaction (unless a batch is open).
    pub(super) fn catch_up_each(
        &mut self,
        mut next: impl FnMut(&Hub) -> Option<DocumentId>,
    ) -> usize {
        let Some(mut d) = next(self) else {
            return 0;
        };
        let own_batch = !self.db.in_batch();
        if own_batch {
            if let Err(e) = self.db.begin_batch() {
                warn!(error = %e, "could not start indexing; will try again");
                return 0;
            }
        }
        let mut docs = Vec::new();
        let mut failed = Vec::new();
        loop {
            self.projection.take_due(d);
            docs.push(d);
            let was_cached = self.docs.contains_key(&d);
            match self.load(d) {
                Ok(()) => {
                    if !self.reindex(d) {
                        failed.push(d);
                    }
                }
                // Deleted since, or unreadable: nothing to index.
                Err(e) => debug!(doc = %d, error = %e, "not indexed"),
            }
            // Loaded only to be indexed (after a restart): not kept, so
            // catching up does not fill memory with lists nobody syncs.
            if !was_cached && self.subscribers.get(&d).is_none_or(|s| s.is_empty()) {
                self.uncache(d);
            }
            match next(self) {
                Some(n) => d = n,
                None => break,
            }
        }
        if own_batch {
            if let Err(e) = self.db.commit_batch() {
                warn!(error = %e, "could not write the status index; will try again");
                self.projection.forget_rows();
                self.projection.mark_due(docs);
                // Lists of stores this node does not hold (any more) are
                // left to the node that does; tried again, they would be
                // refused again, and everything indexed with them.
                for store in e.lost_stores().unwrap_or_default() {
                    self.forget_store(&store);
                }
                return 0;
            }
        }
        // Still due (their marks were not cleared either): tried again later.
        let indexed = docs.len() - failed.len();
        self.projection.mark_due(failed);
        indexed
    }

    /// The store with the status index caught up: what the dashboard's
    /// queries read.
    pub fn indexed_store(&mut self) -> &dyn HubStorage {
        self.catch_up_index();
        &*self.db
    }

    /// Instances whose index rows `reindex` remembers (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn indexed_document_count(&self) -> usize {
        self.projection.indexed_count()
    }

    /// Instances whose last indexed view `reindex` keeps (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn viewed_document_count(&self) -> usize {
        self.projection.viewed_count()
    }

    /// Refresh the status index rows of a cached instance after it
    /// changed (`StatusProjection::write`); false if they could not be
    /// written (the list is still due).
    pub(crate) fn reindex(&mut self, doc_id: DocumentId) -> bool {
        let Some(doc) = self.docs.get(&doc_id) else {
            return false;
        };
        self.projection.write(&mut *self.db, doc_id, doc)
    }

    /// An instance changed: in a batch its index is written once at the
    /// commit (or marked due, see `commit_batch_indexing`), else now.
    pub(super) fn index_changed(&mut self, doc_id: DocumentId) {
        if self.db.in_batch() {
            self.projection.changed(doc_id);
        } else {
            self.reindex(doc_id);
        }
    }
}
