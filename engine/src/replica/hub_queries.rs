//! Questions the hub's admin API asks of the hub replica, answered from
//! its registry, so the HTTP layer never reads the database itself.

use std::collections::{BTreeMap, HashMap};

use super::hub::{Hub, HubError};
use crate::ids::{StoreGroupId, StoreId};
use crate::storage::StoreRecord;
use crate::template::Template;

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

    /// Every store, by id, with the last sync the hub has recorded for it
    /// (unix ms; `None` if it never synced).
    pub fn stores_with_last_sync(&self) -> Result<Vec<(StoreRecord, Option<i64>)>, HubError> {
        let stores = self.db().list_stores()?;
        let synced: HashMap<StoreId, i64> = self.db().store_sync_times()?.into_iter().collect();
        Ok(stores
            .into_iter()
            .map(|s| {
                let last = synced.get(&s.id).copied();
                (s, last)
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

    /// Every store group and its stores.
    pub fn store_groups(&self) -> Result<BTreeMap<StoreGroupId, Vec<StoreId>>, HubError> {
        Ok(self.db().store_groups()?)
    }
}
