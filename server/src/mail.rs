//! Email: templates rendered with the app's name and link base, delivered over SMTP by the
//! durable job queue.
//!
//! Why through [`crate::jobs`]: an email must go out if and only if the request that asked for
//! it committed (no reset link for a rolled-back token), must survive a restart, and must not
//! make the request wait for, or fail because of, a slow mail server. [`enqueue`] renders the
//! message and writes a `mail` job in the caller's transaction; [`SmtpSender`] delivers it.
//!
//! The rendered message holds the secret (link token or code), so the job keeps only the
//! recipient and subject once it is finished (see [`JobHandler::retain`]).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use crate::config::{MailConfig, SmtpConfig};
use crate::db::Conn;
use crate::error::Error;
use crate::jobs::{self, BoxFuture, JobError, JobHandler};

/// The job kind of emails.
pub const JOB_KIND: &str = "mail";

/// The reason recorded on mail jobs when no SMTP server is configured.
pub const NOT_CONFIGURED: &str = "smtp_not_configured";

/// Longest wait for the SMTP server on one connection step.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The emails the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// Confirms the address of a new account (link).
    VerifyEmail,
    /// Lets the owner of the address choose a new password (link).
    PasswordReset,
    /// Confirms a new address before it replaces the old one (link).
    EmailChange,
    /// A one-time sign-in code (no link).
    Otp,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::VerifyEmail => "verify_email",
            MailKind::PasswordReset => "password_reset",
            MailKind::EmailChange => "email_change",
            MailKind::Otp => "otp",
        }
    }

    /// (subject, text body, HTML body) templates.
    fn templates(self) -> (&'static str, &'static str, &'static str) {
        match self {
            MailKind::VerifyEmail => (
                "Verify your email for {app_name}",
                include_str!("../templates/mail/verify_email.txt"),
                include_str!("../templates/mail/verify_email.html"),
            ),
            MailKind::PasswordReset => (
                "Reset your {app_name} password",
                include_str!("../templates/mail/password_reset.txt"),
                include_str!("../templates/mail/password_reset.html"),
            ),
            MailKind::EmailChange => (
                "Confirm your new email for {app_name}",
                include_str!("../templates/mail/email_change.txt"),
                include_str!("../templates/mail/email_change.html"),
            ),
            MailKind::Otp => (
                "Your {app_name} sign-in code",
                include_str!("../templates/mail/otp.txt"),
                include_str!("../templates/mail/otp.html"),
            ),
        }
    }

    /// The path appended to `mail.link_base`, for kinds that carry a link.
    fn link_path(self) -> Option<&'static str> {
        match self {
            MailKind::VerifyEmail => Some("/verify-email"),
            MailKind::PasswordReset => Some("/reset-password"),
            MailKind::EmailChange => Some("/confirm-email-change"),
            MailKind::Otp => None,
        }
    }
}

/// A rendered email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The link a `kind` email carries for `token`, if the kind has one:
/// `<link_base>/verify-email?token=…` and so on (the token percent-encoded).
pub fn link(cfg: &MailConfig, kind: MailKind, token: &str) -> Option<String> {
    kind.link_path().map(|path| {
        format!(
            "{}{path}?token={}",
            cfg.link_base.trim_end_matches('/'),
            percent_encode(token)
        )
    })
}

/// Renders the templates of `kind` with the app name and the link for `secret` (or, for
/// [`MailKind::Otp`], the code itself).
pub fn render(cfg: &MailConfig, kind: MailKind, secret: &str) -> Rendered {
    let (subject, text, html) = kind.templates();
    let link = link(cfg, kind, secret).unwrap_or_default();
    let plain = [
        ("app_name", cfg.app_name.as_str()),
        ("link", link.as_str()),
        ("code", secret),
    ];
    let (app_html, link_html, code_html) = (
        html_escape(&cfg.app_name),
        html_escape(&link),
        html_escape(secret),
    );
    let escaped = [
        ("app_name", app_html.as_str()),
        ("link", link_html.as_str()),
        ("code", code_html.as_str()),
    ];
    Rendered {
        // Header values cannot span lines.
        subject: fill(subject, &plain).replace(['\r', '\n'], " "),
        text: fill(text, &plain),
        html: fill(html, &escaped),
    }
}

