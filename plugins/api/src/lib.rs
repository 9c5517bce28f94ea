//! The contract between the Ferrobase server and its provider plugins.
//!
//! Why a crate of its own: the server must never depend on a plugin, and a plugin must not
//! depend on the server (its build, its database, its HTTP stack). Both depend on this small,
//! stable crate instead, the way axum's extensions depend on `axum-core`. The binary wires
//! plugins into the server; a new provider (Web Push, a vendor gateway) is a new crate that
//! implements [`PushProvider`] and one line in the binary.
//!
//! The types are deliberately plain: the server decides who gets what (devices, opt-outs,
//! quiet hours, retries, bookkeeping), a provider only turns one [`Message`] for one
//! [`Device`] into one [`Outcome`].

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

pub use serde_json::{Map, Value};

/// A future a plugin returns: boxed so that the trait stays object-safe without an
/// `async-trait` dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivery priority, in the providers' common terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// Delivered at once, may wake the device (APNs 10, FCM `HIGH`).
    #[default]
    High,
    /// May be batched by the platform to save power (APNs 5, FCM `NORMAL`).
    Normal,
}

/// One notification, as the server hands it to a provider.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// Shown title; `None` with no `body` either makes a background (data-only) push.
    pub title: Option<String>,
    /// Shown text.
    pub body: Option<String>,
    /// Custom key/values delivered to the app beside the alert.
    pub data: Map<String, Value>,
    /// The Ferrobase category (`marketing`, …); providers may pass it on (APNs `category`,
    /// FCM `android.notification.tag` is left to `collapse_id`).
    pub category: Option<String>,
    /// Notifications with the same collapse id replace each other on the device
    /// (APNs `apns-collapse-id`, at most 64 bytes; FCM `collapse_key`).
    pub collapse_id: Option<String>,
    /// After this moment the provider should drop the notification instead of storing it for
    /// an offline device (`ttl_seconds` counted from when the push was accepted).
    pub expires_at: Option<SystemTime>,
    /// See [`Priority`].
    pub priority: Priority,
    /// A stable id of this delivery (job × device), a UUID: providers that accept one (APNs
    /// `apns-id`) use it so a resend after a crash can be recognised.
    pub delivery_id: String,
}

/// The device a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The registry's platform name (`ios`, `android`, …; see [`PushProvider::platforms`]).
    pub platform: String,
    /// The provider's device token (APNs hex token, FCM registration token).
    pub token: String,
}

/// What happened to one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted it; `provider_id` is its id for it (APNs `apns-id`, FCM message
    /// `name`) when it gave one.
    Sent { provider_id: Option<String> },
    /// The token will never work again (uninstalled app, expired token): the server
    /// deactivates the device. Only for the providers' definite answers (APNs 410
    /// `Unregistered`/`ExpiredToken`, FCM 404 `UNREGISTERED`), never for a hint such as APNs
    /// `BadDeviceToken` (often a sandbox token sent to production).
    InvalidToken { reason: String },
    /// Not delivered. `retry` says whether and when trying again may help.
    Failed { reason: String, retry: Retry },
}

/// Whether a failed delivery is worth another attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Permanent (a malformed message, a wrong topic, bad credentials): do not retry.
    Never,
    /// Transient (429, 5xx, a network error): retry with backoff, not sooner than the delay
    /// the provider asked for (`Retry-After`) if it gave one.
    Later(Option<Duration>),
}

/// A message a provider would refuse, found before anything is queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Which part of the push is wrong (`body`, `data`, `collapse_id`, …), so the API can name
    /// the field.
    pub field: String,
    /// What is wrong, for people.
    pub message: String,
}

/// A push provider: delivers one message to one device.
///
/// Implementations hold their connections and credentials (token caches, HTTP/2 connections)
/// and must be cheap to call concurrently: the server keeps many sends in flight at once.
pub trait PushProvider: Send + Sync {
    /// A short stable name for logs and outcomes (`apns`, `fcm`).
    fn name(&self) -> &str;

    /// The device platforms this provider delivers to (`["ios"]` for APNs, `["android"]` for
    /// FCM as configured). The server routes each device to the first configured provider
    /// that lists its platform.
    fn platforms(&self) -> &[String];

    /// Checks a message against the provider's limits (payload size, collapse id length)
    /// before it is queued, so a bad push is refused with 422 instead of failing later.
    fn validate(&self, message: &Message) -> Result<(), Invalid>;

    /// Sends one message to one device. Never panics; every failure is an [`Outcome`].
    fn send<'a>(&'a self, device: &'a Device, message: &'a Message) -> BoxFuture<'a, Outcome>;
}
