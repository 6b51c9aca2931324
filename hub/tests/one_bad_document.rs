//! One document whose sync fails must not stop a connection's others: a
//! sync message carrying changes that do not decode gets an error naming
//! the document, and the same connection goes on syncing its other
//! documents (it used to be closed, so a terminal with one bad document
//! synced nothing at all).

use std::time::Duration;

use automerge::Automerge;
use engine::ids::DocumentId;
use engine::protocol::wire::WireMessage;
use engine::protocol::SessionEvent;
use engine::replica::hub::HubLimits;

mod common;
use common::{content, next, send, Client};

/// A change chunk (magic, checksum, type 1, length 3) whose body is not a change.
const NOT_A_CHANGE: [u8; 13] = [0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 3, 0xde, 0xad, 0xbe];

/// Sync `id` into `doc` until the hub goes quiet; the errors it sent, and
/// "closed" if it closed the connection.
async fn sync(c: &mut Client, id: DocumentId, doc: &mut Automerge) -> Vec<String> {
    if let Some(m) = c.session.generate(id, doc) {
        send(&mut c.ws, &m).await;
    }
    let mut errors = Vec::new();
    loop {
        let Ok(m) = tokio::time::timeout(Duration::from_millis(500), next(&mut c.ws)).await else {
            return errors;
        };
        let Some(m) = m else {
            errors.push("closed".into());
            return errors;
        };
        match c.session.receive(m).unwrap().0 {
            SessionEvent::Sync {
                doc: d, message, ..
            } if d == id => {
                c.session.apply(id, doc, message).unwrap();
                if let Some(m) = c.session.generate(id, doc) {
                    send(&mut c.ws, &m).await;
                }
            }
            SessionEvent::RemoteError { message } => errors.push(message),
            _ => {}
        }
    }
}

#[tokio::test]
async fn undecodable_changes_for_one_document_leave_the_connection_syncing_the_others() {
    let hub = common::start(HubLimits::default()).await;
    let list = content("store-a", 1).id;
    let mut c = Client::join(&hub.addr, "tok-store-a", "a").await;
    let mut doc = Automerge::new();
    assert!(sync(&mut c, list, &mut doc).await.is_empty());

    // A sync message for the list whose one change is not a change.
    let Some(WireMessage::Sync {
        sender_id,
        target_id,
        document_id,
        data,
    }) = c.session.generate(list, &Automerge::new())
    else {
        panic!("a fresh document has something to say")
    };
    let mut m = automerge::sync::Message::decode(&data).unwrap();
    m.changes = vec![NOT_A_CHANGE.to_vec()].into();
    let bad = WireMessage::Sync {
        sender_id,
        target_id,
        document_id,
        data: m.encode(),
    };
    send(&mut c.ws, &bad).await;
    let errors = sync(&mut c, list, &mut doc).await;
    assert!(
        errors.iter().any(|e| e.contains("undecodable changes")),
        "the hub says what was wrong: {errors:?}"
    );
    assert!(!errors.iter().any(|e| e == "closed"), "{errors:?}");

    // The same connection syncs the store's directory, and the list again.
    let dir = DocumentId::directory_of(&"store-a".parse().unwrap());
    let mut dir_doc = Automerge::new();
    let errors = sync(&mut c, dir, &mut dir_doc).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!dir_doc.get_heads().is_empty(), "the directory arrived");
    c.session.drop_document(list);
    let mut again = Automerge::new();
    assert!(sync(&mut c, list, &mut again).await.is_empty());
    assert_eq!(again.get_heads(), doc.get_heads());
}
