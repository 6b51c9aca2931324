//! Schema migrations, versioned with `PRAGMA user_version` in the style of
//! Mozilla application-services: an ordered, append-only list of steps.
//!
//! A new database runs every step from version 0, so the path that creates a
//! fresh replica is the same path that upgrades an old one, and the tests of
//! one test the other. Never edit a shipped step; add a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StorageError;

/// `MIGRATIONS[i]` upgrades a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: replica identity, replica settings, documents and their changes.
    "
    -- Exactly one row: this install's Automerge actor id (DESIGN rule 2).
    CREATE TABLE replica (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        actor_id BLOB NOT NULL CHECK (length(actor_id) > 0)
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID;

    -- A rowid table, not WITHOUT ROWID: snapshots can be far larger than a page.
    CREATE TABLE documents (
        doc_id   BLOB PRIMARY KEY NOT NULL CHECK (length(doc_id) = 16),
        -- Automerge save() of the changes folded in so far; NULL until the
        -- first compaction.
        snapshot BLOB
    );

    -- One row per Automerge change not yet folded into the snapshot. The
    -- rowid keeps arrival order, which is nearly causal, so loading rarely
    -- has to queue a change for missing dependencies.
    CREATE TABLE changes (
        id     INTEGER PRIMARY KEY,
        doc_id BLOB NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
        hash   BLOB NOT NULL CHECK (length(hash) = 32),
        bytes  BLOB NOT NULL,
        -- Dedupe: a change a peer resends is the same (doc, hash).
        UNIQUE (doc_id, hash)
    );
    ",
    // v2: Automerge sync state per (peer, document), so a reconnect sends
    // only what is new instead of starting the bloom-filter exchange over.
    // No foreign key to documents: a sync session may begin (and be saved)
    // before the first change of a document arrives. `delete_document`
    // removes the rows explicitly instead.
    "
    CREATE TABLE sync_states (
        peer   TEXT NOT NULL,
        doc_id BLOB NOT NULL CHECK (length(doc_id) = 16),
        state  BLOB NOT NULL,
        PRIMARY KEY (peer, doc_id)
    ) WITHOUT ROWID;

    CREATE INDEX sync_states_by_doc ON sync_states (doc_id);
    ",
    // v3: the hub's registry (stores, tokens, which store owns which
    // document, who owns each actor id, content HQ vouches for) and the
    // agent's record of changes the hub rejected. Every replica has the
    // tables; each side uses its own.
    "
    CREATE TABLE stores (
        store_id   TEXT PRIMARY KEY NOT NULL,
        name       TEXT NOT NULL,
        time_zone  TEXT NOT NULL
    ) WITHOUT ROWID;

    -- Only a hash of each token is kept: a stolen database leaks no tokens.
    CREATE TABLE tokens (
        token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
        principal  TEXT NOT NULL,
        label      TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    ) WITHOUT ROWID;

    CREATE TABLE doc_owners (
        doc_id   BLOB PRIMARY KEY NOT NULL CHECK (length(doc_id) = 16),
        store_id TEXT NOT NULL,
        kind     TEXT NOT NULL CHECK (kind IN ('instance', 'directory'))
    ) WITHOUT ROWID;
    CREATE INDEX doc_owners_by_store ON doc_owners (store_id);

    CREATE TABLE actor_owners (
        actor     BLOB PRIMARY KEY NOT NULL,
        principal TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE known_content (
        hash   BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
        doc_id BLOB NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE rejections (
        doc_id BLOB NOT NULL,
        hash   BLOB NOT NULL,
        reason TEXT NOT NULL,
        at     INTEGER NOT NULL,
        PRIMARY KEY (doc_id, hash)
    ) WITHOUT ROWID;
    ",
    // v4: HQ templates (every revision kept: an offline agent may still
    // materialize from an older one, and the hub must recognise it) and
    // which stores each template is assigned to.
    "
    CREATE TABLE templates (
        template_id BLOB NOT NULL CHECK (length(template_id) = 16),
        revision    INTEGER NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (template_id, revision)
    ) WITHOUT ROWID;

    CREATE TABLE template_stores (
        template_id BLOB NOT NULL,
        store_id    TEXT NOT NULL,
        PRIMARY KEY (template_id, store_id)
    ) WITHOUT ROWID;
    ",
    // v5: the hub's status index, rebuilt per document whenever it
    // changes, so status views are SQL queries instead of loading every
    // document on each request.
    "
    CREATE TABLE task_status (
        doc_id     BLOB NOT NULL,
        task_id    BLOB NOT NULL,
        store_id   TEXT NOT NULL,
        list_name  TEXT NOT NULL,
        list_date  TEXT NOT NULL,
        title      TEXT NOT NULL,
        due_ms     INTEGER,
        assignee   TEXT,
        status     TEXT NOT NULL,
        conflict   INTEGER NOT NULL,
        PRIMARY KEY (doc_id, task_id)
    ) WITHOUT ROWID;
    CREATE INDEX task_status_by_store ON task_status (store_id, list_date);

    CREATE TABLE status_events (
        event_id  BLOB PRIMARY KEY NOT NULL,
        doc_id    BLOB NOT NULL,
        task_id   BLOB NOT NULL,
        store_id  TEXT NOT NULL,
        worker    TEXT NOT NULL,
        terminal  TEXT NOT NULL,
        status    TEXT NOT NULL,
        at_ms     INTEGER NOT NULL,
        note      TEXT
    ) WITHOUT ROWID;
    CREATE INDEX status_events_by_worker ON status_events (store_id, worker, at_ms);
    CREATE INDEX status_events_by_doc ON status_events (doc_id);
    ",
    // v6: store groups (region, format, ...) and their members; templates
    // may be assigned to a group, which reaches every store in it now and
    // every store added to it later.
    "
    CREATE TABLE store_groups (
        group_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        PRIMARY KEY (group_id, store_id)
    ) WITHOUT ROWID;
    CREATE INDEX store_groups_by_store ON store_groups (store_id);

    CREATE TABLE template_groups (
        template_id BLOB NOT NULL,
        group_id    TEXT NOT NULL,
        PRIMARY KEY (template_id, group_id)
    ) WITHOUT ROWID;
    ",
    // v7: for the HQ dashboard. When each store last synced (kept across
    // hub restarts; written at a bounded rate, see `record_store_sync`),
    // and an index for "past due": open tasks in order of due time.
    "
    CREATE TABLE store_sync (
        store_id     TEXT PRIMARY KEY NOT NULL,
        last_sync_ms INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE INDEX task_status_open_by_due ON task_status (due_ms)
        WHERE status != 'completed' AND due_ms IS NOT NULL;
    ",
    // v8: the hub reads a document's known content on every incoming batch;
    // keyed by hash only, that was a full table scan (36% of the hub's CPU
    // in the reconnect-storm benchmark).
    "
    CREATE INDEX known_content_by_doc ON known_content (doc_id);
    ",
    // v9: lists whose status index rows are behind their document. The hub
    // brings the index up to date when it is idle or before anything reads
    // it; a mark written with the changes survives a crash in between.
    "
    CREATE TABLE index_due (
        doc_id BLOB PRIMARY KEY NOT NULL CHECK (length(doc_id) = 16)
    ) WITHOUT ROWID;
    ",
    // v10: a document's known content as one row (its hashes concatenated)
    // instead of a row per hash: a publish wrote ~22 rows at random places
    // of a table keyed by hash (12% of the hub's publish time), and every
    // incoming batch read them back through a second index.
    "
    CREATE TABLE known_content_sets (
        doc_id BLOB PRIMARY KEY NOT NULL CHECK (length(doc_id) = 16),
        -- 32-byte change hashes, concatenated.
        hashes BLOB NOT NULL CHECK (length(hashes) % 32 = 0)
    ) WITHOUT ROWID;
    INSERT INTO known_content_sets (doc_id, hashes)
        SELECT doc_id, unhex(group_concat(hex(hash), ''))
        FROM known_content GROUP BY doc_id;
    DROP TABLE known_content;
    ",
    // v11: workers HQ took off a store's roster. A terminal that was
    // offline when that happened still records their earlier work, so
    // the hub accepts events by anyone who was ever on the roster: the
    // roster in the directory has only today's workers.
    "
    CREATE TABLE former_workers (
        store_id  TEXT NOT NULL,
        worker_id TEXT NOT NULL,
        PRIMARY KEY (store_id, worker_id)
    ) WITHOUT ROWID;
    ",
    // v12: a status event's index row is keyed by its list and its id.
    // Keyed by the id alone, a store that copied an event's id into
    // another of its lists took the original's row over, and the worker
    // report showed the copy in place of what was recorded.
    "
    CREATE TABLE status_events_v12 (
        doc_id    BLOB NOT NULL,
        event_id  BLOB NOT NULL,
        task_id   BLOB NOT NULL,
        store_id  TEXT NOT NULL,
        worker    TEXT NOT NULL,
        terminal  TEXT NOT NULL,
        status    TEXT NOT NULL,
        at_ms     INTEGER NOT NULL,
        note      TEXT,
        PRIMARY KEY (doc_id, event_id)
    ) WITHOUT ROWID;
    INSERT INTO status_events_v12
        (doc_id, event_id, task_id, store_id, worker, terminal, status, at_ms, note)
        SELECT doc_id, event_id, task_id, store_id, worker, terminal, status, at_ms, note
        FROM status_events;
    DROP TABLE status_events;
    ALTER TABLE status_events_v12 RENAME TO status_events;
    CREATE INDEX status_events_by_worker ON status_events (store_id, worker, at_ms);
    ",
    // v13: a task assigned twice at once counts as a conflict in the status
    // index too, as on the terminal. Rows indexed before held 0 for it;
    // every indexed list is brought up to date at the next start.
    "
    INSERT OR IGNORE INTO index_due (doc_id) SELECT DISTINCT doc_id FROM task_status;
    ",
    // v14: HQ's people (issue #23): accounts with a role and a scope,
    // their personal API tokens (hashed, as store tokens are), and the
    // audit of HQ's actions, which refuses to be changed or deleted.
    "
    CREATE TABLE hq_users (
        user_id              TEXT PRIMARY KEY NOT NULL,
        role                 TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
        -- '*' (every store) or store group ids separated by spaces.
        scope                TEXT NOT NULL,
        -- argon2, PHC string format.
        password_hash        TEXT NOT NULL,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        disabled_at          INTEGER,
        created_at           INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE personal_tokens (
        token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
        user_id    TEXT NOT NULL,
        label      TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX personal_tokens_by_user ON personal_tokens (user_id);

    CREATE TABLE hq_audit (
        id      INTEGER PRIMARY KEY,
        at_ms   INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        action  TEXT NOT NULL,
        -- JSON array of store ids.
        stores  TEXT NOT NULL,
        status  INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX hq_audit_by_time ON hq_audit (at_ms);
    CREATE INDEX hq_audit_by_user ON hq_audit (user_id, at_ms);
    CREATE TRIGGER hq_audit_is_append_only_update BEFORE UPDATE ON hq_audit
        BEGIN SELECT RAISE(ABORT, 'the HQ audit is append-only'); END;
    CREATE TRIGGER hq_audit_is_append_only_delete BEFORE DELETE ON hq_audit
        BEGIN SELECT RAISE(ABORT, 'the HQ audit is append-only'); END;
    ",
];

/// The schema version this build writes and understands.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuse a database written by a newer build before touching it at all.
pub(crate) fn check_not_newer(conn: &Connection, file: &Path) -> Result<i64, StorageError> {
    let found = user_version(conn).map_err(|e| super::errors::from_sqlite(file, e))?;
    if found > CURRENT_VERSION {
        return Err(super::errors::too_new(file, found, CURRENT_VERSION));
    }
    Ok(found)
}

/// Bring the database to [`CURRENT_VERSION`].
pub(crate) fn migrate(conn: &mut Connection, file: &Path) -> Result<(), StorageError> {
    migrate_to(conn, file, CURRENT_VERSION)
}

/// Run the steps up to `target` in one transaction: a crash or error midway
/// leaves the database at its old version, never between two versions
/// (`user_version` lives in the database header, which the transaction covers).
pub(crate) fn migrate_to(
    conn: &mut Connection,
    file: &Path,
    target: i64,
) -> Result<(), StorageError> {
    let sql = |e| super::errors::from_sqlite(file, e);
    // IMMEDIATE takes the write lock up front, so two processes opening a
    // new file at once cannot both run step 1.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    // Re-read under the lock: another process may have migrated meanwhile.
    let from = check_not_newer(&tx, file)?;
    if from >= target {
        return Ok(());
    }
    for (step, version) in MIGRATIONS[from as usize..target as usize]
        .iter()
        .zip(from + 1..)
    {
        tx.execute_batch(step).map_err(sql)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    tracing::info!(file = %file.display(), from, to = target, "migrated replica database");
    Ok(())
}

#[cfg(test)]
mod tests {
    use automerge::{transaction::Transactable, AutoCommit, ReadDoc, ROOT};
    use rusqlite::params;

    use super::*;
    use crate::ids::DocumentId;
    use crate::storage::roles::*;
    use crate::storage::{PeerId, SqliteDatabase};

    #[test]
    fn every_step_bumps_the_version_by_one() {
        let file = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().unwrap();
        for target in 1..=CURRENT_VERSION {
            migrate_to(&mut conn, file, target).unwrap();
            assert_eq!(user_version(&conn).unwrap(), target);
        }
    }

    /// For each earlier version: build a database at that version with the
    /// SQL of that version, put data in, then open it with the current code.
    #[test]
    fn upgrades_from_every_earlier_version_keep_data() {
        for old in 0..CURRENT_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("replica.sqlite3");
            let doc_id = DocumentId::from_random_bytes([old as u8 + 1; 16]);
            let other_doc = DocumentId::from_random_bytes([0xEE; 16]);

            let mut doc = AutoCommit::new();
            doc.put(ROOT, "title", "closing checklist").unwrap();
            doc.commit();
            doc.put(ROOT, "store", "042").unwrap();
            doc.commit();
            let changes = doc.get_changes(&[]);
            {
                let mut conn = Connection::open(&path).unwrap();
                migrate_to(&mut conn, &path, old).unwrap();
                assert_eq!(user_version(&conn).unwrap(), old);
                if old >= 1 {
                    conn.execute(
                        "INSERT INTO replica (id, actor_id) VALUES (1, ?1)",
                        [[0xAA_u8; 16]],
                    )
                    .unwrap();
                    conn.execute(
                        "INSERT INTO documents (doc_id) VALUES (?1)",
                        [doc_id.as_bytes()],
                    )
                    .unwrap();
                    for change in &changes {
                        conn.execute(
                            "INSERT INTO changes (doc_id, hash, bytes) VALUES (?1, ?2, ?3)",
                            params![doc_id.as_bytes(), change.hash().0, change.raw_bytes()],
                        )
                        .unwrap();
                    }
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('hub_url', x'01')",
                        [],
                    )
                    .unwrap();
                }
                if old >= 10 {
                    // One row per document from v10 on.
                    let hashes = |h: Vec<[u8; 32]>| h.concat();
                    conn.execute(
                        "INSERT INTO known_content_sets (doc_id, hashes) VALUES (?1, ?2)",
                        params![
                            doc_id.as_bytes(),
                            hashes(changes.iter().map(|c| c.hash().0).collect())
                        ],
                    )
                    .unwrap();
                    conn.execute(
                        "INSERT INTO known_content_sets (doc_id, hashes) VALUES (?1, ?2)",
                        params![
                            other_doc.as_bytes(),
                            hashes((0..changes.len()).map(|i| [i as u8 + 1; 32]).collect())
                        ],
                    )
                    .unwrap();
                }
                if (3..10).contains(&old) {
                    // A row per hash until v10; two documents' rows
                    // interleaved, to be regrouped.
                    for (i, change) in changes.iter().enumerate() {
                        conn.execute(
                            "INSERT INTO known_content (hash, doc_id) VALUES (?1, ?2)",
                            params![change.hash().0, doc_id.as_bytes()],
                        )
                        .unwrap();
                        conn.execute(
                            "INSERT INTO known_content (hash, doc_id) VALUES (?1, ?2)",
                            params![[i as u8 + 1; 32], other_doc.as_bytes()],
                        )
                        .unwrap();
                    }
                }
            }

            let mut store = SqliteDatabase::open(&path, [0xBB; 16]).unwrap();
            assert_eq!(
                store.schema_version().unwrap(),
                CURRENT_VERSION,
                "from v{old}"
            );
            if old >= 1 {
                // Data and identity written at the old version survive.
                assert_eq!(store.actor_id(), automerge::ActorId::from([0xAA_u8; 16]));
                let loaded = store.load_document(doc_id).unwrap().expect("document kept");
                assert_eq!(loaded.get_heads(), doc.get_heads(), "from v{old}");
                let title = loaded
                    .get(ROOT, "title")
                    .unwrap()
                    .map(|(v, _)| v.to_string());
                assert_eq!(title.as_deref(), Some("\"closing checklist\""));
                assert_eq!(store.get_meta("hub_url").unwrap(), Some(vec![1]));
            } else {
                assert_eq!(store.actor_id(), automerge::ActorId::from([0xBB_u8; 16]));
            }
            if old >= 3 {
                let mut known = store.known_content(doc_id).unwrap();
                known.sort();
                let mut want: Vec<_> = changes.iter().map(|c| c.hash()).collect();
                want.sort();
                assert_eq!(known, want, "known content from v{old}");
                let mut other = store.known_content(other_doc).unwrap();
                other.sort();
                let want: Vec<_> = (0..changes.len())
                    .map(|i| automerge::ChangeHash([i as u8 + 1; 32]))
                    .collect();
                assert_eq!(other, want, "the other document's, from v{old}");
            }
            // Tables added by later steps work.
            let peer = PeerId::from("hub");
            store.save_sync_state(&peer, doc_id, b"state").unwrap();
            assert_eq!(
                store.load_sync_state(&peer, doc_id).unwrap(),
                Some(b"state".to_vec())
            );
            let st: crate::ids::StoreId = "s1".parse().unwrap();
            store.record_store_sync(&[(st.clone(), 7)]).unwrap();
            assert_eq!(store.store_sync_times().unwrap(), vec![(st, 7)]);
            assert_eq!(store.past_due(None, i64::MAX, 10).unwrap(), vec![]);
            assert_eq!(store.hq_users().unwrap(), vec![]);
        }
    }

    /// v13 counts assignee conflicts in the index: every list indexed
    /// before is marked to be indexed again.
    #[test]
    fn v13_marks_every_indexed_list_to_be_indexed_again() {
        let file = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, file, 12).unwrap();
        for (doc, task) in [(1u8, 1u8), (1, 2), (2, 1)] {
            conn.execute(
                "INSERT INTO task_status (doc_id, task_id, store_id, list_name, list_date, title, status, conflict)
                 VALUES (?1, ?2, 's1', 'Closing', '2026-12-07', 't', 'not_started', 0)",
                params![[doc; 16], [task; 16]],
            )
            .unwrap();
        }
        migrate_to(&mut conn, file, 13).unwrap();
        let due: Vec<Vec<u8>> = conn
            .prepare("SELECT doc_id FROM index_due ORDER BY doc_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(due, vec![vec![1u8; 16], vec![2u8; 16]]);
    }

    #[test]
    fn a_failed_step_leaves_the_old_version() {
        let file = Path::new(":memory:");
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, file, 1).unwrap();
        // Make step 2 fail halfway: its index name is already taken.
        conn.execute_batch("CREATE TABLE sync_states_by_doc (x)")
            .unwrap();
        assert!(migrate(&mut conn, file).is_err());
        assert_eq!(user_version(&conn).unwrap(), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sync_states'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            tables, 0,
            "the first statement of the failed step was rolled back"
        );
    }
}
