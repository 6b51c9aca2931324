//! Current status of each task, derived from the status log by a pure
//! function: the same set of events gives the same answer on every replica,
//! whatever order (or how many times) they arrived in.
//!
//! The log forms a DAG through `prev` (each event names the events it
//! supersedes). The *heads* of a task are its events nobody superseded.
//! One head: that is the status. Several heads that disagree: a conflict,
//! reported with every head; the displayed status is the head with the
//! latest hybrid-logical time (ties broken by event id), so every replica
//! shows the same one while the conflict waits for a manager's decision.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, TaskId};
use crate::model::{Status, StatusEvent};

/// What a task's log says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The status to show (`NotStarted` when nothing was recorded).
    pub current: Status,
    /// The event that decided `current`, if any.
    pub latest: Option<StatusEvent>,
    /// Concurrent heads with different statuses: both sides of a
    /// disagreement, never hidden. Empty when there is no conflict.
    pub conflict: Vec<StatusEvent>,
    /// The whole log, oldest first (the audit trail).
    pub history: Vec<StatusEvent>,
}

impl TaskStatus {
    fn empty() -> Self {
        TaskStatus {
            current: Status::NotStarted,
            latest: None,
            conflict: Vec::new(),
            history: Vec::new(),
        }
    }

    /// Status for counting and filtering: a reopened task is back to not started.
    pub fn effective(&self) -> Status {
        match self.current {
            Status::Reopened => Status::NotStarted,
            s => s,
        }
    }

    pub fn is_conflicted(&self) -> bool {
        !self.conflict.is_empty()
    }

    /// Ids of the task's heads: what a new event must name in `prev`.
    pub fn head_ids(&self) -> Vec<EventId> {
        heads(&self.history).into_iter().map(|e| e.id).collect()
    }
}

/// The order of events in time: hybrid logical clock, then event id.
fn time_key(e: &StatusEvent) -> (i64, EventId) {
    (e.at, e.id)
}

/// Events of one task that no other event of that task supersedes.
fn heads(events: &[StatusEvent]) -> Vec<&StatusEvent> {
    let superseded: HashSet<EventId> = events.iter().flat_map(|e| e.prev.iter().copied()).collect();
    events
        .iter()
        .filter(|e| !superseded.contains(&e.id))
        .collect()
}

/// Derive the status of every task that has events.
///
/// Duplicates (same event id) count once; if a hostile peer sent two
/// different events under one id, the smallest by full ordering is kept,
/// which is still the same choice on every replica.
pub fn derive(events: impl IntoIterator<Item = StatusEvent>) -> BTreeMap<TaskId, TaskStatus> {
    // Full ordering first so the dedupe choice is independent of arrival order.
    let all: BTreeSet<StatusEvent> = events.into_iter().collect();
    let mut seen = HashSet::new();
    let mut by_task: BTreeMap<TaskId, Vec<StatusEvent>> = BTreeMap::new();
    let mut sorted: Vec<StatusEvent> = all.into_iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.cmp(b)));
    for e in sorted {
        if seen.insert(e.id) {
            by_task.entry(e.task).or_default().push(e);
        }
    }
    by_task
        .into_iter()
        .map(|(task, mut events)| {
            events.sort_by_key(time_key);
            (task, status_of(events))
        })
        .collect()
}

fn status_of(history: Vec<StatusEvent>) -> TaskStatus {
    if history.is_empty() {
        return TaskStatus::empty();
    }
    let hs = heads(&history);
    // A cycle of `prev` (only a hostile peer can make one) leaves no head:
    // fall back to the latest event so the answer is still deterministic.
    let latest = hs
        .iter()
        .copied()
        .max_by_key(|e| time_key(e))
        .or_else(|| history.last())
        .cloned()
        .expect("history is not empty");
    let distinct: BTreeSet<Status> = hs.iter().map(|e| e.status).collect();
    let conflict = if distinct.len() > 1 {
        let mut c: Vec<StatusEvent> = hs.into_iter().cloned().collect();
        c.sort_by_key(time_key);
        c
    } else {
        Vec::new()
    };
    TaskStatus {
        current: latest.status,
        latest: Some(latest),
        conflict,
        history,
    }
}

