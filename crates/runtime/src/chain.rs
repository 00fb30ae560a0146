//! Service chaining, as Spin has it: a request a guest makes to
//! `http://<component>.spin.internal/…` reaches that component of the same
//! app in process — no socket, a fresh instance, the callee's own limits
//! and admission — when the caller's `allowed_outbound_hosts` grants it as
//! Spin does (`http://<component>.spin.internal` or
//! `http://*.spin.internal`; neither `*://*:*` nor `self` does).
//!
//! The runtime knows no routing: whoever serves the app answers through
//! [`Chain`], bound to each of its guests with [`crate::Guest::chain_to`],
//! so a chain never leaves the app version that serves the caller. A guest
//! no app serves (an event trigger's) has none: its chained requests fail
//! with `destination-not-found`.
//!
//! Chains are bounded: the routed request is depth 0, each chained request
//! one more than its caller's, and one that would be deeper than
//! [`MAX_CHAIN_DEPTH`] is answered `508 Loop Detected` without running
//! anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use crate::ResponseBody;

/// How deep a chain of requests may go.
pub const MAX_CHAIN_DEPTH: u32 = 10;

/// What a chained request comes to: the callee's response (an error
/// response where it failed), or why there is no callee.
pub type Chained =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, String>> + Send>>;

/// An app's components, as chained requests reach them.
pub trait Chain: Send + Sync {
    /// Serves `request` with the component `component`, the request being
    /// `depth` deep in its chain. `Err` when the app has no such component
    /// serving HTTP.
    fn call(
        self: Arc<Self>,
        component: &str,
        request: http::Request<ResponseBody>,
        depth: u32,
    ) -> Chained;
}

/// Where a guest's chained requests go, once its app is served.
#[derive(Default)]
pub struct ChainLink(Mutex<Option<Weak<dyn Chain>>>);

impl ChainLink {
    pub(crate) fn set(&self, chain: Weak<dyn Chain>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(chain);
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn Chain>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .upgrade()
    }
}

impl std::fmt::Debug for ChainLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainLink")
    }
}
