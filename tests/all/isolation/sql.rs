//! SQL from a tenant's guest reaches its own database file and nothing
//! else: not another app's database or key-value file (`ATTACH` in every
//! spelling), not a new file anywhere (`ATTACH` of a new name, `VACUUM
//! INTO`), not where the state directory is (`PRAGMA database_list`), not
//! how the file is kept (`journal_mode`, `writable_schema`), not an
//! extension; a transaction it leaves open ends with its request, and a
//! huge or endless query is cut off while the host goes on.

use std::path::Path;

use super::{deploy_tenant, sql, to_tenant};
use crate::support::*;

/// The files of the tenant `name` in the state directory.
fn database_of(state: &Path, name: &str) -> String {
    state
        .join(format!("apps/{name}/data/sqlite/{name}/default.db"))
        .display()
        .to_string()
}

fn key_value_of(state: &Path, name: &str) -> String {
    state
        .join(format!("apps/{name}/data/key_value.db"))
        .display()
        .to_string()
}

/// A victim with a secret table and a secret key, and an attacker beside it.
async fn victim_and_attacker(args: &[&str]) -> (tempfile::TempDir, Host) {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), args);
    deploy_tenant(&host, "victim");
    deploy_tenant(&host, "attacker");
    for statement in [
        "CREATE TABLE secrets (s TEXT)",
        "INSERT INTO secrets VALUES ('hush')",
    ] {
        let answer = sql(&host, "victim", statement).await;
        assert!(!answer.starts_with("error"), "{statement}: {answer}");
    }
    let stored = to_tenant(&host, "victim", "PUT", "/kv/token", "kv-secret").await;
    assert_eq!(stored.text(), "stored");
    (state, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_reaches_no_other_database_and_writes_no_file() {
    let (state, host) = victim_and_attacker(&[]).await;
    let database = database_of(state.path(), "victim");
    let key_value = key_value_of(state.path(), "victim");
    let outside = tempfile::tempdir().unwrap();
    let made = outside.path().join("new.db");
    let keys = outside.path().join("authorized_keys");
    for statement in [
        format!("ATTACH '{database}' AS v"),
        format!("ATTACH DATABASE '{database}' AS v"),
        format!("attach database \"{database}\" as v"),
        format!("ATTACH 'file:{database}?mode=rw' AS v"),
        format!("ATTACH '{key_value}' AS k"),
        format!("ATTACH '{}' AS n", made.display()),
    ] {
        let answer = sql(&host, "attacker", &statement).await;
        assert!(
            answer.contains("ATTACH is not allowed"),
            "{statement}: {answer}"
        );
    }
    for statement in [
        "SELECT * FROM v.secrets".to_owned(),
        "INSERT INTO v.secrets VALUES ('planted')".to_owned(),
        "SELECT value FROM k.key_value".to_owned(),
    ] {
        let answer = sql(&host, "attacker", &statement).await;
        assert!(answer.starts_with("error"), "{statement}: {answer}");
        assert!(!answer.contains("hush") && !answer.contains("kv-secret"));
    }
    let answer = sql(
        &host,
        "attacker",
        &format!("VACUUM INTO '{}'", keys.display()),
    )
    .await;
    assert!(answer.contains("not allowed"), "{answer}");
    let left: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(left.is_empty(), "a guest made files: {left:?}");
    // The victim's data is as it left it.
    assert_eq!(
        sql(&host, "victim", "SELECT s FROM secrets").await,
        "s: [Value::Text(\"hush\")]; rowid 0, 0 changed"
    );
    let token = to_tenant(&host, "victim", "GET", "/kv/token", "").await;
    assert_eq!(token.text(), "kv-secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_harmless_pragmas_and_no_extensions() {
    let (state, host) = victim_and_attacker(&[]).await;
    let where_state_is = state.path().display().to_string();
    for statement in [
        "PRAGMA database_list",
        "SELECT file FROM pragma_database_list",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA writable_schema = ON",
        "PRAGMA synchronous = OFF",
    ] {
        let answer = sql(&host, "attacker", statement).await;
        assert!(answer.contains("is not allowed"), "{statement}: {answer}");
        assert!(!answer.contains(&where_state_is), "{statement}: {answer}");
    }
    let answer = sql(&host, "attacker", "SELECT load_extension('libm.so.6')").await;
    assert!(
        answer.contains("load_extension() is not allowed"),
        "{answer}"
    );
    // What an app needs of its own schema still works.
    let answer = sql(&host, "victim", "PRAGMA table_info(secrets)").await;
    assert!(answer.contains("Text(\"s\")"), "{answer}");
    assert!(
        sql(&host, "victim", "PRAGMA user_version = 2")
            .await
            .ends_with("changed")
    );
}

/// A guest that begins a transaction and never ends it: the request's end
/// rolls it back, so the next request's write is its own, committed, and
/// still there after `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_ends_with_its_request() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    deploy_tenant(&host, "tenant");
    for statement in [
        "CREATE TABLE t (x)",
        "BEGIN IMMEDIATE",
        "INSERT INTO t VALUES ('after the begin')",
    ] {
        let answer = sql(&host, "tenant", statement).await;
        assert!(!answer.starts_with("error"), "{statement}: {answer}");
    }
    // The insert was a request of its own, after the one that began a
    // transaction: it committed.
    assert_eq!(
        sql(&host, "tenant", "INSERT INTO t VALUES ('committed')").await,
        ": ; rowid 2, 1 changed"
    );
    host.kill_9();
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(
        sql(&host, "tenant", "SELECT x FROM t ORDER BY rowid").await,
        "x: [Value::Text(\"after the begin\")] [Value::Text(\"committed\")]; rowid 0, 0 changed"
    );
}

/// A result over the size cap, a query that never ends and one that would
/// take all memory are cut off with an error the guest sees; the host goes
/// on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_endless_queries_are_cut_off() {
    // The request may outlive the statement's 30 s deadline.
    let (_state, host) = victim_and_attacker(&["--request-timeout", "90s"]).await;
    let answer = sql(
        &host,
        "attacker",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 100000) \
         SELECT zeroblob(1000) FROM n",
    )
    .await;
    assert!(answer.contains("larger than 67108864 bytes"), "{answer}");
    let answer = sql(
        &host,
        "attacker",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    )
    .await;
    assert!(answer.contains("interrupted"), "{answer}");
    // A row SQLite itself would need 3.2 GB for: past SQLite's share of
    // the host's memory, the statement fails, not the host.
    let columns = vec!["zeroblob(16000000)"; 200].join(", ");
    let answer = sql(&host, "attacker", &format!("SELECT {columns}")).await;
    assert!(answer.contains("out of memory"), "{answer}");
    assert_eq!(
        sql(&host, "victim", "SELECT s FROM secrets").await,
        "s: [Value::Text(\"hush\")]; rowid 0, 0 changed"
    );
}
