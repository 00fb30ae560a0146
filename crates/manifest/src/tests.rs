//! Manifest parsing tests. Error messages are snapshot-tested: the rendered
//! text is exactly what `ferry up` / `ferry check` print.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        Self { dir }
    }

    fn parse(&self, text: &str) -> Result<App, String> {
        parse_app(text, Path::new("spin.toml"), self.dir.path()).map_err(|diags| {
            ManifestError::invalid(Path::new("spin.toml"), text, diags).to_string()
        })
    }
}

const HEADER: &str = "spin_manifest_version = 2\n[application]\nname = \"demo\"\n";

#[test]
fn a_full_manifest_loads() {
    let f = Fixture::new();
    let app = f
        .parse(
            r#"spin_manifest_version = 2

[application]
name = "demo"
version = "1.0.0"
authors = ["Ada"]
description = "a demo"

[application.trigger.http]
base = "/api"

[[trigger.http]]
route = "/hello/..."
component = "hello"

[[trigger.http]]
route = "/cgi"
component = "cgi"
executor = { type = "wagi", argv = "${SCRIPT_NAME} -v ${ARGS}" }

[[trigger.http]]
route = { private = true }
component = { source = "app.wasm" }

[component.hello]
source = "app.wasm"
description = "says hello"
files = ["*.txt", { source = "static", destination = "/assets" }]
exclude_files = ["secret.txt"]
environment = { GREETING = "hi", MODE = "test" }
allowed_outbound_hosts = ["https://example.com", "http://self"]

[component.cgi]
source = "app.wasm"
"#,
        )
        .unwrap();
    assert_eq!(app.name, "demo");
    assert_eq!(app.version.as_deref(), Some("1.0.0"));
    assert_eq!(app.base, "/api");
    assert_eq!(app.triggers.len(), 3);
    let Route::Pattern(route) = &app.triggers[0].route else {
        panic!("public route expected")
    };
    assert_eq!(route.full(), "/api/hello/...");
    assert_eq!(app.triggers[0].line, 13);
    assert_eq!(
        app.triggers[1].handler,
        Handler::Component {
            id: "cgi".into(),
            executor: Executor::Wagi(WagiConfig {
                argv: "${SCRIPT_NAME} -v ${ARGS}".into(),
                entrypoint: "_start".into()
            })
        }
    );
    assert_eq!(app.triggers[2].route, Route::Private);
    // Spin's names: a trigger without an id gets one, and an inline
    // component is named after its trigger.
    assert_eq!(app.triggers[0].id, "hello-http-trigger");
    assert_eq!(app.triggers[2].id, "http-trigger1");
    assert_eq!(app.triggers[2].component(), Some("http-trigger1-component"));
    assert!(app.warnings.is_empty());
    let hello = app.component("hello").unwrap();
    assert_eq!(
        hello.environment,
        vec![
            ("GREETING".into(), "hi".into()),
            ("MODE".into(), "test".into())
        ]
    );
    assert_eq!(hello.files.len(), 2);
    assert_eq!(hello.exclude_files, vec!["secret.txt".to_string()]);
    assert!(
        hello
            .allowed_outbound_hosts
            .allows("https", "example.com", 443, false)
    );
    assert!(hello.allowed_outbound_hosts.allows_self());
    // Manifest order: the inline component is defined before the tables.
    let ids: Vec<&str> = app.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["http-trigger1-component", "hello", "cgi"]);
}

#[test]
fn fields_ferry_cannot_honour_are_refused_at_their_key() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            r#"{HEADER}
[application.trigger.sqs]
region = "eu-west-1"

[[trigger.http]]
route = "/"
component = "a"
components = {{ extra = "a" }}

[[trigger.sqs]]
queue_url = "x"
component = "a"

[[trigger.cron]]
cron_expression = "* * * * *"
component = "a"

[component.a]
source = "app.wasm"
key_value_stores = ["default"]
sqlite_databases = ["default"]
ai_models = ["llama2-chat"]
dependencies = {{ "wasi:http/handler" = "newest" }}

[component.a.build]
command = "cargo build"
environment = {{ RUSTFLAGS = "-O" }}

[component.b]
source = {{ registry = "ttl.sh", package = "demo:b", version = "^1.0" }}
"#
        ))
        .unwrap_err();
    insta::assert_snapshot!("refused_fields", err);
}

