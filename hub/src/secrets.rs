//! Secrets the hub mints and keeps: random tokens (the admin token, store
//! tokens), and files only the hub's user may read.

use std::path::Path;

use anyhow::Context;
use rand::RngCore;

/// A new token: 24 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Write `secret` to a new file at `path` that only its owner may read
/// (mode 0600); an existing file is an error, never overwritten.
pub(crate) fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}")?;
    f.sync_all()?;
    Ok(())
}
