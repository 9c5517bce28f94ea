//! Fake FCM (being built).
