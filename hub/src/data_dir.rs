//! The hub's data directory: its database (`hub.db`) and admin token
//! file, opened (or made on first start) with the replica thread started
//! on them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::ids::Principal;
use engine::protocol::wire::{PeerId, StorageId};
use engine::replica::hub::{token_hash, Hub, HubConfig, HubLimits};
use engine::storage::roles::*;
use engine::storage::SqliteDatabase;
use rand::RngCore;

use crate::http::state::AppState;
use crate::runtime::{now_ms, HubHandle};
use crate::secrets::{random_token, write_secret};

/// A hub in `dir` with default limits and the admin token "admin", for
/// tests.
#[cfg(test)]
pub(crate) fn open_for_test(dir: &Path) -> AppState {
    open(dir, Default::default(), Some("admin")).unwrap().state
}

/// What `open` made ready: the hub thread and the admin token path.
pub struct Opened {
    pub state: AppState,
    pub admin_token_file: PathBuf,
    /// Set when this start created the admin token.
    pub new_admin_token: Option<String>,
}

/// Open (or create) the hub's data directory and start its replica thread.
/// On first start an admin token is minted and written to `DIR/admin-token`
/// (mode 0600); `admin_token` registers a known one instead.
pub fn open(
    data_dir: &Path,
    limits: HubLimits,
    admin_token: Option<&str>,
) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the hub data directory {}", data_dir.display()))?;
    let db = data_dir.join("hub.db");
    let mut actor = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut actor);
    let mut store =
        SqliteDatabase::open(&db, actor).with_context(|| format!("opening {}", db.display()))?;
    let storage_id = match store.get_meta("storage_id")? {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            store.set_meta("storage_id", id.as_bytes())?;
            id
        }
    };
    let token_file = data_dir.join("admin-token");
    let new_admin_token = match admin_token {
        None if !token_file.exists() => Some(random_token()),
        _ => None,
    };
    if let Some(t) = admin_token.or(new_admin_token.as_deref()) {
        if store.check_token(token_hash(t), now_ms())? == engine::storage::TokenCheck::Unknown {
            store.put_token(token_hash(t), &Principal::Hq, "admin", now_ms(), None)?;
        }
    }
    // Written once the hub knows the token: a file naming a token the hub
    // never registered would stop the next start from minting one.
    if let Some(t) = &new_admin_token {
        write_secret(&token_file, t)?;
    }
    let cfg = HubConfig {
        peer_id: PeerId::new(format!(
            "hub-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
        storage_id: StorageId::new(storage_id),
        limits: limits.clone(),
    };
    let db = store.path().to_path_buf();
    let hub = Hub::open(store, cfg)?;
    Ok(Opened {
        state: AppState::new(HubHandle::spawn(hub), limits, db),
        admin_token_file: token_file,
        new_admin_token,
    })
}
