//! Ferry's integration tests: one binary (as wasmtime does) that runs the real
//! `ferry` executable on 127.0.0.1 against real guests built from source, and
//! talks to it with a real HTTP client.

mod abuse;
mod architecture;
mod build;
mod capabilities;
mod chaining;
mod cli;
mod cluster;
mod composition;
mod control;
mod docs;
mod examples;
mod failures;
mod fuzz_corpus;
mod host;
mod isolation;
mod limits;
mod manifest;
mod metrics;
mod outbound_data;
mod pipeline;
mod protocol;
mod registry;
mod remote;
mod routing;
mod spin_sdk;
mod state;
mod support;
mod tls;
mod traces;
mod triggers;
mod variables;
mod wagi;
mod wasi_http;
mod watch;