#[test]
fn event_triggers_are_read_as_spin_reads_them() {
    let f = Fixture::new();
    let app = f
        .parse(&format!(
            r#"{HEADER}
[variables]
host = {{ default = "cache" }}
password = {{ required = true, secret = true }}

[application.trigger.redis]
address = "redis://:{{{{ password }}}}@{{{{ host }}}}:6379"

[application.trigger.mqtt]
address = "mqtt://{{{{ host }}}}:1883"
username = "admin"
password = "{{{{ password }}}}"
keep_alive_interval = "15"

[[trigger.mqtt]]
component = "a"
topic = "sensors/+/temp"
qos = "2"

[[trigger.redis]]
channel = "orders"
component = "a"

[[trigger.redis]]
id = "audit"
address = "redis://audit:6380"
channel = "{{{{ host }}}}-audit"
component = {{ source = "app.wasm" }}

[[trigger.nats]]
url = "nats://a:4222,nats://b:4222"
subject = "orders.>"
component = "a"
max_deliver = 3
dead_letter_subject = "dead.{{{{ host }}}}"
stream = "ORDERS"

[[trigger.cron]]
component = "b"
cron_expression = "*/5 * * * * MON-FRI"

[[trigger.cron]]
component = "b"
cron_expression = "@hourly"

[component.a]
source = "app.wasm"

[component.b]
source = "app.wasm"
"#
        ))
        .unwrap();
    let summary: Vec<String> = app
        .event_triggers
        .iter()
        .map(|t| match &t.source {
            EventSource::Redis { address, channel } => {
                format!(
                    "{} {} redis {address} {channel} line {}",
                    t.id, t.component, t.line
                )
            }
            EventSource::Cron { schedule } => {
                format!("{} {} cron {schedule} line {}", t.id, t.component, t.line)
            }
            EventSource::Command => format!("{} {} command line {}", t.id, t.component, t.line),
            EventSource::Pipeline { stages } => {
                format!(
                    "{} {} pipeline {stages:?} line {}",
                    t.id, t.component, t.line
                )
            }
            EventSource::Mqtt { broker, topic, qos } => format!(
                "{} {} mqtt {} {:?} {:?} {:?} {topic} {qos} line {}",
                t.id,
                t.component,
                broker.address,
                broker.username.as_ref().map(ToString::to_string),
                broker.password.as_ref().map(ToString::to_string),
                broker.keep_alive,
                t.line
            ),
            EventSource::Nats {
                url,
                subject,
                stream,
                max_deliver,
                dead_letter,
            } => format!(
                "{} {} nats {url} {subject} {stream:?} {max_deliver} {} line {}",
                t.id,
                t.component,
                dead_letter
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                t.line
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "a-mqtt-trigger a mqtt mqtt://{{ host }}:1883 Some(\"admin\") Some(\"{{ password }}\") 15s sensors/+/temp 2 line 18",
            "a-redis-trigger a redis redis://:{{ password }}@{{ host }}:6379 orders line 23",
            "audit audit-component redis redis://audit:6380 {{ host }}-audit line 27",
            "a-nats-trigger a nats nats://a:4222,nats://b:4222 orders.> Some(\"ORDERS\") 3 dead.{{ host }} line 33",
            "b-cron-trigger b cron */5 * * * * MON-FRI line 41",
            "cron-trigger1 b cron @hourly line 45",
        ]
    );
    assert!(app.component("audit-component").is_some());
    assert!(app.triggers.is_empty(), "no HTTP trigger is needed");
}

#[test]
fn event_trigger_mistakes_are_reported_at_their_field() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            r#"{HEADER}
[application.trigger.cron]
x = 1

[[trigger.redis]]
channel = "{{{{ nope }}}}"
component = "a"
address = "redis://h"

[[trigger.redis]]
channel = "c"
component = "a"

[[trigger.redis]]
address = "redis://h"
component = "a"
extra = true

[[trigger.cron]]
id = "dup"
component = "missing"
cron_expression = "61 * * * * *"

[[trigger.cron]]
id = "dup"
component = "a"
cron_expression = "* * * * * *"

[[trigger.nats]]
subject = "s"
component = "a"
max_deliver = 0
stream = "a.b"

[component.a]
source = "app.wasm"
"#
        ))
        .unwrap_err();
    insta::assert_snapshot!("event_trigger_mistakes", err);
}

/// Everything a Spin 3.x manifest may hold that Ferry accepts, in one app.
const EVERY_ACCEPTED_FIELD: &str = r#"spin_manifest_version = 2

[application]
name = "every-field"
version = "1.2.3"
description = "uses every field Ferry accepts"
authors = ["Ada <ada@example.com>"]
targets = ["spin-up:3.3", { registry = "ghcr.io/acme", id = "env:1.0" }, { path = "env.toml" }]

[application.tool.spin-test]
source = "tests.wasm"

[application.trigger.http]
base = "/"

[application.trigger.redis]
address = "redis://cache:6379"

