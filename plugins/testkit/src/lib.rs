//! Loopback push providers for tests. Nothing here is built into the server or the binary.
//!
//! Each fake speaks the provider's documented protocol closely enough that the real plugin
//! cannot tell the difference: HTTP/2 (TLS for APNs), the documented headers and JSON, the
//! documented error reasons, and credential checks (APNs JWT / client certificate, FCM OAuth).
//! Tests script outcomes by device token (see each module).
//!
//! Layout: [`apns`] and [`fcm`] are the fakes; [`Tally`] is the cheap count both keep of every
//! request (per token and per status), which benchmarks and the `fake-push` binary read
//! without copying the recorded requests.

use std::collections::{BTreeMap, HashMap};

pub mod apns;
pub mod fcm;

/// Counts of the requests a fake answered, kept as they arrive.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    requests: usize,
    per_token: HashMap<String, u32>,
    by_status: BTreeMap<u16, usize>,
}

impl Counter {
    pub(crate) fn count(&mut self, token: &str, status: u16) {
        self.requests += 1;
        *self.by_status.entry(status).or_default() += 1;
        match self.per_token.get_mut(token) {
            Some(n) => *n += 1,
            None => {
                self.per_token.insert(token.to_owned(), 1);
            }
        }
    }

    pub(crate) fn tally(&self) -> Tally {
        let mut histogram = BTreeMap::new();
        for n in self.per_token.values() {
            *histogram.entry(*n).or_default() += 1;
        }
        Tally {
            requests: self.requests,
            tokens: self.per_token.len(),
            by_token_max: self.per_token.values().copied().max().unwrap_or(0),
            histogram,
            by_status: self.by_status.clone(),
        }
    }
}

/// What a fake has answered so far, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Every request, failing ones included.
    pub requests: usize,
    /// Distinct device tokens requested.
    pub tokens: usize,
    /// The most requests any single token received (1 = nothing was sent twice).
    pub by_token_max: u32,
    /// Requests per token → how many tokens got that many (`{1: 99990, 2: 10}`).
    pub histogram: BTreeMap<u32, usize>,
    /// HTTP status answered → how many times.
    pub by_status: BTreeMap<u16, usize>,
}
