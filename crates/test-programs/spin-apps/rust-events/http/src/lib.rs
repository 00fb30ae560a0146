//! What the event components recorded, read over HTTP from the app's
//! default key-value store:
//!
//! - `GET /seen`: `seen N dup M` — how many distinct messages the Redis
//!   component handled, and how many it saw a second time;
//! - `GET /ticks`: each cron tick as `<scheduled s> <ran ms>`, one a line,
//!   in order.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let store = Store::open_default()?;
    let keys = store.get_keys()?;
    let body = match req.path() {
        "/seen" => {
            let seen = keys.iter().filter(|k| k.starts_with("seen:")).count();
            let dup = keys.iter().filter(|k| k.starts_with("dup:")).count();
            format!("seen {seen} dup {dup}\n")
        }
        "/ticks" => {
            let mut ticks: Vec<String> = Vec::new();
            for key in keys.iter().filter(|k| k.starts_with("tick:")) {
                let ran = store.get(key)?.unwrap_or_default();
                ticks.push(format!(
                    "{} {}",
                    &key["tick:".len()..],
                    String::from_utf8_lossy(&ran)
                ));
            }
            ticks.sort();
            ticks.iter().map(|t| format!("{t}\n")).collect()
        }
        _ => return Ok(Response::new(404, "not found\n")),
    };
    Ok(Response::new(200, body))
}
