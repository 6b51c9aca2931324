//! Strict, bounded decoding of one frame into a `WireMessage`.
//!
//! Two passes: a structural scan checks the whole frame is one well-formed
//! CBOR map within the limits and notes where known fields start; then the
//! message type picks which fields to read. So an unknown type is reported as
//! such even if its fields look nothing like ours, unknown fields are never
//! read, and nothing is allocated beyond what the frame holds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use automerge::ChangeHash;
use ciborium_ll::{simple, Header};

use super::{
    PeerId, PeerMetadata, RemoteHeads, SessionId, StorageId, WireError, WireLimits, WireMessage,
};
use crate::ids::DocumentId;
use crate::protocol::cbor::{describe, CborError, Reader};

/// CBOR tag 64 ("uint8 typed array"): plain cbor-x wraps `Uint8Array` in it
/// unless told not to. automerge-repo turns it off, other clients may not.
const TAG_UINT8_ARRAY: u64 = 64;

/// JavaScript numbers are doubles: cbor-x sends any integer above u32 as a
/// float64, so integer fields must accept integral floats up to 2^53.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Field names `decode` looks at; anything else is skipped unread.
/// `metadata` is the name the websocket README's schema uses for what the
/// code sends as `peerMetadata`; accepted so README-following peers work.
pub(super) const KNOWN_FIELDS: &[&str] = &[
    "type",
    "senderId",
    "targetId",
    "documentId",
    "data",
    "peerMetadata",
    "metadata",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "message",
    "count",
    "sessionId",
    "add",
    "remove",
    "newHeads",
];

/// Decodes one WebSocket frame.
///
/// The whole frame is checked to be one well-formed CBOR map within `limits`
/// before any field is interpreted, so a later field's damage is never
/// masked by an earlier field's error.
pub fn decode(bytes: &[u8], limits: &WireLimits) -> Result<WireMessage, WireError> {
    if bytes.is_empty() {
        return Err(WireError::Empty);
    }
    if bytes.len() > limits.max_message_bytes {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: limits.max_message_bytes,
        });
    }
    let fields = Fields::scan(bytes, limits)?;
    let msg_type = fields.text("type")?.ok_or(WireError::MissingType)?;
    let msg = match msg_type.as_str() {
        "join" => {
            let f = fields.of("join");
            WireMessage::Join {
                sender_id: f.peer_id("senderId")?,
                supported_protocol_versions: f.text_list("supportedProtocolVersions")?,
                peer_metadata: f.peer_metadata()?,
            }
        }
        "peer" => {
            let f = fields.of("peer");
            WireMessage::Peer {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                selected_protocol_version: f.required_text("selectedProtocolVersion")?,
                peer_metadata: f.peer_metadata()?,
            }
        }
        "error" => {
            let f = fields.of("error");
            WireMessage::Error {
                sender_id: f.optional_peer_id("senderId")?,
                target_id: f.optional_peer_id("targetId")?,
                message: f.required_text("message")?,
            }
        }
        "leave" => {
            let f = fields.of("leave");
            WireMessage::Leave {
                sender_id: f.peer_id("senderId")?,
            }
        }
        "request" => {
            let f = fields.of("request");
            WireMessage::Request {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                document_id: f.document_id()?,
                data: f.data()?,
            }
        }
        "sync" => {
            let f = fields.of("sync");
            WireMessage::Sync {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                document_id: f.document_id()?,
                data: f.data()?,
            }
        }
        "doc-unavailable" => {
            let f = fields.of("doc-unavailable");
            WireMessage::DocUnavailable {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                document_id: f.document_id()?,
            }
        }
        "ephemeral" => {
            let f = fields.of("ephemeral");
            WireMessage::Ephemeral {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                document_id: f.document_id()?,
                count: f.required_uint("count")?,
                session_id: SessionId(f.required_text("sessionId")?),
                data: f.data()?,
            }
        }
        "remote-subscription-change" => {
            let f = fields.of("remote-subscription-change");
            WireMessage::RemoteSubscriptionChange {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                add: f.storage_ids("add")?,
                remove: f.storage_ids("remove")?,
            }
        }
        "remote-heads-changed" => {
            let f = fields.of("remote-heads-changed");
            WireMessage::RemoteHeadsChanged {
                sender_id: f.peer_id("senderId")?,
                target_id: f.peer_id("targetId")?,
                document_id: f.document_id()?,
                new_heads: f.new_heads()?,
            }
        }
        _ => return Err(WireError::UnknownType { msg_type }),
    };
    Ok(msg)
}

