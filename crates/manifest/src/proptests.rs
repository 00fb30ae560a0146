//! Properties that must hold for every input, checked on generated ones:
//! route precedence is a total order, and every error a manifest or
//! runtime config gets points inside its text.

use std::cmp::Ordering;
use std::path::Path;

use proptest::prelude::*;

use crate::{Diagnostic, RoutePattern, RuntimeConfig, parse_app};

/// Routes from a few literals and parameters, with or without `/...`.
fn route() -> impl Strategy<Value = RoutePattern> {
    let segment = prop_oneof!["[ab]{1,2}", ":[pq]"];
    (proptest::collection::vec(segment, 0..4), any::<bool>()).prop_filter_map(
        "a parameter used twice",
        |(segments, wildcard)| {
            let mut route: String = segments.iter().map(|s| format!("/{s}")).collect();
            if wildcard {
                route.push_str("/...");
            }
            if route.is_empty() {
                route.push('/');
            }
            RoutePattern::parse("/", &route).ok()
        },
    )
}

proptest! {
    #[test]
    fn route_precedence_is_a_total_order(a in route(), b in route(), c in route()) {
        // Antisymmetric: a > b exactly when b < a.
        prop_assert_eq!(a.precedence(&b), b.precedence(&a).reverse());
        prop_assert_eq!(a.precedence(&a), Ordering::Equal);
        // Transitive.
        if a.precedence(&b) != Ordering::Greater && b.precedence(&c) != Ordering::Greater {
            prop_assert_ne!(a.precedence(&c), Ordering::Greater, "{} {} {}", a, b, c);
        }
        // An exact route is never on a par with a wildcard.
        if a.precedence(&b) == Ordering::Equal {
            prop_assert_eq!(a.is_wildcard(), b.is_wildcard(), "{} {}", a, b);
        }
    }

    /// Of two routes that both match a path, the one that takes precedence
    /// is the more specific: it is exact where the other is a wildcard, or
    /// its literal segments come no later.
    #[test]
    fn an_exact_route_beats_a_wildcard_over_the_same_path(a in route()) {
        if let Some(path) = a.literal_prefix() {
            let path = if path.is_empty() { "/".to_owned() } else { path };
            let wildcard = RoutePattern::parse("/", &format!("{}/...", path.trim_end_matches('/'))).unwrap();
            prop_assert!(wildcard.matches(&path).is_some());
            if !a.is_wildcard() {
                prop_assert_eq!(a.precedence(&wildcard), Ordering::Greater, "{} {}", a, wildcard);
            }
        }
    }
}

/// Paths made of the same few segments the routes use.
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["[ab]{1,2}", Just("x".to_owned())], 0..5)
        .prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest! {
    /// `overlaps` is exact on what it is used for: any path both patterns
    /// match means they overlap, and two that overlap share a path.
    #[test]
    fn two_routes_overlap_exactly_when_a_path_matches_both(a in route(), b in route(), paths in proptest::collection::vec(path(), 1..32)) {
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        if paths.iter().any(|p| a.matches(p).is_some() && b.matches(p).is_some()) {
            prop_assert!(a.overlaps(&b), "{} and {} both match a path", a, b);
        }
        if a.overlaps(&b) {
            // A witness: each segment the more specific of the two
            // patterns' (a parameter becomes a literal), then nothing.
            let witness = witness(&a, &b);
            prop_assert!(
                a.matches(&witness).is_some() && b.matches(&witness).is_some(),
                "{} and {} overlap, but not at {}", a, b, witness
            );
        }
    }
}

/// A path that both of two overlapping patterns match.
fn witness(a: &RoutePattern, b: &RoutePattern) -> String {
    let printed = |p: &RoutePattern| -> Vec<String> {
        p.full()
            .split('/')
            .filter(|s| !s.is_empty() && *s != "...")
            .map(str::to_owned)
            .collect()
    };
    let (a, b) = (printed(a), printed(b));
    let longer = a.len().max(b.len());
    let segment = |i: usize| {
        let pick = |s: Option<&String>| s.filter(|s| !s.starts_with(':')).cloned();
        pick(a.get(i))
            .or_else(|| pick(b.get(i)))
            .unwrap_or_else(|| "x".into())
    };
    format!(
        "/{}",
        (0..longer).map(segment).collect::<Vec<_>>().join("/")
    )
}

/// A manifest that loads, to be broken in generated ways.
const VALID: &str = r#"spin_manifest_version = 2

[application]
name = "demo"

[variables]
api_host = { default = "example.com" }

[[trigger.http]]
route = "/hello/..."
component = "hello"

[component.hello]
source = "app.wasm"
allowed_outbound_hosts = ["https://{{ api_host }}"]
key_value_stores = ["default"]
files = [{ source = "static", destination = "/" }]

[component.hello.variables]
url = "https://{{ api_host }}/v1"
"#;

/// What an edit puts into the text: TOML's punctuation, the manifest's
/// words, and characters longer than a byte.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("=".to_owned()),
        Just("[".to_owned()),
        Just("]]".to_owned()),
        Just("\"".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\n".to_owned()),
        Just(",".to_owned()),
        Just("{{".to_owned()),
        Just("é✓".to_owned()),
        Just("[[trigger.http]]\nroute = 7\n".to_owned()),
        Just("[component.x]\n".to_owned()),
        Just("source = { url = \"https://x\", digest = \"sha256:00\" }\n".to_owned()),
        Just("executor = { type = \"wagi\" }\n".to_owned()),
        "[a-z_]{1,12}",
        "[0-9]{1,4}",
    ]
}

/// Each edit: at a byte offset (moved to a character boundary), delete up
/// to a few bytes and insert a fragment.
fn edited(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut out = text.to_owned();
    for (at, delete, insert) in edits {
        let mut start = at % (out.len() + 1);
        while !out.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + delete).min(out.len());
        while !out.is_char_boundary(end) {
            end += 1;
        }
        out.replace_range(start..end, insert);
    }
    out
}

fn check_spans(text: &str, diagnostics: &[Diagnostic]) -> Result<(), TestCaseError> {
    prop_assert!(!diagnostics.is_empty());
    for d in diagnostics {
        prop_assert!(
            d.span.start <= d.span.end && d.span.end <= text.len(),
            "{:?} outside {} bytes: {}",
            d.span,
            text.len(),
            d.message
        );
        prop_assert!(
            text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
            "{:?} splits a character: {}",
            d.span,
            d.message
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_manifest_error_points_inside_the_file(
        edits in proptest::collection::vec((any::<usize>(), 0usize..8, fragment()), 1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        let text = edited(VALID, &edits);
        if let Err(diagnostics) = parse_app(&text, Path::new("spin.toml"), dir.path()) {
            check_spans(&text, &diagnostics)?;
        }
    }

    #[test]
    fn every_runtime_config_error_points_inside_the_file(
        edits in proptest::collection::vec((any::<usize>(), 0usize..8, fragment()), 1..4)
    ) {
        let valid = "[limits]\nmax_memory = \"64 MiB\"\n[key_value_store.cache]\ntype = \"spin\"\npath = \"c.db\"\n[component.a.limits]\nqueue_timeout = \"2s\"\n";
        let text = edited(valid, &edits);
        if let Err(diagnostics) = RuntimeConfig::parse(&text) {
            check_spans(&text, &diagnostics)?;
        }
    }
}

#[test]
fn the_unedited_manifest_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    parse_app(VALID, Path::new("spin.toml"), dir.path()).unwrap();
}
