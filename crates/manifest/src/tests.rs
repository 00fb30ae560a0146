//! Manifest parsing tests. Error messages are snapshot-tested: the rendered
//! text is exactly what `ferry up` / `ferry check` print.

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
        app.triggers[1].executor,
        Executor::Wagi(WagiConfig {
            argv: "${SCRIPT_NAME} -v ${ARGS}".into(),
            entrypoint: "_start".into()
        })
    );
    assert_eq!(app.triggers[2].route, Route::Private);
    assert_eq!(app.triggers[2].component, "inline-component-3");
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
    assert_eq!(app.components.len(), 3);
}

#[test]
fn unsupported_spin_features_are_refused_at_their_key() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\nkey_value_stores = [\"default\"]\n\n[component.a.build]\ncommand = \"cargo build\"\n\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"a\"\n\n[variables]\nx = {{ default = \"1\" }}\n"
        ))
        .unwrap_err();
    insta::assert_snapshot!("unsupported_features", err);
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
fn duplicate_routes_name_both_triggers() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"/users/:id\"\ncomponent = \"a\"\n\n[[trigger.http]]\nroute = \"/users/:name\"\ncomponent = \"a\"\n\n[component.a]\nsource = \"app.wasm\"\n"
        ))
        .unwrap_err();
    insta::assert_snapshot!("duplicate_routes", err);
}

#[test]
fn bad_values_point_at_the_value() {
    let f = Fixture::new();
    let err = f
        .parse(&format!(
            "{HEADER}\n[[trigger.http]]\nroute = \"hello\"\ncomponent = \"missing\"\n\n[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\nexecutor = {{ type = \"cgi\" }}\n\n[component.a]\nsource = \"nope.wasm\"\nallowed_outbound_hosts = [\"example.com\", \"https://ok.com:99999\"]\nfiles = [\"../etc/passwd\", {{ source = \"static\", destination = \"relative\" }}]\n"
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
    assert_eq!(app.components[0].source, f.dir.path().join("app.wasm"));
    let missing = load_app(&f.dir.path().join("static")).unwrap_err();
    assert!(
        missing.to_string().contains("no spin.toml or ferry.toml"),
        "{missing}"
    );
}
