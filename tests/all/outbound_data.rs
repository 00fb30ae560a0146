//! Spin's outbound data interfaces against real servers on loopback: a
//! spin-sdk 5 component (`spin-apps/rust-events`, its `http` component)
//! calling `fermyon:spin/redis@2.0.0` and every synchronous version of
//! Spin's PostgreSQL and MySQL interfaces with every value type, addresses
//! outside its `allowed_outbound_hosts`, and servers that go away; a
//! spin-sdk 7 component (`spin-apps/rust-sdk7-rdbms`) calling the async
//! versions, whose rows are streamed.

use ferry_store::testing::RedisServer;

use crate::support::*;
use crate::triggers::events_app;

/// `spin-apps/rust-sdk7-rdbms`, built once for the tests that serve it.
fn rdbms_app() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let app = spin_app("rust-sdk7-rdbms");
            let output = ferry().arg("build").arg(&app).output().unwrap();
            assert!(output.status.success(), "{}", text(&output.stderr));
            app
        })
        .clone()
}

async fn call(ferry: &Ferry, path: &str) -> String {
    let reply = get(&format!("{}{path}", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// What `/redis/roundtrip` answers: every call of `fermyon:spin/redis@2.0.0`.
const REDIS_ROUNDTRIP: &str = "set ()\n\
     get Some([0, 1, 2, 255])\n\
     get-missing None\n\
     incr 1\n\
     incr 2\n\
     incr-bin error: Error::TypeError\n\
     sadd 2\n\
     smembers [\"a\", \"b\"]\n\
     srem 1\n\
     del 2\n\
     execute-set [RedisResult::Status(\"OK\")]\n\
     execute-incrby [RedisResult::Int64(-40)]\n\
     execute-mget [RedisResult::Binary([45, 52, 48]), RedisResult::Nil]\n\
     execute-ping true\n\
     execute-bad error: Error::Other(\"ResponseError: unknown command 'NOSUCHCOMMAND', with args beginning with: \")\n\
     publish ()\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_round_trips_every_value_type_and_refuses_what_is_not_granted() {
    let mut redis = RedisServer::start();
    let ferry = Ferry::start_at(
        &events_app(),
        &["--variable", &format!("redis_address={}", redis.url)],
    );
    assert_eq!(call(&ferry, "/redis/roundtrip").await, REDIS_ROUNDTRIP);
    // What the guest wrote is in the real server.
    let output = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url, "GET", "k"])
        .output()
        .unwrap();
    assert_eq!(text(&output.stdout).trim(), "-40");

    // `execute` has a connection of its own per `open`: a SELECT there
    // moves neither the typed calls (pooled, database 0) nor any other
    // request.
    assert_eq!(
        call(&ferry, "/redis/select").await,
        "select [RedisResult::Status(\"OK\")]\n\
         set [RedisResult::Status(\"OK\")]\n\
         get-pooled None\n"
    );
    let in_db_1 = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url, "-n", "1", "GET", "in-db-1"])
        .output()
        .unwrap();
    assert_eq!(text(&in_db_1.stdout).trim(), "yes");
    assert_eq!(
        call(&ferry, "/redis/get").await,
        "None\n",
        "the pool's connection is still on database 0"
    );

    // The grant is `redis://127.0.0.1:*`: another name for the same server,
    // TLS, and what is not a Redis URL are refused before any connection,
    // with the interface's own error, and logged.
    let port = redis.url.rsplit(':').next().unwrap();
    let mark = ferry.log_mark();
    for address in [
        format!("redis://localhost:{port}"),
        format!("rediss://127.0.0.1:{port}"),
        "unix:///var/run/redis.sock".to_owned(),
        "nonsense".to_owned(),
    ] {
        assert_eq!(
            call(&ferry, &format!("/redis/open?{address}")).await,
            "error: Error::InvalidAddress\n",
            "{address}"
        );
    }
    ferry
        .wait_for_log(
            mark,
            &[
                "outbound Redis connection denied",
                "redis://localhost",
                "not in allowed_outbound_hosts",
            ],
        )
        .await;
    // Every typed call went over one pooled connection (besides the app's
    // Redis trigger's subscription, redis-cli's own, and none left by
    // `execute`: each handle's own connection went with it).
    let url = redis.url.clone();
    eventually_blocking("one pooled guest connection on the server", || {
        let clients = std::process::Command::new("redis-cli")
            .args(["-u", &url, "CLIENT", "LIST"])
            .output()
            .unwrap();
        let listed = text(&clients.stdout);
        let guests = listed
            .lines()
            .filter(|l| l.contains(" sub=0 ") && !l.contains("cmd=client|list"))
            .count();
        if guests == 1 { Ok(()) } else { Err(listed) }
    });

    // The server goes away: the call answers with the interface's error
    // (the guest is not trapped); once it is back, calls work again.
    let url = redis.url.clone();
    redis.stop();
    let answer = call(&ferry, "/redis/get").await;
    assert!(answer.starts_with("error: Error::Other("), "{answer}");
    let _redis = RedisServer::start_at(&url);
    eventually("Redis calls to work again after the restart", || async {
        let answer = call(&ferry, "/redis/get").await;
        (answer == "None\n").then_some(()).ok_or(answer)
    })
    .await;
}

