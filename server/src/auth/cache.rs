//! A short-lived cache of live sessions, so verifying an access token does not cost a database
//! round trip on every request.
//!
//! Correctness rule: every change that ends a session or disables a user calls
//! [`SessionCache::invalidate`] after it committed, which bumps an epoch; an entry is used only
//! if it was read under the current epoch. A lookup records the epoch *before* it queries the
//! database, so a read that raced with a revocation is never trusted afterwards. Other replicas
//! (PostgreSQL) cannot bump this process's epoch, so there the time-to-live is kept short.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Entries beyond this are dropped wholesale: a bound on memory, not an LRU.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug)]
pub struct LiveSession {
    pub user: String,
    pub email: String,
    pub verified: bool,
    pub role: String,
}

pub struct SessionCache {
    epoch: AtomicU64,
    ttl: Duration,
    map: Mutex<HashMap<String, (u64, Instant, LiveSession)>>,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        SessionCache {
            epoch: AtomicU64::new(0),
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The cached state of `sid`, if read under the current epoch and still fresh.
    pub fn get(&self, sid: &str, user: &str) -> Option<LiveSession> {
        let epoch = self.epoch();
        let map = self.map.lock().ok()?;
        let (e, at, live) = map.get(sid)?;
        (*e == epoch && at.elapsed() < self.ttl && live.user == user).then(|| live.clone())
    }

    /// Stores what was read under `epoch` (taken before the read).
    pub fn put(&self, sid: &str, epoch: u64, live: LiveSession) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(sid.to_owned(), (epoch, Instant::now(), live));
        }
    }

    /// Some session ended or some user changed state: trust nothing cached so far.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> LiveSession {
        LiveSession {
            user: "u".into(),
            email: "e".into(),
            verified: true,
            role: "user".into(),
        }
    }

    #[test]
    fn a_read_that_raced_with_a_revocation_is_not_trusted() {
        let c = SessionCache::new(Duration::from_secs(60));
        let before = c.epoch();
        c.invalidate(); // a revocation commits while the read is in flight
        c.put("s", before, live());
        assert!(c.get("s", "u").is_none());
        c.put("s", c.epoch(), live());
        assert!(c.get("s", "u").is_some());
        assert!(c.get("s", "someone else").is_none());
        c.invalidate();
        assert!(c.get("s", "u").is_none());
    }

    #[test]
    fn entries_expire() {
        let c = SessionCache::new(Duration::from_millis(0));
        c.put("s", c.epoch(), live());
        assert!(c.get("s", "u").is_none());
    }
}
