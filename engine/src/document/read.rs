//! Small typed readers over Automerge values. A field of the wrong type
//! reads as absent: documents come from the network, so never panic.
//!
//! Two flavours: per-key readers (`obj`, `string`: one `get` each, for
//! the edits that need one field) and readers of a value met while walking
//! a container once with `map_range` / `list_range` (`str_value`,
//! `int_value`), which is what whole-document reads use: a `get` seeks the
//! key from the start of the object every time.

use std::borrow::Cow;

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef};

/// The object an op made (`counter@actor`, as a decoded change names it),
/// with its type, if `doc` holds it.
pub(crate) fn made_by_op(
    doc: &automerge::Automerge,
    counter: u64,
    actor: &automerge::ActorId,
) -> Option<(ObjId, ObjType)> {
    doc.import(&format!("{counter}@{}", actor.to_hex_string()))
        .ok()
}

pub(crate) fn obj<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(parent, key) {
        Ok(Some((Value::Object(_), id))) => Some(id),
        _ => None,
    }
}

/// A string field: a scalar string, or a text object (what Automerge 3's
/// JS API makes of a plain string).
pub(crate) fn string<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<String> {
    match doc.get(parent, key) {
        Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        Ok(Some((Value::Object(ObjType::Text), id))) => doc.text(&id).ok(),
        _ => None,
    }
}

/// A value met while walking a container, read as `string` reads a field:
/// a scalar string (borrowed from the document), or a text object's
/// content. `id` gives the value's object id; it is only asked for a text
/// object (making an id costs an actor lookup).
pub(crate) fn str_value<'a, R: ReadDoc>(
    doc: &R,
    value: &ValueRef<'a>,
    id: impl FnOnce() -> ObjId,
) -> Option<Cow<'a, str>> {
    match value {
        ValueRef::Scalar(ScalarValueRef::Str(s)) => Some(s.clone()),
        ValueRef::Object(ObjType::Text) => doc.text(id()).ok().map(Cow::Owned),
        _ => None,
    }
}

/// Integers as JS writes them too: Int, Uint, or an integral F64.
fn int_of(v: &ScalarValueRef<'_>) -> Option<i64> {
    match v {
        ScalarValueRef::Int(i) => Some(*i),
        ScalarValueRef::Uint(u) => i64::try_from(*u).ok(),
        ScalarValueRef::Timestamp(t) => Some(*t),
        ScalarValueRef::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

/// A value met while walking a container, read as an integer field.
pub(crate) fn int_value(value: &ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Scalar(v) => int_of(v),
        ValueRef::Object(_) => None,
    }
}

/// The integer at `key` (as `int_value` reads it).
pub(crate) fn int<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<i64> {
    match doc.get(parent, key) {
        Ok(Some((automerge::Value::Scalar(v), _))) => int_of(&ScalarValueRef::from(v.into_owned())),
        _ => None,
    }
}

/// Every string value at `key`, including the losers of a concurrent put.
pub(crate) fn all_strings<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Vec<Option<String>> {
    doc.get_all(parent, key)
        .unwrap_or_default()
        .into_iter()
        .map(|(v, _)| match v {
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            Value::Object(_) => None,
        })
        .collect()
}

/// The strings of a list (non-strings skipped), given the list's id.
pub(crate) fn string_list<R: ReadDoc>(doc: &R, list: &ObjId) -> Vec<String> {
    doc.list_range(list, ..)
        .filter_map(|item| str_value(doc, &item.value, || item.id()).map(Cow::into_owned))
        .collect()
}
