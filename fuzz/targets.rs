//! What each fuzz target does with its input: parse it as a user's manifest,
//! `runtime-config.toml`, route, `allowed_outbound_hosts` entry or CGI
//! output would be parsed, or run it as a guest's SQL statement, and check
//! what must hold whatever the input (no panic; every error points inside
//! the text; a parsed value behaves; a statement reaches only its own
//! database).
//!
//! Shared, by `#[path]`, between the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the corpus regression test that CI runs on
//! stable (`tests/all/fuzz_corpus.rs`), so a fixed crash stays fixed.

use std::path::Path;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/<name>.rs` and corpus
/// directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("runtime_config", runtime_config),
    ("route", route),
    ("outbound_hosts", outbound_hosts),
    ("cgi_response", cgi_response),
    ("sql_statement", sql_statement),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An error's span must lie inside the text it points into.
fn check_spans(text: &str, diagnostics: &[ferry_manifest::Diagnostic]) {
    assert!(!diagnostics.is_empty(), "an error with no diagnostic");
    for d in diagnostics {
        assert!(
            d.span.start <= d.span.end && d.span.end <= text.len(),
            "span {:?} outside a {}-byte text: {}",
            d.span,
            text.len(),
            d.message
        );
        assert!(
            text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
            "span {:?} splits a character: {}",
            d.span,
            d.message
        );
    }
}

/// A `spin.toml`. Sources are looked for in a directory that does not
/// exist, so nothing outside the input is read.
pub fn manifest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let dir = Path::new("/nonexistent/ferry-fuzz");
    if let Err(diagnostics) = ferry_manifest::parse_app(text, &dir.join("spin.toml"), dir) {
        check_spans(text, &diagnostics);
    }
}

/// A `runtime-config.toml`.
pub fn runtime_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Err(diagnostics) = ferry_manifest::RuntimeConfig::parse(text) {
        check_spans(text, &diagnostics);
    }
}

/// A route pattern and a request path, on two lines (or the pattern
/// alone): a pattern that parses matches its own literal form, orders
/// equal to itself, and matches or not any path without panicking.
pub fn route(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (route, path) = text.split_once('\n').unwrap_or((text, "/"));
    let Ok(pattern) = ferry_manifest::RoutePattern::parse("/", route) else {
        return;
    };
    assert_eq!(
        pattern.precedence(&pattern),
        std::cmp::Ordering::Equal,
        "{route:?}"
    );
    let _ = pattern.matches(path);
    if let Some(literal) = pattern.literal_prefix() {
        let literal = if literal.is_empty() {
            "/".into()
        } else {
            literal
        };
        assert!(
            pattern.matches(&literal).is_some(),
            "{route:?} does not match its own literal path {literal:?}"
        );
    }
    // The full form parses again to a pattern that orders the same.
    let again = ferry_manifest::RoutePattern::parse("/", &pattern.full())
        .unwrap_or_else(|e| panic!("{route:?} prints as {:?}, which fails: {e}", pattern.full()));
    assert_eq!(pattern.precedence(&again), std::cmp::Ordering::Equal);
}

/// One `allowed_outbound_hosts` entry; a parsed one answers `allows`
/// without panicking.
pub fn outbound_hosts(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(host) = ferry_manifest::AllowedHost::parse(text) {
        let hosts = ferry_manifest::AllowedOutboundHosts::new(vec![host]);
        for (scheme, name, port) in [
            ("http", "example.com", 80),
            ("https", "10.1.2.3", 443),
            ("http", "[::1]", 8080),
            ("mqtt", "self", 1883),
        ] {
            let _ = hosts.allows(scheme, name, port, name == "self");
        }
    }
}

/// A WAGI guest's output as a CGI response: an error or a response, never a
/// panic; a response's body is what followed the headers.
pub fn cgi_response(data: &[u8]) {
    if let Ok(response) = ferry_runtime::parse_cgi_response(bytes::Bytes::copy_from_slice(data)) {
        assert!(response.body().len() <= data.len());
        assert!(data.ends_with(response.body()));
    }
}

/// Where [`sql_statement`] runs statements: a guest's database beside
/// another app's, in a directory of their own, for the whole process.
struct SqlScene {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    guest: ferry_store::SqlDatabase,
    victim: ferry_store::SqlDatabase,
    /// The other app's one row: no statement of the guest's may read it.
    /// Made from the directory's random name, so no input can spell it.
    secret: String,
}

fn sql_scene() -> &'static SqlScene {
    static SCENE: std::sync::OnceLock<SqlScene> = std::sync::OnceLock::new();
    SCENE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = format!(
            "secret-{}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let victim = ferry_store::SqlDatabase::open(&dir.path().join("victim.db")).unwrap();
        let guest = ferry_store::SqlDatabase::open(&dir.path().join("guest.db")).unwrap();
        runtime.block_on(async {
            victim
                .execute_batch(format!(
                    "CREATE TABLE secrets (s TEXT); INSERT INTO secrets VALUES ('{secret}');"
                ))
                .await
                .unwrap();
            guest
                .execute_batch("CREATE TABLE t (a, b);".into())
                .await
                .unwrap();
        });
        SqlScene {
            runtime,
            dir,
            guest,
            victim,
            secret,
        }
    })
}

/// Whether `answer` holds `secret`, compared by hash: libFuzzer learns the
/// bytes a plain comparison looks for and would write the secret into a
/// statement (whose syntax error then quotes it), but not from a hash.
fn shows(answer: &str, secret: &str) -> bool {
    use std::hash::{Hash as _, Hasher as _};
    let hash = |bytes: &[u8]| {
        let mut hasher = std::hash::DefaultHasher::new();
        bytes.hash(&mut hasher);
        hasher.finish()
    };
    let wanted = hash(secret.as_bytes());
    answer
        .as_bytes()
        .windows(secret.len())
        .any(|window| hash(window) == wanted)
}

/// A guest's SQL statement, run as a guest's on its own database (through
/// the authorizer and limits a guest's statements pass): whatever it is,
/// no other file appears, the other app's database beside it keeps its one
/// secret row, and no answer (rows or error) shows that secret or where
/// the files are.
pub fn sql_statement(data: &[u8]) {
    let Some(statement) = text(data) else { return };
    let scene = sql_scene();
    let outcome = scene.runtime.block_on(
        scene
            .guest
            .session()
            .execute(statement.to_owned(), Vec::new()),
    );
    let shown = match &outcome {
        Ok(result) => format!("{result:?}"),
        Err(e) => e.to_string(),
    };
    assert!(
        !shows(&shown, &scene.secret),
        "{statement:?} read the other app's secret"
    );
    let dir = scene.dir.path().display().to_string();
    assert!(
        !shows(&shown, &dir),
        "{statement:?} showed where the files are: {shown}"
    );
    for entry in std::fs::read_dir(scene.dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let ours = ["victim.db", "guest.db"].iter().any(|db| {
            name.strip_prefix(db)
                .is_some_and(|rest| ["", "-wal", "-shm", "-journal"].contains(&rest))
        });
        assert!(ours, "{statement:?} made the file {name}");
    }
    let secrets = scene
        .runtime
        .block_on(
            scene
                .victim
                .execute("SELECT s FROM secrets".into(), Vec::new()),
        )
        .unwrap();
    assert_eq!(
        secrets.rows,
        [vec![ferry_store::SqlValue::Text(scene.secret.clone())]],
        "{statement:?} changed the other app's database"
    );
}
