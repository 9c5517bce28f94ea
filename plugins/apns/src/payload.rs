//! A [`Message`] as APNs wants it: the JSON payload, the `apns-*` headers, and Apple's limits.
//!
//! An alert (a title or a body) is `{"aps": {"alert": {"title", "body"}, "sound": "default",
//! "category"?}, …data}`; without either it is a background push, `{"aps":
//! {"content-available": 1}, …data}`. Custom data sits at the top level beside `aps`, which is
//! why `aps` is a reserved data key.

use ferrobase_plugin_api::{Invalid, Message, Priority};
use serde_json::{Map, Value, json};

/// Apple's limit for a regular notification's payload.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 4096;
pub(crate) const MAX_COLLAPSE_ID_BYTES: usize = 64;

fn is_alert(message: &Message) -> bool {
    message.title.is_some() || message.body.is_some()
}

/// The JSON body; `with_data: false` leaves the custom data out (to tell which part is big).
pub(crate) fn payload(message: &Message, with_data: bool) -> Value {
    let mut aps = Map::new();
    if is_alert(message) {
        let mut alert = Map::new();
        if let Some(title) = &message.title {
            alert.insert("title".into(), json!(title));
        }
        if let Some(body) = &message.body {
            alert.insert("body".into(), json!(body));
        }
        aps.insert("alert".into(), Value::Object(alert));
        aps.insert("sound".into(), json!("default"));
        if let Some(category) = &message.category {
            aps.insert("category".into(), json!(category));
        }
    } else {
        aps.insert("content-available".into(), json!(1));
    }
    let mut root = Map::new();
    root.insert("aps".into(), Value::Object(aps));
    if with_data {
        for (key, value) in &message.data {
            // `validate` refuses a data key `aps`; never let one replace the real thing.
            if key != "aps" {
                root.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(root)
}

/// The request headers besides `authorization` and `apns-topic`.
pub(crate) fn headers(message: &Message) -> Vec<(&'static str, String)> {
    let alert = is_alert(message);
    let push_type = if alert { "alert" } else { "background" };
    // Apple: background pushes must be sent with priority 5.
    let priority = if alert && message.priority == Priority::High {
        "10"
    } else {
        "5"
    };
    let mut headers = vec![
        ("apns-push-type", push_type.to_owned()),
        ("apns-priority", priority.to_owned()),
    ];
    if let Ok(id) = uuid::Uuid::try_parse(&message.delivery_id) {
        headers.push(("apns-id", id.hyphenated().to_string()));
    }
    if let Some(collapse_id) = &message.collapse_id {
        headers.push(("apns-collapse-id", collapse_id.clone()));
    }
    if let Some(expires_at) = message.expires_at {
        // A moment before 1970 means "already expired": 0 asks APNs to try once, never store.
        let seconds = expires_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        headers.push(("apns-expiration", seconds.to_string()));
    }
    headers
}

fn invalid(field: &str, message: String) -> Invalid {
    Invalid {
        field: field.to_owned(),
        message,
    }
}

/// Apple's limits, checked before a push is queued.
pub(crate) fn validate(message: &Message) -> Result<(), Invalid> {
    if message.data.contains_key("aps") {
        return Err(invalid(
            "data",
            "the key `aps` is reserved by APNs for the notification itself".to_owned(),
        ));
    }
    if let Some(collapse_id) = &message.collapse_id
        && collapse_id.len() > MAX_COLLAPSE_ID_BYTES
    {
        return Err(invalid(
            "collapse_id",
            format!(
                "APNs allows at most {MAX_COLLAPSE_ID_BYTES} bytes, this one has {}",
                collapse_id.len()
            ),
        ));
    }
    let size = payload(message, true).to_string().len();
    if size > MAX_PAYLOAD_BYTES {
        let alert_alone = payload(message, false).to_string().len();
        let field = if alert_alone > MAX_PAYLOAD_BYTES {
            "body"
        } else {
            "data"
        };
        return Err(invalid(
            field,
            format!("the APNs payload would be {size} bytes, Apple allows {MAX_PAYLOAD_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn alert() -> Message {
        Message {
            title: Some("Hi".into()),
            body: Some("There".into()),
            category: Some("marketing".into()),
            delivery_id: "0190a6f3-9c8e-7d4b-8a1e-2f3c4d5e6f70".into(),
            ..Message::default()
        }
    }

    #[test]
    fn alert_payload_and_headers() {
        let mut message = alert();
        message.data.insert("post".into(), json!(42));
        message.collapse_id = Some("post-42".into());
        message.expires_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            payload(&message, true),
            json!({"aps": {"alert": {"title": "Hi", "body": "There"}, "sound": "default",
                           "category": "marketing"}, "post": 42})
        );
        assert_eq!(
            headers(&message),
            [
                ("apns-push-type", "alert".to_owned()),
                ("apns-priority", "10".to_owned()),
                ("apns-id", "0190a6f3-9c8e-7d4b-8a1e-2f3c4d5e6f70".to_owned()),
                ("apns-collapse-id", "post-42".to_owned()),
                ("apns-expiration", "1700000000".to_owned()),
            ]
        );
        message.priority = Priority::Normal;
        assert!(headers(&message).contains(&("apns-priority", "5".to_owned())));
    }

    #[test]
    fn background_payload_and_headers() {
        let mut message = Message {
            delivery_id: "not-a-uuid".into(),
            category: Some("sync".into()),
            ..Message::default()
        };
        message.data.insert("sync".into(), json!(true));
        assert_eq!(
            payload(&message, true),
            json!({"aps": {"content-available": 1}, "sync": true})
        );
        // Priority High still goes out as 5, and a non-UUID delivery id is not sent.
        assert_eq!(
            headers(&message),
            [
                ("apns-push-type", "background".to_owned()),
                ("apns-priority", "5".to_owned()),
            ]
        );
    }

    #[test]
    fn limits() {
        assert_eq!(validate(&alert()), Ok(()));
        let mut big_body = alert();
        big_body.body = Some("x".repeat(MAX_PAYLOAD_BYTES));
        assert_eq!(validate(&big_body).unwrap_err().field, "body");
        let mut big_data = alert();
        big_data
            .data
            .insert("blob".into(), json!("x".repeat(MAX_PAYLOAD_BYTES)));
        assert_eq!(validate(&big_data).unwrap_err().field, "data");
        let mut reserved = alert();
        reserved.data.insert("aps".into(), json!({}));
        assert_eq!(validate(&reserved).unwrap_err().field, "data");
        let mut collapse = alert();
        collapse.collapse_id = Some("c".repeat(64));
        assert_eq!(validate(&collapse), Ok(()));
        collapse.collapse_id = Some("c".repeat(65));
        assert_eq!(validate(&collapse).unwrap_err().field, "collapse_id");
    }

    #[test]
    fn payload_of_exactly_4096_bytes_is_allowed() {
        let mut message = Message::default();
        let base = payload(&message, true).to_string().len() + r#","pad":"""#.len();
        message
            .data
            .insert("pad".into(), json!("x".repeat(MAX_PAYLOAD_BYTES - base)));
        assert_eq!(payload(&message, true).to_string().len(), MAX_PAYLOAD_BYTES);
        assert_eq!(validate(&message), Ok(()));
        message.data.insert(
            "pad".into(),
            json!("x".repeat(MAX_PAYLOAD_BYTES - base + 1)),
        );
        assert_eq!(validate(&message).unwrap_err().field, "data");
    }
}
