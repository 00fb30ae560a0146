//! `ferry new`: a new app from a template.
//!
//! Each template is one of the examples in `examples/`, embedded in the
//! binary file by file, with the example's name replaced by the new app's
//! wherever it appears (package names, the manifest's `application.name`,
//! the built Wasm's file name). The examples' tests go through `ferry new`,
//! so every template is built with its own build command and served in CI;
//! a template cannot drift from a working example because it is one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ferry_api::Failure;

/// One template: an example, and what it is.
pub struct Template {
    /// What `ferry new` is given (Spin's template ids where Spin has one).
    pub id: &'static str,
    pub description: &'static str,
    /// The example's name, replaced by the new app's.
    name: &'static str,
    /// (path inside the app, contents).
    files: &'static [(&'static str, &'static [u8])],
}

/// The files of `examples/<dir>`, embedded.
macro_rules! example {
    ($dir:literal: $($file:literal),+ $(,)?) => {
        &[$((
            $file,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/", $dir, "/", $file)),
        )),+]
    };
}

pub const TEMPLATES: &[Template] = &[
    Template {
        id: "http-rust",
        description: "a wasi:http 0.2 component in Rust (the `wasi` crate)",
        name: "hello-rust",
        files: example!("hello-rust": "Cargo.toml", "Cargo.lock", "README.md", "spin.toml", "src/main.rs"),
    },
    Template {
        id: "http-rust-p3",
        description: "a WASI 0.3 wasi:http component in Rust (the `wasip3` crate), async and streaming",
        name: "hello-rust-p3",
        files: example!("hello-rust-p3": "Cargo.toml", "Cargo.lock", "README.md", "spin.toml", "src/main.rs"),
    },
    Template {
        id: "http-js",
        description: "a wasi:http component in JavaScript (componentize-js)",
        name: "hello-js",
        files: example!("hello-js": ".gitignore", "README.md", "app.js", "package.json", "package-lock.json", "spin.toml", "wit/world.wit", "wit/deps/cli.wit", "wit/deps/clocks.wit", "wit/deps/filesystem.wit", "wit/deps/http.wit", "wit/deps/io.wit", "wit/deps/random.wit", "wit/deps/sockets.wit"),
    },
    Template {
        id: "http-py",
        description: "a wasi:http component in Python (componentize-py)",
        name: "hello-python",
        files: example!("hello-python": ".gitignore", "README.md", "app.py", "build.sh", "spin.toml", "wit/world.wit", "wit/deps/cli.wit", "wit/deps/clocks.wit", "wit/deps/filesystem.wit", "wit/deps/http.wit", "wit/deps/io.wit", "wit/deps/random.wit", "wit/deps/sockets.wit"),
    },
    Template {
        id: "http-c",
        description: "a WAGI (CGI) program in C (clang for wasm32-wasi)",
        name: "hello-c",
        files: example!("hello-c": "Makefile", "README.md", "hello.c", "spin.toml"),
    },
];

pub fn find(id: &str) -> Result<&'static Template, Failure> {
    TEMPLATES.iter().find(|t| t.id == id).ok_or_else(|| {
        let ids: Vec<&str> = TEMPLATES.iter().map(|t| t.id).collect();
        Failure::usage(format!(
            "there is no template `{id}`; the templates are {} (`ferry new --list` describes them)",
            ids.join(", ")
        ))
    })
}

/// WIT's keywords: a world or package named so does not parse.
const WIT_KEYWORDS: &[&str] = &[
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "export",
    "f32",
    "f64",
    "flags",
    "float32",
    "float64",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world",
    "error-context",
];

/// A name every toolchain takes as a package name: lowercase ASCII words
/// joined by `-`, starting with a letter.
fn check_name(name: &str) -> Result<(), Failure> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 64
        && name.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if valid && WIT_KEYWORDS.contains(&name) {
        return Err(Failure::usage(format!(
            "`{name}` is a WIT keyword, which the JavaScript and Python templates' worlds cannot be named: pick another name"
        )));
    }
    if valid {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "`{name}` is not a usable app name: use lowercase letters, digits and single `-` between words, starting with a letter (like `my-app`)"
        )))
    }
}

/// Writes `template` as the app `name` into `dir` (which must not exist,
/// or be empty), and returns what it wrote.
pub fn create(template: &Template, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(Failure::usage(format!(
                "{} already exists and is not empty; nothing was written",
                dir.display()
            ))
            .into());
        }
    }
    let mut written = Vec::new();
    for (path, contents) in template.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("making {}", parent.display()))?;
        }
        let contents = match std::str::from_utf8(contents) {
            Ok(text) => text.replace(template.name, name).into_bytes(),
            Err(_) => contents.to_vec(),
        };
        // A new file: never through a link or over one planted meanwhile.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &contents))
            .with_context(|| format!("writing {}", target.display()))?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", target.display()))?;
        }
        written.push(target);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_package_names() {
        for good in ["a", "my-app", "app2", "x-1-y"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "My-app", "-a", "a-", "a--b", "1app", "a_b", "../x", "a/b", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_template_names_its_example_in_its_manifest() {
        for template in TEMPLATES {
            let manifest = template
                .files
                .iter()
                .find(|(path, _)| *path == "spin.toml")
                .map(|(_, text)| std::str::from_utf8(text).unwrap())
                .unwrap_or_else(|| panic!("{} has no spin.toml", template.id));
            assert!(
                manifest.contains(&format!("name = \"{}\"", template.name)),
                "{}",
                template.id
            );
        }
    }
}
