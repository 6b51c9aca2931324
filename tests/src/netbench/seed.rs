//! Untimed setup for the JS baseline: its storage directory written before
//! it starts, in the layout automerge-repo reads, holding every document as
//! the hub fixture holds it. (Pushing 31,000 documents over the sync
//! protocol ran 19 minutes, then crashed Node with a `withTimeout` error.)
//!
//! The layout, as automerge-repo 2.5.6 reads it (`tests/js/node_modules`):
//! `StorageSubsystem.loadDoc` asks the adapter for every chunk under the
//! key prefixes `[documentId, "snapshot"]` and then `[documentId,
//! "incremental"]`, concatenates them and `loadIncremental`s the result, so
//! one chunk holding `Automerge::save` is the whole document.
//! `NodeFSStorageAdapter` keeps key `[first, ...rest]` in the file
//! `<dir>/<first[..2]>/<first[2..]>/<rest joined by />`. `documentId` is the
//! bare bs58check id (`DocumentId::to_bs58check`, no `automerge:`).
//!
//! The chunk's name (the key's last part) plays no part in loading. Node
//! names a snapshot `headsHash(heads)` (SHA-256 of the hex heads), and when
//! it next compacts a document (`#saveTotal`) it deletes every chunk whose
//! name differs from the new snapshot's; it only saves a document whose
//! heads changed, so that deletes the seeded chunk too, as it should. So
//! the seeded chunk has a fixed name instead (computing Node's would need
//! SHA-256, which this crate does not depend on).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use engine::ids::DocumentId;
use engine::storage::Store;

use super::fixture::World;

/// The name of every seeded snapshot chunk.
pub const SEED_CHUNK: &str = "netbench-seed";

/// Threads loading documents from the fixture and writing their files:
/// each opens its own connection and takes every `WRITERS`-th store.
const WRITERS: usize = 2;

/// What `baseline_storage` wrote.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub documents: usize,
    pub bytes: u64,
    pub took: Duration,
}

/// The documents of store `s` that both servers hold and the terminals
/// fetch: its lists and its directory.
fn documents_of(world: &World, s: usize) -> Vec<DocumentId> {
    let mut docs = world.lists(s);
    docs.push(world.directory(s));
    docs
}

/// Where `NodeFSStorageAdapter` keeps the chunks of `doc`: its key
/// prefix `[documentId]`, the id's first two characters a directory level
/// of their own.
pub fn document_dir(dir: &Path, doc: DocumentId) -> PathBuf {
    let id = doc.to_bs58check();
    // bs58 is ASCII, so byte 2 is a character boundary.
    dir.join(&id[..2]).join(&id[2..])
}

/// Where `NodeFSStorageAdapter` keeps snapshot chunk `name` of `doc`: key
/// `[documentId, "snapshot", name]`.
pub fn snapshot_path(dir: &Path, doc: DocumentId, name: &str) -> PathBuf {
    document_dir(dir, doc).join("snapshot").join(name)
}

/// Write the baseline's storage directory `dir` holding every document of
/// `world` as the hub fixture `fixture_db` holds it. Replaces whatever
/// `dir` held (a previous run's documents have that run's changes).
pub fn baseline_storage(world: &World, fixture_db: &Path, dir: &Path) -> Result<Seeded> {
    let started = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let written = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| scope.spawn(move || write_stores(world, fixture_db, dir, w)))
            .collect();
        writers
            .into_iter()
            .map(|h| h.join().expect("a seeding thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(Seeded {
        documents: written.iter().map(|w| w.0).sum(),
        bytes: written.iter().map(|w| w.1).sum(),
        took: started.elapsed(),
    })
}

/// Stores `first`, `first + WRITERS`, ...: (documents, bytes) written.
fn write_stores(
    world: &World,
    fixture_db: &Path,
    dir: &Path,
    first: usize,
) -> Result<(usize, u64)> {
    let store = Store::open(fixture_db, *uuid::Uuid::new_v4().as_bytes())
        .with_context(|| format!("opening the hub fixture {}", fixture_db.display()))?;
    let (mut documents, mut bytes) = (0, 0);
    for s in (first..world.sizes.stores).step_by(WRITERS) {
        for d in documents_of(world, s) {
            let doc = store
                .load_document(d)?
                .with_context(|| format!("{d} is not in the hub fixture"))?;
            let saved = doc.save();
            let path = snapshot_path(dir, d, SEED_CHUNK);
            let parent = path.parent().expect("a chunk path has a parent");
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            std::fs::write(&path, &saved).with_context(|| format!("writing {}", path.display()))?;
            documents += 1;
            bytes += saved.len() as u64;
        }
    }
    Ok((documents, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_lives_where_node_fs_storage_looks_for_it() {
        let doc = DocumentId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        // What automerge-repo 2.5.6 gives for these bytes:
        // `new NodeFSStorageAdapter("/data").getFilePath([id, "snapshot", "h"])`
        // with `id` from `stringifyAutomergeUrl({ documentId: bytes })`.
        assert_eq!(
            snapshot_path(Path::new("/data"), doc, "h"),
            Path::new("/data/vK/kZ3XHF1D98QwaUTYfKbCrsHz/snapshot/h")
        );
    }
}
