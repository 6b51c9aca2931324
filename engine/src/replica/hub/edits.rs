//! HQ's writes to documents: publishing a list and editing a document.

use super::*;

impl Hub {
    /// Materialize an instance for its store, list it in the store's
    /// directory, persist both, and push them to every connected syncer.
    /// In a batch (`batched`) a publish that fails part-way is undone
    /// whole, its rows and what it changed in memory, so a publish to
    /// many stores keeps only complete lists.
    pub fn publish(
        &mut self,
        content: &InstanceContent,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let store_id = content.meta.store.clone();
        if self.db.get_store(&store_id)?.is_none() {
            return Err(HubError::UnknownStore(store_id));
        }
        self.require_served(&store_id)?;
        let changes = instance::materialize(content)?;
        if !self.db.in_batch() {
            return self.publish_changes(content, changes, now_ms);
        }
        self.db.begin_operation()?;
        match self.publish_changes(content, changes, now_ms) {
            Ok(out) => {
                self.db.end_operation()?;
                Ok(out)
            }
            Err(e) => {
                if let Err(r) = self.db.rollback_operation() {
                    // The batch is lost then, and its commit says so.
                    warn!(error = %r, "could not undo a failed publish");
                }
                // Reloaded from disk when next used.
                self.uncache(content.id);
                self.uncache(DocumentId::directory_of(&store_id));
                self.projection.unchanged(content.id);
                Err(e)
            }
        }
    }

    /// `publish`'s writes. Nothing goes out before the last of them
    /// succeeded (a failed publish leaves no session believing it sent
    /// something).
    pub(super) fn publish_changes(
        &mut self,
        content: &InstanceContent,
        changes: Vec<Change>,
        now_ms: i64,
    ) -> Result<Vec<Output>, HubError> {
        let store_id = &content.meta.store;
        let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        let is_new = self.db.doc_owner(content.id)?.is_none();
        self.db.add_known_content(content.id, &hashes)?;
        self.db
            .set_doc_owner(content.id, store_id, DocKind::Instance)?;
        self.db.append_changes(content.id, &changes)?;
        if let Some(doc) = self.docs.get_mut(&content.id) {
            doc.apply_changes(changes)
                .map_err(|e| ModelError::Automerge(e.to_string()))?;
        } else if is_new {
            // Nothing else is stored for it: the changes just written are
            // the whole document (no need to read them back).
            let mut doc = Automerge::new();
            doc.apply_changes(changes)
                .map_err(|e| ModelError::Automerge(e.to_string()))?;
            self.cache(content.id, doc);
        }
        self.load(content.id)?;
        // For a publish to many stores, once the hub is idle (`batched`).
        self.index_changed(content.id);
        let entry = DirectoryEntry {
            name: content.meta.name.clone(),
            date: content.meta.date,
            template: content.meta.template,
            created_by: content.meta.created_by.clone(),
        };
        let dir_id = DocumentId::directory_of(store_id);
        let mut out = self.edit(dir_id, now_ms, |doc| {
            directory::put_entry(doc, content.id, &entry, now_ms).map(|c| c.into_iter().collect())
        })?;
        out.extend(self.fan_out(content.id, None));
        Ok(out)
    }

    /// Make an HQ edit to a document: run `f` on the hub's copy, persist
    /// its changes, and push them to every connection syncing the document.
    /// Returns the outputs to deliver (empty when `f` changed nothing).
    pub fn edit(
        &mut self,
        doc_id: DocumentId,
        _now_ms: i64,
        f: impl FnOnce(&mut Automerge) -> Result<Vec<Change>, ModelError>,
    ) -> Result<Vec<Output>, HubError> {
        if let Some((store, _)) = self.db.doc_owner(doc_id)? {
            self.require_served(&store)?;
        }
        self.load(doc_id)?;
        let doc = self.docs.get_mut(&doc_id).expect("loaded above");
        let changes = f(doc)?;
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.db.append_changes(doc_id, &changes) {
            // Not durable: drop the in-memory copy so nothing unsaved is served.
            self.docs.remove(&doc_id);
            return Err(e.into());
        }
        if matches!(self.db.doc_owner(doc_id)?, Some((_, DocKind::Instance))) {
            self.reindex(doc_id);
        }
        Ok(self.fan_out(doc_id, None))
    }
}