[[trigger.redis]]
id = "orders"
channel = "orders"
address = "redis://other:6379"
component = { source = "app.wasm" }

[[trigger.cron]]
id = "nightly"
component = { source = "app.wasm" }
cron_expression = "0 0 3 * * *"

[[trigger.command]]
id = "migrate"
component = { source = "app.wasm" }

[[trigger.http]]
id = "api"
route = "api/..."
component = "api"
executor = { type = "spin" }

[[trigger.http]]
id = "health"
route = "/health"
static_response = { status_code = 204, headers = { x-served-by = "ferry", cache-control = "no-store" } }

[[trigger.http]]
route = "/p3"
component = "p3"
executor = { type = "wasip3-unstable" }

[[trigger.http]]
id = "web"
route = "/..."
component = { source = { url = "https://example.com/static.wasm", digest = "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef" }, files = [{ source = "static", destination = "/" }] }

[[trigger.http]]
route = { private = true }
component = { source = "app.wasm" }

[component.api]
source = "target/api.wasm"
description = "the API"
environment = { MODE = "prod" }
files = ["*.txt", "./static", { source = "app.wasm", destination = "/bin/app.wasm" }]
exclude_files = ["secret.txt"]
allowed_outbound_hosts = ["https://api.example.com", "redis://cache:6379", "*://10.0.0.0/8:8000..8100", "http://self.alt"]
key_value_stores = []
sqlite_databases = []
ai_models = []
dependencies = {}
dependencies_inherit_configuration = true
targets = ["spin-up:3.3"]

[component.api.build]
command = ["cargo build --target wasm32-wasip2 --release", "cp target/wasm32-wasip2/release/api.wasm target/"]
workdir = "api"
watch = ["src/**/*.rs", "Cargo.toml"]

[component.api.tool.spin-test]
source = "api-tests.wasm"

[component.p3]
source = "app.wasm"

[component.p3.build]
command = "make"
"#;

#[test]
fn every_field_spin_accepts_loads() {
    let f = Fixture::new();
    let dir = f.dir.path();
    let app = parse(
        EVERY_ACCEPTED_FIELD,
        Path::new("spin.toml"),
        dir,
        Sources::MayBeMissing,
    )
    .unwrap_or_else(|d| {
        panic!(
            "{}",
            ManifestError::invalid(Path::new("spin.toml"), EVERY_ACCEPTED_FIELD, d)
        )
    });
    assert!(app.warnings.is_empty(), "{}", app.warnings);

    assert_eq!(app.triggers[0].id, "api");
    assert_eq!(app.triggers[2].id, "p3-http-trigger");
    let Route::Pattern(api) = &app.triggers[0].route else {
        panic!("public route expected")
    };
    // Spin adds a missing leading `/`.
    assert_eq!(api.full(), "/api/...");
    assert_eq!(
        app.triggers[1].handler,
        Handler::Static(StaticResponse {
            status: 204,
            headers: vec![
                ("x-served-by".into(), "ferry".into()),
                ("cache-control".into(), "no-store".into())
            ],
            body: String::new(),
        })
    );
    assert_eq!(
        app.triggers[2].handler,
        Handler::Component {
            id: "p3".into(),
            executor: Executor::Http
        }
    );
    // Inline components are named as Spin names them.
    assert_eq!(app.triggers[3].component(), Some("web-component"));
    assert_eq!(app.triggers[4].component(), Some("http-trigger1-component"));

    let api = app.component("api").unwrap();
    assert_eq!(
        api.build,
        Some(Build {
            commands: vec![
                "cargo build --target wasm32-wasip2 --release".into(),
                "cp target/wasm32-wasip2/release/api.wasm target/".into()
            ],
            workdir: dir.join("api"),
            watch: vec!["src/**/*.rs".into(), "Cargo.toml".into()],
        })
    );
    assert_eq!(api.source, Source::File(dir.join("target/api.wasm")));
    assert_eq!(
        api.files,
        [
            FileMount::Glob("*.txt".into()),
            FileMount::Glob("static".into()),
            FileMount::File {
                source: dir.join("app.wasm"),
                destination: "/bin/app.wasm".into()
            }
        ]
    );
    assert!(
        api.allowed_outbound_hosts
            .allows("tcp", "10.20.30.40", 8099, false)
    );
    assert!(
        !api.allowed_outbound_hosts
            .allows("tcp", "10.20.30.40", 8100, false)
    );
    assert!(api.allowed_outbound_hosts.allows_self());
    assert_eq!(
        app.component("p3").unwrap().build.as_ref().unwrap().workdir,
        dir
    );
    let web = app.component("web-component").unwrap();
    assert_eq!(
        web.source,
        Source::Url {
            url: "https://example.com/static.wasm".into(),
            digest: Sha256Digest::parse(
                "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
            .unwrap(),
        }
    );
    let ids: Vec<&str> = app.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders-component",
            "nightly-component",
            "migrate-component",
            "web-component",
            "http-trigger1-component",
            "api",
            "p3"
        ],
        "manifest order"
    );
}

