//! Password hashing with argon2id at OWASP's recommended parameters (m=19 MiB, t=2, p=1, the
//! crate's defaults). Hashing runs on the blocking pool: it is deliberately slow (~40 ms) and
//! would otherwise stall the async workers.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use std::sync::OnceLock;

use crate::error::Error;

/// Longest accepted password, in bytes: argon2 takes any length, but an unbounded input is
/// free CPU for an attacker.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashing runs on a few dedicated threads, one per core (at most 8), not on tokio's blocking
/// pool. Each argon2id hash holds a 19 MiB buffer while it runs: unbounded, a burst of sign-ins
/// (anyone can send one) made as many buffers as requests, and every blocking-pool thread that
/// ever hashed kept its allocator arena full. A fixed set of threads bounds both, and hashing is
/// CPU-bound, so more threads than cores buy nothing.
type HashJob = Box<dyn FnOnce() + Send>;

fn hash_pool() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<HashJob>> {
    static POOL: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<HashJob>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("ferrobase-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
        }
        std::sync::Mutex::new(tx)
    })
}

/// Runs `f` on the hashing threads and waits for its result without blocking the runtime.
async fn on_hash_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = tx.send(f());
    });
    hash_pool()
        .lock()
        .map_err(|_| Error::internal("hash pool poisoned"))?
        .send(job)
        .map_err(|_| Error::internal("hash pool stopped"))?;
    rx.await
        .map_err(|_| Error::internal("hash thread dropped the job"))
}

pub async fn hash(password: String) -> Result<String, Error> {
    on_hash_thread(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(Error::internal)
    })
    .await?
}

/// Verifies `password` against a stored hash. With `None` (no such account) it verifies
/// against a fixed dummy hash, so the answer takes the same time whether the account exists.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let exists = stored.is_some();
    let ok = on_hash_thread(move || {
        let hash = stored.unwrap_or_else(|| dummy_hash().to_owned());
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
