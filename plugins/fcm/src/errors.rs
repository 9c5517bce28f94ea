//! FCM's error answers, turned into an [`Outcome`].
//!
//! FCM v1 answers with a `google.rpc.Status` body whose `details` carry an
//! `google.firebase.fcm.v1.FcmError` with the FCM-specific `errorCode`. That code decides;
//! the HTTP status is the fallback for answers without one (a proxy's 502, a plain 403).
//! Only `UNREGISTERED` retires a token: `INVALID_ARGUMENT` also covers a malformed token, but
//! the same code means a malformed message, so it must not delete devices.

use std::time::Duration;

use ferrobase_plugin_api::{Outcome, Retry};
use reqwest::StatusCode;
use serde::Deserialize;

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";

#[derive(Deserialize)]
struct Body {
    error: Status,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// One parsed error answer.
#[derive(Debug)]
pub(crate) struct FcmFailure {
    pub http: StatusCode,
    /// The `FcmError` code, else the `google.rpc` status name, else empty.
    pub code: String,
    pub message: String,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<Duration>,
}

impl FcmFailure {
    pub(crate) fn parse(http: StatusCode, retry_after: Option<&str>, body: &str) -> Self {
        let (code, message) = match serde_json::from_str::<Body>(body) {
            Ok(Body { error }) => {
                let fcm = error
                    .details
                    .into_iter()
                    .find(|d| d.kind == FCM_ERROR_TYPE)
                    .and_then(|d| d.error_code);
                (fcm.unwrap_or(error.status), error.message)
            }
            // Not Google's shape (a proxy, a load balancer): keep a little of it for people.
            Err(_) => (String::new(), body.chars().take(200).collect()),
        };
        FcmFailure {
            http,
            code,
            message,
            retry_after: retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    }

    /// A 401 that a new access token may cure (not a broken APNs/Web Push credential, which
    /// FCM also reports as 401).
    pub(crate) fn token_rejected(&self) -> bool {
        self.http == StatusCode::UNAUTHORIZED && self.code != "THIRD_PARTY_AUTH_ERROR"
    }

    fn reason(&self) -> String {
        let mut reason = format!("FCM {}", self.http.as_u16());
        for part in [&self.code, &self.message] {
            if !part.is_empty() {
                reason.push(' ');
                reason.push_str(part);
            }
        }
        reason
    }

    pub(crate) fn outcome(&self) -> Outcome {
        let later = Retry::Later(self.retry_after);
        let retry = match self.code.as_str() {
            "UNREGISTERED" => {
                return Outcome::InvalidToken {
                    reason: self.reason(),
                };
            }
            "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" => later,
            "INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR" => Retry::Never,
            _ if self.http == StatusCode::TOO_MANY_REQUESTS
                || self.http == StatusCode::REQUEST_TIMEOUT
                || self.http.is_server_error() =>
            {
                later
            }
            _ => Retry::Never,
        };
        let mut reason = self.reason();
        if self.token_rejected() {
            // Only reported after one retry with a new token (see `FcmProvider::deliver`).
            reason.push_str(
                " (a freshly fetched token was refused too: check the service account's \
                 Firebase permissions)",
            );
        }
        Outcome::Failed { reason, retry }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn google(code: u16, status: &str, fcm: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": "m", "status": status,
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": fcm}]}})
        .to_string()
    }

    #[test]
    fn codes_decide_then_http_status() {
        let f = FcmFailure::parse(
            StatusCode::NOT_FOUND,
            None,
            &google(404, "NOT_FOUND", "UNREGISTERED"),
        );
        assert!(matches!(f.outcome(), Outcome::InvalidToken { .. }));
        // A plain 404 (wrong URL, unknown project) is not a dead token.
        let f = FcmFailure::parse(StatusCode::NOT_FOUND, None, "<html>not found</html>");
        assert!(matches!(
            f.outcome(),
            Outcome::Failed {
                retry: Retry::Never,
                ..
            }
        ));
        let f = FcmFailure::parse(StatusCode::BAD_GATEWAY, Some("7"), "bad gateway");
        let expected = Retry::Later(Some(Duration::from_secs(7)));
        assert!(matches!(f.outcome(), Outcome::Failed { retry, .. } if retry == expected));
        let f = FcmFailure::parse(
            StatusCode::UNAUTHORIZED,
            None,
            &google(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
        );
        assert!(!f.token_rejected());
        assert!(matches!(
            f.outcome(),
            Outcome::Failed {
                retry: Retry::Never,
                ..
            }
        ));
    }
}
