//! Loopback push providers for tests. Nothing here is built into the server or the binary.
//!
//! Each fake speaks the provider's documented protocol closely enough that the real plugin
//! cannot tell the difference: HTTP/2 (TLS for APNs), the documented headers and JSON, the
//! documented error reasons, and credential checks (APNs JWT / client certificate, FCM OAuth).
//! Tests script outcomes by device token (see each module).

pub mod apns;
pub mod fcm;
