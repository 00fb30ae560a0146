//! The admin API's client: `ferry deploy`, `apps`, `app show`, `rollback`,
//! `delete` and `logs` against a live host.
//!
//! It speaks only the admin API's types (`ferry-api`) and reads manifests
//! (`ferry-manifest`) to know what to bundle: it links no wasmtime and knows
//! nothing of the host's internals.

mod bundle;
mod client;

pub use bundle::{Bundle, BundleFile};
pub use client::*;
