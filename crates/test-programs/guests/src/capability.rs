//! The capability paths both Rust test guests answer, whichever WASI version
//! they serve: one implementation, so that the deny-by-default suite
//! (`tests/all/capabilities.rs`) asks every executor the same question and
//! gets the same shape of answer. (`/outbound` differs per WASI version and
//! lives in each guest.)

/// The status and body for `path` when it is a capability path (`/env`,
/// `/file`, `/write-file`, `/list`, `/socket`); `param` reads the query.
pub fn answer(path: &str, param: impl Fn(&str) -> Option<String>) -> Option<(u16, String)> {
    Some(match path {
        "/env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            (200, vars.join("\n") + "\n")
        }
        "/file" => {
            let path = param("path").unwrap_or_default();
            match std::fs::read_to_string(&path) {
                Ok(text) => (200, text),
                Err(e) => (404, format!("cannot read {path}: {e}\n")),
            }
        }
        "/write-file" => {
            let path = param("path").unwrap_or_default();
            match std::fs::write(&path, b"x") {
                Ok(()) => (200, "written\n".into()),
                Err(e) => (403, format!("cannot write {path}: {e}\n")),
            }
        }
        "/list" => {
            let path = param("path").unwrap_or_else(|| "/".into());
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut names: Vec<String> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    (200, names.join("\n") + "\n")
                }
                Err(e) => (404, format!("cannot list {path}: {e}\n")),
            }
        }
        "/socket" => {
            let addr = param("addr").unwrap_or_else(|| "127.0.0.1:1".into());
            match std::net::TcpStream::connect(&addr) {
                Ok(_) => (200, format!("connected to {addr}\n")),
                Err(e) => (200, format!("socket denied: {e}\n")),
            }
        }
        _ => return None,
    })
}

/// `http[s]://authority/path` split for an outgoing request: whether it is
/// HTTPS, the authority, and the path (`/` if none).
pub fn split_url(url: &str) -> Option<(bool, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((scheme == "https", authority, path))
}
