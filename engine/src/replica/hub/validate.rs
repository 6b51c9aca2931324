//! Running validation on a peer's changes and storing what it accepts.

use super::*;

/// What `validate_and_store` did with a batch: how many changes were
/// accepted (and stored), the rejections to report, and the changes left
/// waiting for dependencies.
pub(super) type Stored = (usize, Vec<(ChangeHash, Rejection)>, Vec<Change>);

impl Hub {
    /// Validate, then persist the accepted changes (with their new actors)
    /// before applying them in memory. Returns the accepted count and the
    /// rejections to report.
    pub(super) fn validate_and_store(
        &mut self,
        doc_id: DocumentId,
        owner: &(StoreId, DocKind),
        principal: &Principal,
        incoming: &[Change],
        now_ms: i64,
    ) -> Result<Stored, StorageError> {
        let known: HashSet<ChangeHash> = self.db.known_content(doc_id)?.into_iter().collect();
        // Only a store's status events name workers that must be checked.
        let roster = match (principal, owner.1) {
            (Principal::Store(_), DocKind::Instance) => Some(self.workers_of(&owner.0)?),
            _ => None,
        };
        let store = &self.db;
        let lookup = |a: &ActorId| store.actor_owner(a).ok().flatten();
        let worker_known = |w: &WorkerId| roster.as_ref().is_some_and(|r| r.contains(w));
        let ctx = ValidationContext {
            doc_id,
            kind: owner.1,
            owner: &owner.0,
            actor_owner: &lookup,
            known_content: &known,
            max_event_time: now_ms + self.cfg.limits.event_time_tolerance_ms,
            worker_known: &worker_known,
        };
        let doc = self.docs.get(&doc_id).expect("caller loaded it");
        let heads = doc.get_heads();
        let seqs = match self.seqs.remove(&doc_id) {
            Some((at, seqs)) if at == heads => Some(seqs),
            _ => None,
        };
        let mut outcome = validation::validate_with_seqs(doc, incoming, principal, &ctx, seqs);
        let seqs = std::mem::take(&mut outcome.seqs);
        let rejections: Vec<(ChangeHash, Rejection)> = outcome
            .verdicts
            .iter()
            .filter_map(|(h, v)| match v {
                Verdict::Rejected(r) => Some((*h, r.clone())),
                _ => None,
            })
            .collect();
        self.counters.changes_rejected += rejections.len() as u64;
        let waiting: Vec<Change> = incoming
            .iter()
            .filter(|c| outcome.verdict(&c.hash()) == Some(&Verdict::MissingDeps))
            .cloned()
            .collect();
        if outcome.accepted.is_empty() {
            self.seqs.insert(doc_id, (heads, seqs));
            return Ok((0, rejections, waiting));
        }
        self.db
            .commit_accepted(doc_id, &outcome.accepted, &outcome.new_actors, principal)?;
        self.counters.changes_accepted += outcome.accepted.len() as u64;
        // Validation already built the document with these changes in:
        // use it rather than applying them a second time.
        let accepted = outcome.accepted.len();
        match outcome.state {
            Some(mut state) => {
                state.set_actor(self.db.actor_id());
                self.seqs.insert(doc_id, (state.get_heads(), seqs));
                self.docs.insert(doc_id, state);
            }
            None => {
                let doc = self.docs.get_mut(&doc_id).expect("caller loaded it");
                doc.apply_changes(outcome.accepted).map_err(|e| {
                    StorageError::damaged_document_at(self.db.location(), doc_id, e.to_string())
                })?;
            }
        }
        Ok((accepted, rejections, waiting))
    }

    /// The workers whose status events `store`'s terminals may record:
    /// those on its roster now and those HQ took off it (a terminal that
    /// was offline then still records what they did before it heard).
    /// Read from the store's directory (loaded if need be) when it has
    /// moved since the last time.
    pub(super) fn workers_of(
        &mut self,
        store: &StoreId,
    ) -> Result<Arc<HashSet<WorkerId>>, StorageError> {
        let dir = DocumentId::directory_of(store);
        if let Err(e) = self.load(dir) {
            // Every store has a directory from the moment it is added;
            // without one the roster is empty, and the events wait for
            // nothing: they are refused with a reason the terminal shows.
            warn!(%store, error = %e, "no directory to read the roster from");
        }
        let heads = self.docs.get(&dir).map(|d| d.get_heads());
        if let (Some(heads), Some((at, workers))) = (&heads, self.rosters.get(store)) {
            if at == heads {
                return Ok(workers.clone());
            }
        }
        let mut workers: HashSet<WorkerId> = self.db.former_workers(store)?.into_iter().collect();
        if let Some(d) = self.docs.get(&dir) {
            workers.extend(directory::roster_ids(d));
        }
        let workers = Arc::new(workers);
        if let Some(heads) = heads {
            self.rosters.insert(store.clone(), (heads, workers.clone()));
        }
        Ok(workers)
    }
}
