//! Inputs the cargo fuzz target `validation` (fuzz/) found, kept as
//! ordinary unit tests so they run on every `cargo test`.

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, Automerge, Change};
use uuid::Uuid;

use crate::document::instance::{self, append_event_by_transaction, record_status};
use crate::document::instance_tests::content;
use crate::document::DocKind;
use crate::ids::{EventId, Principal, TaskId, WorkerId};
use crate::model::{Status, StatusEvent, StatusUpdate};
use crate::validation::{reference, validate, Outcome, Rejection, ValidationContext, Verdict};

const NOW: i64 = 1_800_000_000_000;
const TERMINAL_A: [u8; 16] = [0x0A; 16];
const TERMINAL_B: [u8; 16] = [0x0B; 16];

/// Validate `changes` from store-042 against `hub` with both validators,
/// which must agree; terminals A and B are the store's, w1 and w2 on its roster.
fn validate_both(hub: &Automerge, changes: &[Change]) -> (Outcome, Outcome) {
    let c = content(3);
    let store = c.meta.store.clone();
    let known: HashSet<_> = instance::materialize(&c)
        .expect("materializes")
        .iter()
        .map(Change::hash)
        .collect();
    let owners: HashMap<ActorId, Principal> = [TERMINAL_A, TERMINAL_B]
        .into_iter()
        .map(|a| (ActorId::from(a), Principal::Store(store.clone())))
        .collect();
    let lookup = |a: &ActorId| owners.get(a).cloned();
    let ctx = ValidationContext {
        doc_id: c.id,
        kind: DocKind::Instance,
        owner: &store,
        actor_owner: &lookup,
        known_content: &known,
        max_event_time: NOW + 60_000,
        worker_known: &|w: &WorkerId| ["w1", "w2"].contains(&w.as_str()),
    };
    let author = Principal::Store(store.clone());
    let fast = validate(hub, changes, &author, &ctx);
    let slow = reference::validate(hub, changes, &author, &ctx);
    (fast, slow)
}

/// Found by `cargo fuzz run validation` 46 s into its first run, on main
/// at 181d780 (issue 19, item 1): the hub holds event E of terminal B;
/// terminal A sends another event under E's id with another status, time
/// and note. Both validators accepted it and the log held two events with
/// one id. Written by hand, as a hostile peer does: the engine's own
/// `record_status` now refuses an id the document has.
#[test]
fn a_second_event_under_an_existing_id_from_another_terminal_is_refused() {
    let c = content(3);
    let mut hub = Automerge::new();
    hub.apply_changes(instance::materialize(&c).expect("materializes"))
        .expect("applies");
    hub.set_actor(ActorId::from(TERMINAL_B));
    let original = StatusUpdate {
        id: EventId(Uuid::from_u128(1000)),
        task: TaskId(Uuid::from_u128(1)),
        status: Status::InProgress,
        worker: "w1".parse().expect("a worker id"),
        terminal: "pos-2".parse().expect("a terminal id"),
        note: None,
    };
    record_status(&mut hub, &original, NOW - 60_000).expect("records");

    let mut terminal_a = hub.fork();
    terminal_a.set_actor(ActorId::from(TERMINAL_A));
    let forged = StatusEvent {
        id: original.id,
        task: original.task,
        status: Status::Completed,
        worker: "w2".parse().expect("a worker id"),
        terminal: "pos-1".parse().expect("a terminal id"),
        at: NOW,
        prev: Vec::new(),
        note: Some("rewritten".into()),
    };
    let change = append_event_by_transaction(&mut terminal_a, &forged, NOW).expect("appends");

    let (fast, slow) = validate_both(&hub, std::slice::from_ref(&change));
    let refused = vec![(
        change.hash(),
        Verdict::Rejected(Rejection::DuplicateEventId {
            id: original.id.to_string(),
        }),
    )];
    assert_eq!(fast.verdicts, refused);
    assert_eq!(slow.verdicts, refused);
    assert!(fast.accepted.is_empty() && fast.state.is_none());
}