#[test]
fn triggers_and_inline_components_are_named_as_spin_names_them() {
    let f = Fixture::new();
    let app = f
        .parse(&format!(
            r#"{HEADER}
[[trigger.http]]
route = "/a"
component = {{ source = "app.wasm" }}

[[trigger.http]]
id = "named"
route = "/b"
component = {{ source = "app.wasm" }}

[[trigger.http]]
id = "Not Kebab"
route = "/c"
component = {{ source = "app.wasm" }}

[[trigger.http]]
route = "/d"
component = "named-component"

[[trigger.http]]
id = "http-trigger1"
route = "/e"
component = "named-component"
"#
        ))
        .unwrap();
    let names: Vec<(&str, Option<&str>)> = app
        .triggers
        .iter()
        .map(|t| (t.id.as_str(), t.component()))
        .collect();
    assert_eq!(
        names,
        [
            // `http-trigger1` is written later, so the first free number is 2.
            ("http-trigger2", Some("http-trigger2-component")),
            ("named", Some("named-component")),
            ("Not Kebab", Some("inline-component1")),
            ("named-component-http-trigger", Some("named-component")),
            ("http-trigger1", Some("named-component")),
        ]
    );
}

#[test]
fn files_paths_are_read_as_spin_reads_them() {
    let f = Fixture::new();
    std::fs::write(f.dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let app = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\nfiles = [\"./*\", \"./static/**/*\", {{ source = \"./index.html\", destination = \"/public/index.html\" }}]\n"
        ))
        .unwrap();
    assert_eq!(
        app.component("a").unwrap().files,
        [
            FileMount::Glob("*".into()),
            FileMount::Glob("static/**/*".into()),
            FileMount::File {
                source: f.dir.path().join("./index.html"),
                destination: "/public/index.html".into()
            }
        ]
    );
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), f.dir.path().join("elsewhere")).unwrap();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\nfiles = [\".\", \"./\", {{ source = \"../up\", destination = \"/\" }}, {{ source = \"/etc\", destination = \"/etc\" }}, {{ source = \"elsewhere\", destination = \"/x\" }}, {{ source = \"index.html\", destination = \"/dir/\" }}]\n"
        ))
        .unwrap_err();
    insta::assert_snapshot!("files_errors", err);
}

#[test]
fn legacy_and_doubtful_syntax_loads_with_warnings() {
    let f = Fixture::new();
    let app = f
        .parse(&format!(
            r#"{HEADER}
[[trigger.http]]
route = "/users/:id"
component = "a"

[[trigger.http]]
route = "/users/:name"
component = "b"
executor = {{ type = "http", legacy = true }}

[component.a]
source = "app.wasm"
allowed_http_hosts = ["example.com", "HTTPS://api.example.com:8443/", "self", "plain.example:80", "https://secure.example:443"]

[component.b]
source = "app.wasm"
allowed_outbound_hosts = ["http://backend.spin.internal"]
"#
        ))
        .unwrap();
    insta::assert_snapshot!("warnings", app.warnings.to_string());
    // The later of two triggers for the same paths wins, as in Spin.
    assert_eq!(app.triggers.len(), 1);
    assert_eq!(app.triggers[0].component(), Some("b"));
    let a = &app.component("a").unwrap().allowed_outbound_hosts;
    for (scheme, host, port) in [
        ("http", "example.com", 80),
        ("https", "example.com", 443),
        ("http", "api.example.com", 8443),
        ("https", "api.example.com", 8443),
    ] {
        assert!(
            a.allows(scheme, host, port, false),
            "{scheme}://{host}:{port}"
        );
    }
    assert!(!a.allows("https", "api.example.com", 443, false));
    assert!(a.allows_self());
    // A scheme's own default port is dropped, as Spin's URL parsing drops
    // it: both schemes on their default ports.
    for (scheme, host, port) in [
        ("http", "plain.example", 80),
        ("https", "plain.example", 443),
        ("http", "secure.example", 80),
        ("https", "secure.example", 443),
    ] {
        assert!(
            a.allows(scheme, host, port, false),
            "{scheme}://{host}:{port}"
        );
    }
}

