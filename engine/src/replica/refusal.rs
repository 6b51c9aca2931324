//! A change the hub refused, as a typed value from the hub to the
//! terminal's `sync-status`: the document, the change, the validation rule
//! that refused it and the human text. It travels as the text of an
//! automerge-repo `error` message, which JS peers only show, so the text
//! stays readable; it ends with the rule's stable code, which is what the
//! agent decodes, so nothing depends on the English.

use std::fmt;

use automerge::ChangeHash;
use serde::{Serialize, Serializer};

use crate::ids::DocumentId;
use crate::storage::RejectionRecord;
use crate::validation::Rejection;

/// The validation rule that refused a change. Its code is part of the
/// protocol between our binaries and is kept in the terminal's file: a
/// code never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    WrongStore,
    ForeignActor,
    /// Not a wrong change: the hub holds another change under the same
    /// (actor, sequence number), so the terminal's actor history diverged
    /// from the hub's and the terminal recovers under a fresh actor.
    SequenceReused,
    ForgedGenesis,
    ForgedTaskGenesis,
    UnknownContent,
    RootEdit,
    HqField,
    TaskCreation,
    LogNotAppendOnly,
    BadEvent,
    DuplicateEventId,
    UnknownWorker,
    EventInFuture,
    UnknownField,
    BadValue,
    UnknownObject,
    BadOperation,
    DependsOnRejected,
    DoesNotApply,
    UnreadableContent,
    /// A refusal whose text names no rule this version knows: from a hub
    /// of an earlier version (its text carries no code) or of a later one
    /// (a rule added since). The text says what was wrong.
    Other,
}

impl Rule {
    /// Every rule, for decoding a code.
    pub const ALL: [Rule; 22] = [
        Rule::WrongStore,
        Rule::ForeignActor,
        Rule::SequenceReused,
        Rule::ForgedGenesis,
        Rule::ForgedTaskGenesis,
        Rule::UnknownContent,
        Rule::RootEdit,
        Rule::HqField,
        Rule::TaskCreation,
        Rule::LogNotAppendOnly,
        Rule::BadEvent,
        Rule::DuplicateEventId,
        Rule::UnknownWorker,
        Rule::EventInFuture,
        Rule::UnknownField,
        Rule::BadValue,
        Rule::UnknownObject,
        Rule::BadOperation,
        Rule::DependsOnRejected,
        Rule::DoesNotApply,
        Rule::UnreadableContent,
        Rule::Other,
    ];

    /// The rule behind a validation verdict. Exhaustive on purpose: a new
    /// `Rejection` needs a rule (and a code) before it compiles.
    pub fn of(r: &Rejection) -> Rule {
        match r {
            Rejection::WrongStore => Rule::WrongStore,
            Rejection::ForeignActor { .. } => Rule::ForeignActor,
            Rejection::SequenceReused { .. } => Rule::SequenceReused,
            Rejection::ForgedGenesis => Rule::ForgedGenesis,
            Rejection::ForgedTaskGenesis { .. } => Rule::ForgedTaskGenesis,
            Rejection::UnknownContent => Rule::UnknownContent,
            Rejection::RootEdit => Rule::RootEdit,
            Rejection::HqField { .. } => Rule::HqField,
            Rejection::TaskCreation => Rule::TaskCreation,
            Rejection::LogNotAppendOnly => Rule::LogNotAppendOnly,
            Rejection::BadEvent(_) => Rule::BadEvent,
            Rejection::DuplicateEventId { .. } => Rule::DuplicateEventId,
            Rejection::UnknownWorker { .. } => Rule::UnknownWorker,
            Rejection::EventInFuture { .. } => Rule::EventInFuture,
            Rejection::UnknownField { .. } => Rule::UnknownField,
            Rejection::BadValue { .. } => Rule::BadValue,
            Rejection::UnknownObject => Rule::UnknownObject,
            Rejection::BadOperation(_) => Rule::BadOperation,
            Rejection::DependsOnRejected(_) => Rule::DependsOnRejected,
            Rejection::DoesNotApply(_) => Rule::DoesNotApply,
            Rejection::UnreadableContent => Rule::UnreadableContent,
        }
    }

