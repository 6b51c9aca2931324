//! HQ templates at the hub: every revision, and the stores and store groups
//! each is assigned to.

use rusqlite::params;

use super::{Failure, SqliteDatabase, StorageError};
use crate::ids::{StoreGroupId, StoreId, TemplateId};
use crate::storage::roles::*;
use crate::template::Template;

fn decode(body: &str) -> Result<Template, Failure> {
    serde_json::from_str(body).map_err(|e| {
        Failure::Sql(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(e),
        ))
    })
}

fn parse_store(s: String) -> Result<StoreId, Failure> {
    s.parse().map_err(|_| {
        Failure::Sql(rusqlite::Error::InvalidColumnType(
            0,
            "store_id".into(),
            rusqlite::types::Type::Text,
        ))
    })
}

impl Templates for SqliteDatabase {
    fn put_template(&mut self, t: &Template) -> Result<(), StorageError> {
        let body = serde_json::to_string(t).expect("templates serialize");
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO templates (template_id, revision, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![t.id.0.as_bytes(), t.revision, body])?;
            Ok(())
        })
    }

    fn template_revisions(&self, id: TemplateId) -> Result<Vec<Template>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM templates WHERE template_id = ?1 ORDER BY revision",
            )?;
            let rows = stmt.query_map([id.0.as_bytes()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(decode(&r?)?);
            }
            Ok(out)
        })
    }

    fn latest_templates(&self) -> Result<Vec<Template>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM templates t WHERE revision =
                   (SELECT MAX(revision) FROM templates u WHERE u.template_id = t.template_id)",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(decode(&r?)?);
            }
            Ok(out)
        })
    }

    fn assign_template(&mut self, id: TemplateId, stores: &[StoreId]) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO template_stores (template_id, store_id) VALUES (?1, ?2)",
            )?;
            for s in stores {
                stmt.execute(params![id.0.as_bytes(), s.as_str()])?;
            }
            Ok(())
        })
    }

    fn template_direct_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT store_id FROM template_stores WHERE template_id = ?1 ORDER BY 1",
            )?;
            let rows = stmt.query_map([id.0.as_bytes()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_store(r?)?);
            }
            Ok(out)
        })
    }

    fn unassign_template(
        &mut self,
        id: TemplateId,
        stores: &[StoreId],
        groups: &[StoreGroupId],
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM template_stores WHERE template_id = ?1 AND store_id = ?2",
            )?;
            for s in stores {
                stmt.execute(params![id.0.as_bytes(), s.as_str()])?;
            }
            let mut stmt = tx.prepare_cached(
                "DELETE FROM template_groups WHERE template_id = ?1 AND group_id = ?2",
            )?;
            for g in groups {
                stmt.execute(params![id.0.as_bytes(), g.as_str()])?;
            }
            Ok(())
        })
    }

    fn delete_template(&mut self, id: TemplateId) -> Result<(), StorageError> {
        self.write(|tx| {
            for sql in [
                "DELETE FROM template_stores WHERE template_id = ?1",
                "DELETE FROM template_groups WHERE template_id = ?1",
                "DELETE FROM templates WHERE template_id = ?1",
            ] {
                tx.prepare_cached(sql)?.execute([id.0.as_bytes()])?;
            }
            Ok(())
        })
    }

    fn template_stores(&self, id: TemplateId) -> Result<Vec<StoreId>, StorageError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT store_id FROM template_stores WHERE template_id = ?1
                 UNION
                 SELECT g.store_id FROM template_groups t
                   JOIN store_groups g ON g.group_id = t.group_id
                  WHERE t.template_id = ?1
                 ORDER BY 1",
            )?;
            let rows = stmt.query_map([id.0.as_bytes()], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(parse_store(r?)?);
            }
            Ok(out)
        })
    }
}
