//! The hub's identity across restarts: its storage id and the admin
//! token, both kept by the replica rather than by the shell.

use super::*;

#[test]
fn the_storage_id_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let mut db = SqliteDatabase::open(&path, [1; 16]).unwrap();
    let first = Hub::storage_id_of(&mut db, "first").unwrap();
    assert_eq!(first, StorageId::new("first"));
    drop(db);
    let mut db = SqliteDatabase::open(&path, [2; 16]).unwrap();
    assert_eq!(Hub::storage_id_of(&mut db, "second").unwrap(), first);
}

#[test]
fn an_admin_token_is_registered_once_and_a_revoked_one_stays_revoked() {
    let mut net = Net::new(0);
    assert!(net.hub.ensure_hq_token("secret", "admin", NOW).unwrap());
    assert_eq!(net.hub.authenticate(Some("secret"), NOW), Ok(Principal::Hq));
    assert!(!net.hub.ensure_hq_token("secret", "admin", NOW).unwrap());
    assert!(net
        .hub
        .db_mut()
        .revoke_token(crate::replica::hub::token_hash("secret"), NOW + 1)
        .unwrap());
    assert!(!net.hub.ensure_hq_token("secret", "admin", NOW + 2).unwrap());
    assert!(net.hub.authenticate(Some("secret"), NOW + 2).is_err());
}