    /// The stable code, as it appears in the `error` text and in
    /// `sync-status`.
    pub fn code(self) -> &'static str {
        match self {
            Rule::WrongStore => "wrong-store",
            Rule::ForeignActor => "foreign-actor",
            Rule::SequenceReused => "sequence-reused",
            Rule::ForgedGenesis => "forged-genesis",
            Rule::ForgedTaskGenesis => "forged-task-genesis",
            Rule::UnknownContent => "unknown-content",
            Rule::RootEdit => "root-edit",
            Rule::HqField => "hq-field",
            Rule::TaskCreation => "task-creation",
            Rule::LogNotAppendOnly => "log-not-append-only",
            Rule::BadEvent => "bad-event",
            Rule::DuplicateEventId => "duplicate-event-id",
            Rule::UnknownWorker => "unknown-worker",
            Rule::EventInFuture => "event-in-future",
            Rule::UnknownField => "unknown-field",
            Rule::BadValue => "bad-value",
            Rule::UnknownObject => "unknown-object",
            Rule::BadOperation => "bad-operation",
            Rule::DependsOnRejected => "depends-on-rejected",
            Rule::DoesNotApply => "does-not-apply",
            Rule::UnreadableContent => "unreadable-content",
            Rule::Other => "other",
        }
    }

    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// A change the hub refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub doc: DocumentId,
    pub change: ChangeHash,
    pub rule: Rule,
    /// What was wrong, for a person.
    pub reason: String,
}

impl Refusal {
    /// The hub's refusal of `change` in `doc` for `rejection`.
    pub fn new(doc: DocumentId, change: ChangeHash, rejection: &Rejection) -> Refusal {
        Refusal {
            doc,
            change,
            rule: Rule::of(rejection),
            reason: rejection.to_string(),
        }
    }

    /// The text of the `error` message the hub sends: readable as it
    /// stands (JS peers show it), ending with the rule's code.
    pub fn encode(&self) -> String {
        format!(
            "rejected change {} in document {}: {}",
            self.change,
            self.doc.to_bs58check(),
            with_rule(self.rule, &self.reason)
        )
    }

    /// Read an `error` text back; `None` if it is not a refusal (another
    /// error the hub reports). A text from an earlier hub, without a
    /// code, decodes as [`Rule::Other`] with its text (see
    /// [`split_rule`] for the one exception).
    pub fn decode(text: &str) -> Option<Refusal> {
        let rest = text.strip_prefix("rejected change ")?;
        let (hash, rest) = rest.split_once(" in document ")?;
        let (doc, reason) = rest.split_once(": ")?;
        let doc = DocumentId::from_bs58check(doc).ok()?;
        let change = hash.parse().ok()?;
        let (rule, reason) = split_rule(reason);
        Some(Refusal {
            doc,
            change,
            rule,
            reason,
        })
    }
}

/// A refusal as the terminal keeps it to show the worker (`sync-status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRefusal {
    pub doc: DocumentId,
    /// The refused change's hash (text: a record from an earlier version
    /// keeps whatever its hub named).
    pub hash: String,
    pub rule: Rule,
    pub reason: String,
    /// When the terminal heard of it (milliseconds since the epoch).
    pub at: i64,
}

impl RecordedRefusal {
    /// The row to store for `refusal`. The row's reason carries the rule's
    /// code the way the `error` text does, so the file's format is the
    /// one earlier versions wrote (a reason string) and they read it.
    pub fn record(refusal: &Refusal, at: i64) -> RejectionRecord {
        RejectionRecord {
            doc: refusal.doc,
            hash: refusal.change.to_string(),
            reason: with_rule(refusal.rule, &refusal.reason),
            at,
        }
    }

    /// A stored row back, whichever version wrote it: a row from before
    /// rules had codes reads as [`Rule::Other`] with its text.
    pub fn from_record(rec: RejectionRecord) -> RecordedRefusal {
        let (rule, reason) = split_rule(&rec.reason);
        RecordedRefusal {
            doc: rec.doc,
            hash: rec.hash,
            rule,
            reason,
            at: rec.at,
        }
    }
}

