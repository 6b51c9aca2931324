//! Questions the hub's admin API asks of the hub replica, answered from
//! its registry, so the HTTP layer never reads the database itself.

use std::collections::{BTreeMap, HashMap};

use super::hub::{Hub, HubError};
use crate::ids::{Principal, StoreGroupId, StoreId};
use crate::storage::StoreRecord;
use crate::template::Template;

/// A store as the admin API lists it.
#[derive(Debug, Clone)]
pub struct StoreStatus {
    pub store: StoreRecord,
    /// Sync connections open now (authenticated as this store).
    pub connections: usize,
    /// Unix ms of its last sync, if it ever synced.
    pub last_sync_ms: Option<i64>,
}

impl Hub {
    /// Whether the hub's database answers (for a health check).
    pub fn check_database(&self) -> Result<(), HubError> {
        self.db().list_stores()?;
        Ok(())
    }

    /// The store `id`, if the hub knows it.
    pub fn store(&self, id: &StoreId) -> Result<Option<StoreRecord>, HubError> {
        Ok(self.db().get_store(id)?)
    }

    /// Every store, by id, with its sync connections open now and when it
    /// last synced: this run's time if it synced since the hub started,
    /// else the time the database recorded (`None` if it never synced).
    pub fn stores_with_status(&self) -> Result<Vec<StoreStatus>, HubError> {
        let links = self.store_links();
        let mut connections: HashMap<StoreId, usize> = HashMap::new();
        for p in self.connected_principals() {
            if let Principal::Store(s) = p {
                *connections.entry(s).or_default() += 1;
            }
        }
        let stores = self.db().list_stores()?;
        let synced: HashMap<StoreId, i64> = self.db().store_sync_times()?.into_iter().collect();
        Ok(stores
            .into_iter()
            .map(|store| StoreStatus {
                connections: connections.get(&store.id).copied().unwrap_or(0),
                last_sync_ms: links
                    .get(&store.id)
                    .and_then(|l| l.last_sync_ms)
                    .max(synced.get(&store.id).copied()),
                store,
            })
            .collect())
    }

    /// Every template's latest revision with the stores it is assigned to.
    pub fn templates_with_stores(&self) -> Result<Vec<(Template, Vec<StoreId>)>, HubError> {
        self.db()
            .latest_templates()?
            .into_iter()
            .map(|t| {
                let stores = self.db().template_stores(t.id)?;
                Ok((t, stores))
            })
            .collect()
    }

    /// The stores template `id` reaches, assigned directly or through a
    /// store group (none for a template that does not exist).
    pub fn template_stores(&self, id: crate::ids::TemplateId) -> Result<Vec<StoreId>, HubError> {
        Ok(self.db().template_stores(id)?)
    }

    /// Every store group and its stores.
    pub fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, HubError> {
        Ok(self.db().store_groups()?)
    }
}
