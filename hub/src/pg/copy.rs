//! `hub copy-to-postgres`: move a hub from its embedded SQLite file to
//! PostgreSQL, for a chain that outgrows one node. Every row the hub
//! keeps is copied as it is: documents and their change rows (in arrival
//! order), sync states (so terminals resume where they were), stores,
//! tokens (hashes only, as stored), owners, HQ content, templates, groups,
//! the status index and `meta` (the hub's storage id among it, so
//! terminals see the same hub). The hub's own actor id is not copied:
//! each node on PostgreSQL has its own.
//!
//! The tables are the same on both backends (the PostgreSQL schema mirrors
//! SQLite's), so the copy is by table and column, driven by PostgreSQL's
//! catalogue: each value is converted to the target column's type. It runs
//! in one transaction and refuses a database that already holds hub data.
//! The source is read in one read transaction, a consistent snapshot; stop
//! the hub first, or what it writes after the snapshot is not copied.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::types::ValueRef;
use tokio_postgres::types::ToSql;

/// Tables that are not copied: PostgreSQL's own bookkeeping, and what
/// belongs to nodes, not to the hub's data.
const NOT_COPIED: &[&str] = &[
    "schema_version",
    "replica_actors",
    "nodes",
    "store_leases",
    "lease_history",
    // What serving nodes know of their terminals in this run (schema 3).
    "store_links",
];

/// Rows per INSERT statement.
const CHUNK: usize = 2000;

/// Rows copied per table, in copy order.
#[derive(Debug, Clone, Default)]
pub struct Copied {
    pub tables: Vec<(String, u64)>,
}

/// One column's values for one chunk, typed as the target column.
enum Column {
    Bytes(Vec<Option<Vec<u8>>>),
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Column {
    fn new(pg_type: &str) -> Result<Column> {
        Ok(match pg_type {
            "bytea" => Column::Bytes(Vec::new()),
            "text" => Column::Text(Vec::new()),
            "bigint" | "integer" => Column::Int(Vec::new()),
            other => bail!("a column of type {other} has no copy rule"),
        })
    }

    fn push(&mut self, v: ValueRef<'_>, what: &dyn Fn() -> String) -> Result<()> {
        match (self, v) {
            (Column::Bytes(c), ValueRef::Null) => c.push(None),
            (Column::Text(c), ValueRef::Null) => c.push(None),
            (Column::Int(c), ValueRef::Null) => c.push(None),
            (Column::Bytes(c), ValueRef::Blob(b) | ValueRef::Text(b)) => c.push(Some(b.to_vec())),
            (Column::Text(c), ValueRef::Text(b) | ValueRef::Blob(b)) => c.push(Some(
                String::from_utf8(b.to_vec())
                    .with_context(|| format!("{} is not UTF-8 text", what()))?,
            )),
            (Column::Int(c), ValueRef::Integer(i)) => c.push(Some(i)),
            (_, other) => bail!("{} holds a {:?} value", what(), other.data_type()),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Bytes(c) => c,
            Column::Text(c) => c,
            Column::Int(c) => c,
        }
    }

    fn clear(&mut self) {
        match self {
            Column::Bytes(c) => c.clear(),
            Column::Text(c) => c.clear(),
            Column::Int(c) => c.clear(),
        }
    }

    fn array_type(pg_type: &str) -> &'static str {
        match pg_type {
            "bytea" => "bytea[]",
            "text" => "text[]",
            _ => "bigint[]",
        }
    }
}

/// Copy the hub's SQLite file at `sqlite` into the PostgreSQL database at
/// `url` (made ready first: its tables are created as `hub serve` would).
pub async fn copy_to_postgres(sqlite: &Path, url: &str) -> Result<Copied> {
    if !sqlite.exists() {
        bail!("{} does not exist", sqlite.display());
    }
    // Bring the file to this build's schema, as `hub serve` would.
    drop(
        engine::storage::SqliteDatabase::open(sqlite, [0; 16])
            .with_context(|| format!("opening {}", sqlite.display()))?,
    );
    {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || super::PgDatabase::connect(&url, "copy", [0; 16]))
            .await?
            .context("preparing the PostgreSQL database")?;
    }
    let src = rusqlite::Connection::open_with_flags(
        sqlite,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} to read", sqlite.display()))?;
    src.execute_batch("BEGIN")?;

    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let driver = tokio::spawn(conn);
    let tx = client.transaction().await?;
    let held: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM stores) + (SELECT count(*) FROM documents)",
            &[],
        )
        .await?
        .get(0);
    if held > 0 {
        bail!(
            "the PostgreSQL database already holds hub data ({held} stores and documents); \
             copy into an empty one"
        );
    }
    let mut tables: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables
              WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .filter(|t: &String| !NOT_COPIED.contains(&t.as_str()))
        .collect();
    // Documents before their change rows (a foreign key); the rest by name.
    tables.sort_by_key(|t| (t != "documents", t != "changes", t.clone()));

    let mut copied = Copied::default();
    for table in tables {
        let columns: Vec<(String, String)> = tx
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name = $1
                    AND is_identity = 'NO'
                  ORDER BY ordinal_position",
                &[&table],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let source_has: Vec<String> = src
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if source_has.is_empty() {
            bail!("the SQLite file has no table {table}: is it a hub's database?");
        }
        if let Some(missing) = names.iter().find(|n| !source_has.iter().any(|s| s == *n)) {
            bail!("the SQLite table {table} has no column {missing}");
        }
        // Change rows keep their arrival order (row ids are not copied).
        let order = if table == "changes" {
            " ORDER BY id"
        } else {
            ""
        };
        let mut read = src.prepare(&format!("SELECT {} FROM {table}{order}", names.join(", ")))?;
        let insert = format!(
            "INSERT INTO {table} ({}) SELECT * FROM unnest({})",
            names.join(", "),
            columns
                .iter()
                .enumerate()
                .map(|(i, (_, t))| format!("${}::{}", i + 1, Column::array_type(t)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let insert = tx.prepare(&insert).await?;
        let mut chunk: Vec<Column> = columns
            .iter()
            .map(|(_, t)| Column::new(t))
            .collect::<Result<_>>()
            .with_context(|| format!("table {table}"))?;
        let (mut n, mut in_chunk) = (0u64, 0usize);
        let mut rows = read.query([])?;
        loop {
            let row = rows.next()?;
            if let Some(row) = row {
                for (i, col) in chunk.iter_mut().enumerate() {
                    col.push(row.get_ref(i)?, &|| {
                        format!("column {}.{} of row {}", table, names[i], n + 1)
                    })?;
                }
                in_chunk += 1;
                n += 1;
            }
            if in_chunk == CHUNK || (row.is_none() && in_chunk > 0) {
                let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().map(Column::param).collect();
                tx.execute(&insert, &params)
                    .await
                    .with_context(|| format!("copying rows of {table}"))?;
                chunk.iter_mut().for_each(Column::clear);
                in_chunk = 0;
            }
            if row.is_none() {
                break;
            }
        }
        copied.tables.push((table, n));
    }
    // Every store gets its lease row, unowned until a node claims it.
    tx.execute(
        "INSERT INTO store_leases (store_id) SELECT store_id FROM stores ON CONFLICT DO NOTHING",
        &[],
    )
    .await?;
    tx.commit().await.context("committing the copy")?;
    drop(client);
    let _ = driver.await;
    Ok(copied)
}
