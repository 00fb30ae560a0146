//! The checks host and client both make of what names an app, a blob and
//! a file of a bundle.

use std::path::{Component, Path};

use sha2::Digest as _;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The hex part of a well-formed `sha256:<64 lower-case hex digits>`.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

/// An app name that can be a directory name and a URL path segment.
pub fn valid_app_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an app name: use 1 to 64 letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// The longest file name most filesystems take (`NAME_MAX`), in bytes.
const MAX_NAME: usize = 255;

/// A path inside a bundle that cannot leave it: relative, `/`-separated,
/// made only of plain names (no `..`, `.`, empty or absolute parts), each
/// one a file name can be (at most 255 bytes).
pub fn valid_bundle_path(path: &str) -> Result<(), String> {
    if let Some(long) = path.split('/').find(|part| part.len() > MAX_NAME) {
        let start: String = long.chars().take(16).collect();
        return Err(format!(
            "`{path}` is not a path the bundle can hold: the name `{start}…` is {} bytes long, and a file name is at most {MAX_NAME} bytes",
            long.len()
        ));
    }
    let plain = !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{path}` is not a path inside the bundle: paths are relative, `/`-separated, without `..`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_cannot_leave_the_bundle() {
        for good in [
            "spin.toml",
            "a/b/c.wasm",
            "static/index.html",
            "..a",
            "a..b/c",
            &"n".repeat(255),
        ] {
            assert_eq!(valid_bundle_path(good), Ok(()), "{good}");
        }
        let long = format!("static/{}.txt", "x".repeat(252));
        assert!(
            valid_bundle_path(&long)
                .unwrap_err()
                .contains("256 bytes long, and a file name is at most 255 bytes"),
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            ".",
        ] {
            assert!(valid_bundle_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_digests() {
        assert_eq!(valid_app_name("a-1_b"), Ok(()));
        for bad in ["", "-a", "a/b", "a.b", &"a".repeat(65)] {
            assert!(valid_app_name(bad).is_err(), "{bad}");
        }
        let digest = sha256_digest(b"hello");
        assert_eq!(
            digest_hex(&digest),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(digest_hex("sha256:../../x"), None);
        assert_eq!(digest_hex(&digest.to_uppercase()), None);
    }
}
