//! HQ templates on PostgreSQL: every revision, and the stores and store
//! groups each is assigned to.

use engine::ids::{StoreGroupId, StoreId, TemplateId};
use engine::storage::roles::*;
use engine::storage::StorageError;
use engine::template::Template;

use super::{errors, parse_col, Failure, PgDatabase};

fn decode(location: &str, body: &str) -> Result<Template, Failure> {
    serde_json::from_str(body).map_err(|e| {
        Failure::Storage(errors::damaged(
            location,
            format!("a stored template does not decode: {e}"),
        ))
    })
}

impl Templates for PgDatabase {
    fn put_template(&mut self, t: &Template) -> Result<(), StorageError> {
        let body = serde_json::to_string(t).expect("templates serialize");
        let revision = i64::from(t.revision);
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO templates (template_id, revision, body) VALUES ($1, $2, $3)",
                &[&&t.id.0.as_bytes()[..], &revision, &body],
            )
            .await?;
            Ok(())
        })
    }

    fn template_revisions(&self, id: TemplateId) -> Result<Vec<Template>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT body FROM templates WHERE template_id = $1 ORDER BY revision",
                    &[&&id.0.as_bytes()[..]],
                )
                .await?;
            rows.iter()
                .map(|r| decode(tx.location(), r.get(0)))
                .collect()
        })
    }

    fn latest_templates(&self) -> Result<Vec<Template>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT DISTINCT ON (template_id) body FROM templates
                     ORDER BY template_id, revision DESC",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| decode(tx.location(), r.get(0)))
                .collect()
        })
    }

    fn assign_template(&mut self, id: TemplateId, stores: &[StoreId]) -> Result<(), StorageError> {
        let stores: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO template_stores (template_id, store_id)
                 SELECT $1, s FROM unnest($2::text[]) AS s ON CONFLICT DO NOTHING",
                &[&&id.0.as_bytes()[..], &stores],
            )
            .await?;
            Ok(())
        })
    }

    fn template_direct_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    "SELECT store_id FROM template_stores WHERE template_id = $1
                     ORDER BY store_id COLLATE \"C\"",
                    &[&&id.0.as_bytes()[..]],
                )
                .await?;
            rows.iter()
                .map(|r| parse_col(tx.location(), r.get(0), "store id"))
                .collect()
        })
    }

    fn unassign_template(
        &mut self,
        id: TemplateId,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError> {
        let stores: Vec<&str> = stores.iter().map(StoreId::as_str).collect();
        let groups: Vec<&str> = groups.iter().map(StoreGroupId::as_str).collect();
        self.write(async |tx| {
            let t = &id.0.as_bytes()[..];
            tx.execute(
                "DELETE FROM template_stores WHERE template_id = $1 AND store_id = ANY($2)",
                &[&t, &stores],
            )
            .await?;
            tx.execute(
                "DELETE FROM template_groups WHERE template_id = $1 AND group_id = ANY($2)",
                &[&t, &groups],
            )
            .await?;
            Ok(())
        })
    }

    fn delete_template(&mut self, id: TemplateId) -> Result<(), StorageError> {
        self.write(async |tx| {
            let t = &id.0.as_bytes()[..];
            tx.execute("DELETE FROM template_stores WHERE template_id = $1", &[&t])
                .await?;
            tx.execute("DELETE FROM template_groups WHERE template_id = $1", &[&t])
                .await?;
            tx.execute("DELETE FROM templates WHERE template_id = $1", &[&t])
                .await?;
            Ok(())
        })
    }

    fn template_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    // A UNION orders only by its bare columns: the
                    // collation goes on the outer query.
                    "SELECT store_id FROM (
                       SELECT store_id FROM template_stores WHERE template_id = $1
                       UNION
                       SELECT g.store_id FROM template_groups t
                         JOIN store_groups g ON g.group_id = t.group_id
                        WHERE t.template_id = $1
                     ) reached
                     ORDER BY store_id COLLATE \"C\"",
                    &[&&id.0.as_bytes()[..]],
                )
                .await?;
            rows.iter()
                .map(|r| parse_col(tx.location(), r.get(0), "store id"))
                .collect()
        })
    }
}
