//! Clock faults (DESIGN rule 6): a terminal whose clock is hours off, or
//! jumps back, still orders its own events by causality, and an event
//! dated in the future cannot win forever. Real Automerge documents,
//! `record_status` (the hybrid logical clock) and the hub's `validate`.

use automerge::{ActorId, Automerge};
use uuid::Uuid;

use crate::document::instance::{self, materialize, record_status};
use crate::document::instance_tests::content;
use crate::document::DocKind;
use crate::ids::{EventId, Principal, TaskId, WorkerId};
use crate::model::{Status, StatusUpdate};
use crate::validation::{validate, ValidationContext, Verdict};

const HOUR: i64 = 3_600_000;
/// The hub's clock in these tests.
const HUB_NOW: i64 = 1_800_000_000_000;
/// The hub's tolerance for events dated after its clock (HubLimits default).
const TOLERANCE: i64 = 5 * 60 * 1000;

fn update(n: u128, status: Status, worker: &str) -> StatusUpdate {
    StatusUpdate {
        id: EventId(Uuid::from_u128(n)),
        task: TaskId(Uuid::from_u128(1)),
        status,
        worker: worker.parse().unwrap(),
        terminal: "pos-1".parse().unwrap(),
        note: None,
    }
}

fn replica(actor: u8) -> Automerge {
    let mut d = Automerge::new();
    d.apply_changes(materialize(&content(1)).unwrap()).unwrap();
    d.set_actor(ActorId::from([actor; 16]));
    d
}

fn shown(doc: &Automerge) -> (Status, Option<EventId>, bool) {
    let t = &instance::read(doc).unwrap().tasks[0].status;
    (
        t.current,
        t.latest.as_ref().map(|e| e.id),
        t.is_conflicted(),
    )
}

/// The hub's verdict on the changes `doc` adds to `base`.
fn hub_verdict(base: &Automerge, doc: &Automerge) -> Verdict {
    let c = content(1);
    let known = Default::default();
    let lookup = |_: &ActorId| None;
    let ctx = ValidationContext {
        doc_id: c.id,
        kind: DocKind::Instance,
        owner: &c.meta.store,
        actor_owner: &lookup,
        known_content: &known,
        max_event_time: HUB_NOW + TOLERANCE,
        worker_known: &|w: &WorkerId| ["w1", "w2"].contains(&w.as_str()),
    };
    let store = Principal::Store(c.meta.store.clone());
    let out = validate(base, &base.get_changes_added(doc), &store, &ctx);
    out.verdicts
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| *v != Verdict::Accepted)
        .unwrap_or(Verdict::Accepted)
}

#[test]
fn a_clock_that_jumps_back_still_orders_its_own_events() {
    let mut t = replica(1);
    let (first, _) = record_status(&mut t, &update(1, Status::InProgress, "w1"), HUB_NOW).unwrap();
    // The terminal's clock is set back two hours (NTP, a dead CMOS battery).
    let (second, _) = record_status(
        &mut t,
        &update(2, Status::Completed, "w1"),
        HUB_NOW - 2 * HOUR,
    )
    .unwrap();
    assert!(second.at > first.at, "HLC: after what it has seen");
    assert_eq!(second.prev, vec![first.id], "and it names what it replaces");
    assert_eq!(shown(&t), (Status::Completed, Some(second.id), false));
    // And once more, further back: still in order.
    let (third, _) = record_status(
        &mut t,
        &update(3, Status::Reopened, "w1"),
        HUB_NOW - 5 * HOUR,
    )
    .unwrap();
    assert!(third.at > second.at);
    assert_eq!(shown(&t).0, Status::Reopened);
}

#[test]
fn a_terminal_hours_behind_orders_its_events_after_what_it_has_seen() {
    // Another terminal completed the task; ours, 6 hours behind, syncs,
    // then reopens it: the reopen wins, whatever the clocks say.
    let mut other = replica(2);
    record_status(&mut other, &update(1, Status::Completed, "w2"), HUB_NOW).unwrap();
    let mut slow = replica(1);
    slow.merge(&mut other).unwrap();
    let (reopen, _) = record_status(
        &mut slow,
        &update(2, Status::Reopened, "w1"),
        HUB_NOW - 6 * HOUR,
    )
    .unwrap();
    assert!(reopen.at > HUB_NOW);
    let mut hub = replica(3);
    hub.merge(&mut other).unwrap();
    assert_eq!(hub_verdict(&hub, &slow), Verdict::Accepted);
    hub.merge(&mut slow).unwrap();
    assert_eq!(shown(&hub), (Status::Reopened, Some(reopen.id), false));
}

#[test]
fn a_terminal_hours_ahead_is_refused_by_the_hub_and_cannot_win() {
    let base = replica(3);
    let mut fast = base.fork();
    fast.set_actor(ActorId::from([1; 16]));
    record_status(
        &mut fast,
        &update(1, Status::Completed, "w1"),
        HUB_NOW + 3 * HOUR,
    )
    .unwrap();
    assert!(
        matches!(hub_verdict(&base, &fast), Verdict::Rejected(_)),
        "an event three hours in the future is refused"
    );
}

#[test]
fn an_event_dated_ahead_within_tolerance_is_superseded_by_the_next_one_that_saw_it() {
    // Four minutes ahead passes the hub's tolerance. It may show for a
    // while, but any later event made after seeing it orders after it.
    let base = replica(3);
    let mut fast = base.fork();
    fast.set_actor(ActorId::from([1; 16]));
    let (ahead, _) = record_status(
        &mut fast,
        &update(1, Status::Completed, "w1"),
        HUB_NOW + 4 * 60_000,
    )
    .unwrap();
    assert_eq!(hub_verdict(&base, &fast), Verdict::Accepted);
    let mut hub = base.fork();
    hub.merge(&mut fast).unwrap();

    // A terminal with a right clock sees it and reopens the task now.
    let mut right = hub.fork();
    right.set_actor(ActorId::from([2; 16]));
    let (reopen, _) =
        record_status(&mut right, &update(2, Status::Reopened, "w2"), HUB_NOW).unwrap();
    assert!(reopen.at > ahead.at);
    assert_eq!(hub_verdict(&hub, &right), Verdict::Accepted);
    hub.merge(&mut right).unwrap();
    assert_eq!(shown(&hub), (Status::Reopened, Some(reopen.id), false));
}

#[test]
fn concurrent_events_from_a_fast_clock_show_as_a_conflict_not_a_silent_win() {
    // Two terminals offline: one 4 minutes ahead, one right. Neither saw
    // the other, so neither supersedes: both stay visible as a conflict
    // (the fast one is shown first, but it does not hide the other).
    let base = replica(3);
    let mut fast = base.fork();
    fast.set_actor(ActorId::from([1; 16]));
    record_status(
        &mut fast,
        &update(1, Status::Completed, "w1"),
        HUB_NOW + 4 * 60_000,
    )
    .unwrap();
    let mut right = base.fork();
    right.set_actor(ActorId::from([2; 16]));
    record_status(&mut right, &update(2, Status::InProgress, "w2"), HUB_NOW).unwrap();
    let mut hub = base.fork();
    hub.merge(&mut fast).unwrap();
    hub.merge(&mut right).unwrap();
    let t = &instance::read(&hub).unwrap().tasks[0].status;
    assert!(t.is_conflicted());
    let ids: Vec<EventId> = t.conflict.iter().map(|e| e.id).collect();
    assert!(
        ids.contains(&EventId(Uuid::from_u128(1))) && ids.contains(&EventId(Uuid::from_u128(2)))
    );
}
