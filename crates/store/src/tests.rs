//! Every key-value backend behaves the same: each test here runs against
//! embedded SQLite, against a real `redis-server` the test starts on a
//! free loopback port (the Debian package; `scripts/setup` installs it) and
//! against a NATS JetStream cluster of three servers it starts likewise.

use std::sync::Arc;

use crate::testing::{NatsCluster, RedisServer};
use crate::{Error, KeyValue, NatsDatabase, RedisDatabase, SqliteDatabase};

/// Runs `test` on each backend, with a function opening `(app, label)`.
async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(Box<dyn Fn(&str, &str) -> Arc<dyn KeyValue>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteDatabase::open(&dir.path().join("kv.db")).unwrap();
    test(Box::new(move |app, label| sqlite.store(app, label))).await;

    let server = RedisServer::start();
    let redis = RedisDatabase::connect(&server.url).await.unwrap();
    test(Box::new(move |app, label| redis.store(app, label))).await;

    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let nats = NatsDatabase::connect(&cluster.urls()).await.unwrap();
    test(Box::new(move |app, label| nats.store(app, label))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_are_namespaced_by_app_and_label() {
    on_every_backend(|open| async move {
        let (a, a_cache, b) = (
            open("app:a", "default"),
            open("app:a", "cache"),
            open("app", "a:default"),
        );
        a.set("k".into(), b"a".to_vec()).await.unwrap();
        a_cache.set("k".into(), b"cache".to_vec()).await.unwrap();
        assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"a"[..]));
        assert_eq!(
            a_cache.get("k").await.unwrap().as_deref(),
            Some(&b"cache"[..])
        );
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(b.keys().await.unwrap(), Vec::<String>::new());
        a.set_many(vec![
            ("x".into(), vec![1]),
            ("y*".into(), vec![2]),
            ("".into(), vec![]),
        ])
        .await
        .unwrap();
        assert_eq!(a.keys().await.unwrap(), ["", "k", "x", "y*"]);
        assert_eq!(a.keys_page(None, 2).await.unwrap(), ["", "k"]);
        assert_eq!(a.keys_page(Some("k".into()), 2).await.unwrap(), ["x", "y*"]);
        a.delete_many(vec!["x".into(), "nope".into(), "".into()])
            .await
            .unwrap();
        assert!(!a.exists("x").await.unwrap());
        assert!(a.exists("y*").await.unwrap());
        assert_eq!(
            a.get_many(vec!["y*".into(), "x".into()]).await.unwrap(),
            [("y*".to_owned(), Some(vec![2])), ("x".to_owned(), None)]
        );
        assert_eq!(
            a.set("k".repeat(5000), vec![]).await,
            Err(Error::KeyTooLong)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_and_swaps_are_atomic_under_concurrency() {
    on_every_backend(|open| async move {
        let store = open("app", "default");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..125 {
                        store.increment("n".into(), 1).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.increment("n".into(), 0).await, Ok(1000));

        // Eight concurrent compare-and-swap appends, each retrying until it
        // lands: all eight land.
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    loop {
                        let current = store.get("log").await.unwrap();
                        let mut next = current.clone().unwrap_or_default();
                        next.push(b'0' + i);
                        if store
                            .compare_and_swap("log".into(), current, next)
                            .await
                            .unwrap()
                        {
                            return;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let mut log = store.get("log").await.unwrap().unwrap();
        log.sort();
        assert_eq!(log, b"01234567");

        store
            .set("text".into(), b"not a number".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.increment("text".into(), 1).await,
            Err(Error::NotACounter("text".into()))
        );
        assert_eq!(store.increment("max".into(), i64::MAX).await, Ok(i64::MAX));
        assert_eq!(
            store.increment("max".into(), 1).await,
            Err(Error::Overflow("max".into()))
        );
    })
    .await;
}

/// What a reader sees never goes back in time: a read after an acknowledged
/// write sees it (or something newer), and one reader's successive reads
/// never decrease, while writers and readers race on the same keys. On the
/// embedded backend this is what keeps its read cache honest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_every_acknowledged_write_and_never_go_back() {
    on_every_backend(|open| async move {
        let store = open("app", "default");
        // Embedded SQLite keeps a counter as 8 little-endian bytes, as
        // Spin does; Redis as INCRBY's decimal text (also as Spin does).
        let counter = |value: Option<Vec<u8>>| match value {
            None => 0,
            Some(bytes) if bytes.len() == 8 => i64::from_le_bytes(bytes.try_into().unwrap()),
            Some(text) => String::from_utf8(text).unwrap().parse().unwrap(),
        };
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{}", writer % 2);
                for _ in 0..100 {
                    let written = store.increment(key.clone(), 1).await.unwrap();
                    let read = counter(store.get(&key).await.unwrap());
                    assert!(
                        read >= written,
                        "{key}: read {read} after writing {written}"
                    );
                }
            }));
        }
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut last = [0, 0];
                for _ in 0..200 {
                    let read = store
                        .get_many(vec!["k0".into(), "k1".into()])
                        .await
                        .unwrap();
                    for (last, (key, value)) in last.iter_mut().zip(read) {
                        let value = counter(value);
                        assert!(value >= *last, "{key} went back from {last} to {value}");
                        *last = value;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        for key in ["k0", "k1"] {
            assert_eq!(counter(store.get(key).await.unwrap()), 200);
        }
        store.delete("k0".into()).await.unwrap();
        assert_eq!(store.get("k0").await.unwrap(), None);
        assert!(!store.exists("k0").await.unwrap());
    })
    .await;
}

/// What NATS cannot hold is refused with a message that says so, before
/// anything is written: a value over the servers' largest message, a key
/// too long to encode into a subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_store_refuses_what_it_cannot_hold_clearly() {
    let cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let nats = NatsDatabase::connect(&cluster.urls()).await.unwrap();
    let store = nats.store("app", "default");
    let refused = store.set("big".into(), vec![0; 2 << 20]).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Backend(m) if m.contains("max_payload")),
        "{refused}"
    );
    let refused = store.set("k".repeat(3000), vec![1]).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Backend(m) if m.contains("at most 2048")),
        "{refused}"
    );
    assert_eq!(store.keys().await.unwrap(), Vec::<String>::new());
    // Under the limits, both fit.
    store
        .set("k".repeat(2048), vec![0; 512 << 10])
        .await
        .unwrap();
    assert_eq!(
        store.get(&"k".repeat(2048)).await.unwrap().map(|v| v.len()),
        Some(512 << 10)
    );
}
