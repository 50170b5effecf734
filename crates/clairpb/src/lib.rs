//! Clair v3's gRPC notification protocol (wire reference §4), generated at build time from
//! `proto/*.proto` with a vendored protoc (see `build.rs`): the messages, and the
//! `NotificationService` server and client under both of the service's package names.
//!
//! It is a crate of its own because two sides use it: the API serves the service
//! (`tocsin-api`), and the Kubernetes consumer pages notifications through it (`tocsin-kube`);
//! neither should depend on the other for it.
//!
//! The messages are generated once, from `coreos_clair.proto`; the older `clairpb` package
//! contributes only its service, on the same Rust types.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `coreos.clair`.
pub mod coreos {
    /// Package `coreos.clair`: messages and the service.
    pub mod clair {
        include!(concat!(env!("OUT_DIR"), "/coreos.clair.rs"));
    }
}

/// Package `clairpb` (before 2018-04): the service, on the same messages.
pub mod clairpb {
    include!(concat!(env!("OUT_DIR"), "/clairpb.rs"));
}
