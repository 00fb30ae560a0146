//! A Spin HTTP component on spin-sdk 7.0.0 calling its PostgreSQL client
//! (`spin:postgres/postgres@4.2.0`'s async functions) and its MySQL client
//! (`spin:mysql/mysql@3.0.0`), both of which stream a query's rows and say
//! at the end whether they were all read. Ferry's tests build it with
//! `ferry build`:
//!
//! - `GET /pg/open?<address>`, `GET /mysql/open?<address>`: opens
//!   `address` (percent-decoded) and answers `opened` or the error;
//! - `GET /pg/types`: every 4.x value type through a real table on the
//!   server named by the `pg_address` variable, one statement's result a
//!   line, as `spin-apps/rust-events` prints 4.0.0's;
//! - `GET /pg/stream?<rows>`: reads `<rows>` rows of 1,000 bytes one by one,
//!   keeping none, and answers how many it read and their total length;
//! - `GET /pg/fail-midway`: a query whose sixth row fails on the server:
//!   the rows read before it, then the error the query ended with;
//! - `POST /pg/ssl`: opens `pg_address` with the body as its CA root
//!   (4.2's `connection-builder`, `build-async`) and answers whether the
//!   session is TLS, as the server sees it;
//! - `GET /pg/busy`: a call on a session while it streams a query's rows,
//!   then one after those rows were dropped unread;
//! - `GET /mysql/ssl`: the TLS version of a session to `mysql_address`, as
//!   the server sees it (empty: none);
//! - `GET /mysql/types`: every value type through `mysql_address`, as
//!   `rust-events` prints 2.0.0's.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;
use spin_sdk::{mysql, pg};

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let path = req.uri().path().to_owned();
    let query = percent_decoded(req.uri().query().unwrap_or_default());
    if path == "/pg/ssl" {
        use spin_sdk::http::body::IncomingBodyExt as _;
        let root = String::from_utf8(req.into_body().bytes().await?.to_vec())?;
        let answer = pg_ssl(&variable("pg_address").await, root).await;
        return Ok(Response::builder().status(200).body(answer)?);
    }
    let answer = match path.as_str() {
        "/pg/open" => shown(pg::Connection::open(query).await.map(|_| "opened")) + "\n",
        "/pg/types" => pg_types(&variable("pg_address").await).await,
        "/pg/stream" => pg_stream(&variable("pg_address").await, &query).await,
        "/pg/fail-midway" => pg_fail_midway(&variable("pg_address").await).await,
        "/pg/busy" => pg_busy(&variable("pg_address").await).await,
        "/mysql/open" => shown(mysql::Connection::open(query).await.map(|_| "opened")) + "\n",
        "/mysql/types" => mysql_types(&variable("mysql_address").await).await,
        "/mysql/ssl" => mysql_ssl(&variable("mysql_address").await).await,
        _ => return Ok(Response::builder().status(404).body(String::new())?),
    };
    Ok(Response::builder().status(200).body(answer)?)
}

async fn variable(name: &str) -> String {
    spin_sdk::variables::get(name).await.unwrap_or_default()
}

/// A result as one line: its value, or `error: ` and the interface's error.
fn shown<T: std::fmt::Debug>(result: Result<T, impl Shown>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error: {}", e.shown()),
    }
}

/// The interface's own error value, as the older versions' tests print it.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for pg::Error {
    fn shown(&self) -> String {
        match self {
            pg::Error::PgError(e) => format!("{e:?}"),
            other => format!("{other:?}"),
        }
    }
}

impl Shown for mysql::Error {
    fn shown(&self) -> String {
        match self {
            mysql::Error::MysqlError(e) => format!("{e:?}"),
            other => format!("{other:?}"),
        }
    }
}

/// Every row of a PostgreSQL query, printed as the synchronous versions'
/// `RowSet` prints; a failure reported at the end of the rows is the
/// query's.
async fn pg_rows(
    conn: &pg::Connection,
    statement: &str,
    params: Vec<pg::ParameterValue>,
) -> String {
    match conn.query(statement, params).await {
        Ok(result) => {
            let columns = format!("{:?}", result.columns());
            let (_, rows, done) = result.into_inner();
            row_set(columns, rows, done).await
        }
        Err(e) => format!("error: {}", e.shown()),
    }
}