/// Every value type of `fermyon:spin/postgres@2.0.0`, `spin:postgres@3.0.0`
/// and `@4.0.0` through real tables: what the guest reads back, what the
/// server holds, and the interface's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_every_value_type_in_each_version() {
    let postgres = PostgresServer::start();
    let ferry = Ferry::start_at(
        &events_app(),
        &["--variable", &format!("pg_address={}", postgres.url())],
    );
    let answer = call(&ferry, "/pg/types").await;
    let expected = include_str!("outbound_data/postgres_types.txt");
    for (i, (got, want)) in answer.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {} of:\n{answer}", i + 1);
    }
    assert_eq!(answer.lines().count(), expected.lines().count(), "{answer}");

    // What the guest wrote is what the server holds.
    assert_eq!(
        postgres.psql("SELECT s, encode(bin, 'hex'), i4, i8 FROM v2 ORDER BY i8"),
        "héllo|0001ff|40000|-5000000000\n||8|7\n"
    );
    assert_eq!(
        postgres.psql("SELECT d, t, dt, ts AT TIME ZONE 'UTC' FROM v3"),
        "2024-02-29|23:59:58.123456|1999-12-31 23:00:01.5|2023-11-14 22:13:20\n"
    );
    assert_eq!(
        postgres.psql("SELECT n, r4, r8, rn, a4, an, at, iv, j FROM v4"),
        "-12345678901234567890.000123|[1,10)|(,5000000001)|(0.5,)|{1,NULL,-3}|{1.10,NULL}|{x,NULL,\"\"}|1 year 2 mons -2 days +00:00:03.000001|{\"a\": [1, 2]}\n"
    );
}

