//! Opening a terminal's data directory and starting the agent.

use engine::storage::roles::*;
use std::path::Path;

use anyhow::{bail, Context};
use engine::ids::{StoreId, TerminalId};
use engine::protocol::wire::{PeerId, StorageId, WireLimits};
use engine::replica::agent::{Agent, AgentConfig};
use engine::storage::SqliteDatabase;
use rand::RngCore;

use crate::runtime::AgentHandle;

/// Everything the HTTP API needs to know about this terminal.
#[derive(Clone)]
pub struct Terminal {
    pub handle: AgentHandle,
    pub store: StoreId,
    pub terminal: TerminalId,
}

/// Open (or create) `DIR/agent.db`. The store id is remembered on first
/// start; a later start with a different `--store` is refused, because
/// mixing two stores' documents in one replica would leak data.
pub fn open(
    data_dir: &Path,
    store: Option<&str>,
    terminal: TerminalId,
) -> anyhow::Result<Terminal> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let db = data_dir.join("agent.db");
    let mut actor = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut actor);
    let mut st =
        SqliteDatabase::open(&db, actor).with_context(|| format!("opening {}", db.display()))?;
    let remembered = st
        .get_meta("store_id")?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let store_id: StoreId = match (remembered, store) {
        (Some(r), Some(given)) if r != given => {
            bail!(
                "{} belongs to store {r}, not {given}; use another --data directory",
                db.display()
            )
        }
        (Some(r), _) => r.parse()?,
        (None, Some(given)) => {
            let id: StoreId = given.parse()?;
            st.set_meta("store_id", id.as_str().as_bytes())?;
            id
        }
        (None, None) => bail!("first start: pass --store <store id> (the hub's id for this shop)"),
    };
    let storage_id = match st.get_meta("storage_id")? {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            st.set_meta("storage_id", id.as_bytes())?;
            id
        }
    };
    let cfg = AgentConfig {
        store_id: store_id.clone(),
        peer_id: PeerId::new(format!(
            "{}-{}",
            terminal,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )),
        storage_id: StorageId::new(storage_id),
        wire: WireLimits::default(),
    };
    let agent = Agent::open(st, cfg, chrono::Utc::now().timestamp_millis())?;
    Ok(Terminal {
        handle: AgentHandle::spawn(agent),
        store: store_id,
        terminal,
    })
}
