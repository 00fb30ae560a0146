//! Picks the trigger that serves a path, with Spin's precedence: an exact
//! route beats a wildcard, a longer prefix beats a shorter one, and a literal
//! segment beats a parameter.

use ferry_manifest::{App, Executor, Route, RouteMatch, RoutePattern};

use crate::RouteHeaders;

/// One public route.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub pattern: RoutePattern,
    pub component: String,
    pub executor: Executor,
    /// Spin's request headers that depend only on the route.
    pub headers: RouteHeaders,
}

impl RouteEntry {
    pub fn new(pattern: RoutePattern, component: String, executor: Executor, base: &str) -> Self {
        Self {
            headers: RouteHeaders::new(&pattern, base),
            pattern,
            component,
            executor,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Most specific first, so the first match is the best one.
    routes: Vec<RouteEntry>,
}

impl Router {
    /// The public routes of `app` (private ones are not reachable over HTTP).
    pub fn new(app: &App) -> Self {
        let mut routes: Vec<RouteEntry> = app
            .triggers
            .iter()
            .filter_map(|t| match &t.route {
                Route::Pattern(pattern) => Some(RouteEntry::new(
                    pattern.clone(),
                    t.component.clone(),
                    t.executor.clone(),
                    &app.base,
                )),
                Route::Private => None,
            })
            .collect();
        // Stable: equally specific routes keep manifest order.
        routes.sort_by(|a, b| b.pattern.precedence(&a.pattern));
        Self { routes }
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    pub fn route(&self, path: &str) -> Option<(&RouteEntry, RouteMatch)> {
        self.routes
            .iter()
            .find_map(|entry| entry.pattern.matches(path).map(|m| (entry, m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router {
            routes: {
                let mut r: Vec<RouteEntry> = routes
                    .iter()
                    .map(|(route, component)| {
                        RouteEntry::new(
                            RoutePattern::parse("/", route).unwrap(),
                            component.to_string(),
                            Executor::Http,
                            "/",
                        )
                    })
                    .collect();
                r.sort_by(|a, b| b.pattern.precedence(&a.pattern));
                r
            },
        }
    }

    fn pick(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|(e, _)| e.component.clone())
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
