//! Encoding a `WireMessage` into the CBOR map automerge-repo's cbor-x decodes.

use automerge::ChangeHash;

use super::{PeerMetadata, StorageId, WireMessage};
use crate::protocol::cbor::Writer;

/// Encodes one message as a CBOR map with text keys, every length in its
/// shortest form, and numbers written as cbor-x writes JS numbers.
///
/// Optional fields that are `None` (or empty `add`/`remove`) are left out
/// rather than written as null: JS reads a missing property as `undefined`,
/// which every automerge-repo code path handles. Callers must not send empty
/// `data`: JS adapters refuse zero-length data and so does `decode`.
pub fn encode(msg: &WireMessage) -> Vec<u8> {
    let mut w = Writer::new();
    match msg {
        WireMessage::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        } => {
            w.map(
                2 + usize::from(supported_protocol_versions.is_some())
                    + usize::from(peer_metadata.is_some()),
            );
            entry_text(&mut w, "type", "join");
            entry_text(&mut w, "senderId", sender_id.as_str());
            if let Some(meta) = peer_metadata {
                write_peer_metadata(&mut w, meta);
            }
            if let Some(versions) = supported_protocol_versions {
                w.text("supportedProtocolVersions");
                write_text_list(&mut w, versions.iter().map(String::as_str));
            }
        }
        WireMessage::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            peer_metadata,
        } => {
            w.map(4 + usize::from(peer_metadata.is_some()));
            entry_text(&mut w, "type", "peer");
            entry_text(&mut w, "senderId", sender_id.as_str());
            if let Some(meta) = peer_metadata {
                write_peer_metadata(&mut w, meta);
            }
            entry_text(&mut w, "selectedProtocolVersion", selected_protocol_version);
            entry_text(&mut w, "targetId", target_id.as_str());
        }
        WireMessage::Error {
            sender_id,
            target_id,
            message,
        } => {
            w.map(2 + usize::from(sender_id.is_some()) + usize::from(target_id.is_some()));
            entry_text(&mut w, "type", "error");
            if let Some(sender_id) = sender_id {
                entry_text(&mut w, "senderId", sender_id.as_str());
            }
            entry_text(&mut w, "message", message);
            if let Some(target_id) = target_id {
                entry_text(&mut w, "targetId", target_id.as_str());
            }
        }
        WireMessage::Leave { sender_id } => {
            w.map(2);
            entry_text(&mut w, "type", "leave");
            entry_text(&mut w, "senderId", sender_id.as_str());
        }
        WireMessage::Request {
            sender_id,
            target_id,
            document_id,
            data,
        }
        | WireMessage::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            w.map(5);
            entry_text(&mut w, "type", msg.type_name());
            entry_text(&mut w, "senderId", sender_id.as_str());
            entry_text(&mut w, "targetId", target_id.as_str());
            entry_text(&mut w, "documentId", &document_id.to_bs58check());
            w.text("data");
            w.bytes(data);
        }
        WireMessage::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            w.map(4);
            entry_text(&mut w, "type", "doc-unavailable");
            entry_text(&mut w, "senderId", sender_id.as_str());
            entry_text(&mut w, "targetId", target_id.as_str());
            entry_text(&mut w, "documentId", &document_id.to_bs58check());
        }
        WireMessage::Ephemeral {
            sender_id,
            target_id,
            document_id,
            count,
            session_id,
            data,
        } => {
            w.map(7);
            entry_text(&mut w, "type", "ephemeral");
            entry_text(&mut w, "senderId", sender_id.as_str());
            entry_text(&mut w, "targetId", target_id.as_str());
            entry_text(&mut w, "documentId", &document_id.to_bs58check());
            w.text("count");
            w.js_number(*count);
            entry_text(&mut w, "sessionId", session_id.as_str());
            w.text("data");
            w.bytes(data);
        }
        WireMessage::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            w.map(3 + usize::from(!add.is_empty()) + usize::from(!remove.is_empty()));
            entry_text(&mut w, "type", "remote-subscription-change");
            entry_text(&mut w, "senderId", sender_id.as_str());
            entry_text(&mut w, "targetId", target_id.as_str());
            if !add.is_empty() {
                w.text("add");
                write_text_list(&mut w, add.iter().map(StorageId::as_str));
            }
            if !remove.is_empty() {
                w.text("remove");
                write_text_list(&mut w, remove.iter().map(StorageId::as_str));
            }
        }
        WireMessage::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            w.map(5);
            entry_text(&mut w, "type", "remote-heads-changed");
            entry_text(&mut w, "senderId", sender_id.as_str());
            entry_text(&mut w, "targetId", target_id.as_str());
            entry_text(&mut w, "documentId", &document_id.to_bs58check());
            w.text("newHeads");
            w.map(new_heads.len());
            for (storage_id, entry) in new_heads {
                w.text(storage_id.as_str());
                w.map(2);
                w.text("heads");
                w.array(entry.heads.len());
                for head in &entry.heads {
                    w.text(&head_to_bs58check(head));
                }
                w.text("timestamp");
                w.js_number(entry.timestamp_ms);
            }
        }
    }
    w.finish()
}

fn entry_text(w: &mut Writer, key: &str, value: &str) {
    w.text(key);
    w.text(value);
}

fn write_text_list<'s>(w: &mut Writer, items: impl ExactSizeIterator<Item = &'s str>) {
    w.array(items.len());
    for item in items {
        w.text(item);
    }
}

fn write_peer_metadata(w: &mut Writer, meta: &PeerMetadata) {
    w.text("peerMetadata");
    w.map(1 + usize::from(meta.storage_id.is_some()));
    if let Some(storage_id) = &meta.storage_id {
        entry_text(w, "storageId", storage_id.as_str());
    }
    w.text("isEphemeral");
    w.bool(meta.is_ephemeral);
}

fn head_to_bs58check(head: &ChangeHash) -> String {
    bs58::encode(head.0).with_check().into_string()
}
