//! Fake APNs (being built).
