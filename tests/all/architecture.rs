//! The architecture's invariants that the dependency graph holds
//! (ARCHITECTURE.md, "Architecture invariants"), read from Cargo's own
//! resolution of this workspace: a dependency that breaks one fails here,
//! naming the crate and what it reached.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every crate `package` links (its normal dependencies, transitively, for
/// this machine's platform), by name.
fn linked(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["tree", "--offline", "--locked", "--edges", "normal"])
        .args(["--prefix", "none", "--format", "{p}", "--package", package])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dependency_arrows_point_one_way() {
    let wasm = [
        "wasmtime",
        "wasmtime-wasi",
        "wasmtime-wasi-http",
        "cranelift-codegen",
    ];
    let rules: [(&str, &str, Vec<&str>); 9] = [
        (
            "ferry-client",
            "the client links no wasmtime and knows nothing of the host's internals",
            [
                &wasm[..],
                &[
                    "ferry-runtime",
                    "ferry-server",
                    "ferry-store",
                    "ferry-control",
                ],
            ]
            .concat(),
        ),
        (
            "ferry-api",
            "the admin API's types link no engine, server or store",
            [
                &wasm[..],
                &[
                    "hyper",
                    "ferry-runtime",
                    "ferry-server",
                    "ferry-store",
                    "ferry-control",
                ],
            ]
            .concat(),
        ),
        (
            "ferry-manifest",
            "manifests are read without an engine or any other Ferry crate",
            [
                &wasm[..],
                &[
                    "ferry-api",
                    "ferry-runtime",
                    "ferry-server",
                    "ferry-store",
                    "ferry-trigger",
                ],
            ]
            .concat(),
        ),
        (
            "ferry-registry",
            "registries are talked to without an engine or the host's internals",
            [
                &wasm[..],
                &[
                    "ferry-runtime",
                    "ferry-server",
                    "ferry-store",
                    "ferry-control",
                    "ferry-client",
                ],
            ]
            .concat(),
        ),
        (
            "ferry-store",
            "storage knows nothing of wasmtime",
            [
                &wasm[..],
                &["ferry-runtime", "ferry-server", "ferry-control"],
            ]
            .concat(),
        ),
        (
            "ferry-runtime",
            "the runtime knows nothing of HTTP routing or the control plane",
            vec!["ferry-server", "ferry-control", "ferry-client"],
        ),
        (
            "ferry-trigger",
            "event triggers know nothing of HTTP serving or the control plane",
            vec![
                "ferry-server",
                "ferry-control",
                "ferry-client",
                "hyper-util",
            ],
        ),
        (
            "ferry-server",
            "the server knows nothing of the control plane",
            vec!["ferry-control", "ferry-client"],
        ),
        (
            "ferry-control",
            "the control plane never calls its own client",
            vec!["ferry-client"],
        ),
    ];
    let mut broken = Vec::new();
    for (package, invariant, forbidden) in &rules {
        let reached = linked(package);
        assert!(!reached.is_empty(), "{package} links nothing at all?");
        for name in forbidden {
            if reached.contains(*name) {
                broken.push(format!("{package} links {name} ({invariant})"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
