//! Builds the test guests from source with their real toolchains and records
//! where the `.wasm` files are, so tests never depend on checked-in binaries:
//! Rust guests with cargo for wasm32-wasip2 (components) and wasm32-wasip1
//! (WAGI modules), the C guest with clang and wasi-libc.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir.parent().unwrap().to_owned();
    let guests = programs.join("guests");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", guests.join("src").display());
    println!("cargo:rerun-if-changed={}", guests.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        guests.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed={}", programs.join("c").display());

    let target_dir = out.join("guests-target");
    let mut constants = String::new();
    for (constant, bin, target, profile) in [
        ("HTTP_GUEST", "http-guest", "wasm32-wasip2", "release"),
        ("HTTP_P3_GUEST", "http-p3-guest", "wasm32-wasip2", "release"),
        ("WAGI_RUST", "wagi-rust", "wasm32-wasip1", "release"),
        ("COMMAND_GUEST", "command-guest", "wasm32-wasip2", "release"),
        ("MQTT3_GUEST", "mqtt3-guest", "wasm32-wasip2", "release"),
        (
            "COMMAND_P3_GUEST",
            "command-p3-guest",
            "wasm32-wasip2",
            "release",
        ),
        ("PIPE_STAGE", "pipe-stage", "wasm32-wasip2", "release"),
        ("COMPOSE_DEP", "compose-dep", "wasm32-wasip2", "release"),
        ("COMPOSE_APP", "compose-app", "wasm32-wasip2", "release"),
        ("MW_AUTH", "mw-auth", "wasm32-wasip2", "release"),
        ("MW_HEADER", "mw-header", "wasm32-wasip2", "release"),
        ("MW_UPPER", "mw-upper", "wasm32-wasip2", "release"),
        ("HELLO", "hello", "wasm32-wasip2", "small"),
    ] {
        cargo_build(&guests, &target_dir, bin, target, profile);
        let path = target_dir
            .join(target)
            .join(profile)
            .join(format!("{bin}.wasm"));
        assert!(path.is_file(), "{} was not built", path.display());
        constants.push_str(&format!(
            "pub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }

    for (constant, source) in [("WAGI_C", "cgi"), ("WAGI_HELLO_C", "hello")] {
        let wasm = out.join(format!("{source}.wasm"));
        clang(&programs.join("c").join(format!("{source}.c")), &wasm);
        constants.push_str(&format!(
            "pub const {constant}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }

    std::fs::write(out.join("artifacts.rs"), constants).unwrap();
}

fn cargo_build(dir: &Path, target_dir: &Path, bin: &str, target: &str, profile: &str) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--profile",
            profile,
            "--locked",
            "--bin",
            bin,
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        // `cargo clippy` lints through this wrapper; the guests are built, not linted.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running cargo for the test guests");
    assert!(
        status.success(),
        "building test guest `{bin}` for {target} failed; is the target installed? \
         (`rustup target add wasm32-wasip1 wasm32-wasip2`, which scripts/test does)"
    );
}

fn clang(source: &Path, output: &Path) {
    let clang = std::env::var_os("WASI_CC").unwrap_or_else(|| "clang".into());
    let status = Command::new(&clang)
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-Wall",
            "-Werror",
            "-Wl,--strip-all",
            "-o",
        ])
        .arg(output)
        .arg(source)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {clang:?} to build the C test guest ({e}); install clang, lld, \
                 wasi-libc and libclang-rt-14-dev-wasm32 (scripts/test does)"
            )
        });
    assert!(status.success(), "compiling {} failed", source.display());
}