#[test]
fn allow_all_http_hosts_grants_any_http_destination() {
    let f = Fixture::new();
    let app = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\nallowed_http_hosts = [\"insecure:allow-all\"]\n"
        ))
        .unwrap();
    let hosts = &app.component("a").unwrap().allowed_outbound_hosts;
    assert!(hosts.allows("http", "anything.example", 8080, false));
    assert!(hosts.allows("https", "anything.example", 443, false));
    assert!(!hosts.allows("redis", "anything.example", 6379, false));
    assert!(
        app.warnings
            .to_string()
            .contains(r#"allowed_outbound_hosts = ["http://*:*", "https://*:*", "http://self"]"#),
        "{}",
        app.warnings
    );
}

#[test]
fn a_missing_source_points_at_the_build() {
    let f = Fixture::new();
    let text = format!(
        "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"target/a.wasm\"\n[component.a.build]\ncommand = \"make\"\n"
    );
    let err = f.parse(&text).unwrap_err();
    assert!(
        err.contains("component source `target/a.wasm` is not a file")
            && err.contains("run `ferry build` (or `ferry up --build`) first"),
        "{err}"
    );
    // What `ferry build` reads: the source is what the build makes.
    let app = parse(
        &text,
        Path::new("spin.toml"),
        f.dir.path(),
        Sources::MayBeMissing,
    )
    .unwrap();
    assert_eq!(
        app.component("a").unwrap().build.as_ref().unwrap().commands,
        ["make"]
    );
}

#[test]
fn unknown_fields_and_wrong_types_are_all_reported() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}colour = \"blue\"\n\n[[trigger.http]]\nroute = 42\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\nenvironment = {{ PORT = 8080 }}\nsorce = \"typo.wasm\"\n"
        ))
        .unwrap_err();
    insta::assert_snapshot!("unknown_fields", err);
}

#[test]
fn bad_values_point_at_the_value() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/a/:b/:b\"\ncomponent = \"missing\"\n\n[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\nexecutor = {{ type = \"cgi\" }}\n\n[[trigger.http]]\nroute = \"/y\"\nstatic_response = {{ status_code = 1000, headers = {{ \"bad header\" = \"x\", x-bell = \"a\\u0007b\", content-length = \"9\", transfer-encoding = \"chunked\" }}, body = \"four\" }}\n\n[component.a]\nsource = {{ url = \"ftp://example.com/a.wasm\", digest = \"md5:abc\" }}\nallowed_outbound_hosts = [\"example.com\", \"https://ok.com:99999\", \"http://ok.com:8000-8010\"]\nfiles = [\"../etc/passwd\", {{ source = \"static\", destination = \"relative\" }}]\n[component.a.build]\nworkdir = \"/abs\"\n"
        ))
        .unwrap_err();
    insta::assert_snapshot!("bad_values", err);
}

#[test]
fn syntax_errors_and_versions() {
    let f = Fixture::new();
    insta::assert_snapshot!(
        "toml_syntax",
        f.parse("spin_manifest_version = 2\n[application\nname = 1\n")
            .unwrap_err()
    );
    insta::assert_snapshot!(
        "manifest_v1",
        f.parse("spin_version = \"1\"\nname = \"old\"\ntrigger = { type = \"http\" }\n")
            .unwrap_err()
    );
    insta::assert_snapshot!(
        "no_triggers",
        f.parse(&format!("{HEADER}\n[component.a]\nsource = \"app.wasm\"\n"))
            .unwrap_err()
    );
}

