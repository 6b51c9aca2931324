//! The storage conformance suite (`engine::storage::conformance`) on the
//! PostgreSQL backend: the same checks the SQLite backend passes, against
//! a throwaway server (skipped with a notice where PostgreSQL is not
//! installed, outside CI).

use engine::ids::DocumentId;
use engine::storage::conformance::{self, Backend};
use hub::pg::testing::PgServer;
use hub::pg::PgDatabase;

struct Pg {
    server: &'static PgServer,
    url: String,
}

impl Backend for Pg {
    type Db = PgDatabase;
    fn open(&self) -> PgDatabase {
        PgDatabase::connect(&self.url, "node-a", [0xAA; 16]).unwrap()
    }
    fn damage_document(&self, doc: DocumentId) {
        let db = self.url.rsplit('/').next().unwrap();
        let n = self.server.psql(
            db,
            &format!(
                "WITH d AS (UPDATE changes SET bytes = '\\x0badbeef' \
                 WHERE doc_id = '\\x{}' RETURNING 1) SELECT count(*) FROM d",
                hex::encode(doc.as_bytes())
            ),
        );
        assert_ne!(n, "0", "{doc} has change rows to damage");
    }
}

fn backend() -> Option<Pg> {
    let server = PgServer::shared()?;
    Some(Pg {
        server,
        url: server.new_database(),
    })
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[test]
        fn $check() {
            let Some(b) = backend() else { return };
            conformance::$check(&b);
        }
    )*};
}

conformance!(
    the_roll_up_counts_tasks_completed_on_time,
    documents_are_durable_and_idempotent,
    a_failed_write_leaves_nothing_behind,
    a_damaged_document_is_reported_alone,
    sync_state_is_kept_per_peer_and_goes_with_its_document,
    the_registry_keeps_its_rules,
    a_unit_of_work_is_durable_only_when_it_commits,
    a_batch_reads_its_own_writes,
    the_status_index_answers_what_was_indexed,
    the_status_index_gives_the_reports_facts,
    hq_accounts_keep_their_rules,
);
