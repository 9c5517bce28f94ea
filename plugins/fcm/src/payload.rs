//! The `messages:send` body for one device, and the limits FCM would refuse a message for.
//!
//! One body serves every platform FCM delivers to: the `android` block is always there (FCM
//! ignores it for other tokens), `apns` only for `ios` devices (APNs needs its own priority
//! and expiry headers, and `content-available` for a data-only push), `webpush` only for
//! `web` devices (the Web Push `Urgency` and `TTL` headers).

use std::time::{SystemTime, UNIX_EPOCH};

use ferrobase_plugin_api::{Device, Invalid, Map, Message, Priority, Value};
use serde_json::json;

/// FCM's limit on notification + data, in bytes.
pub(crate) const MAX_PAYLOAD: usize = 4096;

/// APNs's limit on `apns-collapse-id`, which FCM passes through for iOS devices.
const MAX_APNS_COLLAPSE_ID: usize = 64;

/// `data` values must be strings on the wire; anything else travels as its JSON text.
fn data_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{"message": …}` for `device`, `now` being the send time (for TTLs).
pub(crate) fn request_body(device: &Device, m: &Message, now: SystemTime) -> Value {
    let mut message = Map::new();
    message.insert("token".into(), device.token.clone().into());
    let mut notification = Map::new();
    if let Some(title) = &m.title {
        notification.insert("title".into(), title.clone().into());
    }
    if let Some(body) = &m.body {
        notification.insert("body".into(), body.clone().into());
    }
    let alert = !notification.is_empty();
    if alert {
        message.insert("notification".into(), notification.into());
    }
    if !m.data.is_empty() {
        let data: Map<String, Value> = m
            .data
            .iter()
            .map(|(k, v)| (k.clone(), data_string(v).into()))
            .collect();
        message.insert("data".into(), data.into());
    }
    // Seconds left to live; an already expired message gets 0 ("now or never").
    let ttl = m
        .expires_at
        .map(|at| at.duration_since(now).map_or(0, |d| d.as_secs()));
    let high = m.priority == Priority::High;

    let mut android = Map::new();
    android.insert(
        "priority".into(),
        if high { "HIGH" } else { "NORMAL" }.into(),
    );
    if let Some(ttl) = ttl {
        android.insert("ttl".into(), format!("{ttl}s").into());
    }
    if let Some(collapse) = &m.collapse_id {
        android.insert("collapse_key".into(), collapse.clone().into());
    }
    message.insert("android".into(), android.into());

    match device.platform.as_str() {
        "ios" => {
            message.insert("apns".into(), apns(m, alert, high));
        }
        "web" => {
            let mut headers = Map::new();
            headers.insert(
                "Urgency".into(),
                if high { "high" } else { "normal" }.into(),
            );
            if let Some(ttl) = ttl {
                headers.insert("TTL".into(), ttl.to_string().into());
            }
            message.insert("webpush".into(), json!({ "headers": headers }));
        }
        _ => {}
    }
    json!({ "message": message })
}

/// The `apns` block: APNs headers, and `content-available` for a background push (which
/// Apple only accepts at priority 5).
fn apns(m: &Message, alert: bool, high: bool) -> Value {
    let mut headers = Map::new();
    let priority = if alert && high { "10" } else { "5" };
    headers.insert("apns-priority".into(), priority.into());
    let push_type = if alert { "alert" } else { "background" };
    headers.insert("apns-push-type".into(), push_type.into());
    if let Some(collapse) = &m.collapse_id {
        headers.insert("apns-collapse-id".into(), collapse.clone().into());
    }
    if let Some(at) = m.expires_at {
        let unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        headers.insert("apns-expiration".into(), unix.to_string().into());
    }
    let mut block = json!({ "headers": headers });
    if !alert {
        block["payload"] = json!({ "aps": { "content-available": 1 } });
    }
    block
}

/// Data keys FCM reserves for itself (it refuses a message that uses one).
fn reserved(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(key.as_str(), "from" | "notification" | "message_type")
        || key.starts_with("google")
        || key.starts_with("gcm")
}

/// The checks behind `PushProvider::validate`; `ios` says iOS devices may be sent to.
pub(crate) fn validate(m: &Message, ios: bool) -> Result<(), Invalid> {
    let invalid = |field: &str, message: String| Invalid {
        field: field.into(),
        message,
    };
    if let Some(key) = m.data.keys().find(|k| reserved(k)) {
        return Err(invalid(
            "data",
            format!(
                "FCM reserves the data key {key:?} (and from, notification, message_type, \
                 google*, gcm*)"
            ),
        ));
    }
    let text = m.title.as_deref().map_or(0, str::len) + m.body.as_deref().map_or(0, str::len);
    let data: usize = m
        .data
        .iter()
        .map(|(k, v)| k.len() + data_string(v).len())
        .sum();
    if text + data > MAX_PAYLOAD {
        // Name the part that takes most of the room.
        let field = if data > text { "data" } else { "body" };
        return Err(invalid(
            field,
            format!(
                "FCM allows {MAX_PAYLOAD} bytes of notification and data; this message has \
                 {} (title and body {text}, data keys and values {data})",
                text + data
            ),
        ));
    }
    if ios
        && let Some(collapse) = &m.collapse_id
        && collapse.len() > MAX_APNS_COLLAPSE_ID
    {
        return Err(invalid(
            "collapse_id",
            format!(
                "at most {MAX_APNS_COLLAPSE_ID} bytes for iOS devices (APNs apns-collapse-id); \
                 this one has {}",
                collapse.len()
            ),
        ));
    }
    Ok(())
}
