//! Spin's outbound data interfaces against real servers on loopback: a
//! spin-sdk 5 component (`spin-apps/rust-events`, its `http` component)
//! calling `fermyon:spin/redis@2.0.0` with every value type, an address
//! outside its `allowed_outbound_hosts`, and a server that goes away.

use ferry_store::testing::RedisServer;

use crate::support::*;
use crate::triggers::events_app;

async fn call(ferry: &Ferry, path: &str) -> String {
    let reply = get(&format!("{}{path}", ferry.url)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_round_trips_every_value_type_and_refuses_what_is_not_granted() {
    let mut redis = RedisServer::start();
    let ferry = Ferry::start_at(
        &events_app(),
        &["--variable", &format!("redis_address={}", redis.url)],
    );
    assert_eq!(
        call(&ferry, "/redis/roundtrip").await,
        "set ()\n\
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
         publish ()\n"
    );
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
