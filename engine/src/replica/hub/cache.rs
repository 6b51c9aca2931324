//! The documents held in memory, loaded on use and evicted when idle.

use super::*;

impl Hub {
    /// The document as the hub holds it (loaded into memory if needed).
    pub fn document(&mut self, doc_id: DocumentId) -> Result<&Automerge, HubError> {
        // Another node serves the document's store and may have changed it
        // since this node last held it: read it afresh from storage.
        if self.served.is_some() && !self.serves_doc(doc_id) {
            self.uncache(doc_id);
        }
        self.load(doc_id)?;
        Ok(self.docs.get(&doc_id).expect("loaded above"))
    }

    pub(super) fn load(&mut self, doc_id: DocumentId) -> Result<(), HubError> {
        if self.docs.contains_key(&doc_id) {
            return Ok(());
        }
        let doc = match self.db.load_document(doc_id) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(HubError::UnknownDocument(doc_id)),
            Err(e) => {
                return Err(HubError::Load {
                    doc: doc_id,
                    reason: e.to_string(),
                })
            }
        };
        self.cache(doc_id, doc);
        Ok(())
    }

    /// Hold `doc` in memory (the hub's actor set), evicting idle ones.
    pub(super) fn cache(&mut self, doc_id: DocumentId, mut doc: Automerge) {
        doc.set_actor(self.db.actor_id());
        self.evict_idle();
        self.docs.insert(doc_id, doc);
    }

    /// Drop a document from memory with what `reindex` kept of it.
    pub(super) fn uncache(&mut self, doc_id: DocumentId) {
        self.docs.remove(&doc_id);
        self.projection.forget(doc_id);
        self.seqs.remove(&doc_id);
    }

    /// Keep memory bounded: drop documents nobody is syncing once over the cap.
    pub(super) fn evict_idle(&mut self) {
        // A document dropped after a failed write (in `on_sync`, `edit`)
        // leaves what `reindex` knew of it behind; still true, but its
        // memory is only bounded by `docs` once swept.
        let docs = &self.docs;
        self.projection
            .retain_cached(|d| docs.contains_key(d), docs.len());
        if self.docs.len() < self.cfg.limits.max_cached_documents {
            return;
        }
        let idle: Vec<DocumentId> = self
            .docs
            .keys()
            .filter(|d| self.subscribers.get(d).is_none_or(|s| s.is_empty()))
            .copied()
            .take(self.docs.len() + 1 - self.cfg.limits.max_cached_documents)
            .collect();
        for d in idle {
            self.uncache(d);
        }
    }

    /// Drop a document from memory and from every session (it was deleted).
    pub(crate) fn forget_document(&mut self, doc: DocumentId) {
        self.uncache(doc);
        self.projection.take_due(doc);
        if let Some(subs) = self.subscribers.remove(&doc) {
            for conn in subs {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session.drop_document(doc);
                    c.waiting.remove(&doc);
                }
            }
        }
    }

    pub fn cached_document_count(&self) -> usize {
        self.docs.len()
    }
}
