//! An app's key-value data belongs to that app alone, for as long as it
//! lives: another app on the host never sees it, and once the app is
//! deleted — even while one of its requests is still running — an app
//! deployed again under the same name starts empty, and what it writes
//! survives a restart.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{deploy_tenant, to_tenant};
use crate::metrics::Scrape;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_app_never_sees_a_tenants_keys() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    deploy_tenant(&host, "victim");
    deploy_tenant(&host, "attacker");
    let stored = to_tenant(&host, "victim", "PUT", "/kv/token", "kv-secret").await;
    assert_eq!(stored.text(), "stored");
    let read = to_tenant(&host, "attacker", "GET", "/kv/token", "").await;
    assert_eq!((read.status, read.text().as_str()), (404, "absent"));
    let keys = to_tenant(&host, "attacker", "GET", "/kv-keys", "").await;
    assert_eq!(keys.text(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_apps_data_is_gone_for_its_successor() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    deploy_tenant(&host, "tenant");
    let stored = to_tenant(&host, "tenant", "PUT", "/kv/secret", "the old app's").await;
    assert_eq!(stored.text(), "stored");

    // A request still running when the app is deleted: its body is half
    // sent, so the guest waits in `PUT /kv/late` for the rest.
    let mut late = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    late.write_all(
        b"PUT /kv/late HTTP/1.1\r\nHost: tenant.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nla",
    )
    .await
    .unwrap();
    eventually("the half-sent request to be in flight", || async {
        let reply = host
            .call("GET", "/metrics", Some(&host.token()), Vec::new())
            .await;
        let scrape = Scrape::parse(&reply.text());
        (scrape.value("ferry_requests_in_flight", &[("app", "tenant")]) >= 1.0).then_some(())
    })
    .await;
    let deleted = host.client(&["delete", "tenant"]);
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    deploy_tenant(&host, "tenant");

    let read = to_tenant(&host, "tenant", "GET", "/kv/secret", "").await;
    assert_eq!(
        (read.status, read.text().as_str()),
        (404, "absent"),
        "the new app sees the deleted one's data"
    );
    let stored = to_tenant(&host, "tenant", "PUT", "/kv/mine", "the new app's").await;
    assert_eq!(stored.text(), "stored");

    // The deleted app's request ends; what it wrote went with its app.
    late.write_all(b"te").await.unwrap();
    let mut answer = String::new();
    late.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let read = to_tenant(&host, "tenant", "GET", "/kv/late", "").await;
    assert_eq!(read.status, 404, "{}", read.text());

    // The new app's acknowledged write is in its own file.
    host.kill_9();
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    let read = to_tenant(&host, "tenant", "GET", "/kv/mine", "").await;
    assert_eq!(read.text(), "the new app's");
    let keys = to_tenant(&host, "tenant", "GET", "/kv-keys", "").await;
    assert_eq!(keys.text(), "mine");
}