/// A query's rows as they come, then how it ended: `RowSet { … }`, or the
/// rows read and the error.
async fn row_set<T: std::fmt::Debug, E: std::fmt::Debug>(
    columns: String,
    mut rows: spin_sdk::wit_bindgen::StreamReader<T>,
    done: spin_sdk::wit_bindgen::FutureReader<Result<(), E>>,
) -> String {
    let mut read = Vec::new();
    while let Some(row) = rows.next().await {
        read.push(row);
    }
    match done.await {
        Ok(()) => format!("RowSet {{ columns: {columns}, rows: {read:?} }}"),
        Err(e) => format!("{read:?}, then error: {e:?}"),
    }
}

async fn pg_types(address: &str) -> String {
    use pg::{ParameterValue as P, RangeBoundKind as K};
    let conn = match pg::Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return format!("v4-open error: {}\n", e.shown()),
    };
    let mut lines = Vec::new();
    lines.push(format!(
        "v4-create {}",
        shown(
            conn.execute(
                "CREATE TABLE v4 (u uuid, j jsonb, js json, n numeric, r4 int4range, \
                 r8 int8range, rn numrange, a4 int4[], a8 bigint[], an numeric[], \
                 at text[], iv interval, tz timestamptz, other inet)",
                vec![],
            )
            .await
        )
    ));
    lines.push(format!(
        "v4-insert {}",
        shown(
            conn.execute(
                "INSERT INTO v4 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, '192.0.2.1')",
                vec![
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
                    P::Interval(pg::Interval {
                        micros: 3_000_001,
                        days: -2,
                        months: 14,
                    }),
                    P::Datetime((2024, 1, 2, 3, 4, 5, 0)),
                ],
            )
            .await
        )
    ));
    lines.push(format!(
        "v4-query {}",
        pg_rows(&conn, "SELECT * FROM v4", vec![]).await
    ));
    lines.push(format!(
        "v4-no-rows {}",
        pg_rows(&conn, "SELECT u, n FROM v4 WHERE false", vec![]).await
    ));
    lines.push(format!(
        "v4-bad-json {}",
        shown(
            conn.execute(
                "INSERT INTO v4 (j) VALUES ($1)",
                vec![P::Jsonb(b"{".to_vec())]
            )
            .await
        )
    ));
    lines.push(format!(
        "v4-count {}",
        shown(
            conn.execute(
                "SELECT 1 WHERE $1",
                vec![P::Boolean(true), P::Boolean(true)]
            )
            .await
        )
    ));
    lines.push(format!(
        "v4-db-error {}",
        shown(
            conn.execute("INSERT INTO nosuchtable VALUES (1)", vec![])
                .await
        )
    ));
    lines.push(format!(
        "v4-multiple {}",
        shown(conn.execute("SELECT 1; SELECT 2", vec![]).await)
    ));
    for step in ["create", "insert", "again"] {
        let statement = match step {
            "create" => "CREATE TABLE v4u (k int PRIMARY KEY)",
            _ => "INSERT INTO v4u VALUES (1)",
        };
        lines.push(format!(
            "v4-unique-{step} {}",
            shown(conn.execute(statement, vec![]).await)
        ));
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

async fn pg_stream(address: &str, rows: &str) -> String {
    let conn = match pg::Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return format!("error: {}\n", e.shown()),
    };
    let Ok(count) = rows.parse::<i32>() else {
        return "not a count\n".to_owned();
    };
    let statement = "SELECT i, repeat('x', 1000) FROM generate_series(1, $1) i";
    let mut result = match conn
        .query(statement, vec![pg::ParameterValue::Int32(count)])
        .await
    {
        Ok(result) => result,
        Err(e) => return format!("error: {}\n", e.shown()),
    };
    let (mut read, mut bytes) = (0u64, 0u64);
    while let Some(row) = result.next().await {
        read += 1;
        if let pg::DbValue::Str(text) = &row[1] {
            bytes += text.len() as u64;
        }
    }
    format!(
        "{read} rows, {bytes} bytes, {}\n",
        shown(result.result().await)
    )
}

