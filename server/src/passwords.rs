//! Password hashing with argon2id at OWASP's recommended parameters (m=19 MiB, t=2, p=1, the
//! crate's defaults). Hashing runs on the blocking pool: it is deliberately slow (~40 ms) and
//! would otherwise stall the async workers.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;

use crate::error::Error;

/// Longest accepted password, in bytes: argon2 takes any length, but an unbounded input is
/// free CPU for an attacker.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// How many hashes run at once. Each argon2id hash holds 19 MiB while it runs; without a bound
/// a burst of sign-ins (anyone can send one) makes as many buffers as requests, and the
/// allocator keeps that memory. Hashing is CPU-bound, so more than the cores buys nothing.
fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.clamp(1, 8))
    })
}

pub async fn hash(password: String) -> Result<String, Error> {
    let _slot = hash_slots().acquire().await.map_err(Error::internal)?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(Error::internal)
    })
    .await
    .map_err(Error::internal)?
}

/// Verifies `password` against a stored hash. With `None` (no such account) it verifies
/// against a fixed dummy hash, so the answer takes the same time whether the account exists.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let exists = stored.is_some();
    let hash = match stored {
        Some(h) => h,
        None => dummy_hash().to_owned(),
    };
    let Ok(_slot) = hash_slots().acquire().await else {
        return false;
    };
    let ok = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false);
    ok && exists
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"ferrobase-dummy-password")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Checks length limits; `min` comes from config.
pub fn check_strength(password: &str, min: usize) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < min {
        return Err(format!("must be at least {min} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    Ok(())
}
