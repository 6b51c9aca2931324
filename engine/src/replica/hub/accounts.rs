//! HQ's people at the hub (issue #23): accounts, personal tokens and the
//! audit are rows beside the replica's data, written on the hub thread
//! like tokens (so a revocation is ordered with the requests after it).

use super::Hub;
use crate::hq_accounts::{caller_on, Caller, CallerError};
use crate::storage::roles::HqAccounts;

impl Hub {
    /// The accounts, tokens and audit, to read and write.
    pub fn hq_accounts(&mut self) -> &mut dyn HqAccounts {
        self.db_mut().accounts_mut()
    }

    /// Who `token` is, on the hub thread: in order with the commands
    /// queued before it (a revocation asked for first wins).
    pub fn caller(&self, token: Option<&str>, now_ms: i64) -> Result<Caller, CallerError> {
        caller_on(self.db(), token, now_ms)
    }
}
