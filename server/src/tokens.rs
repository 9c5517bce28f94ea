//! Opaque random tokens (admin sessions, later refresh tokens and API keys): shown once, stored
//! only as a SHA-256 hash, so a leaked database does not leak working credentials.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new token `<prefix><43 chars of base64url>` carrying 256 random bits.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hex SHA-256 of a token, the only form kept at rest. Lookups by this hash are equality
/// matches on a high-entropy value, so they leak nothing useful through timing.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