async fn pg_fail_midway(address: &str) -> String {
    let conn = match pg::Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return format!("error: {}\n", e.shown()),
    };
    format!(
        "{}\n",
        pg_rows(
            &conn,
            "SELECT 10 / (6 - i) AS q FROM generate_series(1, 8) i",
            vec![]
        )
        .await
    )
}

async fn pg_ssl(address: &str, root: String) -> String {
    let options = pg::OpenOptions {
        ca_root: Some(pg::Certificate::Text(root)),
    };
    match pg::Connection::open_with_options(address, options).await {
        Ok(conn) => {
            let statement = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
            format!("{}\n", pg_rows(&conn, statement, vec![]).await)
        }
        Err(e) => format!("error: {}\n", e.shown()),
    }
}

async fn pg_busy(address: &str) -> String {
    let conn = match pg::Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return format!("error: {}\n", e.shown()),
    };
    let statement = "SELECT i FROM generate_series(1, 100000) i";
    let mut result = match conn.query(statement, vec![]).await {
        Ok(result) => result,
        Err(e) => return format!("error: {}\n", e.shown()),
    };
    let first = result.next().await.map(|row| format!("{:?}", row[0]));
    let during = shown(conn.execute("SELECT 1", vec![]).await);
    drop(result);
    let after = shown(conn.execute("SELECT 1", vec![]).await);
    format!("{first:?}\n{during}\n{after}\n")
}

async fn mysql_types(address: &str) -> String {
    use mysql::ParameterValue as P;
    let conn = match mysql::Connection::open(address).await {
        Ok(conn) => conn,
        Err(e) => return format!("open: error: {}\n", e.shown()),
    };
    let mut lines = Vec::new();
    lines.push(format!(
        "create {}",
        shown(
            conn.execute(
                "CREATE TABLE t (b boolean, i1 tinyint, u1 tinyint unsigned, i2 smallint, \
                 u2 smallint unsigned, i4 int, u4 int unsigned, i8 bigint, u8 bigint unsigned, \
                 f4 float, f8 double, s varchar(20), bin varbinary(8), blb blob, txt text, \
                 d decimal(30,6), dt datetime(6), day date, tm time, j json, n int)",
                vec![],
            )
            .await
        )
    ));
    lines.push(format!(
        "insert {}",
        shown(
            conn.execute(
                "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
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
            )
            .await
        )
    ));
    lines.push(format!(
        "query {}",
        mysql_rows(&conn, "SELECT * FROM t", vec![]).await
    ));
    lines.push(format!(
        "params {}",
        mysql_rows(
            &conn,
            "SELECT ? + 1 AS n, ? AS s",
            vec![P::Int32(41), P::Str("x".into())]
        )
        .await
    ));
    lines.push(format!(
        "no-rows {}",
        mysql_rows(&conn, "SELECT i4, s FROM t WHERE false", vec![]).await
    ));
    lines.push(format!(
        "bad-sql {}",
        mysql_rows(&conn, "SELEC 1", vec![]).await
    ));
    let duplicate = async {
        conn.execute("CREATE TABLE u (k int PRIMARY KEY)", vec![])
            .await?;
        conn.execute("INSERT INTO u VALUES (1)", vec![]).await?;
        conn.execute("INSERT INTO u VALUES (1)", vec![]).await
    };
    lines.push(format!("duplicate {}", shown(duplicate.await)));
    lines.push(format!(
        "local-infile {}",
        shown(
            conn.execute("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE u", vec![])
                .await
        )
    ));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

async fn mysql_ssl(address: &str) -> String {
    match mysql::Connection::open(address).await {
        Ok(conn) => {
            let statement = "SHOW SESSION STATUS LIKE 'Ssl_version'";
            format!("{}\n", mysql_rows(&conn, statement, vec![]).await)
        }
        Err(e) => format!("error: {}\n", e.shown()),
    }
}

/// Every row of a MySQL query, printed as 2.0.0's `RowSet` prints.
async fn mysql_rows(
    conn: &mysql::Connection,
    statement: &str,
    params: Vec<mysql::ParameterValue>,
) -> String {
    match conn.query(statement, params).await {
        Ok(result) => {
            let columns = format!("{:?}", result.columns());
            let (_, rows, done) = result.into_inner();
            row_set(columns, rows, done).await
        }
        Err(e) => format!("error: {}", e.shown()),
    }
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
