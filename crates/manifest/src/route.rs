//! HTTP route patterns as Spin writes them: `/a/b`, `/a/...`, `/users/:id`.
//!
//! This module parses and matches one pattern; choosing among many patterns is
//! the router's job (in `ferry-server`), which orders candidates by
//! [`RoutePattern::precedence`].

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A route with the application's base path already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// The route as written in the manifest (`/hello/...`), without the base.
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    /// How many leading segments came from the base path.
    base_segments: usize,
}

/// What a successful match captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// `:name` parameters in pattern order, with their raw (undecoded) values.
    pub params: Vec<(String, String)>,
    /// The part of the path after the matched prefix, with its leading `/`
    /// (`""` for an exact match).
    pub path_info: String,
}

impl RoutePattern {
    /// Parses `route` (as written in a trigger) under the base path `base`.
    pub fn parse(base: &str, route: &str) -> Result<Self, String> {
        if !route.starts_with('/') {
            return Err(format!("route `{route}` must start with `/`"));
        }
        let base_segments = parse_segments(base, false)?.0;
        let (route_segments, wildcard) = parse_segments(route, true)?;
        let mut names: Vec<&str> = Vec::new();
        for segment in &route_segments {
            if let Segment::Param(name) = segment {
                if names.contains(&name.as_str()) {
                    return Err(format!(
                        "route `{route}` uses the parameter `:{name}` twice"
                    ));
                }
                names.push(name);
            }
        }
        let base_len = base_segments.len();
        let mut segments = base_segments;
        segments.extend(route_segments);
        Ok(Self {
            raw: route.to_owned(),
            segments,
            wildcard,
            base_segments: base_len,
        })
    }

    /// The route as written in the manifest, e.g. `/hello/...`.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The route as written, without a trailing `/...` (Spin's
    /// `spin-component-route`).
    pub fn component_route(&self) -> &str {
        let trimmed = self.raw.strip_suffix("/...").unwrap_or(&self.raw);
        if trimmed.is_empty() { "/" } else { trimmed }
    }

    /// The full pattern including the base path, e.g. `/api/hello/...`.
    pub fn full(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(s) => out.push_str(s),
                Segment::Param(name) => {
                    out.push(':');
                    out.push_str(name);
                }
            }
        }
        if self.wildcard {
            out.push_str("/...");
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The first segment when it is a literal: only paths whose first
    /// segment is exactly this can match. `None` for a parameter or no
    /// segment at all (`/`, `/...`), which may match any first segment.
    pub fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(literal)) => Some(literal),
            _ => None,
        }
    }

    /// Whether some request path matches both patterns: two apps in one
    /// host must not claim the same path. Segment by segment, two literals
    /// must be equal and a parameter matches any segment; a wildcard takes
    /// whatever is left of the other (nothing included).
    pub fn overlaps(&self, other: &Self) -> bool {
        let (short, long) = if self.segments.len() <= other.segments.len() {
            (self, other)
        } else {
            (other, self)
        };
        let lengths_fit = short.segments.len() == long.segments.len() || short.wildcard;
        lengths_fit
            && short
                .segments
                .iter()
                .zip(&long.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    _ => true,
                })
    }

    /// Whether two patterns match exactly the same paths (parameter names aside).
    pub fn same_paths_as(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }

    /// Orders patterns so that the more specific one is greater: an exact route
    /// beats any wildcard; a longer wildcard prefix beats a shorter one; at the
    /// same length a literal segment beats a parameter, leftmost first.
    pub fn precedence(&self, other: &Self) -> Ordering {
        (!self.wildcard)
            .cmp(&!other.wildcard)
            .then(self.segments.len().cmp(&other.segments.len()))
            .then_with(|| {
                let literal = |s: &Segment| matches!(s, Segment::Literal(_));
                self.segments
                    .iter()
                    .map(literal)
                    .cmp(other.segments.iter().map(literal))
            })
    }

    /// Matches a request path (without query). Empty segments (`//`, a
    /// trailing `/`) are ignored, as Spin does.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let mut rest = path;
        let mut params = Vec::new();
        for (index, segment) in self.segments.iter().enumerate() {
            rest = rest.trim_start_matches('/');
            let end = rest.find('/').unwrap_or(rest.len());
            let (value, tail) = rest.split_at(end);
            if value.is_empty() {
                return None;
            }
            match segment {
                Segment::Literal(lit) if lit == value => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => {
                    debug_assert!(index >= self.base_segments);
                    params.push((name.clone(), value.to_owned()));
                }
            }
            rest = tail;
        }
        if self.wildcard {
            let path_info = if rest.trim_start_matches('/').is_empty() {
                String::new()
            } else {
                rest.to_owned()
            };
            Some(RouteMatch { params, path_info })
        } else if rest.trim_matches('/').is_empty() {
            Some(RouteMatch {
                params,
                path_info: String::new(),
            })
        } else {
            None
        }
    }

    /// The path prefix a request matched, including the base: the path minus
    /// `path_info` (Spin's `spin-matched-route` is the pattern; this is the
    /// concrete prefix, used as CGI's `SCRIPT_NAME`).
    pub fn literal_prefix(&self) -> Option<String> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(s) => {
                    out.push('/');
                    out.push_str(s);
                }
                Segment::Param(_) => return None,
            }
        }
        Some(out)
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

