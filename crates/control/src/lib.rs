//! Ferry's control plane: everything between a manifest on disk (or a
//! deployed bundle) and the server serving it.
//!
//! - [`assemble`]: the one path `ferry check`, `ferry up` and a deploy
//!   take from a manifest to an app ready to serve, with its [`stores`];
//! - [`host`]: the live host (`ferry serve`): deploy, rollback, delete and
//!   restore, reading and writing its [`desired`] state through one trait
//!   whose first implementation is the [`state`] directory;
//! - [`admin`]: the admin API's server, with the [`dashboard`];
//! - [`metrics`], [`traces`] and [`guest_logs`]: what operators observe.
//!
//! This crate knows nothing of the command line: it prints progress to the
//! writers it is given and returns errors for the binary to report.

pub mod admin;
pub mod assemble;
pub mod cluster;
pub mod dashboard;
pub mod desired;
pub mod download;
pub mod guest_logs;
pub mod host;
mod locks;
mod metered;
pub mod metrics;
pub mod state;
pub mod stores;
pub mod summary;
pub mod traces;
pub mod variables;
