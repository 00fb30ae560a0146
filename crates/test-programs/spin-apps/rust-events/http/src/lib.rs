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
//! - `GET /pg/open?<address>`: opens `address` with each version of
//!   Spin's outbound PostgreSQL and says what happened, one a line;
//! - `GET /pg/types`: every value type through `fermyon:spin/postgres@2.0.0`,
//!   `spin:postgres/postgres@3.0.0` and `@4.0.0` on the server named by the
//!   `pg_address` variable, one statement's result a line;
//! - `GET /pg/begin`: begins a transaction, inserts a row, sets the time
//!   zone and makes a temporary table, then ends without committing; says
//!   the session's backend pid;
//! - `GET /pg/after`: what a later request's session sees of that: its
//!   pid, the row, the time zone and the table;
//! - `GET /mysql/open?<address>`: opens `address` with Spin's outbound
//!   MySQL and says what happened;
//! - `GET /mysql/types`: every value type through `fermyon:spin/mysql@2.0.0`
//!   on the server named by the `mysql_address` variable, one statement's
//!   result a line;
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
    if let Some(rest) = req.path().strip_prefix("/pg/") {
        return Ok(Response::new(200, postgres(&req, rest)));
    }
    if let Some(rest) = req.path().strip_prefix("/mysql/") {
        return Ok(Response::new(200, mysql(&req, rest)));
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

fn postgres(req: &Request, rest: &str) -> String {
    use spin_sdk::{pg, pg3, pg4};
    if rest == "open" {
        let address = percent_decoded(req.query());
        return [
            shown(pg::Connection::open(&address).map(|_| "opened")),
            shown(pg3::Connection::open(&address).map(|_| "opened")),
            shown(pg4::Connection::open(&address).map(|_| "opened")),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    }
    let address = spin_sdk::variables::get("pg_address").unwrap_or_default();
    match rest {
        "types" => pg_types(&address),
        "begin" => {
            let conn = match pg4::Connection::open(&address) {
                Ok(conn) => conn,
                Err(e) => return format!("open: error: {e:?}\n"),
            };
            // Session state of every kind, outside the transaction and in
            // it; then the guest ends without committing or closing.
            let steps = [
                "SET TIME ZONE 'Asia/Tokyo'",
                "CREATE TEMPORARY TABLE scratch (x int)",
                "PREPARE leftover AS SELECT 1",
                "BEGIN",
                "INSERT INTO uncommitted VALUES (1)",
            ];
            let mut lines: Vec<String> = steps
                .iter()
                .map(|s| format!("{s}: {}", shown(conn.execute(s, &[]))))
                .collect();
            for (what, query) in [
                ("lock", "SELECT pg_advisory_lock(42)::text"),
                ("mood", "SELECT 'happy'::mood"),
                ("pid", "SELECT pg_backend_pid()"),
            ] {
                let rows = conn.query(query, &[]).map(|r| r.rows);
                lines.push(format!("{what} {}", shown(rows)));
            }
            lines.iter().map(|l| format!("{l}\n")).collect()
        }
        "after" => {
            let conn = match pg4::Connection::open(&address) {
                Ok(conn) => conn,
                Err(e) => return format!("open: error: {e:?}\n"),
            };
            let query = "SELECT pg_backend_pid(), (SELECT count(*) FROM uncommitted), \
                         current_setting('TimeZone'), to_regclass('scratch') IS NULL, \
                         (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
                         (SELECT count(*) FROM pg_locks \
                          WHERE locktype = 'advisory' AND pid = pg_backend_pid())";
            format!(
                "{}\n{}\n",
                shown(conn.query(query, &[]).map(|r| r.rows)),
                // A type this session has not looked up yet.
                shown(conn.query("SELECT 'fair'::verdict", &[]).map(|r| r.rows))
            )
        }
        _ => "no such call\n".into(),
    }
}

/// Each version's values through a real table, and its errors.
fn pg_types(address: &str) -> String {
    use spin_sdk::{pg, pg3, pg4};
    let mut lines = Vec::new();
    let mut line = |what: &str, result: String| lines.push(format!("{what} {result}"));

    // 2.0.0: the plain types, and unsigned integers (which PostgreSQL has not).
    match pg::Connection::open(address) {
        Err(e) => line("v2-open", format!("error: {e:?}")),
        Ok(conn) => {
            use pg::ParameterValue as P;
            line(
                "v2-create",
                shown(conn.execute(
                    "CREATE TABLE v2 (b boolean, i2 smallint, i4 integer, i8 bigint, \
                     f4 real, f8 double precision, s text, bin bytea, n integer)",
                    &[],
                )),
            );
            line(
                "v2-insert",
                shown(conn.execute(
                    "INSERT INTO v2 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        P::Boolean(true),
                        P::Int16(-2),
                        P::Int32(40000),
                        P::Int64(-5000000000),
                        P::Floating32(1.5),
                        P::Floating64(-0.25),
                        P::Str("héllo".into()),
                        P::Binary(vec![0, 1, 255]),
                        P::DbNull,
                    ],
                )),
            );
            // Bound by the column's type: an int32 into a bigint, an int64
            // that fits into an integer.
            line(
                "v2-widen",
                shown(conn.execute(
                    "INSERT INTO v2 (i8, i4) VALUES ($1, $2)",
                    &[P::Int32(7), P::Int64(8)],
                )),
            );
            line(
                "v2-too-big",
                shown(conn.execute("INSERT INTO v2 (i2) VALUES ($1)", &[P::Int32(70000)])),
            );
            line(
                "v2-unsigned",
                shown(conn.execute("INSERT INTO v2 (i4) VALUES ($1)", &[P::Uint8(1)])),
            );
            line(
                "v2-query",
                shown(conn.query("SELECT * FROM v2 ORDER BY i8", &[])),
            );
            line("v2-bad-sql", shown(conn.query("SELEC 1", &[])));
        }
    }

    // 3.0.0: dates and times.
    match pg3::Connection::open(address) {
        Err(e) => line("v3-open", format!("error: {e:?}")),
        Ok(conn) => {
            use pg3::ParameterValue as P;
            line(
                "v3-create",
                shown(conn.execute(
                    "CREATE TABLE v3 (d date, t time, dt timestamp, ts timestamptz, u uuid)",
                    &[],
                )),
            );
            line(
                "v3-insert",
                shown(conn.execute(
                    "INSERT INTO v3 VALUES ($1, $2, $3, $4, NULL)",
                    &[
                        P::Date((2024, 2, 29)),
                        P::Time((23, 59, 58, 123_456_000)),
                        P::Datetime((1999, 12, 31, 23, 0, 1, 500_000_000)),
                        P::Timestamp(1_700_000_000),
                    ],
                )),
            );
            line(
                "v3-bad-date",
                shown(conn.execute("INSERT INTO v3 (d) VALUES ($1)", &[P::Date((2023, 2, 29))])),
            );
            line("v3-query", shown(conn.query("SELECT * FROM v3", &[])));
            line(
                "v3-newer-types",
                shown(conn.query("SELECT '{1,2}'::int4[] AS a, 1.5::numeric AS n", &[])),
            );
        }
    }

    // 4.0.0: the rest, and the server's error in its fields.
    match pg4::Connection::open(address) {
        Err(e) => line("v4-open", format!("error: {e:?}")),
        Ok(conn) => {
            use pg4::{ParameterValue as P, RangeBoundKind as K};
            line(
                "v4-create",
                shown(conn.execute(
                    "CREATE TABLE v4 (u uuid, j jsonb, js json, n numeric, r4 int4range, \
                     r8 int8range, rn numrange, a4 int4[], a8 bigint[], an numeric[], \
                     at text[], iv interval, tz timestamptz, other inet)",
                    &[],
                )),
            );
            line(
                "v4-insert",
                shown(conn.execute(
                    "INSERT INTO v4 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                     $13, '192.0.2.1')",
                    &[
                        P::Uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                        P::Jsonb(br#"{"a": [1, 2]}"#.to_vec()),
                        P::Jsonb(br#"{"b":true}"#.to_vec()),
                        P::Decimal("-12345678901234567890.000123".into()),
                        P::RangeInt32((Some((1, K::Inclusive)), Some((10, K::Exclusive)))),
                        P::RangeInt64((None, Some((5_000_000_000, K::Inclusive)))),
                        P::RangeDecimal((Some(("0.5".into(), K::Exclusive)), None)),
                        P::ArrayInt32(vec![Some(1), None, Some(-3)]),
                        P::ArrayInt64(vec![Some(9_000_000_000)]),
                        P::ArrayDecimal(vec![Some("1.10".into()), None]),
                        P::ArrayStr(vec![Some("x".into()), None, Some("".into())]),
                        P::Interval(pg4::Interval {
                            micros: 3_000_001,
                            days: -2,
                            months: 14,
                        }),
                        P::Datetime((2024, 1, 2, 3, 4, 5, 0)),
                    ],
                )),
            );
            line("v4-query", shown(conn.query("SELECT * FROM v4", &[])));
            line(
                "v4-no-rows",
                shown(conn.query("SELECT u, n FROM v4 WHERE false", &[])),
            );
            line(
                "v4-bad-json",
                shown(conn.execute("INSERT INTO v4 (j) VALUES ($1)", &[P::Jsonb(b"{".to_vec())])),
            );
            line(
                "v4-count",
                shown(conn.execute("SELECT 1 WHERE $1", &[P::Boolean(true), P::Boolean(true)])),
            );
            line(
                "v4-db-error",
                shown(conn.execute("INSERT INTO nosuchtable VALUES (1)", &[])),
            );
            line(
                "v4-multiple",
                shown(conn.execute("SELECT 1; SELECT 2", &[])),
            );
            for step in ["create", "insert", "again"] {
                let statement = match step {
                    "create" => "CREATE TABLE v4u (k int PRIMARY KEY)",
                    _ => "INSERT INTO v4u VALUES (1)",
                };
                line(
                    &format!("v4-unique-{step}"),
                    shown(conn.execute(statement, &[])),
                );
            }
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `%XX` escapes of a query string as the bytes they stand for.
fn percent_decoded(query: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = query.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(byte)) => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mysql(req: &Request, rest: &str) -> String {
    use spin_sdk::mysql::{Connection, ParameterValue as P};
    if rest == "open" {
        let address = percent_decoded(req.query());
        return shown(Connection::open(&address).map(|_| "opened")) + "\n";
    }
    let address = spin_sdk::variables::get("mysql_address").unwrap_or_default();
    let conn = match Connection::open(&address) {
        Ok(conn) => conn,
        Err(e) => return format!("open: error: {e:?}\n"),
    };
    let mut lines = Vec::new();
    let mut line = |what: &str, result: String| lines.push(format!("{what} {result}"));
    line(
        "create",
        shown(conn.execute(
            "CREATE TABLE t (b boolean, i1 tinyint, u1 tinyint unsigned, i2 smallint, \
             u2 smallint unsigned, i4 int, u4 int unsigned, i8 bigint, u8 bigint unsigned, \
             f4 float, f8 double, s varchar(20), bin varbinary(8), blb blob, txt text, \
             d decimal(30,6), dt datetime(6), day date, tm time, j json, n int)",
            &[],
        )),
    );
    line(
        "insert",
        shown(conn.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                P::Boolean(true),
                P::Int8(-8),
                P::Uint8(200),
                P::Int16(-16),
                P::Uint16(60000),
                P::Int32(-32),
                P::Uint32(4_000_000_000),
                P::Int64(-64),
                P::Uint64(18_000_000_000_000_000_000),
                P::Floating32(1.5),
                P::Floating64(-0.25),
                P::Str("héllo".into()),
                P::Binary(vec![0, 1, 255]),
                P::Binary(vec![9, 8]),
                P::Str("long text".into()),
                P::Str("-123456789012345678901234.000001".into()),
                P::Str("1999-12-31 23:00:01.5".into()),
                P::Str("2024-02-29".into()),
                P::Str("-26:03:04".into()),
                P::Str(r#"{"a": [1, 2]}"#.into()),
                P::DbNull,
            ],
        )),
    );
    line("query", shown(conn.query("SELECT * FROM t", &[])));
    line(
        "params",
        shown(conn.query(
            "SELECT ? + 1 AS n, ? AS s",
            &[P::Int32(41), P::Str("x".into())],
        )),
    );
    line(
        "no-rows",
        shown(conn.query("SELECT i4, s FROM t WHERE false", &[])),
    );
    line("bad-sql", shown(conn.query("SELEC 1", &[])));
    line(
        "duplicate",
        shown(
            conn.execute("CREATE TABLE u (k int PRIMARY KEY)", &[])
                .and_then(|()| conn.execute("INSERT INTO u VALUES (1)", &[]))
                .and_then(|()| conn.execute("INSERT INTO u VALUES (1)", &[])),
        ),
    );
    line(
        "local-infile",
        shown(conn.execute("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE u", &[])),
    );
    lines.iter().map(|l| format!("{l}\n")).collect()
}
