//! The hub's tables on PostgreSQL, and their migrations.
//!
//! The same tables as the SQLite backend's (`engine::storage::sqlite`'s
//! schema, in its final shape rather than its step history), so the two
//! backends answer the same queries the same way. Differences:
//! - `replica_actors`: one actor id per hub node (SQLite's `replica` holds
//!   the one actor of its file); several nodes share one database.
//! - Migrations run under a transaction-level advisory lock, so nodes
//!   starting together do not race (SQLite's `BEGIN IMMEDIATE`).
//!
//! `MIGRATIONS` is append-only: a released step is never edited, a change
//! is a new step.

use tokio_postgres::Client;

/// The version this build's tables are at.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock key held while migrating ("hub schema").
const MIGRATION_LOCK: i64 = 0x6875_625f_7363_6865;

const MIGRATIONS: &[&str] = &[
    // 1: everything the hub stores, as SQLite's schema v13 holds it.
    r#"
    CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE replica_actors (node_id text PRIMARY KEY, actor_id bytea NOT NULL UNIQUE);
    CREATE TABLE documents (
        doc_id bytea PRIMARY KEY CHECK (length(doc_id) = 16),
        snapshot bytea
    );
    CREATE TABLE changes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        doc_id bytea NOT NULL REFERENCES documents ON DELETE CASCADE,
        hash bytea NOT NULL CHECK (length(hash) = 32),
        bytes bytea NOT NULL,
        UNIQUE (doc_id, hash)
    );
    CREATE INDEX changes_by_doc ON changes (doc_id, id);
    CREATE TABLE sync_states (
        peer text NOT NULL, doc_id bytea NOT NULL, state bytea NOT NULL,
        PRIMARY KEY (peer, doc_id)
    );
    CREATE INDEX sync_states_by_doc ON sync_states (doc_id);
    CREATE TABLE stores (store_id text PRIMARY KEY, name text NOT NULL, time_zone text NOT NULL);
    CREATE TABLE tokens (
        token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
        principal text NOT NULL,
        label text NOT NULL DEFAULT '',
        created_at bigint NOT NULL,
        expires_at bigint,
        revoked_at bigint
    );
    CREATE INDEX tokens_by_principal ON tokens (principal);
    CREATE TABLE doc_owners (
        doc_id bytea PRIMARY KEY,
        store_id text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('instance', 'directory'))
    );
    CREATE INDEX doc_owners_by_store ON doc_owners (store_id);
    CREATE TABLE actor_owners (actor bytea PRIMARY KEY, principal text NOT NULL);
    CREATE TABLE known_content_sets (
        doc_id bytea PRIMARY KEY,
        hashes bytea NOT NULL CHECK (length(hashes) % 32 = 0)
    );
    CREATE TABLE rejections (
        doc_id bytea NOT NULL, hash text NOT NULL, reason text NOT NULL, at bigint NOT NULL,
        PRIMARY KEY (doc_id, hash)
    );
    CREATE TABLE templates (
        template_id bytea NOT NULL, revision bigint NOT NULL, body text NOT NULL,
        PRIMARY KEY (template_id, revision)
    );
    CREATE TABLE template_stores (
        template_id bytea NOT NULL, store_id text NOT NULL, PRIMARY KEY (template_id, store_id)
    );
    CREATE INDEX template_stores_by_store ON template_stores (store_id);
    CREATE TABLE store_groups (
        group_id text NOT NULL, store_id text NOT NULL, PRIMARY KEY (group_id, store_id)
    );
    CREATE INDEX store_groups_by_store ON store_groups (store_id);
    CREATE TABLE template_groups (
        template_id bytea NOT NULL, group_id text NOT NULL, PRIMARY KEY (template_id, group_id)
    );
    CREATE TABLE store_sync (store_id text PRIMARY KEY, last_sync_ms bigint NOT NULL);
    CREATE TABLE former_workers (
        store_id text NOT NULL, worker_id text NOT NULL, PRIMARY KEY (store_id, worker_id)
    );
    CREATE TABLE task_status (
        doc_id bytea NOT NULL, task_id bytea NOT NULL, store_id text NOT NULL,
        list_name text NOT NULL, list_date text NOT NULL, title text NOT NULL,
        due_ms bigint, assignee text, status text NOT NULL, conflict bigint NOT NULL,
        PRIMARY KEY (doc_id, task_id)
    );
    CREATE INDEX task_status_by_store ON task_status (store_id, list_date);
    CREATE INDEX task_status_open_by_due ON task_status (due_ms)
        WHERE status <> 'completed' AND due_ms IS NOT NULL;
    CREATE TABLE status_events (
        doc_id bytea NOT NULL, event_id bytea NOT NULL, task_id bytea NOT NULL,
        store_id text NOT NULL, worker text NOT NULL, terminal text NOT NULL,
        status text NOT NULL, at_ms bigint NOT NULL, note text,
        PRIMARY KEY (doc_id, event_id)
    );
    CREATE INDEX status_events_by_worker ON status_events (store_id, worker, at_ms);
    CREATE INDEX status_events_by_time ON status_events (at_ms);
    CREATE TABLE index_due (doc_id bytea PRIMARY KEY);
    "#,
    // 2: the cluster. Nodes announce themselves with a heartbeat; each
    // store has one lease row, owned by at most one node at a time, whose
    // epoch grows at every claim (the fence every commit checks).
    r#"
    CREATE TABLE nodes (
        node_id text PRIMARY KEY,
        address text NOT NULL,
        state text NOT NULL CHECK (state IN ('active', 'leaving')),
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        heartbeat_at timestamptz NOT NULL
    );
    CREATE TABLE store_leases (
        store_id text PRIMARY KEY REFERENCES stores ON DELETE CASCADE,
        owner text,
        epoch bigint NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL DEFAULT '-infinity',
        acquired_at timestamptz
    ) WITH (fillfactor = 70);
    CREATE INDEX store_leases_by_owner ON store_leases (owner);
    CREATE TABLE lease_history (
        store_id text NOT NULL,
        epoch bigint NOT NULL,
        owner text NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (store_id, epoch)
    );
    INSERT INTO store_leases (store_id) SELECT store_id FROM stores ON CONFLICT DO NOTHING;
    "#,
    // 3: what the node serving a store knows of its terminals (open
    // connections, last sync in this run), shared each lease round so
    // that every node's dashboard shows the same.
    r#"
    CREATE TABLE store_links (
        store_id text PRIMARY KEY,
        node_id text NOT NULL,
        connections bigint NOT NULL,
        last_sync_ms bigint
    );
    "#,
    // 4: HQ's people (issue #23), as SQLite's schema v14 (the same column
    // types, so `hub copy-to-postgres` copies them): accounts, personal API
    // tokens (hashed), and the audit, append-only (a trigger refuses
    // UPDATE, DELETE and TRUNCATE).
    r#"
    CREATE TABLE hq_users (
        user_id text PRIMARY KEY,
        role text NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
        scope text NOT NULL,
        password_hash text NOT NULL,
        must_change_password integer NOT NULL DEFAULT 0,
        disabled_at bigint,
        created_at bigint NOT NULL
    );
    CREATE TABLE personal_tokens (
        token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
        user_id text NOT NULL,
        label text NOT NULL DEFAULT '',
        created_at bigint NOT NULL,
        expires_at bigint,
        revoked_at bigint
    );
    CREATE INDEX personal_tokens_by_user ON personal_tokens (user_id);
    CREATE TABLE hq_audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms bigint NOT NULL,
        user_id text NOT NULL,
        action text NOT NULL,
        -- JSON array of store ids.
        stores text NOT NULL,
        status integer NOT NULL,
        outcome text NOT NULL
    );
    CREATE INDEX hq_audit_by_time ON hq_audit (at_ms);
    CREATE INDEX hq_audit_by_user ON hq_audit (user_id, at_ms);
    CREATE FUNCTION hq_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the HQ audit is append-only'; END $$;
    CREATE TRIGGER hq_audit_is_append_only BEFORE UPDATE OR DELETE ON hq_audit
        FOR EACH ROW EXECUTE FUNCTION hq_audit_is_append_only();
    CREATE TRIGGER hq_audit_is_append_only_truncate BEFORE TRUNCATE ON hq_audit
        FOR EACH STATEMENT EXECUTE FUNCTION hq_audit_is_append_only();
    "#,
];

/// Bring the database's tables to [`CURRENT_VERSION`], in one transaction
/// under the migration lock. Returns the version found before, or an
/// error naming a version newer than this build knows.
pub(super) async fn migrate(client: &mut Client) -> Result<i64, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)")
        .await?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if found > CURRENT_VERSION {
        return Err(MigrateError::TooNew(found));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(step).await?;
        tracing::info!(version = i + 1, "migrated the hub's PostgreSQL tables");
    }
    tx.execute(
        "UPDATE schema_version SET version = $1",
        &[&CURRENT_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(found)
}

pub(super) enum MigrateError {
    Pg(tokio_postgres::Error),
    TooNew(i64),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Pg(e)
    }
}