/// `reason` with the rule's code after it, as the `error` text and a
/// stored row carry it.
fn with_rule(rule: Rule, reason: &str) -> String {
    format!("{reason} (rule {})", rule.code())
}

/// The rule and the human text of a reason written by [`with_rule`].
/// Without a code this version knows, the rule is [`Rule::Other`] and the
/// text stays whole, with one exception: the earlier hub's English for a
/// reused sequence number, which the earlier agent already recognised,
/// still reads as [`Rule::SequenceReused`], so a terminal recovers its
/// diverged history against a hub not yet upgraded.
fn split_rule(text: &str) -> (Rule, String) {
    let coded = text
        .strip_suffix(')')
        .and_then(|t| t.rsplit_once(" (rule "))
        .and_then(|(reason, code)| Some((Rule::from_code(code)?, reason)));
    match coded {
        Some((rule, reason)) => (rule, reason.to_owned()),
        None if is_sequence_reused(text) => (Rule::SequenceReused, text.to_owned()),
        None => (Rule::Other, text.to_owned()),
    }
}

/// The untyped view of an `error` text: the document, the change hash and
/// the human reason (without the rule's code). [`Refusal::decode`] gives
/// the rule too; the agent decides on that.
pub fn parse_rejection(message: &str) -> Option<(DocumentId, String, String)> {
    let r = Refusal::decode(message)?;
    Some((r.doc, r.change.to_string(), r.reason))
}

