//! HQ passwords: argon2id (the RustCrypto crate's defaults, OWASP's
//! minimum), stored as PHC strings. Hashing and checking take tens of
//! milliseconds of CPU on purpose, so async callers run them with
//! `spawn_blocking` (`hash_off_executor`, `verify_off_executor`).

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted (the setup secret is far longer).
pub const MIN_PASSWORD_LEN: usize = 10;

/// `password`'s argon2id hash, as a PHC string. Blocking.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?
        .to_string())
}

/// Whether `password` matches the PHC string `stored`. Blocking.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// [`hash`] on a blocking thread.
pub async fn hash_off_executor(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .context("hashing a password stopped")?
}

/// [`verify`] on a blocking thread.
pub async fn verify_off_executor(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .unwrap_or(false)
}

/// Why `password` is refused as a new password, if it is.
pub fn too_weak(password: &str) -> Option<String> {
    (password.chars().count() < MIN_PASSWORD_LEN).then(|| {
        format!("a password needs at least {MIN_PASSWORD_LEN} characters; choose a longer one")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("anything", "not a PHC string"));
    }
}