/// Offsets of the known fields of one frame that passed the structural scan.
struct Fields<'a> {
    input: &'a [u8],
    limits: &'a WireLimits,
    found: Vec<(&'static str, usize)>,
    msg_type: &'static str,
}

impl<'a> Fields<'a> {
    /// Walks the whole frame: one map, text keys, every value well formed and
    /// within limits, nothing after it. Records where known fields' values start.
    fn scan(input: &'a [u8], limits: &'a WireLimits) -> Result<Self, WireError> {
        let mut r = reader(input, 0, limits);
        let (offset, header) = r.header()?;
        let len = match header {
            Header::Map(len) => len,
            other => {
                return Err(WireError::NotAMap {
                    found: describe(&other),
                })
            }
        };
        if limits.max_depth < 1 {
            return Err(WireError::TooDeep {
                offset,
                max: limits.max_depth,
            });
        }
        if let Some(len) = len {
            check_items(offset, len, limits)?;
        }
        let mut found: Vec<(&'static str, usize)> = Vec::new();
        let mut entries = 0usize;
        loop {
            match len {
                Some(len) if entries == len => break,
                Some(_) => {}
                None => {
                    if r.next_is_break()? {
                        break;
                    }
                    check_items(offset, entries + 1, limits)?;
                }
            }
            entries += 1;
            let key = map_key(&mut r)?;
            if let Some(known) = KNOWN_FIELDS.iter().find(|k| **k == key) {
                if found.iter().any(|(k, _)| k == known) {
                    return Err(WireError::DuplicateField { field: known });
                }
                found.push((known, r.pos()));
            }
            r.skip(2)?;
        }
        if !r.at_end() {
            return Err(WireError::TrailingBytes {
                offset: r.pos(),
                extra: input.len() - r.pos(),
            });
        }
        Ok(Self {
            input,
            limits,
            found,
            msg_type: "message",
        })
    }

    fn of(self, msg_type: &'static str) -> Self {
        Self { msg_type, ..self }
    }

    /// The value's reader and header, or `None` when absent, null or undefined
    /// (cbor-x writes JS `undefined` properties as CBOR undefined).
    fn value(&self, field: &'static str) -> Result<Option<(Reader<'a>, usize, Header)>, WireError> {
        let Some(&(_, pos)) = self.found.iter().find(|(k, _)| *k == field) else {
            return Ok(None);
        };
        let mut r = reader(self.input, pos, self.limits);
        let (offset, header) = r.header()?;
        if is_nullish(&header) {
            return Ok(None);
        }
        Ok(Some((r, offset, header)))
    }

    fn missing(&self, field: &'static str) -> WireError {
        WireError::MissingField {
            msg_type: self.msg_type,
            field,
        }
    }

    fn text(&self, field: &'static str) -> Result<Option<String>, WireError> {
        match self.value(field)? {
            None => Ok(None),
            Some((mut r, offset, header)) => {
                read_text(&mut r, offset, header, field, self.limits).map(Some)
            }
        }
    }

    fn required_text(&self, field: &'static str) -> Result<String, WireError> {
        self.text(field)?.ok_or_else(|| self.missing(field))
    }

    fn optional_peer_id(&self, field: &'static str) -> Result<Option<PeerId>, WireError> {
        match self.text(field)? {
            None => Ok(None),
            Some(id) if id.is_empty() => Err(WireError::EmptyField { field }),
            Some(id) => Ok(Some(PeerId(id))),
        }
    }

    fn peer_id(&self, field: &'static str) -> Result<PeerId, WireError> {
        self.optional_peer_id(field)?
            .ok_or_else(|| self.missing(field))
    }

    fn document_id(&self) -> Result<DocumentId, WireError> {
        let field = "documentId";
        let text = self.required_text(field)?;
        parse_document_id(field, &text)
    }

    fn data(&self) -> Result<Vec<u8>, WireError> {
        let field = "data";
        let (mut r, mut offset, mut header) =
            self.value(field)?.ok_or_else(|| self.missing(field))?;
        if header == Header::Tag(TAG_UINT8_ARRAY) {
            (offset, header) = r.header()?;
        }
        let Header::Bytes(len) = header else {
            return Err(WireError::WrongFieldType {
                field,
                expected: "a byte string",
                found: describe(&header),
            });
        };
        let data = r.string_payload(offset, len, false)?.into_owned();
        if data.is_empty() {
            return Err(WireError::EmptyField { field });
        }
        Ok(data)
    }

    fn required_uint(&self, field: &'static str) -> Result<u64, WireError> {
        let (_, _, header) = self.value(field)?.ok_or_else(|| self.missing(field))?;
        read_uint(header, field)
    }

    fn text_list(&self, field: &'static str) -> Result<Option<Vec<String>>, WireError> {
        match self.value(field)? {
            None => Ok(None),
            Some((mut r, offset, header)) => {
                read_text_list(&mut r, offset, header, field, self.limits).map(Some)
            }
        }
    }

    fn storage_ids(&self, field: &'static str) -> Result<Vec<StorageId>, WireError> {
        Ok(self
            .text_list(field)?
            .unwrap_or_default()
            .into_iter()
            .map(StorageId)
            .collect())
    }

    fn peer_metadata(&self) -> Result<Option<PeerMetadata>, WireError> {
        let found = match self.value("peerMetadata")? {
            Some(v) => Some(v),
            None => self.value("metadata")?,
        };
        let Some((mut r, offset, header)) = found else {
            return Ok(None);
        };
        let field = "peerMetadata";
        let len = expect_map(header, field)?;
        let mut storage_id = None;
        let mut is_ephemeral = None;
        for_each_entry(&mut r, offset, len, |r, key| {
            match key {
                "storageId" => {
                    let field = "peerMetadata.storageId";
                    if storage_id.is_some() {
                        return Err(WireError::DuplicateField { field });
                    }
                    let (offset, header) = r.header()?;
                    storage_id = Some(if is_nullish(&header) {
                        None
                    } else {
                        let id = read_text(r, offset, header, field, self.limits)?;
                        (!id.is_empty()).then_some(StorageId(id))
                    });
                }
                "isEphemeral" => {
                    let field = "peerMetadata.isEphemeral";
                    if is_ephemeral.is_some() {
                        return Err(WireError::DuplicateField { field });
                    }
                    let (_, header) = r.header()?;
                    is_ephemeral = Some(match header {
                        Header::Simple(simple::TRUE) => true,
                        Header::Simple(simple::FALSE) => false,
                        h if is_nullish(&h) => false,
                        h => {
                            return Err(WireError::WrongFieldType {
                                field,
                                expected: "a boolean",
                                found: describe(&h),
                            })
                        }
                    });
                }
                _ => r.skip(3)?,
            }
            Ok(())
        })?;
        Ok(Some(PeerMetadata {
            storage_id: storage_id.flatten(),
            is_ephemeral: is_ephemeral.unwrap_or(false),
        }))
    }

    fn new_heads(&self) -> Result<BTreeMap<StorageId, RemoteHeads>, WireError> {
        let field = "newHeads";
        let (mut r, offset, header) = self.value(field)?.ok_or_else(|| self.missing(field))?;
        let len = expect_map(header, field)?;
        let mut out = BTreeMap::new();
        for_each_entry(&mut r, offset, len, |r, storage| {
            if storage.is_empty() {
                return Err(WireError::EmptyField {
                    field: "newHeads key",
                });
            }
            if storage.len() > self.limits.max_text_bytes {
                return Err(WireError::TextTooLong {
                    field: "newHeads key",
                    len: storage.len(),
                    max: self.limits.max_text_bytes,
                });
            }
            let entry = self.remote_heads(r)?;
            if out.insert(StorageId(storage.to_owned()), entry).is_some() {
                return Err(WireError::DuplicateField {
                    field: "newHeads key",
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn remote_heads(&self, r: &mut Reader<'a>) -> Result<RemoteHeads, WireError> {
        let (offset, header) = r.header()?;
        let len = expect_map(header, "newHeads entry")?;
        let mut heads = None;
        let mut timestamp = None;
        for_each_entry(r, offset, len, |r, key| {
            match key {
                "heads" => {
                    let field = "newHeads.heads";
                    if heads.is_some() {
                        return Err(WireError::DuplicateField { field });
                    }
                    let (offset, header) = r.header()?;
                    let texts = read_text_list(r, offset, header, field, self.limits)?;
                    let parsed = texts
                        .iter()
                        .map(|h| parse_head(h))
                        .collect::<Result<Vec<_>, _>>()?;
                    heads = Some(parsed);
                }
                "timestamp" => {
                    let field = "newHeads.timestamp";
                    if timestamp.is_some() {
                        return Err(WireError::DuplicateField { field });
                    }
                    let (_, header) = r.header()?;
                    timestamp = Some(read_uint(header, field)?);
                }
                _ => r.skip(4)?,
            }
            Ok(())
        })?;
        Ok(RemoteHeads {
            heads: heads.ok_or(WireError::MissingField {
                msg_type: "remote-heads-changed",
                field: "newHeads.heads",
            })?,
            timestamp_ms: timestamp.ok_or(WireError::MissingField {
                msg_type: "remote-heads-changed",
                field: "newHeads.timestamp",
            })?,
        })
    }
}

fn reader<'a>(input: &'a [u8], pos: usize, limits: &WireLimits) -> Reader<'a> {
    Reader::new(input, pos, limits.max_depth, limits.max_items)
}

fn check_items(offset: usize, len: usize, limits: &WireLimits) -> Result<(), WireError> {
    if len > limits.max_items {
        return Err(WireError::TooManyItems {
            offset,
            len: len as u64,
            max: limits.max_items,
        });
    }
    Ok(())
}

fn is_nullish(header: &Header) -> bool {
    matches!(
        header,
        Header::Simple(simple::NULL) | Header::Simple(simple::UNDEFINED)
    )
}

/// Reads a map key; keys are text, as cbor-x writes for JS object properties.
fn map_key<'a>(r: &mut Reader<'a>) -> Result<Cow<'a, str>, WireError> {
    let (offset, header) = r.header()?;
    let Header::Text(len) = header else {
        return Err(WireError::NonTextKey {
            offset,
            found: describe(&header),
        });
    };
    utf8(r.string_payload(offset, len, true)?, offset)
}

fn utf8(bytes: Cow<'_, [u8]>, offset: usize) -> Result<Cow<'_, str>, WireError> {
    match bytes {
        Cow::Borrowed(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| WireError::InvalidUtf8 { offset }),
        Cow::Owned(b) => String::from_utf8(b)
            .map(Cow::Owned)
            .map_err(|_| WireError::InvalidUtf8 { offset }),
    }
}

fn read_text(
    r: &mut Reader<'_>,
    offset: usize,
    header: Header,
    field: &'static str,
    limits: &WireLimits,
) -> Result<String, WireError> {
    let Header::Text(len) = header else {
        return Err(WireError::WrongFieldType {
            field,
            expected: "a text string",
            found: describe(&header),
        });
    };
    let too_long = |len: usize| WireError::TextTooLong {
        field,
        len,
        max: limits.max_text_bytes,
    };
    // Check the declared length first so an oversized field costs nothing.
    if let Some(len) = len.filter(|len| *len > limits.max_text_bytes) {
        return Err(too_long(len));
    }
    let text = utf8(r.string_payload(offset, len, true)?, offset)?;
    if text.len() > limits.max_text_bytes {
        return Err(too_long(text.len()));
    }
    Ok(text.into_owned())
}

fn read_text_list(
    r: &mut Reader<'_>,
    offset: usize,
    header: Header,
    field: &'static str,
    limits: &WireLimits,
) -> Result<Vec<String>, WireError> {
    let Header::Array(len) = header else {
        return Err(WireError::WrongFieldType {
            field,
            expected: "an array of text strings",
            found: describe(&header),
        });
    };
    let mut out = Vec::new();
    let mut index = 0usize;
    loop {
        match len {
            Some(len) if index == len => break,
            Some(_) => {}
            None => {
                if r.next_is_break()? {
                    break;
                }
            }
        }
        index += 1;
        check_items(offset, index, limits)?;
        let (item_offset, item) = r.header()?;
        out.push(read_text(r, item_offset, item, field, limits)?);
    }
    Ok(out)
}

fn read_uint(header: Header, field: &'static str) -> Result<u64, WireError> {
    match header {
        Header::Positive(n) => Ok(n),
        Header::Float(f)
            if f.is_finite() && f.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&f) =>
        {
            // Exact: integral and within 2^53, so the cast cannot round or saturate.
            Ok(f as u64)
        }
        Header::Float(_) => Err(WireError::BadNumber {
            field,
            reason: "a float that is not a whole number between 0 and 2^53",
        }),
        Header::Negative(_) => Err(WireError::BadNumber {
            field,
            reason: "negative",
        }),
        other => Err(WireError::WrongFieldType {
            field,
            expected: "an unsigned integer",
            found: describe(&other),
        }),
    }
}

fn expect_map(header: Header, field: &'static str) -> Result<Option<usize>, WireError> {
    match header {
        Header::Map(len) => Ok(len),
        other => Err(WireError::WrongFieldType {
            field,
            expected: "a map",
            found: describe(&other),
        }),
    }
}

/// Calls `each` with the reader positioned at each entry's value; `each` must
/// consume exactly that value. The scan already bounded the entry count.
fn for_each_entry<'a>(
    r: &mut Reader<'a>,
    offset: usize,
    len: Option<usize>,
    mut each: impl FnMut(&mut Reader<'a>, &str) -> Result<(), WireError>,
) -> Result<(), WireError> {
    if let Some(len) = len {
        if len > r.max_items() {
            return Err(CborError::TooManyItems {
                offset,
                len: len as u64,
                max: r.max_items(),
            }
            .into());
        }
    }
    let mut entries = 0usize;
    loop {
        match len {
            Some(len) if entries == len => return Ok(()),
            Some(_) => {}
            None => {
                if r.next_is_break()? {
                    return Ok(());
                }
            }
        }
        entries += 1;
        let key = map_key(r)?;
        each(r, &key)?;
    }
}

fn parse_document_id(field: &'static str, text: &str) -> Result<DocumentId, WireError> {
    // ids.rs also accepts the `automerge:` URL form, but on the wire JS compares
    // documentId strings verbatim, so a prefixed id would name another document.
    if text.starts_with("automerge:") {
        return Err(WireError::BadDocumentId {
            field,
            value: text.to_owned(),
            reason: "it has the automerge: URL prefix".to_owned(),
        });
    }
    DocumentId::from_bs58check(text).map_err(|e| WireError::BadDocumentId {
        field,
        value: text.to_owned(),
        reason: match e {
            crate::ids::IdError::BadDocumentId { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

fn parse_head(text: &str) -> Result<ChangeHash, WireError> {
    let bad = |reason: String| WireError::BadHead {
        value: text.to_owned(),
        reason,
    };
    let bytes = bs58::decode(text)
        .with_check(None)
        .into_vec()
        .map_err(|e| bad(e.to_string()))?;
    let hash: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| bad(format!("decodes to {} bytes, expected 32", b.len())))?;
    Ok(ChangeHash(hash))
}