/// Renders a `kind` email to `to` and enqueues its delivery in the caller's transaction: it is
/// sent iff the caller's write commits. Call [`jobs::JobRunner::notify`] after the commit.
pub async fn enqueue(
    c: &mut Conn<'_>,
    cfg: &MailConfig,
    to: &str,
    kind: MailKind,
    secret: &str,
) -> Result<i64, Error> {
    let r = render(cfg, kind, secret);
    let payload = json!({
        "to": to,
        "template": kind.as_str(),
        "subject": r.subject,
        "text": r.text,
        "html": r.html,
    });
    jobs::enqueue(c, JOB_KIND, &payload).await
}

/// Replaces each `{name}` in one pass, so values that contain braces are never expanded.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let hit = after.find('}').and_then(|end| {
            let name = &after[..end];
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (end, *v))
        });
        match hit {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `mail` jobs over SMTP with lettre.
pub struct SmtpSender {
    /// `None` when `smtp.host` is empty: every mail job fails with [`NOT_CONFIGURED`].
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl SmtpSender {
    /// Builds the transport from the settings: `tls = "none"` speaks plain SMTP (local relays,
    /// tests), `"tls"` connects with implicit TLS, `"starttls"` (and the empty default) requires
    /// STARTTLS. Credentials are used when `username` is set.
    pub fn new(smtp: &SmtpConfig, from: &str) -> Result<Self, Error> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| Error::internal(format!("mail.from `{from}` is not an address: {e}")))?;
        if smtp.host.is_empty() {
            return Ok(Self {
                transport: None,
                from,
            });
        }
        let builder = match smtp.tls.as_str() {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str()),
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| Error::internal(format!("smtp: {e}")))?,
            "" | "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| Error::internal(format!("smtp: {e}")))?,
            other => {
                return Err(Error::internal(format!(
                    "smtp.tls `{other}` is not none, starttls or tls"
                )));
            }
        };
        let mut builder = builder.port(smtp.port).timeout(Some(SMTP_TIMEOUT));
        if !smtp.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                smtp.username.clone(),
                smtp.password.clone(),
            ));
        }
        Ok(Self {
            transport: Some(builder.build()),
            from,
        })
    }

    async fn send(&self, payload: &Value) -> Result<(), JobError> {
        let Some(transport) = &self.transport else {
            return Err(JobError::Fail(NOT_CONFIGURED.into()));
        };
        let field = |name: &str| {
            payload
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| JobError::Fail(format!("mail job without `{name}`")))
        };
        let to: Mailbox = field("to")?
            .parse()
            .map_err(|e| JobError::Fail(format!("invalid recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(field("subject")?)
            .multipart(MultiPart::alternative_plain_html(
                field("text")?.to_owned(),
                field("html")?.to_owned(),
            ))
            .map_err(|e| JobError::Fail(format!("cannot build the message: {e}")))?;
        transport.send(message).await.map(|_| ()).map_err(|e| {
            // 5xx: the server refused for good. Client-side errors cannot improve either.
            // Everything else (4xx, network, TLS, timeouts) may pass on a later attempt.
            if e.is_permanent() || e.is_client() {
                JobError::Fail(e.to_string())
            } else {
                JobError::Retry(e.to_string())
            }
        })
    }
}

impl JobHandler for SmtpSender {
    fn kind(&self) -> &'static str {
        JOB_KIND
    }

    fn run<'a>(&'a self, payload: &'a Value) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(self.send(payload))
    }

    /// Recipient, template and subject stay for support; the bodies carry the secret.
    fn retain(&self, payload: &Value) -> Value {
        json!({
            "to": payload.get("to"),
            "template": payload.get("template"),
            "subject": payload.get("subject"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MailConfig {
        MailConfig {
            from: "Acme <no-reply@acme.test>".into(),
            app_name: "Acme & Co".into(),
            link_base: "https://acme.test/auth/".into(),
        }
    }

    #[test]
    fn links_per_kind() {
        let c = cfg();
        assert_eq!(
            link(&c, MailKind::VerifyEmail, "abc").as_deref(),
            Some("https://acme.test/auth/verify-email?token=abc")
        );
        assert_eq!(
            link(&c, MailKind::PasswordReset, "a+b/c=").as_deref(),
            Some("https://acme.test/auth/reset-password?token=a%2Bb%2Fc%3D")
        );
        assert_eq!(
            link(&c, MailKind::EmailChange, "x-y_z.~").as_deref(),
            Some("https://acme.test/auth/confirm-email-change?token=x-y_z.~")
        );
        assert_eq!(link(&c, MailKind::Otp, "123456"), None);
    }

    #[test]
    fn renders_subject_text_and_escaped_html() {
        let r = render(&cfg(), MailKind::PasswordReset, "tok&en");
        assert_eq!(r.subject, "Reset your Acme & Co password");
        assert!(
            r.text
                .contains("https://acme.test/auth/reset-password?token=tok%26en"),
            "{}",
            r.text
        );
        assert!(r.text.contains("Acme & Co account"));
        assert!(!r.text.contains('{'), "no placeholder left: {}", r.text);
        assert!(r.html.contains("Acme &amp; Co"));
        assert!(
            r.html
                .contains(r#"href="https://acme.test/auth/reset-password?token=tok%26en""#)
        );
        assert!(!r.html.contains("Acme & Co"));

        let r = render(&cfg(), MailKind::VerifyEmail, "t1");
        assert_eq!(r.subject, "Verify your email for Acme & Co");
        assert!(r.text.contains("/verify-email?token=t1"));
        let r = render(&cfg(), MailKind::EmailChange, "t2");
        assert_eq!(r.subject, "Confirm your new email for Acme & Co");
        assert!(r.html.contains("/confirm-email-change?token=t2"));
    }

    #[test]
    fn otp_shows_the_code_and_no_link() {
        let r = render(&cfg(), MailKind::Otp, "482913");
        assert_eq!(r.subject, "Your Acme & Co sign-in code");
        assert!(r.text.contains("\n482913\n"));
        assert!(r.html.contains(">482913<"));
        assert!(!r.text.contains("http"));
    }

    #[test]
    fn values_are_not_expanded_again() {
        let mut c = cfg();
        c.app_name = "{link} {code} <b>\r\nBcc: x@y".into();
        let r = render(&c, MailKind::VerifyEmail, "T");
        assert!(
            r.subject
                .starts_with("Verify your email for {link} {code} <b>")
        );
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
        assert!(r.text.contains("for {link} {code} <b>"));
        assert!(r.html.contains("{link} {code} &lt;b&gt;"));
        assert_eq!(fill("{a}{b}{", &[("a", "{b}"), ("b", "2")]), "{b}2{");
        assert_eq!(fill("{unknown} }{", &[("a", "1")]), "{unknown} }{");
    }

    #[tokio::test]
    async fn unconfigured_smtp_fails_with_reason() {
        let sender = SmtpSender::new(&SmtpConfig::default(), "Acme <a@acme.test>").unwrap();
        let payload = json!({"to": "u@x.test", "subject": "s", "text": "t", "html": "h"});
        assert_eq!(
            sender.run(&payload).await,
            Err(JobError::Fail(NOT_CONFIGURED.into()))
        );
        assert!(SmtpSender::new(&SmtpConfig::default(), "not an address").is_err());
    }
}