/// A guest reaches only the PostgreSQL servers it was granted, by the
/// address it names; a session it leaves mid-transaction reaches the next
/// request reset (the same server session, none of its state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_what_is_not_granted_and_resets_what_it_keeps() {
    let postgres = PostgresServer::start();
    postgres.psql(
        "CREATE TABLE uncommitted (x int); \
         CREATE TYPE mood AS ENUM ('happy', 'sad'); \
         CREATE TYPE verdict AS ENUM ('fair', 'foul')",
    );
    let ferry = Ferry::start_at(
        &events_app(),
        &["--variable", &format!("pg_address={}", postgres.url())],
    );
    // Granted: `postgres://127.0.0.1:*`.
    let port = postgres.port;
    assert_eq!(
        call(&ferry, &format!("/pg/open?{}", postgres.url())).await,
        "\"opened\"\n\"opened\"\n\"opened\"\n"
    );
    let mark = ferry.log_mark();
    for (address, why) in [
        (
            format!("postgres://postgres:secret@localhost:{port}/postgres"),
            format!("postgres://localhost:{port}: not permitted"),
        ),
        (
            format!("host=127.0.0.1,10.0.0.1 port={port} user=postgres password=secret"),
            format!("postgres://10.0.0.1:{port}: not permitted"),
        ),
        (
            format!("host=127.0.0.1 hostaddr=10.0.0.1 port={port} user=postgres"),
            "`hostaddr` is not supported".to_owned(),
        ),
        (
            "host=/var/run/postgresql user=postgres".to_owned(),
            "Unix sockets are not reachable from a guest".to_owned(),
        ),
    ] {
        let query = address.replace(' ', "%20");
        let answer = call(&ferry, &format!("/pg/open?{query}")).await;
        assert_eq!(answer.lines().count(), 3, "{answer}");
        for line in answer.lines() {
            assert!(
                line.starts_with("error: Error::ConnectionFailed(") && line.contains(&why),
                "{address}: {answer}"
            );
        }
    }
    // Each denial is logged, with the address as parsed: never its
    // password, wherever the address form put it.
    ferry
        .wait_for_log(
            mark,
            &["outbound PostgreSQL connection denied", "localhost"],
        )
        .await;
    ferry
        .wait_for_log(
            mark,
            &[
                "outbound PostgreSQL connection denied",
                &format!("postgres://postgres@127.0.0.1:{port},10.0.0.1:{port}/"),
            ],
        )
        .await;
    ferry
        .wait_for_log(
            mark,
            &["outbound PostgreSQL connection denied", "Unix sockets"],
        )
        .await;
    assert!(
        !ferry.logs_since(mark).iter().any(|l| l.contains("secret")),
        "{:?}",
        ferry.logs_since(mark)
    );

    let begun = call(&ferry, "/pg/begin").await;
    let pid = begun
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("pid [[DbValue::Int32("))
        .and_then(|l| l.strip_suffix(")]]"))
        .unwrap_or_else(|| panic!("{begun}"));
    assert_eq!(
        begun,
        format!(
            "SET TIME ZONE 'Asia/Tokyo': 0\n\
             CREATE TEMPORARY TABLE scratch (x int): 0\n\
             PREPARE leftover AS SELECT 1: 0\n\
             BEGIN: 0\n\
             INSERT INTO uncommitted VALUES (1): 1\n\
             lock [[DbValue::Str(\"\")]]\n\
             mood [[DbValue::Unsupported([104, 97, 112, 112, 121])]]\n\
             pid [[DbValue::Int32({pid})]]\n"
        )
    );
    // The same server session, none of its state: no transaction (the row
    // is gone), setting, temporary table, prepared statement or lock; and
    // the client still looks up types it had not seen.
    assert_eq!(
        call(&ferry, "/pg/after").await,
        format!(
            "[[DbValue::Int32({pid}), DbValue::Int64(0), DbValue::Str(\"UTC\"), \
             DbValue::Boolean(true), DbValue::Int64(0), DbValue::Int64(0)]]\n\
             [[DbValue::Unsupported([102, 97, 105, 114])]]\n"
        ),
        "the next request has the same session, reset"
    );
    assert_eq!(postgres.psql("SELECT count(*) FROM uncommitted"), "0\n");
}

/// Every value type of `fermyon:spin/mysql@2.0.0` through a real MariaDB
/// table, what the server holds, the interface's errors, and addresses
/// outside the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_round_trips_every_value_type_and_refuses_what_is_not_granted() {
    let mysql = MysqlServer::start();
    let ferry = Ferry::start_at(
        &events_app(),
        &["--variable", &format!("mysql_address={}", mysql.url())],
    );
    let answer = call(&ferry, "/mysql/types").await;
    let expected = include_str!("outbound_data/mysql_types.txt");
    for (i, (got, want)) in answer.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {} of:\n{answer}", i + 1);
    }
    assert_eq!(answer.lines().count(), expected.lines().count(), "{answer}");
    // What the guest wrote is what the server holds; the server's request
    // for a file of this host (`LOAD DATA LOCAL`) got nothing.
    assert_eq!(
        mysql.sql("SELECT i1, u8, s, HEX(bin), d, dt, tm FROM t"),
        "-8\t18000000000000000000\théllo\t0001FF\t-123456789012345678901234.000001\t\
         1999-12-31 23:00:01.500000\t-26:03:04\n"
    );
    assert_eq!(mysql.sql("SELECT COUNT(*) FROM u"), "1\n");

    // Granted: `mysql://127.0.0.1:*`.
    let port = mysql.port;
    assert_eq!(
        call(&ferry, &format!("/mysql/open?{}", mysql.url())).await,
        "\"opened\"\n"
    );
    let mark = ferry.log_mark();
    for (address, why) in [
        (
            format!("mysql://ferry:secret@localhost:{port}/app"),
            format!("mysql://localhost:{port}: not permitted"),
        ),
        (
            format!("mysql://ferry:secret@127.0.0.1:{port}/app?socket=/run/mysqld/mysqld.sock"),
            "Unix sockets are not reachable from a guest: not permitted".to_owned(),
        ),
    ] {
        let answer = call(&ferry, &format!("/mysql/open?{address}")).await;
        assert!(
            answer.starts_with("error: Error::ConnectionFailed(") && answer.contains(&why),
            "{address}: {answer}"
        );
    }
    ferry
        .wait_for_log(mark, &["outbound MySQL connection denied", "localhost"])
        .await;
    ferry
        .wait_for_log(mark, &["outbound MySQL connection denied", "Unix sockets"])
        .await;
    assert!(
        !ferry.logs_since(mark).iter().any(|l| l.contains("secret")),
        "{:?}",
        ferry.logs_since(mark)
    );
}