#[test]
fn component_ids_must_be_kebab_case() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"My_App\"\n\n[component.My_App]\nsource = \"app.wasm\"\n"
        ))
        .unwrap_err();
    assert!(
        err.contains("component id `My_App` must be kebab-case"),
        "{err}"
    );
    assert!(err.contains("spin.toml:9:12"), "{err}");
    // Spin's rule: each word starts with a letter, all lowercase or all uppercase.
    for ok in ["a", "hello-world", "api2", "ABC-def"] {
        assert!(component::check_id(ok).is_ok(), "{ok}");
    }
    for bad in ["a-1", "aBc", "a--b", "-a", "a-", "1a", "a_b", ""] {
        assert!(component::check_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn digests_are_sha256_hex() {
    let digest = Sha256Digest::parse(&format!("sha256:{}", "aB".repeat(32))).unwrap();
    assert_eq!(digest.to_hex(), "ab".repeat(32));
    assert_eq!(digest.to_string(), format!("sha256:{}", "ab".repeat(32)));
    for bad in [
        "ab".repeat(32),
        format!("sha512:{}", "ab".repeat(32)),
        format!("sha256:{}", "ab".repeat(31)),
        format!("sha256:{}g", "a".repeat(63)),
    ] {
        assert!(Sha256Digest::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn version_must_be_the_integer_two() {
    let f = Fixture::new();
    let body = "[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = { source = \"app.wasm\" }\n";
    let err = f
        .parse(&format!("spin_manifest_version = \"2\"\n{body}"))
        .unwrap_err();
    assert!(err.contains("unsupported `spin_manifest_version`"), "{err}");
    let err = f
        .parse(&format!("spin_manifest_version = \"1\"\n{body}"))
        .unwrap_err();
    assert!(err.contains("this is a Spin manifest version 1"), "{err}");
}

#[test]
fn load_app_finds_the_manifest_in_a_directory() {
    let f = Fixture::new();
    std::fs::write(
        f.dir.path().join("spin.toml"),
        format!("{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n[component.a]\nsource = \"app.wasm\"\n"),
    )
    .unwrap();
    let app = load_app(f.dir.path()).unwrap();
    assert_eq!(
        app.components[0].source,
        Source::File(f.dir.path().join("app.wasm"))
    );
    let missing = load_app(&f.dir.path().join("static")).unwrap_err();
    assert!(
        missing.to_string().contains("no spin.toml or ferry.toml"),
        "{missing}"
    );
}

#[test]
fn shown_urls_carry_no_credentials_or_query() {
    assert_eq!(
        redacted("https://user:token@example.com/a/b.wasm?X-Amz-Signature=abc#f"),
        "https://example.com/a/b.wasm?…"
    );
    assert_eq!(
        redacted("http://127.0.0.1:8080/x.wasm"),
        "http://127.0.0.1:8080/x.wasm"
    );
    assert_eq!(redacted("https://example.com"), "https://example.com");
    // A list of servers: every one's credentials go.
    assert_eq!(
        redacted("nats://a:4222,nats://u:p@b:4222"),
        "nats://a:4222,nats://b:4222"
    );
    assert_eq!(redacted("redis://:pw@cache:6379/0"), "redis://cache:6379/0");
    // Not a URL (a template): nothing in it is a credential's place.
    assert_eq!(redacted("{{ redis_url }}"), "{{ redis_url }}");
    // PostgreSQL's key=value form: every password's value goes, quoted
    // ones (with escapes) whole; the rest stays as written.
    assert_eq!(
        redacted("host=a,b port=5432 user=u password=secret dbname=d"),
        "host=a,b port=5432 user=u password=… dbname=d"
    );
    assert_eq!(
        redacted(r"user=u password = 'it\'s a secret' sslpassword='x' PASSWORD=y"),
        "user=u password = … sslpassword=… PASSWORD=…"
    );
    assert_eq!(redacted("postgres://u:pw@h1,h2/db"), "postgres://h1,h2/db");
    assert_eq!(
        redacted("postgres://h1,h2/db?password=secret"),
        "postgres://h1,h2/db?…"
    );
    assert_eq!(
        redacted("host=db application_name=http://x password=pa://ss"),
        "host=db application_name=http://x password=…"
    );
    assert_eq!(
        redacted(r"host=db password=abc\ defsecret user=u"),
        "host=db password=… user=u"
    );
}

#[test]
fn variables_are_checked_where_they_are_written() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            r#"{HEADER}
[variables]
api_host = {{ default = "example.com" }}
token = {{ required = true, secret = true }}
both = {{ required = true, default = "x" }}
neither = {{ secret = true }}
Bad-Name = {{ default = "x" }}
typo = {{ default = "x", requird = true }}
wrong = {{ required = "yes" }}

[[trigger.http]]
route = "/..."
component = "a"

[component.a]
source = "app.wasm"
allowed_outbound_hosts = ["https://{{{{ api_host }}}}", "https://{{{{ token }}}}", "https://{{{{ nope }}}}", "https://{{{{ api_host"]
[component.a.variables]
url = "https://{{{{ api_host }}}}/{{{{ missing }}}}"
open = "{{{{ api_host "
upper = "{{{{ API_HOST }}}}"
__x = "1"
"#
        ))
        .unwrap_err();
    insta::assert_snapshot!("variables_errors", err);
}

#[test]
fn variables_resolve_from_defaults_and_given_values() {
    let f = Fixture::new();
    let app = f
        .parse(&format!(
            r#"{HEADER}
[variables]
api_host = {{ default = "example.com" }}
token = {{ required = true, secret = true }}
unused = {{ default = "u" }}

[[trigger.http]]
route = "/..."
component = "a"

[component.a]
source = "app.wasm"
variables = {{ url = "https://{{{{api_host}}}}/v1", auth = "Bearer {{{{ token }}}}", plain = "no {{ braces }} here" }}

[component.b]
source = "app.wasm"
"#
        ))
        .unwrap();
    let missing = crate::resolve_variables(&app, &BTreeMap::new()).unwrap_err();
    assert_eq!(missing.0, ["token"]);
    assert!(
        missing
            .to_string()
            .starts_with("required variable `token` has no value")
    );

    let given = BTreeMap::from([
        ("token".to_owned(), "s3cr3t".to_owned()),
        ("api_host".to_owned(), "api.test".to_owned()),
    ]);
    let resolved = crate::resolve_variables(&app, &given).unwrap();
    let a = &resolved["a"];
    assert_eq!(a.get("url"), Some("https://api.test/v1"));
    assert_eq!(a.get("auth"), Some("Bearer s3cr3t"));
    assert_eq!(a.get("plain"), Some("no { braces } here"));
    assert_eq!(a.get("unused"), None, "only the component's own keys");
    assert!(resolved["b"].is_empty());
    // A value built from a secret is never shown.
    let shown = format!("{a:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert_eq!(
        shown,
        r#"{"auth": (secret), "plain": "no { braces } here", "url": "https://api.test/v1"}"#
    );
}

#[test]
fn dependencies_and_middleware_are_read_in_every_local_form() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    let app = parse_app(
        r#"spin_manifest_version = 2
[application]
name = "deps"

[[trigger.http]]
route = "/a/..."
component = "a"
dependencies.middleware = [{ component = "mw", inherit_configuration = ["allowed_outbound_hosts"] }, { path = "mw.wasm" }]

[[trigger.http]]
route = "/b/..."
component = "a"

[component.a]
source = "app.wasm"
[component.a.dependencies]
"ferry:calc/adder@0.1.0" = { path = "adder.wasm", export = "ferry:calc/add@0.1.0" }
"ferry:net" = { url = "https://example.com/net.wasm", digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000", inherit_configuration = true }
plain-name = { component = "mw", inherit_configuration = ["variables", "network"] }

[component.mw]
source = "app.wasm"
"#,
        &dir.path().join("spin.toml"),
        dir.path(),
    )
    .unwrap();
    let a = app.component("a").unwrap();
    assert_eq!(a.dependencies.len(), 3);
    assert_eq!(a.dependencies[0].name, "ferry:calc/adder@0.1.0");
    assert_eq!(
        a.dependencies[0].export.as_deref(),
        Some("ferry:calc/add@0.1.0")
    );
    assert_eq!(a.dependencies[0].inherit, crate::Inherit::Only(Vec::new()));
    assert_eq!(a.dependencies[1].inherit, crate::Inherit::All);
    // A name Spin does not know hands nothing on, with a warning.
    assert_eq!(
        a.dependencies[2].inherit,
        crate::Inherit::Only(vec!["variables".into()])
    );
    let warnings = app.warnings.to_string();
    assert!(
        warnings.contains("`network` is not a capability a dependency can inherit"),
        "{warnings}"
    );
    assert_eq!(
        a.dependencies[2].source,
        crate::DependencySource::Component("mw".into())
    );
    // `a` serves `/b` without middleware, so `/a`'s trigger runs a copy of
    // it with the middleware, as Spin splits it.
    assert!(a.middleware.is_empty());
    let split = app.component(app.triggers[0].component().unwrap()).unwrap();
    assert_eq!(split.id, "a-http-trigger-a");
    assert_eq!(split.middleware.len(), 2);
    assert!(split.middleware[0].inherit.allows("allowed_outbound_hosts"));
    assert!(!split.middleware[1].inherit.allows("environment"));
    assert_eq!(app.triggers[1].component(), Some("a"));
}

#[test]
fn registry_packages_are_read_as_spin_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = parse_app(
        r#"spin_manifest_version = 2
[application]
name = "packages"

[[trigger.http]]
route = "/..."
component = "a"

[component.a]
source = { registry = "ghcr.io", package = "acme:web", version = "1.2.3" }
[component.a.dependencies]
"ferry:calc/adder@0.1.0" = "0.1"
"ferry:net" = { version = "^2.0", registry = "127.0.0.1:5000", package = "other:net", export = "ferry:net/http" }
"#,
        &dir.path().join("spin.toml"),
        dir.path(),
    )
    .unwrap();
    let a = app.component("a").unwrap();
    let package = |registry: Option<&str>, name: &str, version: &str| {
        crate::Source::Package(crate::Package {
            registry: registry.map(str::to_owned),
            name: name.into(),
            version: version.into(),
        })
    };
    // A component's version is exact; a dependency's is a requirement, its
    // package the one its name is in unless `package` says.
    assert_eq!(a.source, package(Some("ghcr.io"), "acme:web", "=1.2.3"));
    assert_eq!(
        a.dependencies[0].source,
        crate::DependencySource::Wasm(package(None, "ferry:calc", "0.1"))
    );
    assert_eq!(
        a.dependencies[1].source,
        crate::DependencySource::Wasm(package(Some("127.0.0.1:5000"), "other:net", "^2.0"))
    );
    assert_eq!(a.dependencies[1].export.as_deref(), Some("ferry:net/http"));
    assert_eq!(a.source.to_string(), "acme:web@=1.2.3 from ghcr.io");
}

#[test]
fn bad_dependencies_are_refused_at_the_field() {
    let errors = |body: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"deps\"\n\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"a\"\n{body}"
        );
        parse_app(&text, &dir.path().join("spin.toml"), dir.path())
            .unwrap_err()
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let component = "[component.a]\nsource = \"app.wasm\"\n";
    for (body, expected) in [
        (
            format!("{component}dependencies = {{ \"Not A Name\" = {{ path = \"x.wasm\" }} }}"),
            "is not a dependency name",
        ),
        (
            format!("{component}dependencies = {{ \"ns:pkg\" = \"newest!\" }}"),
            "is not a version requirement",
        ),
        (
            format!(
                "{component}dependencies = {{ \"ns:pkg\" = {{ version = \"1.0.0\", package = \"No_Pkg\" }} }}"
            ),
            "is not a package name",
        ),
        (
            format!(
                "{component}dependencies = {{ \"ns:pkg\" = {{ version = \"1.0.0\", registry = \"r.io/path\" }} }}"
            ),
            "is not a registry",
        ),
        (
            format!("{component}dependencies = {{ \"ns:pkg\" = {{ component = \"nope\" }} }}"),
            "no component `nope`",
        ),
        (
            format!("{component}dependencies = {{ \"ns:pkg\" = {{ component = \"a\" }} }}"),
            "cannot depend on itself",
        ),
        (
            format!(
                "{component}dependencies_inherit_configuration = true\ndependencies = {{ \"ns:pkg\" = {{ path = \"x.wasm\", inherit_configuration = true }} }}"
            ),
            "has `inherit_configuration` and its component has",
        ),
        (
            format!("dependencies.auth = [{{ path = \"x.wasm\" }}]\n{component}"),
            "only trigger dependency is `middleware`",
        ),
        (
            // The copy for the first trigger would be `t-a`, a component
            // the manifest already has.
            format!(
                "id = \"t\"\ndependencies.middleware = [{{ path = \"x.wasm\" }}]\n\n[[trigger.http]]\nroute = \"/b/...\"\ncomponent = \"a\"\n\n[[trigger.http]]\nroute = \"/c/...\"\ncomponent = \"t-a\"\n\n{component}\n[component.t-a]\nsource = \"app.wasm\"\n"
            ),
            "would be named `t-a`, which is taken",
        ),
    ] {
        let got = errors(&body);
        assert!(got.contains(expected), "{expected:?} in {got:?} for {body}");
    }
}

