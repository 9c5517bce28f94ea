//! Rate limits: per IP and per account on sign-in, sign-up, recovery and one-time codes, plus a
//! global per-IP request budget. governor's GCRA keyed limiters (lock-free, no background
//! task) rather than a hand-written window counter.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{Rate, RateLimits};
use crate::error::{Code, Error};

/// Which budget a request draws from.
#[derive(Clone, Copy, Debug)]
pub enum Bucket {
    Login,
    Signup,
    Reset,
    Otp,
    Global,
}

struct Limiters {
    login: DefaultKeyedRateLimiter<String>,
    signup: DefaultKeyedRateLimiter<String>,
    reset: DefaultKeyedRateLimiter<String>,
    otp: DefaultKeyedRateLimiter<String>,
    global: DefaultKeyedRateLimiter<String>,
}

/// All limiters; `disabled()` lets every request through.
#[derive(Clone)]
pub struct Limits(Option<Arc<Limiters>>);

fn quota(r: Rate) -> Quota {
    let count = NonZeroU32::new(r.count).unwrap_or(NonZeroU32::MIN);
    let period = r.per / r.count.max(1);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

impl Limits {
    pub fn new(config: Option<&RateLimits>) -> Self {
        Limits(config.map(|c| {
            Arc::new(Limiters {
                login: RateLimiter::keyed(quota(c.login)),
                signup: RateLimiter::keyed(quota(c.signup)),
                reset: RateLimiter::keyed(quota(c.reset)),
                otp: RateLimiter::keyed(quota(c.otp)),
                global: RateLimiter::keyed(quota(c.global)),
            })
        }))
    }

    /// Whether limits apply at all (`auth.rate_limits.enabled`).
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Takes one request from `bucket` for `key`, or answers 429 with the seconds to wait.
    pub fn check(&self, bucket: Bucket, key: &str) -> Result<(), Error> {
        let Some(l) = &self.0 else {
            return Ok(());
        };
        let limiter = match bucket {
            Bucket::Login => &l.login,
            Bucket::Signup => &l.signup,
            Bucket::Reset => &l.reset,
            Bucket::Otp => &l.otp,
            Bucket::Global => &l.global,
        };
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Error::new(
                Code::RateLimited,
                format!("Too many requests; retry in {secs} s."),
            )
            .with("retry_after", secs.max(1))
        })
    }

    /// Drops state of keys that are back to full budget (called periodically).
    pub fn housekeeping(&self) {
        if let Some(l) = &self.0 {
            for lim in [&l.login, &l.signup, &l.reset, &l.otp, &l.global] {
                lim.retain_recent();
            }
        }
    }
}