/// spin-sdk 7's clients, whose calls are async and whose rows are streamed
/// (`spin:postgres@4.2.0`, `spin:mysql@3.0.0`): every value and error as
/// the synchronous versions give them, a PostgreSQL result larger than a
/// synchronous call may hold read row by row, a query that fails midway
/// ending its rows with the server's error, and hosts outside the grant
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_sdk_7_reads_postgres_and_mysql_rows_as_a_stream() {
    let app = rdbms_app();
    let postgres = PostgresServer::start();
    let mysql = MysqlServer::start();
    let ferry = Ferry::start_at(
        &app,
        &[
            "--variable",
            &format!("pg_address={}", postgres.url()),
            "--variable",
            &format!("mysql_address={}", mysql.url()),
        ],
    );

    // 4.2.0 gives what 4.0.0 gives.
    let answer = call(&ferry, "/pg/types").await;
    let expected: Vec<&str> = include_str!("outbound_data/postgres_types.txt")
        .lines()
        .filter(|l| l.starts_with("v4-"))
        .collect();
    for (i, (got, want)) in answer.lines().zip(&expected).enumerate() {
        assert_eq!(got, *want, "line {} of:\n{answer}", i + 1);
    }
    assert_eq!(answer.lines().count(), expected.len(), "{answer}");

    // 80 MB of rows, over the 64 MiB a synchronous query may return: the
    // guest reads them one by one, keeping none.
    assert_eq!(
        call(&ferry, "/pg/stream?80000").await,
        "80000 rows, 80000000 bytes, ()\n"
    );
    // The server fails the sixth row: the five before it arrive, then the
    // query's outcome is the server's error.
    let midway = call(&ferry, "/pg/fail-midway").await;
    assert!(
        midway.starts_with(
            "[[DbValue::Int32(2)], [DbValue::Int32(2)], [DbValue::Int32(3)], \
             [DbValue::Int32(5)], [DbValue::Int32(10)]], then error: \
             Error::QueryFailed(QueryError::DbError(DbError { as-text: \"ERROR: division by zero\""
        ) && midway.contains("code: \"22012\""),
        "{midway}"
    );

    // While a session streams rows it takes no other call (one would wait
    // for ever behind them); once they are dropped, it does.
    assert_eq!(
        call(&ferry, "/pg/busy").await,
        "Some(\"DbValue::Int32(1)\")\n\
         error: Error::QueryFailed(QueryError::Text(\"the session is streaming an earlier query's rows: read them to the end, or drop them, first\"))\n\
         1\n"
    );

    // spin:mysql@3.0.0 gives what fermyon:spin/mysql@2.0.0 gives.
    let answer = call(&ferry, "/mysql/types").await;
    let expected = include_str!("outbound_data/mysql_types.txt");
    for (i, (got, want)) in answer.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {} of:\n{answer}", i + 1);
    }
    assert_eq!(answer.lines().count(), expected.lines().count(), "{answer}");

    // Granted `postgres://127.0.0.1:*` and `mysql://127.0.0.1:*` only.
    let denied = call(
        &ferry,
        &format!(
            "/pg/open?postgres://postgres@localhost:{}/postgres",
            postgres.port
        ),
    )
    .await;
    assert!(
        denied.starts_with("error: Error::ConnectionFailed(")
            && denied.contains(&format!(
                "postgres://localhost:{}: not permitted",
                postgres.port
            )),
        "{denied}"
    );
    let denied = call(
        &ferry,
        &format!("/mysql/open?mysql://root@localhost:{}/test", mysql.port),
    )
    .await;
    assert!(
        denied.starts_with("error: Error::ConnectionFailed(")
            && denied.contains(&format!("mysql://localhost:{}: not permitted", mysql.port)),
        "{denied}"
    );
}

