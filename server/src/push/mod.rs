//! Push notifications: the device registry, categories and preferences, push jobs, and their
//! delivery through provider plugins.
//!
//! The life of a push, and why each step is durable:
//! 1. `POST /v1/push` (or a trigger, or the CLI) is checked in full — targets, sizes, the
//!    category, every configured provider's own limits — and only then recorded: one
//!    `_fb_push_jobs` row and a `push.fanout` job in `_fb_jobs`, in one transaction.
//! 2. The fan-out walks the target devices in id order, a page at a time. Each page's
//!    deliveries (`_fb_push_deliveries`, keyed job × device) commit in one transaction with the
//!    `push.send` jobs that cover them and the fan-out's cursor, so a crash resumes after the
//!    last committed page: no device is skipped and none gets two deliveries. Opted-out users
//!    get `opted_out` rows that are never sent; quiet hours give a `not_before` and a send job
//!    due then.
//! 3. A send job delivers its devices concurrently through the provider of each device's
//!    platform and records outcomes in batches as they arrive. A transient failure leaves the
//!    delivery `queued` and the job is retried with backoff (not before a provider's
//!    `Retry-After`), up to [`PushSettings::max_attempts`] per delivery. A dead token
//!    deactivates its device — unless the app registered it again after the send started.
//!
//! On PostgreSQL replicas claim jobs with `FOR UPDATE SKIP LOCKED` (see [`crate::jobs`]), so
//! they share the work and a send job runs on one replica at a time.

pub mod devices;
mod fanout;
pub mod jobs;
pub mod prefs;

use std::sync::{Arc, OnceLock};

use ferrobase_plugin_api::PushProvider;

use chrono::Utc;
use serde_json::json;

use crate::audit::{self, Actor, Entry, Origin};
use crate::db::Db;
use crate::error::Error;
use crate::jobs::{JobHandler, JobRunner};

pub use fanout::{FanoutHandler, SendHandler};

/// A stored timestamp as the API shows it.
fn time(p: crate::db::Param) -> Option<String> {
    p.as_time().map(|t| ferrobase_expr::sqlite_time(&t))
}

/// Job kind: expand a push job into deliveries.
pub const FANOUT: &str = "push.fanout";
/// Job kind: deliver a set of a push job's deliveries.
pub const SEND: &str = "push.send";

/// Tunables of delivery (server config `[push]`).
#[derive(Clone, Debug)]
pub struct PushSettings {
    /// Attempts per delivery before a transiently failing one is `failed`.
    pub max_attempts: u32,
    /// Sends in flight at once per send job (several send jobs run at once).
    pub concurrency: usize,
    /// Devices per fan-out page, and so per send job.
    pub page: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            max_attempts: 5,
            concurrency: 256,
            page: 1000,
        }
    }
}

/// The push service: providers, settings and the job runner it wakes.
pub struct Push {
    pub(crate) db: Db,
    providers: Vec<Arc<dyn PushProvider>>,
    pub(crate) settings: PushSettings,
    runner: OnceLock<JobRunner>,
}

impl Push {
    pub fn new(db: Db, providers: Vec<Arc<dyn PushProvider>>, settings: PushSettings) -> Arc<Self> {
        Arc::new(Push {
            db,
            providers,
            settings,
            runner: OnceLock::new(),
        })
    }

    /// The job handlers to register with the runner.
    pub fn handlers(self: &Arc<Self>) -> Vec<Arc<dyn JobHandler>> {
        vec![
            Arc::new(FanoutHandler(Arc::clone(self))),
            Arc::new(SendHandler(Arc::clone(self))),
        ]
    }

    /// Gives the service the runner to wake after it queues work (set once, after spawning).
    pub fn attach_runner(&self, runner: JobRunner) {
        let _ = self.runner.set(runner);
    }

    pub(crate) fn wake_runner(&self) {
        if let Some(r) = self.runner.get() {
            r.notify();
        }
    }

    /// The provider that delivers to `platform`: the first configured one listing it.
    pub fn provider_for(&self, platform: &str) -> Option<&Arc<dyn PushProvider>> {
        self.providers
            .iter()
            .find(|p| p.platforms().iter().any(|x| x == platform))
    }

    /// Every configured provider's verdict on a message, before it is queued: the first
    /// refusal becomes a 422 naming the field.
    pub fn validate(
        &self,
        message: &ferrobase_plugin_api::Message,
    ) -> Result<(), crate::error::Error> {
        for p in &self.providers {
            if let Err(bad) = p.validate(message) {
                return Err(crate::error::Error::field(
                    &bad.field,
                    format!("{} ({})", bad.message, p.name()),
                ));
            }
        }
        Ok(())
    }

    /// Names of the configured providers (health and the dashboard show them).
    pub fn provider_names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name().to_owned()).collect()
    }
}

/// Accepts a push: checks everything that can be checked before queueing (targets, sizes, the
/// category, each configured provider's limits), then records the job, its fan-out job and
/// the audit entry in one transaction, and wakes the runner. Returns the job id.
pub async fn send(
    push: &Push,
    req: jobs::PushRequest,
    actor: Actor,
    origin: Origin,
) -> Result<String, Error> {
    let now = Utc::now();
    req.validate(now)?;
    push.validate(&req.message(now))?;
    let id = push
        .db
        .write(move |mut c| {
            Box::pin(async move {
                req.check_category(&prefs::categories(&mut c).await?)?;
                let created_by = actor.id.clone();
                let id = jobs::create(&mut c, &req, created_by, now).await?;
                audit::record(
                    &mut c,
                    &origin,
                    Entry {
                        actor,
                        action: "push.send",
                        target: Some(("push_job", id.clone())),
                        details: json!({
                            "to": req.to, "category": req.category, "title": req.title,
                        }),
                    },
                )
                .await?;
                Ok::<_, Error>(id)
            })
        })
        .await?;
    push.wake_runner();
    Ok(id)
}
