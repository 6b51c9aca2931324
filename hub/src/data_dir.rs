//! The hub's data directory: its database (`hub.db`) and admin token
//! file, opened (or made on first start) with the replica thread started
//! on them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::protocol::wire::PeerId;
use engine::replica::hub::{Hub, HubConfig, HubLimits};
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
    let storage_id = Hub::storage_id_of(&mut store, &uuid::Uuid::new_v4().to_string())?;
    let cfg = HubConfig {
        peer_id: PeerId::new(format!(
            "hub-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
        storage_id,
        limits: limits.clone(),
    };
    let db = store.path().to_path_buf();
    let mut hub = Hub::open(store, cfg)?;
    let token_file = data_dir.join("admin-token");
    let new_admin_token = match admin_token {
        None if !token_file.exists() => Some(random_token()),
        _ => None,
    };
    if let Some(t) = admin_token.or(new_admin_token.as_deref()) {
        hub.ensure_hq_token(t, "admin", now_ms())?;
    }
    // Written once the hub knows the token: a file naming a token the hub
    // never registered would stop the next start from minting one.
    if let Some(t) = &new_admin_token {
        write_secret(&token_file, t)?;
    }
    Ok(Opened {
        state: AppState::new(HubHandle::spawn(hub), limits, db),
        admin_token_file: token_file,
        new_admin_token,
    })
}
