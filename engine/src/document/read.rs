//! Small typed readers over Automerge values. A field of the wrong type
//! reads as absent: documents come from the network, so never panic.

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};

pub(crate) fn obj<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(parent, key) {
        Ok(Some((Value::Object(_), id))) => Some(id),
        _ => None,
    }
}

pub(crate) fn scalar<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<ScalarValue> {
    match doc.get(parent, key) {
        Ok(Some((Value::Scalar(v), _))) => Some(v.into_owned()),
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

/// Integers as JS writes them too: Int, Uint, or an integral F64.
pub(crate) fn int_of(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int(i) => Some(*i),
        ScalarValue::Uint(u) => i64::try_from(*u).ok(),
        ScalarValue::Timestamp(t) => Some(*t),
        ScalarValue::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

pub(crate) fn int<R: ReadDoc>(doc: &R, parent: &ObjId, key: &str) -> Option<i64> {
    int_of(&scalar(doc, parent, key)?)
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

/// The strings of a list (non-strings skipped).
pub(crate) fn string_list<R: ReadDoc>(doc: &R, list: &ObjId) -> Vec<String> {
    if !matches!(doc.object_type(list), Ok(ObjType::List)) {
        return Vec::new();
    }
    doc.list_range(list, ..)
        .filter_map(|item| match item.value {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => Some(s.to_string()),
            automerge::ValueRef::Object(ObjType::Text) => doc.text(item.id()).ok(),
            _ => None,
        })
        .collect()
}
