//! The status index as a projection of the instance documents: written
//! when they change, or marked due and caught up when the hub is idle.

use super::*;

impl Hub {
    /// Lists whose status index is behind their documents.
    pub fn index_backlog(&self) -> usize {
        self.index_due.len()
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
            None => self.index_due.iter().copied().collect(),
            Some(s) => self
                .db
                .documents_of_store(s)?
                .into_iter()
                .filter(|d| self.index_due.contains(d))
                .collect(),
        })
    }

    /// Bring the status index of those of `docs` still due up to date, in
    /// one transaction; returns how many were indexed. A failure is
    /// logged and they stay due, as in `catch_up_index`.
    pub fn catch_up_index_of(&mut self, docs: &[DocumentId]) -> usize {
        let mut docs = docs.iter().copied();
        self.catch_up_each(|hub| docs.find(|d| hub.index_due.contains(d)))
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
        let mut due: Vec<DocumentId> = self.index_due.iter().copied().collect();
        self.catch_up_each(|hub| {
            if !std::mem::take(&mut first) && !more() {
                return None;
            }
            while let Some(d) = due.pop() {
                if hub.index_due.contains(&d) {
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
            self.index_due.remove(&d);
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
                self.indexed.clear();
                self.index_due.extend(docs);
                return 0;
            }
        }
        // Still due (their marks were not cleared either): tried again later.
        let indexed = docs.len() - failed.len();
        self.index_due.extend(failed);
        indexed
    }

    /// The store with the status index caught up: what the dashboard's
    /// queries read.
    pub fn indexed_store(&mut self) -> &SqliteDatabase {
        self.catch_up_index();
        &self.db
    }

    /// Instances whose index rows `reindex` remembers (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn indexed_document_count(&self) -> usize {
        self.indexed.len()
    }

    /// Instances whose last indexed view `reindex` keeps (bounded by `docs`).
    #[cfg(test)]
    pub(crate) fn viewed_document_count(&self) -> usize {
        self.views.len()
    }

    /// Refresh the status index rows of an instance after it changed,
    /// writing only the rows that differ from what the last refresh wrote
    /// (all of them when that is not known). The index is derived data: a
    /// failure is logged, never fatal; false then (the list is still due).
    pub(crate) fn reindex(&mut self, doc_id: DocumentId) -> bool {
        let Some(doc) = self.docs.get(&doc_id) else {
            return false;
        };
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
        let written = match self.db.update_index(&view, last.as_ref()) {
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

    /// An instance changed: in a batch its index is written once at the
    /// commit (or marked due, see `commit_batch_indexing`), else now.
    pub(super) fn index_changed(&mut self, doc_id: DocumentId) {
        if self.db.in_batch() {
            self.index_pending.insert(doc_id);
        } else {
            self.reindex(doc_id);
        }
    }
}