/// Whether a human reason is the English of
/// [`Rejection::SequenceReused`]: how a hub of an earlier version, whose
/// text carries no code, says it. The agent decides on [`Rule`]; this
/// only reads the earlier text.
pub fn is_sequence_reused(reason: &str) -> bool {
    reason
        .strip_prefix("actor ")
        .and_then(|r| r.split_once(" already used sequence number "))
        .is_some_and(|(_, rest)| rest.ends_with(" for a different change"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn doc() -> DocumentId {
        DocumentId(uuid::Uuid::from_u128(42))
    }

    fn hash() -> ChangeHash {
        ChangeHash([7; 32])
    }

    /// The text a hub of the previous version sent (its
    /// `rejection_message`), byte for byte.
    fn old_text(reason: &str) -> String {
        format!(
            "rejected change {} in document {}: {reason}",
            hash(),
            doc().to_bs58check()
        )
    }

    fn every_rejection() -> Vec<Rejection> {
        vec![
            Rejection::WrongStore,
            Rejection::ForeignActor {
                actor: "0a".into(),
                owner: "store:store-1".into(),
            },
            Rejection::SequenceReused {
                actor: "0a0b".into(),
                seq: 7,
            },
            Rejection::ForgedGenesis,
            Rejection::ForgedTaskGenesis { task: "t".into() },
            Rejection::UnknownContent,
            Rejection::RootEdit,
            Rejection::HqField {
                field: "title".into(),
            },
            Rejection::TaskCreation,
            Rejection::LogNotAppendOnly,
            Rejection::BadEvent("no worker (rule x)".into()),
            Rejection::DuplicateEventId { id: "e1".into() },
            Rejection::UnknownWorker {
                worker: "ghost".into(),
            },
            Rejection::EventInFuture { at: 2, max: 1 },
            Rejection::UnknownField {
                field: "x".into(),
                on: "task".into(),
            },
            Rejection::BadValue {
                field: "assignee".into(),
                reason: "empty".into(),
            },
            Rejection::UnknownObject,
            Rejection::BadOperation("increment".into()),
            Rejection::DependsOnRejected("ab".into()),
            Rejection::DoesNotApply("missing dependency (rule hq-field)".into()),
            Rejection::UnreadableContent,
        ]
    }

    #[test]
    fn every_rule_has_its_own_code_and_reads_back() {
        let codes: HashSet<&str> = Rule::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert_eq!(Rule::from_code(r.code()), Some(r));
        }
        assert_eq!(Rule::from_code("no-such-rule"), None);
        let rules: HashSet<Rule> = every_rejection().iter().map(Rule::of).collect();
        assert_eq!(rules.len(), Rule::ALL.len() - 1, "all but Other");
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(Rule::SequenceReused.code(), "sequence-reused");
        assert_eq!(Rule::DuplicateEventId.code(), "duplicate-event-id");
        assert_eq!(Rule::HqField.code(), "hq-field");
        assert_eq!(Rule::UnknownWorker.code(), "unknown-worker");
        assert_eq!(Rule::EventInFuture.code(), "event-in-future");
        assert_eq!(Rule::Other.code(), "other");
    }

    #[test]
    fn a_refusal_round_trips_through_its_error_text() {
        for rejection in every_rejection() {
            let r = Refusal::new(doc(), hash(), &rejection);
            let text = r.encode();
            assert_eq!(Refusal::decode(&text), Some(r.clone()), "{text}");
            // Readable as it stands, and as the earlier format began.
            assert!(
                text.starts_with(&old_text(&rejection.to_string())),
                "{text}"
            );
            assert!(text.ends_with(&format!(" (rule {})", r.rule.code())));
            // The untyped view gives the human reason without the code.
            assert_eq!(
                parse_rejection(&text),
                Some((doc(), hash().to_string(), rejection.to_string()))
            );
        }
    }

    #[test]
    fn the_exact_error_text() {
        let r = Refusal::new(
            doc(),
            hash(),
            &Rejection::HqField {
                field: "title".into(),
            },
        );
        assert_eq!(
            r.encode(),
            format!(
                "rejected change {} in document {}: title is authored by HQ and read-only for stores (rule hq-field)",
                hash(),
                doc().to_bs58check()
            )
        );
    }

    #[test]
    fn an_earlier_hubs_text_decodes_as_other_with_its_text() {
        let reason = "title is authored by HQ and read-only for stores";
        let r = Refusal::decode(&old_text(reason)).unwrap();
        assert_eq!(
            r,
            Refusal {
                doc: doc(),
                change: hash(),
                rule: Rule::Other,
                reason: reason.into(),
            }
        );
        // A code this version does not know (a later hub's rule) keeps the
        // whole text.
        let later = "something new (rule brand-new-rule)";
        let r = Refusal::decode(&old_text(later)).unwrap();
        assert_eq!((r.rule, r.reason.as_str()), (Rule::Other, later));
    }

    #[test]
    fn an_earlier_hubs_sequence_reused_text_still_reads_as_sequence_reused() {
        let reason = Rejection::SequenceReused {
            actor: "0a0b".into(),
            seq: 7,
        }
        .to_string();
        let r = Refusal::decode(&old_text(&reason)).unwrap();
        assert_eq!(r.rule, Rule::SequenceReused);
        assert_eq!(r.reason, reason);
    }

    #[test]
    fn other_error_texts_are_not_refusals() {
        for text in [
            "undecodable changes in document x",
            "rate limit exceeded",
            "rejected change nothex in document 1111: reason (rule hq-field)",
            &format!("rejected change {} in document nope: x", hash()),
        ] {
            assert_eq!(Refusal::decode(text), None, "{text}");
        }
    }

    #[test]
    fn a_stored_row_round_trips_and_an_earlier_row_reads_as_other() {
        let r = Refusal::new(
            doc(),
            hash(),
            &Rejection::DuplicateEventId { id: "e1".into() },
        );
        let row = RecordedRefusal::record(&r, 5);
        assert_eq!(
            RecordedRefusal::from_record(row),
            RecordedRefusal {
                doc: doc(),
                hash: hash().to_string(),
                rule: Rule::DuplicateEventId,
                reason: r.reason.clone(),
                at: 5,
            }
        );
        let earlier = RejectionRecord {
            doc: doc(),
            hash: "whatever the hub named".into(),
            reason: "worker ghost is not on this store's roster".into(),
            at: 6,
        };
        let read = RecordedRefusal::from_record(earlier.clone());
        assert_eq!(read.rule, Rule::Other);
        assert_eq!(read.reason, earlier.reason);
        assert_eq!(read.hash, earlier.hash);
        let json = serde_json::to_value(&read).unwrap();
        assert_eq!(json["rule"], "other");
        assert_eq!(json["reason"], earlier.reason.as_str());
    }
}
