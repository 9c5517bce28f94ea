//! APNs provider (being built).
