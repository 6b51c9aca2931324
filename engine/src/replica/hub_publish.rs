//! HQ publishing a one-off list to one store or many, in one transaction:
//! every store looked up and every list built before anything is written.

use super::hub::{Hub, HubError};
use super::Output;
use crate::ids::{DocumentId, StoreId, WorkerId};
use crate::model::{Assignee, InstanceContent};
use crate::publish::{InvalidRequest, PublishRequest};

/// Why a publish request did not (or only partly) go out.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// The request is wrong for one of its stores (nothing was published).
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// Stores the hub does not know (nothing was published).
    #[error("{}", unknown_stores_message(.unknown, *.named))]
    UnknownStores {
        unknown: Vec<StoreId>,
        /// How many stores the request named.
        named: usize,
    },
    /// Nothing was published.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The first `published.len()` stores got the list (it is committed
    /// and goes out to them); the others did not.
    #[error(
        "{source}; the first {} of {} stores (through {}) got the list, \
         {} and those after it did not: send those again",
        .published.len(), .stores.len(), .stores[.published.len() - 1], .stores[.published.len()]
    )]
    Partly {
        /// Boxed: it is the rare case, and the others stay small.
        source: Box<HubError>,
        /// The request's stores, in order.
        stores: Vec<StoreId>,
        /// The list each of the first stores got.
        published: Vec<DocumentId>,
    },
}

impl PublishFailure {
    /// The lists that went out before the failure (`[i]` is the list of
    /// the request's i-th store); empty when nothing was published.
    pub fn published(&self) -> &[DocumentId] {
        match self {
            PublishFailure::Partly { published, .. } => published,
            _ => &[],
        }
    }
}

/// Unknown stores named in the answer; the rest are counted.
const UNKNOWN_NAMED: usize = 20;

fn unknown_stores_message(unknown: &[StoreId], named: usize) -> String {
    let list = unknown
        .iter()
        .take(UNKNOWN_NAMED)
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let more = match unknown.len() {
        n if n > UNKNOWN_NAMED => format!(" and {} more", n - UNKNOWN_NAMED),
        _ => String::new(),
    };
    match (unknown.len(), named) {
        (_, 1) => format!("unknown store {list}; add it first"),
        (1, _) => format!("unknown store {list}; add it first (nothing was published)"),
        _ => format!("unknown stores {list}{more}; add them first (nothing was published)"),
    }
}

impl Hub {
    /// Publish `req` to each of `stores` (`req.stores_named()`) in one
    /// transaction (one fsync). Every store is looked up and every list
    /// built before anything is written, so a request refused for an
    /// unknown store (or a time one store's zone does not have) writes
    /// nothing. Returns each store's new list id, in order; on a failure
    /// part-way, the ids of the lists published before it (they commit and
    /// go out). `new_id` gives the new lists' and tasks' ids.
    pub fn publish_request(
        &mut self,
        req: &PublishRequest,
        stores: &[StoreId],
        new_id: &mut dyn FnMut() -> uuid::Uuid,
        now_ms: i64,
    ) -> (Result<Vec<DocumentId>, PublishFailure>, Vec<Output>) {
        let contents = match self.lists_for(req, stores, new_id) {
            Ok(c) => c,
            Err(e) => return (Err(e), Vec::new()),
        };
        let (r, out) = self.batched(|hub| {
            let mut out = Vec::new();
            for (i, c) in contents.iter().enumerate() {
                match hub.publish(c, now_ms) {
                    Ok(o) => out.extend(o),
                    // A failure part-way (the disk, say) keeps the lists
                    // published before it, as `batched` keeps any write;
                    // they commit and go out to their stores, and the
                    // answer says which stores still need the list.
                    Err(e) => return Ok(((i, Some(e)), out)),
                }
            }
            Ok(((contents.len(), None), out))
        });
        let r = match r {
            Ok((_, None)) => Ok(contents.iter().map(|c| c.id).collect()),
            Ok((0, Some(e))) => Err(e.into()),
            Ok((done, Some(e))) => Err(PublishFailure::Partly {
                source: Box::new(e),
                stores: stores.to_vec(),
                published: contents[..done].iter().map(|c| c.id).collect(),
            }),
            // The commit failed: nothing of it was saved.
            Err(e) => Err(e.into()),
        };
        (r, out)
    }

    /// Each store's list content, in its own time zone, once every store
    /// is known and every `worker:` assignee is on each store's roster.
    fn lists_for(
        &mut self,
        req: &PublishRequest,
        stores: &[StoreId],
        new_id: &mut dyn FnMut() -> uuid::Uuid,
    ) -> Result<Vec<InstanceContent>, PublishFailure> {
        let mut records = Vec::with_capacity(stores.len());
        let mut unknown = Vec::new();
        for s in stores {
            match self.db().get_store(s).map_err(HubError::from)? {
                Some(rec) => records.push(rec),
                None => unknown.push(s.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(PublishFailure::UnknownStores {
                unknown,
                named: stores.len(),
            });
        }
        let many = stores.len() > 1;
        let contents = records
            .iter()
            .map(|rec| {
                req.list_content(&rec.id, &rec.time_zone, new_id)
                    .map_err(|InvalidRequest(msg)| {
                        // The list is the same for every store; a time
                        // that does not exist in one store's zone is that
                        // store's problem.
                        if many {
                            InvalidRequest(format!("store {}: {msg}", rec.id))
                        } else {
                            InvalidRequest(msg)
                        }
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A `worker:` assignee must be on the roster of every store the
        // list goes to: worker ids are per store, and a task for nobody
        // would sit unclaimed (use a role or worker group for a list for
        // many stores).
        let named: Vec<(usize, WorkerId)> = contents
            .first()
            .map(|c| {
                c.tasks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| match &t.assignee {
                        Some(Assignee::Worker(w)) => Some((i + 1, w.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for rec in &records {
            self.check_worker_assignees(&rec.id, &named)?;
        }
        Ok(contents)
    }
}