fn parse_segments(path: &str, allow_wildcard: bool) -> Result<(Vec<Segment>, bool), String> {
    let mut segments = Vec::new();
    let mut wildcard = false;
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if *part == "..." {
            if !allow_wildcard {
                return Err(format!("base `{path}` cannot contain a wildcard"));
            }
            if i + 1 != parts.len() {
                return Err(format!(
                    "route `{path}`: the wildcard `/...` may only end a route"
                ));
            }
            wildcard = true;
        } else if let Some(name) = part.strip_prefix(':') {
            if !allow_wildcard {
                return Err(format!("base `{path}` cannot contain parameters"));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "route `{path}`: parameter `:{name}` needs a name of letters, digits, `_` or `-`"
                ));
            }
            segments.push(Segment::Param(name.to_owned()));
        } else if part.contains('*') || part.contains("...") {
            return Err(format!(
                "route `{path}`: `{part}` is not a valid segment (a wildcard is written `/...` at the end)"
            ));
        } else if part
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
        {
            return Err(format!(
                "route `{path}` contains a character not allowed in a path"
            ));
        } else {
            segments.push(Segment::Literal((*part).to_owned()));
        }
    }
    Ok((segments, wildcard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(route: &str) -> RoutePattern {
        RoutePattern::parse("/", route).unwrap()
    }

    #[test]
    fn exact_routes_match_only_their_path() {
        let r = p("/a/b");
        assert!(r.matches("/a/b").is_some());
        assert!(r.matches("/a/b/").is_some());
        assert!(r.matches("/a").is_none());
        assert!(r.matches("/a/b/c").is_none());
        assert!(r.matches("/a/bc").is_none());
    }

    #[test]
    fn wildcards_capture_path_info() {
        let r = p("/a/...");
        assert_eq!(r.matches("/a").unwrap().path_info, "");
        assert_eq!(r.matches("/a/").unwrap().path_info, "");
        assert_eq!(r.matches("/a/b/c").unwrap().path_info, "/b/c");
        assert!(r.matches("/ab").is_none());
        assert_eq!(p("/...").matches("/x/y").unwrap().path_info, "/x/y");
    }

    #[test]
    fn parameters_are_captured_in_order() {
        let r = p("/users/:id/posts/:post");
        let m = r.matches("/users/42/posts/7").unwrap();
        assert_eq!(
            m.params,
            vec![("id".into(), "42".into()), ("post".into(), "7".into())]
        );
        assert!(r.matches("/users/42/posts").is_none());
    }

    #[test]
    fn base_path_prefixes_every_route() {
        let r = RoutePattern::parse("/api/v1", "/hello/...").unwrap();
        assert_eq!(r.full(), "/api/v1/hello/...");
        assert_eq!(r.raw(), "/hello/...");
        assert_eq!(r.component_route(), "/hello");
        assert!(r.matches("/hello").is_none());
        assert_eq!(r.matches("/api/v1/hello/x").unwrap().path_info, "/x");
    }

    #[test]
    fn precedence_prefers_exact_then_longer_then_literal() {
        assert!(p("/a").precedence(&p("/a/...")).is_gt());
        assert!(p("/a/b/...").precedence(&p("/a/...")).is_gt());
        assert!(p("/users/me").precedence(&p("/users/:id")).is_gt());
        assert!(p("/:x/b").precedence(&p("/a/:y")).is_lt());
    }

    #[test]
    fn duplicates_ignore_parameter_names() {
        assert!(p("/u/:id").same_paths_as(&p("/u/:name")));
        assert!(!p("/u/...").same_paths_as(&p("/u")));
        assert!(p("/a/").same_paths_as(&p("/a")));
    }

    #[test]
    fn malformed_routes_are_rejected() {
        assert!(RoutePattern::parse("/", "hello").is_err());
        assert!(RoutePattern::parse("/", "/a/.../b").is_err());
        assert!(RoutePattern::parse("/", "/a/*").is_err());
        assert!(RoutePattern::parse("/", "/a/:").is_err());
        assert!(RoutePattern::parse("/", "/:a/:a").is_err());
    }
}
