//! Picks the trigger that serves a path, with Spin's precedence: an exact
//! route beats a wildcard, a longer prefix beats a shorter one, and a literal
//! segment beats a parameter.
//!
//! Routes are kept in precedence order, so the first match is the best one,
//! and indexed by their first literal segment: a path is only tried against
//! the routes for its own first segment and the few that can match any
//! (a parameter first, or `/...`). An app with 1,000 routes is then as quick
//! to route as one with ten.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_manifest::{App, Executor, Handler, Route, RouteMatch, RoutePattern};

use crate::metrics::RouteMetrics;
use crate::{RouteHeaders, StaticReply};

/// One public route.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub pattern: RoutePattern,
    pub target: Target,
    /// Spin's request headers that depend only on the route.
    pub headers: RouteHeaders,
    /// In a table of many apps' routes, the index of the app this one is
    /// from (0 in an app's own router).
    pub(crate) app: usize,
    /// Its series, once its app is installed where metrics are kept.
    pub(crate) metrics: Option<Arc<RouteMetrics>>,
    /// The route as declared, with its base: how logs and metrics name it.
    pub(crate) label: Arc<str>,
}

/// What answers a route.
#[derive(Debug, Clone)]
pub enum Target {
    Component {
        id: String,
        executor: Executor,
    },
    /// A manifest's `static_response`, built once.
    Static(Arc<StaticReply>),
}

impl RouteEntry {
    pub fn new(pattern: RoutePattern, target: Target, base: &str) -> Self {
        Self {
            headers: RouteHeaders::new(&pattern, base),
            label: pattern.full().into(),
            pattern,
            target,
            app: 0,
            metrics: None,
        }
    }

    /// The component this route runs (none for a static response).
    pub fn component(&self) -> Option<&str> {
        match &self.target {
            Target::Component { id, .. } => Some(id),
            Target::Static(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Most specific first, so the first match is the best one.
    routes: Vec<RouteEntry>,
    /// Indices into `routes` (ascending) of the routes whose first segment
    /// is this literal.
    by_first_segment: HashMap<String, Vec<usize>>,
    /// Indices (ascending) of the routes that may match any first segment.
    any_first_segment: Vec<usize>,
}

impl Router {
    /// The public routes of `app` (private ones are not reachable over HTTP).
    pub fn new(app: &App) -> anyhow::Result<Self> {
        let mut routes = Vec::new();
        for trigger in &app.triggers {
            let Route::Pattern(pattern) = &trigger.route else {
                continue;
            };
            let target = match &trigger.handler {
                Handler::Component { id, executor } => Target::Component {
                    id: id.clone(),
                    executor: executor.clone(),
                },
                Handler::Static(fixed) => Target::Static(Arc::new(StaticReply::new(fixed)?)),
            };
            let full = pattern.full();
            if full.starts_with(crate::apps::WELL_KNOWN_PREFIX) {
                tracing::warn!(
                    route = full.as_str(),
                    "routes under {} are answered by Ferry (as by Spin) and never reach a component",
                    crate::apps::WELL_KNOWN_PREFIX
                );
            }
            routes.push(RouteEntry::new(pattern.clone(), target, &app.base));
        }
        Ok(Self::from_routes(routes))
    }

    pub fn from_routes(mut routes: Vec<RouteEntry>) -> Self {
        // Stable: equally specific routes keep manifest order.
        routes.sort_by(|a, b| b.pattern.precedence(&a.pattern));
        let mut by_first_segment: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_first_segment = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match route.pattern.first_literal() {
                Some(literal) => by_first_segment
                    .entry(literal.to_owned())
                    .or_default()
                    .push(index),
                None => any_first_segment.push(index),
            }
        }
        Self {
            routes,
            by_first_segment,
            any_first_segment,
        }
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The routes, to attach their metrics (the order stays).
    pub(crate) fn routes_mut(&mut self) -> &mut [RouteEntry] {
        &mut self.routes
    }

    pub fn route(&self, path: &str) -> Option<(&RouteEntry, RouteMatch)> {
        // The first segment as `RoutePattern::matches` reads it.
        let rest = path.trim_start_matches('/');
        let first = &rest[..rest.find('/').unwrap_or(rest.len())];
        let literal = self
            .by_first_segment
            .get(first)
            .map_or(&[][..], Vec::as_slice);
        // Both lists ascend in precedence order: merge them and stop at the
        // first match.
        let (mut a, mut b) = (
            literal.iter().peekable(),
            self.any_first_segment.iter().peekable(),
        );
        loop {
            let index = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => return None,
            }?;
            let entry = &self.routes[*index];
            if let Some(matched) = entry.pattern.matches(path) {
                return Some((entry, matched));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::from_routes(
            routes
                .iter()
                .map(|(route, component)| {
                    RouteEntry::new(
                        RoutePattern::parse("/", route).unwrap(),
                        Target::Component {
                            id: component.to_string(),
                            executor: Executor::Http,
                        },
                        "/",
                    )
                })
                .collect(),
        )
    }

    fn pick(r: &Router, path: &str) -> Option<String> {
        r.route(path)
            .map(|(e, _)| e.component().unwrap().to_owned())
    }

    #[test]
    fn most_specific_route_wins_regardless_of_order() {
        let r = router(&[
            ("/...", "catch-all"),
            ("/api/...", "api"),
            ("/api/users/:id", "user"),
            ("/api/users/me", "me"),
            ("/api", "api-root"),
        ]);
        assert_eq!(pick(&r, "/").as_deref(), Some("catch-all"));
        assert_eq!(pick(&r, "/other/x").as_deref(), Some("catch-all"));
        assert_eq!(pick(&r, "/api").as_deref(), Some("api-root"));
        assert_eq!(pick(&r, "/api/x/y").as_deref(), Some("api"));
        assert_eq!(pick(&r, "/api/users/42").as_deref(), Some("user"));
        assert_eq!(pick(&r, "/api/users/me").as_deref(), Some("me"));
    }

    #[test]
    fn parameter_and_catch_all_routes_compete_with_every_literal_bucket() {
        let r = router(&[
            ("/...", "catch-all"),
            ("/:tenant/orders", "tenant-orders"),
            ("/api/...", "api"),
            ("/api/orders", "api-orders"),
            ("/:tenant/...", "tenant"),
        ]);
        // A literal exact route beats a parameter route of the same length.
        assert_eq!(pick(&r, "/api/orders").as_deref(), Some("api-orders"));
        // Empty segments are ignored; a literal wildcard beats a parameter one.
        assert_eq!(pick(&r, "//api//x/").as_deref(), Some("api"));
        assert_eq!(pick(&r, "/shop/orders").as_deref(), Some("tenant-orders"));
        assert_eq!(pick(&r, "/shop/other").as_deref(), Some("tenant"));
        assert_eq!(pick(&r, "/").as_deref(), Some("catch-all"));
        assert_eq!(pick(&r, "").as_deref(), Some("catch-all"));
    }

    #[test]
    fn no_route_means_no_match() {
        let r = router(&[("/a", "a")]);
        assert_eq!(pick(&r, "/b"), None);
    }

    #[test]
    fn routing_a_thousand_routes_finds_each() {
        let routes: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("/app{i}/..."), format!("c{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = routes
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let r = router(&refs);
        assert_eq!(pick(&r, "/app999/x").as_deref(), Some("c999"));
        assert_eq!(pick(&r, "/app0").as_deref(), Some("c0"));
    }
}