/// `rediss://`: TLS to a real redis-server whose certificate a test CA
/// signed for `localhost`. Trusted through `SSL_CERT_FILE`, the guest's
/// calls and the app's Redis trigger work over it; without that, the
/// certificate is refused and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_checks_the_servers_certificate() {
    let ca = TestCa::new(&["localhost"]);
    let redis = RedisServer::start_tls(&ca.cert, &ca.key, &ca.ca);
    let ca_file = ca.ca.to_str().unwrap();
    let address = format!("redis_address={}", redis.url);
    let ferry = Ferry::start_with_env(
        &events_app(),
        &["--variable", &address],
        &[("SSL_CERT_FILE", ca_file)],
    );
    assert_eq!(call(&ferry, "/redis/roundtrip").await, REDIS_ROUNDTRIP);
    // The app's Redis trigger subscribed over TLS too.
    ferry
        .wait_for_log(LogMark::default(), &["ferry::trigger", "subscribed"])
        .await;
    let port = redis.url.rsplit(':').next().unwrap();
    let published = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", ca_file, "-h", "localhost", "-p", port])
        .args(["PUBLISH", "messages", "over-tls"])
        .output()
        .unwrap();
    assert_eq!(
        text(&published.stdout).trim(),
        "1",
        "{}",
        text(&published.stderr)
    );
    eventually("the message to be handled", || async {
        let seen = call(&ferry, "/seen").await;
        if seen == "seen 1 dup 0\n" {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;

    // Not trusted: the handshake fails on the certificate.
    let untrusting = Ferry::start_at(&events_app(), &["--variable", &address]);
    let refused = call(&untrusting, &format!("/redis/open?{}", redis.url)).await;
    assert!(
        refused.starts_with("error: Error::Other(") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

/// PostgreSQL over TLS (`sslmode=require`) to a real server whose
/// certificate a test CA signed for 127.0.0.1: a spin-sdk 7 guest that
/// hands the CA to 4.2's `connection-builder` gets a TLS session (as the
/// server sees it); one that does not is refused on the certificate,
/// unless the host trusts the CA (`SSL_CERT_FILE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_the_servers_certificate() {
    let app = rdbms_app();
    let ca = TestCa::new(&["127.0.0.1"]);
    let postgres = PostgresServer::start_tls(&ca);
    let address = format!("{}?sslmode=require", postgres.url());
    let variable = format!("pg_address={address}");
    let ferry = Ferry::start_at(&app, &["--variable", &variable]);
    let root = std::fs::read_to_string(&ca.ca).unwrap();
    let reply = send(
        http::Request::post(format!("{}/pg/ssl", ferry.url))
            .body(bytes::Bytes::from(root).into())
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply.text(),
        "RowSet { columns: [Column { name: \"ssl\", data-type: DbDataType::Boolean }], \
         rows: [[DbValue::Boolean(true)]] }\n"
    );
    let refused = call(&ferry, &format!("/pg/open?{address}")).await;
    assert!(
        refused.starts_with("error: Error::ConnectionFailed(") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    // Trusted by the host, the CA serves every open.
    let trusting = Ferry::start_with_env(
        &app,
        &["--variable", &variable],
        &[("SSL_CERT_FILE", ca.ca.to_str().unwrap())],
    );
    assert_eq!(
        call(&trusting, &format!("/pg/open?{address}")).await,
        "\"opened\"\n"
    );
}

/// MySQL over TLS (`?ssl-mode=required`, as Spin takes it) to a real
/// MariaDB whose certificate a test CA signed for 127.0.0.1: on a host
/// that trusts the CA (`SSL_CERT_FILE`) the session is TLS, as the server
/// sees it; on one that does not, it is refused on the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_over_tls_checks_the_servers_certificate() {
    let app = rdbms_app();
    let ca = TestCa::new(&["127.0.0.1"]);
    let mysql = MysqlServer::start_tls(&ca);
    let address = format!("{}?ssl-mode=required", mysql.url());
    let variable = format!("mysql_address={address}");
    let trusting = Ferry::start_with_env(
        &app,
        &["--variable", &variable],
        &[("SSL_CERT_FILE", ca.ca.to_str().unwrap())],
    );
    let ssl = call(&trusting, "/mysql/ssl").await;
    assert!(
        ssl.starts_with("RowSet { columns: [Column { name: \"Variable_name\"")
            && ssl.contains("DbValue::Str(\"TLSv1."),
        "{ssl}"
    );
    let untrusting = Ferry::start_at(&app, &["--variable", &variable]);
    let refused = call(&untrusting, "/mysql/ssl").await;
    assert!(
        refused.starts_with("error: Error::ConnectionFailed(") && refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

/// A "Redis server" that answers every command `+OK` until a `GET`, then
/// sends `reply` and after it `chunk` again and again up to 1 GiB, as fast
/// as the host reads. Gives its port, and (once the host hung up) how many
/// bytes the host took.
fn hostile_redis(reply: &'static [u8], chunk: Vec<u8>) -> (u16, std::thread::JoinHandle<usize>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (said, sent) = std::sync::mpsc::channel();
    // The app's Redis trigger subscribes there too: each connection on its own.
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let (socket, said, reply, chunk) =
                (socket.unwrap(), said.clone(), reply, chunk.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(socket.try_clone().unwrap());
                let mut writer = socket;
                loop {
                    // `*N`, then N bulk strings: the command and its arguments.
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let count: usize = line.trim_start_matches('*').trim().parse().unwrap();
                    let mut words = Vec::new();
                    for _ in 0..count {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        let len: usize = line.trim_start_matches('$').trim().parse().unwrap();
                        let mut word = vec![0; len + 2];
                        reader.read_exact(&mut word).unwrap();
                        words.push(String::from_utf8_lossy(&word[..len]).to_uppercase());
                    }
                    if words[0] != "GET" {
                        writer.write_all(b"+OK\r\n").unwrap();
                        continue;
                    }
                    let mut sent = 0;
                    if writer.write_all(reply).is_ok() {
                        sent += reply.len();
                        while sent < 1 << 30 && writer.write_all(&chunk).is_ok() {
                            sent += chunk.len();
                        }
                    }
                    let _ = said.send(sent);
                    return;
                }
            });
        }
    });
    let served = std::thread::spawn(move || sent.recv().unwrap());
    (port, served)
}

/// A server is the guest's to choose, so it may be hostile: a reply
/// announced larger than Ferry's limit, or nested deeper than the client's
/// parser should go, fails the call with the interface's error as its
/// header arrives, and the host reads no further (the server's writes fail
/// once the socket's buffers are full, long before its 1 GiB is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_redis_reply_is_refused_as_its_header_arrives() {
    let nested: &'static [u8] = "*1\r\n".repeat(100).leak().as_bytes();
    let x = vec![b'x'; 1 << 20];
    // A thousand values of 1 MiB.
    let mib = [&b"$1048576\r\n"[..], &x, b"\r\n"].concat();
    let over = "over Ferry's limit of 67108864 bytes";
    for (reply, chunk, said) in [
        (&b"$1000000000\r\n"[..], x.clone(), over),
        (&b"*1000\r\n"[..], mib, over),
        (nested, x.clone(), "a reply nested deeper than 32"),
        // Lines that end at `\n` alone are one line to the client, which
        // would read them for ever.
        (&b"+"[..], "aaaa\n".repeat(1 << 18).into_bytes(), over),
    ] {
        let (port, served) = hostile_redis(reply, chunk);
        let ferry = Ferry::start_at(
            &events_app(),
            &[
                "--variable",
                &format!("redis_address=redis://127.0.0.1:{port}"),
            ],
        );
        let answer = call(&ferry, "/redis/get").await;
        assert!(
            answer.starts_with("error: Error::Other(") && answer.contains(said),
            "{answer}"
        );
        let sent = served.join().unwrap();
        assert!(sent < 96 << 20, "the host read {sent} bytes of the reply");
    }
}
