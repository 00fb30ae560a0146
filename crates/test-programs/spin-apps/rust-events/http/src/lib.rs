//! What the event components recorded, read over HTTP from the app's
//! default key-value store:
//!
//! - `GET /seen`: `seen N dup M` — how many distinct messages the Redis
//!   component handled, and how many it saw a second time;
//! - `GET /ticks`: each cron tick as `<scheduled s> <ran ms>`, one a line,
//!   in order;
//! - `GET /mqtt`: each MQTT message recorded, `<topic>:<payload>`, one a
//!   line, sorted;
//! - `GET /redis/roundtrip`: every call of Spin's outbound Redis interface
//!   (`fermyon:spin/redis@2.0.0`) on the server named by the `redis_address`
//!   variable, with every value type, one result a line;
//! - `GET /redis/open?<address>`: opens `address` and says what happened;
//! - `POST /redis/publish/<channel>`: publishes the body on the channel
//!   (which the app's own Redis trigger may be subscribed to);
//! - `POST /mqtt/publish/<topic>?<address>`: publishes the body at QoS 1
//!   through Spin's outbound MQTT (`fermyon:spin/mqtt@2.0.0`) to the
//!   broker `address`, or, without one, the `mqtt_address` variable's
//!   (with a client id added), and says what happened.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    if let Some(rest) = req.path().strip_prefix("/redis/") {
        return Ok(Response::new(200, redis(&req, rest)));
    }
    if let Some(topic) = req.path().strip_prefix("/mqtt/publish/") {
        return Ok(Response::new(200, mqtt_publish(&req, topic)));
    }
    let store = Store::open_default()?;
    let keys = store.get_keys()?;
    let body = match req.path() {
        "/seen" => {
            let seen = keys.iter().filter(|k| k.starts_with("seen:")).count();
            let dup = keys.iter().filter(|k| k.starts_with("dup:")).count();
            format!("seen {seen} dup {dup}\n")
        }
        "/mqtt" => {
            let mut seen: Vec<&str> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("mqtt:"))
                .collect();
            seen.sort();
            seen.iter().map(|t| format!("{t}\n")).collect()
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

/// What a Redis call answered, as text: the value, or `error: <the
/// interface's error>`.
fn shown<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(error) => format!("error: {error:?}"),
    }
}

fn redis(req: &Request, rest: &str) -> String {
    let address = spin_sdk::variables::get("redis_address").unwrap_or_default();
    if rest == "open" {
        return shown(Connection::open(req.query()).map(|_| "opened")) + "\n";
    }
    let conn = match Connection::open(&address) {
        Ok(conn) => conn,
        Err(error) => return format!("open: error: {error:?}\n"),
    };
    if let Some(channel) = rest.strip_prefix("publish/") {
        return shown(conn.publish(channel, &req.body().to_vec())) + "\n";
    }
    if rest == "get" {
        return shown(conn.get("bin")) + "\n";
    }
    if rest == "select" {
        // `execute` on its own connection: a SELECT there moves only it.
        let selected = shown(conn.execute("SELECT", &[RedisParameter::Binary(b"1".to_vec())]));
        let set = shown(conn.execute(
            "SET",
            &[
                RedisParameter::Binary(b"in-db-1".to_vec()),
                RedisParameter::Binary(b"yes".to_vec()),
            ],
        ));
        return format!(
            "select {selected}\nset {set}\nget-pooled {}\n",
            shown(conn.get("in-db-1"))
        );
    }
    let mut lines = Vec::new();
    let bin = vec![0u8, 1, 2, 255];
    lines.push(format!("set {}", shown(conn.set("bin", &bin))));
    lines.push(format!("get {}", shown(conn.get("bin"))));
    lines.push(format!("get-missing {}", shown(conn.get("missing"))));
    lines.push(format!("incr {}", shown(conn.incr("counter"))));
    lines.push(format!("incr {}", shown(conn.incr("counter"))));
    lines.push(format!("incr-bin {}", shown(conn.incr("bin"))));
    lines.push(format!(
        "sadd {}",
        shown(conn.sadd("set", &["a".to_owned(), "b".to_owned(), "a".to_owned()]))
    ));
    lines.push(format!(
        "smembers {}",
        shown(conn.smembers("set").map(|mut m| {
            m.sort();
            m
        }))
    ));
    lines.push(format!(
        "srem {}",
        shown(conn.srem("set", &["a".to_owned()]))
    ));
    lines.push(format!(
        "del {}",
        shown(conn.del(&["bin".to_owned(), "counter".to_owned(), "nope".to_owned()]))
    ));
    lines.push(format!(
        "execute-set {}",
        shown(conn.execute(
            "SET",
            &[
                RedisParameter::Binary(b"k".to_vec()),
                RedisParameter::Int64(-42),
            ]
        ))
    ));
    lines.push(format!(
        "execute-incrby {}",
        shown(conn.execute(
            "INCRBY",
            &[
                RedisParameter::Binary(b"k".to_vec()),
                RedisParameter::Int64(2)
            ]
        ))
    ));
    lines.push(format!(
        "execute-mget {}",
        shown(conn.execute(
            "MGET",
            &[
                RedisParameter::Binary(b"k".to_vec()),
                RedisParameter::Binary(b"none".to_vec()),
            ]
        ))
    ));
    lines.push(format!(
        "execute-ping {}",
        shown(conn.execute("PING", &[]).map(|r| matches!(
            r.as_slice(),
            [RedisResult::Status(s)] if s == "PONG"
        )))
    ));
    lines.push(format!(
        "execute-bad {}",
        shown(conn.execute("NOSUCHCOMMAND", &[]))
    ));
    lines.push(format!(
        "publish {}",
        shown(conn.publish("nobody", &b"x".to_vec()))
    ));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn mqtt_publish(req: &Request, topic: &str) -> String {
    let address = match req.query() {
        "" => format!(
            "{}?client_id=ferry-events-http",
            spin_sdk::variables::get("mqtt_address").unwrap_or_default()
        ),
        given => given.to_owned(),
    };
    let published = spin_sdk::mqtt::Connection::open(&address, "", "", 30).and_then(|conn| {
        conn.publish(
            topic,
            &req.body().to_vec(),
            spin_sdk::mqtt::Qos::AtLeastOnce,
        )
    });
    shown(published) + "\n"
}