/// Status of one task, `NotStarted` with an empty log when it has no events.
pub fn of_task(derived: &BTreeMap<TaskId, TaskStatus>, task: TaskId) -> TaskStatus {
    derived
        .get(&task)
        .cloned()
        .unwrap_or_else(TaskStatus::empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn ev(id: u128, task: u128, status: Status, at: i64, prev: &[u128]) -> StatusEvent {
        StatusEvent {
            id: EventId(Uuid::from_u128(id)),
            task: TaskId(Uuid::from_u128(task)),
            status,
            worker: "w1".parse().unwrap(),
            terminal: "pos-1".parse().unwrap(),
            at,
            prev: prev.iter().map(|p| EventId(Uuid::from_u128(*p))).collect(),
            note: None,
        }
    }

    fn task(n: u128) -> TaskId {
        TaskId(Uuid::from_u128(n))
    }

    #[test]
    fn no_events_is_not_started() {
        let d = derive(vec![]);
        let s = of_task(&d, task(1));
        assert_eq!(s.current, Status::NotStarted);
        assert!(s.latest.is_none());
    }

    #[test]
    fn a_chain_ends_in_its_last_event() {
        let d = derive(vec![
            ev(1, 1, Status::InProgress, 10, &[]),
            ev(2, 1, Status::Completed, 20, &[1]),
            ev(3, 1, Status::Reopened, 30, &[2]),
        ]);
        let s = of_task(&d, task(1));
        assert_eq!(s.current, Status::Reopened);
        assert_eq!(s.effective(), Status::NotStarted);
        assert!(!s.is_conflicted());
        assert_eq!(s.history.len(), 3);
    }

    #[test]
    fn causality_beats_a_skewed_clock() {
        // Event 2 saw event 1 but its terminal's clock was behind.
        let d = derive(vec![
            ev(1, 1, Status::Completed, 1_000, &[]),
            ev(2, 1, Status::Reopened, 500, &[1]),
        ]);
        assert_eq!(of_task(&d, task(1)).current, Status::Reopened);
    }

    #[test]
    fn concurrent_disagreement_is_a_conflict_with_both_events() {
        let d = derive(vec![
            ev(1, 1, Status::InProgress, 10, &[]),
            ev(2, 1, Status::Completed, 20, &[1]),
            ev(3, 1, Status::NotStarted, 25, &[1]),
        ]);
        let s = of_task(&d, task(1));
        assert!(s.is_conflicted());
        assert_eq!(s.conflict.len(), 2);
        assert_eq!(s.current, Status::NotStarted, "latest head shown");
        // A manager's decision supersedes both heads and clears the conflict.
        let d = derive(vec![
            ev(1, 1, Status::InProgress, 10, &[]),
            ev(2, 1, Status::Completed, 20, &[1]),
            ev(3, 1, Status::NotStarted, 25, &[1]),
            ev(4, 1, Status::Completed, 30, &[2, 3]),
        ]);
        let s = of_task(&d, task(1));
        assert!(!s.is_conflicted());
        assert_eq!(s.current, Status::Completed);
    }

    #[test]
    fn concurrent_agreement_is_not_a_conflict() {
        let d = derive(vec![
            ev(1, 1, Status::Completed, 10, &[]),
            ev(2, 1, Status::Completed, 11, &[]),
        ]);
        let s = of_task(&d, task(1));
        assert!(!s.is_conflicted());
        assert_eq!(s.head_ids().len(), 2);
    }

    #[test]
    fn equal_times_break_ties_by_event_id() {
        let d = derive(vec![
            ev(9, 1, Status::Completed, 10, &[]),
            ev(3, 1, Status::InProgress, 10, &[]),
        ]);
        assert_eq!(of_task(&d, task(1)).current, Status::Completed);
    }

    #[test]
    fn a_prev_cycle_still_gives_an_answer() {
        let d = derive(vec![
            ev(1, 1, Status::Completed, 10, &[2]),
            ev(2, 1, Status::InProgress, 20, &[1]),
        ]);
        assert_eq!(of_task(&d, task(1)).current, Status::InProgress);
    }

    fn arb_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::NotStarted),
            Just(Status::InProgress),
            Just(Status::Completed),
            Just(Status::Reopened),
        ]
    }

    /// A random log over a few tasks where each event may name earlier events as prev.
    fn arb_log() -> impl Strategy<Value = Vec<StatusEvent>> {
        prop::collection::vec(
            (
                0u128..3,
                arb_status(),
                0i64..50,
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
            ),
            1..25,
        )
        .prop_map(|raw| {
            let mut out: Vec<StatusEvent> = Vec::new();
            for (i, (t, s, at, prevs)) in raw.into_iter().enumerate() {
                let earlier: Vec<u128> = out
                    .iter()
                    .filter(|e| e.task == task(t))
                    .map(|e| e.id.0.as_u128())
                    .collect();
                let prev: Vec<u128> = if earlier.is_empty() {
                    vec![]
                } else {
                    prevs
                        .iter()
                        .map(|ix| earlier[ix.index(earlier.len())])
                        .collect()
                };
                out.push(ev(1000 + i as u128, t, s, at, &prev));
            }
            out
        })
    }

    proptest! {
        #[test]
        fn any_permutation_or_duplication_derives_the_same_state(
            log in arb_log(),
            order in any::<prop::sample::Index>(),
            dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            seed in any::<u64>(),
        ) {
            let reference = derive(log.clone());
            let mut shuffled = log.clone();
            for d in &dups {
                shuffled.push(log[d.index(log.len())].clone());
            }
            // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (x >> 33) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            let k = order.index(shuffled.len());
            shuffled.rotate_left(k);
            prop_assert_eq!(derive(shuffled), reference);
        }

        #[test]
        fn the_shown_status_is_always_a_head(log in arb_log()) {
            for s in derive(log).values() {
                let latest = s.latest.as_ref().unwrap();
                prop_assert_eq!(latest.status, s.current);
                let heads = s.head_ids();
                if !heads.is_empty() {
                    prop_assert!(heads.contains(&latest.id));
                }
                if s.is_conflicted() {
                    prop_assert!(s.conflict.iter().any(|e| e.status != s.conflict[0].status));
                }
            }
        }
    }
}