#[test]
fn pipelines_are_read_and_their_mistakes_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    let parse = |triggers: &str| {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"p\"\n\n{triggers}\n\n[component.a]\nsource = \"app.wasm\"\n[component.b]\nsource = \"app.wasm\"\n"
        );
        parse_app(&text, &dir.path().join("spin.toml"), dir.path())
    };
    let app = parse(
        "[[trigger.pipeline]]\nstages = [\"a\", { component = \"b\", args = [\"x\", \"y\"] }, \"a\"]",
    )
    .unwrap();
    let trigger = &app.event_triggers[0];
    assert_eq!(trigger.component, "a");
    assert_eq!(trigger.components(), ["a", "b", "a"]);
    let crate::EventSource::Pipeline { stages } = &trigger.source else {
        panic!("{trigger:?}");
    };
    assert_eq!(stages[1].args, ["x", "y"]);
    for (triggers, expected) in [
        (
            "[[trigger.pipeline]]\nstages = [\"a\"]",
            "at least two stages",
        ),
        (
            "[[trigger.pipeline]]\nstages = [\"a\", \"c\"]",
            "no component `c`",
        ),
        (
            "[[trigger.pipeline]]\ncomponent = \"a\"",
            "missing `stages`",
        ),
        (
            "[[trigger.pipeline]]\nstages = [\"a\", { component = \"b\", argv = [] }]",
            "unknown field `stages[1].argv`",
        ),
        (
            "[[trigger.command]]\ncomponent = \"a\"\n\n[[trigger.pipeline]]\nstages = [\"a\", \"b\"]",
            "a second `[[trigger.command]]` or `[[trigger.pipeline]]`",
        ),
    ] {
        let errors = parse(triggers)
            .unwrap_err()
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(errors.contains(expected), "{expected:?} in {errors:?}");
    }
}
