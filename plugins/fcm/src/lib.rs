//! FCM provider (being built).
