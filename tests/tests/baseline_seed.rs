//! `bench net` seeds the JS baseline by writing its storage directory
//! before Node starts (`netbench::seed`), not over the protocol. The
//! unmodified automerge-repo server must then serve every seeded document
//! with exactly the heads the hub fixture has, and keep a change made after
//! that across a restart (its own chunks next to, or compacted over, the
//! seeded one). Needs `node` 20+ with `tests/js` installed (`npm ci`), like
//! the other JS tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use engine::ids::{DocumentId, EventId};
use engine::model::{Status, StatusUpdate};
use engine::storage::Store;
use tests::netbench::fixture::{self, World, WorldSizes};
use tests::netbench::fleet::Fleet;
use tests::netbench::seed;
use tests::netbench::server::{Kind, Programs, Server};
use tests::netbench::terminal::{Cmd, Goal, Report};

/// How long any one wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

fn js_ready(js: &Path) {
    if !js
        .join("node_modules/@automerge/automerge-repo-storage-nodefs/package.json")
        .exists()
    {
        let status = Command::new("npm")
            .arg("ci")
            .current_dir(js)
            .status()
            .expect("running npm ci (install Node.js 20 and npm)");
        assert!(status.success(), "npm ci in tests/js failed");
    }
}

fn documents_of(world: &World, s: usize) -> Vec<DocumentId> {
    let mut docs = world.lists(s);
    docs.push(world.directory(s));
    docs
}

/// Every document's heads (sorted) as the hub fixture holds it.
fn fixture_heads(world: &World, db: &Path) -> Vec<Vec<(DocumentId, Vec<ChangeHash>)>> {
    let store = Store::open(db, *uuid::Uuid::new_v4().as_bytes()).unwrap();
    (0..world.sizes.stores)
        .map(|s| {
            documents_of(world, s)
                .into_iter()
                .map(|d| {
                    let doc = store.load_document(d).unwrap().expect("in the fixture");
                    let mut h = doc.get_heads();
                    h.sort();
                    (d, h)
                })
                .collect()
        })
        .collect()
}

/// One terminal per store fetches its documents from `srv` until its
/// heads and the server's equal `want`.
async fn fetch_expecting(
    srv: &Server,
    name: &str,
    want: &[Vec<(DocumentId, Vec<ChangeHash>)>],
) -> anyhow::Result<Fleet> {
    let mut fleet = Fleet::new(name, want.len());
    let mut n = 0;
    for (s, docs) in want.iter().enumerate() {
        fleet.send(s, Cmd::Want(docs.iter().map(|d| d.0).collect()));
        fleet.send(
            s,
            Cmd::Goals(
                docs.iter()
                    .map(|(d, h)| (*d, Goal::Heads(h.clone())))
                    .collect(),
            ),
        );
        fleet.send(
            s,
            Cmd::Connect {
                url: srv.sync_url(s),
            },
        );
        n += docs.len();
    }
    fleet
        .wait_count("fetching the seeded documents", DEADLINE, n, |r| {
            matches!(r, Report::Reached { .. })
        })
        .await?;
    // The server answers from its first connection (it announces itself
    // only once it does), so nobody had to reconnect.
    anyhow::ensure!(
        fleet.take_reconnects() == 0,
        "terminals had to reconnect to the baseline"
    );
    Ok(fleet)
}

#[test]
fn the_baseline_serves_what_was_seeded_and_keeps_later_changes() {
    let js = js_dir();
    js_ready(&js);
    let programs = Programs {
        hub: PathBuf::from("hub (not started here)"),
        js_dir: js,
        hub_args: Vec::new(),
    };
    let work = tempfile::tempdir().unwrap();
    let world = World::new(WorldSizes {
        stores: 3,
        lists: 2,
        tasks: 20,
    });
    let fixture_dir = work.path().join("fixture");
    fixture::hub_data(&world, &work.path().join("cache"), &fixture_dir).unwrap();
    let db = fixture_dir.join("hub.db");
    let data = work.path().join("baseline-data");
    // A leftover from an earlier run is replaced, not merged.
    std::fs::create_dir_all(data.join("le/ftover/snapshot")).unwrap();
    std::fs::write(data.join("le/ftover/snapshot/x"), b"stale").unwrap();

    let seeded = seed::baseline_storage(&world, &db, &data).unwrap();
    assert_eq!(seeded.documents, 3 * 3);
    assert!(!data.join("le").exists(), "the old directory was emptied");
    let mut want = fixture_heads(&world, &db);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(async {
            let srv = Server::start(Kind::Baseline, &programs, &data, &work.path().join("1.log"))?;
            let mut fleet = fetch_expecting(&srv, "seeded", &want).await?;

            // A change after seeding: Node saves it next to the seeded chunk
            // (or compacts both into a snapshot of its own).
            let doc = world.lists(0)[0];
            let (tx, rx) = tokio::sync::oneshot::channel();
            fleet.send(
                0,
                Cmd::Record {
                    doc,
                    update: StatusUpdate {
                        id: EventId(uuid::Uuid::new_v4()),
                        task: world.task_ids(doc)[0],
                        status: Status::Completed,
                        worker: "w1".parse()?,
                        terminal: "pos-1".parse()?,
                        note: None,
                    },
                    done: Some(tx),
                },
            );
            let hash = rx.await?.map_err(anyhow::Error::msg)?;
            want[0][0].1 = vec![hash];
            fleet.send(0, Cmd::Goals(vec![(doc, Goal::Heads(vec![hash]))]));
            fleet
                .wait("the server taking the change", DEADLINE, |r| {
                    matches!(r, Report::Reached { .. })
                })
                .await?;
            // Node saves on a timer: wait for its chunk before stopping it.
            let dir = seed::document_dir(&data, doc);
            let started = Instant::now();
            while !has_chunk_of_its_own(&dir) {
                anyhow::ensure!(started.elapsed() < DEADLINE, "Node did not save the change");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            fleet.disconnect_all().await;
            srv.stop(Duration::from_secs(5))?;

            let srv = Server::start(Kind::Baseline, &programs, &data, &work.path().join("2.log"))?;
            fetch_expecting(&srv, "restarted", &want).await?;
            srv.stop(Duration::from_secs(5))?;
            anyhow::Ok(())
        })
        .unwrap();
}

/// Whether Node wrote a chunk of `dir`'s document besides the seeded one.
fn has_chunk_of_its_own(dir: &Path) -> bool {
    ["snapshot", "incremental"].iter().any(|kind| {
        std::fs::read_dir(dir.join(kind))
            .is_ok_and(|entries| entries.flatten().any(|e| e.file_name() != seed::SEED_CHUNK))
    })
}
