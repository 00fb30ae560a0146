//! The outgoing GET both component-dependency guests make (`compose-dep`'s
//! `probe.outbound`, `compose-app`'s `/own-outbound`), through wasi:http 0.2's
//! `outgoing-handler`, so that each one's grants can be checked on its own.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

/// GETs `url` (`http[s]://authority/path`): the response's status, or the
/// error's `Debug` text (`ErrorCode::HttpRequestDenied` for a host the
/// component was not granted).
pub fn get(url: &str) -> Result<u16, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("bad url {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let request = OutgoingRequest::new(Fields::new());
    let bad_url = |()| format!("bad url {url:?}");
    request.set_scheme(Some(&scheme)).map_err(bad_url)?;
    request.set_authority(Some(authority)).map_err(bad_url)?;
    request.set_path_with_query(Some(path)).map_err(bad_url)?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// Allocates `mib` MiB (touched, so it is really there) and keeps it for the
/// rest of the instance's life; false when the memory is refused.
pub fn hold(mib: u32) -> bool {
    let mut held: Vec<u8> = Vec::new();
    let bytes = mib as usize * 1024 * 1024;
    if held.try_reserve_exact(bytes).is_err() {
        return false;
    }
    held.resize(bytes, 1);
    std::mem::forget(held);
    true
}
