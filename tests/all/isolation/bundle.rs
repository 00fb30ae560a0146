//! What a deploy brings, and the live host's own state directory: a
//! bundle's paths reach nothing outside the bundle (component sources,
//! the manifest) or the app's data directory (`runtime-config.toml`
//! paths); a database shipped in a bundle is the app's own copy, never the
//! shared blob; and the host's lifecycle — restore, delete, uploads,
//! crashes, a full disk — neither loses an app nor brings one back.
//!
//! Bundles a well-behaved `ferry deploy` would refuse to send go through
//! the raw admin API ([`Host::deploy_raw`], [`deploy_bundle`]): the host
//! must not trust its client.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

/// A manifest for one component on the wasi:http test guest (`guest.wasm`
/// unless `source` says otherwise), under `base`, with `extra` lines in
/// its component table.
fn guest_manifest(name: &str, base: &str, source: &str, extra: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"{name}\"\n\
         [application.trigger.http]\nbase = \"{base}\"\n\n{}\
         [component.guest]\nsource = \"{source}\"\nenvironment = {{ NAME = \"{name}\" }}\n{extra}\n",
        trigger("/...", "guest")
    )
}

/// `POST /v1/apps/{name}/versions` with `files` (the manifest is
/// `spin.toml`) reached by `hostnames`, each file uploaded first.
async fn deploy_bundle(
    host: &Host,
    name: &str,
    files: &[(&str, &[u8])],
    hostnames: &[&str],
) -> Reply {
    let mut listed = serde_json::Map::new();
    for (path, bytes) in files {
        listed.insert((*path).to_owned(), host.upload(bytes).await.into());
    }
    let body = serde_json::json!({
        "manifest": "spin.toml",
        "files": listed,
        "hostnames": hostnames,
    });
    host.call(
        "POST",
        &format!("/v1/apps/{name}/versions"),
        Some(&host.token()),
        body.to_string().into_bytes(),
    )
    .await
}

/// The wasi:http test guest made a different component (a custom section
/// named `tag`), so that each copy compiles on its own.
fn distinct_guest(tag: &str) -> Vec<u8> {
    let mut wasm = std::fs::read(HTTP_GUEST).unwrap();
    wasm.push(0);
    wasm.push(u8::try_from(tag.len() + 1).unwrap());
    wasm.push(u8::try_from(tag.len()).unwrap());
    wasm.extend_from_slice(tag.as_bytes());
    wasm
}

fn current(state: &Path, app: &str) -> String {
    std::fs::read_to_string(state.join("apps").join(app).join("current"))
        .unwrap()
        .trim()
        .to_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `runtime-config.toml` paths on a live host name files in the app's own
/// data directory: a relative path lands there (not in the version's
/// tree, which the next deploy replaces), and an absolute path or a `..`
/// leading out of it — to another app's database, or anywhere the host
/// can write — is refused with 422 naming the field, creating nothing.
#[tokio::test]
async fn runtime_config_paths_stay_in_the_apps_data_directory() {
    let state = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    let manifest = guest_manifest(
        "tenant",
        "/tenant",
        "guest.wasm",
        "key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]",
    );
    let deploy_with_config = |config: &str| {
        let config = config.to_owned();
        let (host, manifest, wasm) = (&host, &manifest, &wasm);
        async move {
            host.deploy_raw(
                "tenant",
                "spin.toml",
                &[
                    ("spin.toml", manifest.as_bytes()),
                    ("runtime-config.toml", config.as_bytes()),
                    ("guest.wasm", wasm),
                ],
            )
            .await
        }
    };
    let outside_db = outside.path().join("stolen.db");
    let victim_db = "../../../../victim/data/sqlite/victim/default.db";
    for (config, field) in [
        (
            format!(
                "[sqlite_database.default]\ntype = \"spin\"\npath = \"{}\"\n",
                outside_db.display()
            ),
            "`[sqlite_database.default] path`",
        ),
        (
            format!("[sqlite_database.default]\ntype = \"spin\"\npath = \"{victim_db}\"\n"),
            "`[sqlite_database.default] path`",
        ),
        (
            "[sqlite_database.default]\ntype = \"spin\"\npath = \"sub/../../escape.db\"\n".into(),
            "`[sqlite_database.default] path`",
        ),
        (
            format!(
                "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
                outside.path().join("kv.db").display()
            ),
            "`[key_value_store.default] path`",
        ),
    ] {
        let reply = deploy_with_config(&config).await;
        assert_eq!(reply.status, 422, "{config}: {}", reply.text());
        assert!(
            reply.text().contains(field)
                && reply.text().contains("outside the app's data directory"),
            "{config}: {}",
            reply.text()
        );
        assert_eq!(
            entries(outside.path()),
            Vec::<String>::new(),
            "{config}: nothing is created outside"
        );
        assert!(!state.path().join("apps/victim").exists(), "{config}");
        assert!(!state.path().join("apps/tenant").exists(), "{config}");
    }

    // Relative paths name files in the app's data directory, `..` inside
    // it included, and the version's tree holds none of them.
    let config = "[sqlite_database.default]\ntype = \"spin\"\npath = \"db/own.db\"\n\
                  [key_value_store.default]\ntype = \"spin\"\npath = \"./kv/../own-kv.db\"\n";
    let reply = deploy_with_config(config).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let data = state.path().join("apps/tenant/data");
    assert!(data.join("db/own.db").is_file(), "{:?}", entries(&data));
    assert!(data.join("own-kv.db").is_file(), "{:?}", entries(&data));
    let tree = state.path().join("apps/tenant/versions/1/tree");
    assert_eq!(
        entries(&tree),
        ["guest.wasm", "runtime-config.toml", "spin.toml"]
    );
    assert_eq!(
        host.get("/tenant/").await.text(),
        "hello from tenant\n",
        "{}",
        host.logs()
    );
}

/// A component `source` whose `..` leads out of the bundle — here to the
/// Wasm of another app's version — is refused (422), however the path is
/// spelled, and nothing of it is read or served; a `..` that stays inside
/// the bundle is fine.
#[tokio::test]
async fn sources_and_the_manifest_stay_inside_the_bundle() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("victim", "victim", "/victim").path(), &[]);
    assert!(
        state
            .path()
            .join("apps/victim/versions/1/tree/guest.wasm")
            .is_file()
    );
    for source in [
        // From apps/thief/versions/1/tree up to apps/, then into the victim.
        "../../../../victim/versions/1/tree/guest.wasm",
        "sub/../../../../../victim/versions/1/tree/guest.wasm",
        HTTP_GUEST,
    ] {
        let manifest = guest_manifest("thief", "/thief", source, "");
        let reply = host
            .deploy_raw(
                "thief",
                "spin.toml",
                &[
                    ("spin.toml", manifest.as_bytes()),
                    ("sub/notes.txt", b"sub is a directory of the bundle"),
                ],
            )
            .await;
        assert_eq!(reply.status, 422, "{source}: {}", reply.text());
        assert!(
            reply.text().contains("component `guest`")
                && reply.text().contains("outside the bundle"),
            "{source}: {}",
            reply.text()
        );
        assert!(!state.path().join("apps/thief").exists(), "{source}");
        assert_eq!(host.get("/thief/").await.status, 404, "{source}");
    }
    // A dependency's `path` likewise: it would be read and composed into
    // the thief's component.
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    for path in ["../../../../victim/versions/1/tree/guest.wasm", "/dev/zero"] {
        let manifest = guest_manifest(
            "thief",
            "/thief",
            "guest.wasm",
            &format!("dependencies = {{ \"ferry:compose\" = {{ path = \"{path}\" }} }}"),
        );
        let reply = host
            .deploy_raw(
                "thief",
                "spin.toml",
                &[("spin.toml", manifest.as_bytes()), ("guest.wasm", &wasm)],
            )
            .await;
        assert_eq!(reply.status, 422, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("its dependency") && reply.text().contains("outside the bundle"),
            "{path}: {}",
            reply.text()
        );
        assert!(!state.path().join("apps/thief").exists(), "{path}");
    }
    // The manifest itself is a path in the bundle, never out of it.
    let manifest = guest_manifest("thief", "/thief", "guest.wasm", "");
    let reply = host
        .deploy_raw(
            "thief",
            "../../../../victim/versions/1/tree/spin.toml",
            &[("spin.toml", manifest.as_bytes())],
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(!state.path().join("apps/thief").exists());

    // `..` that stays inside the bundle names a file of the bundle.
    let manifest = guest_manifest("thief", "/thief", "sub/../guest.wasm", "");
    let reply = host
        .deploy_raw(
            "thief",
            "spin.toml",
            &[
                ("spin.toml", manifest.as_bytes()),
                ("guest.wasm", &wasm),
                ("sub/notes.txt", b"sub is a directory of the bundle"),
            ],
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(host.get("/thief/").await.text(), "hello from thief\n");
    assert_eq!(host.get("/victim/").await.text(), "hello from victim\n");
}

/// A SQLite database made as the `sqlite3` shell makes one (a rollback
/// journal, not WAL), holding the table `notes` with one row, `seeded`.
async fn seed_database() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.db");
    let database = ferry_store::SqlDatabase::open(&path).unwrap();
    database
        .execute_batch(
            "CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('seeded');".into(),
        )
        .await
        .unwrap();
    drop(database);
    // Every connection is closed, so the WAL has been checkpointed into
    // the file (the `-wal` file is kept, Ferry's stores keep it, but the
    // file alone holds the data); bytes 18 and 19 of the header then say
    // "rollback journal" (1) instead of "WAL" (2), as `PRAGMA
    // journal_mode = DELETE` would write them.
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..16], b"SQLite format 3\0");
    assert_eq!(bytes[18..20], [2, 2]);
    bytes[18] = 1;
    bytes[19] = 1;
    bytes
}

/// Two apps deployed with the same database file in their bundles (so one
/// blob, hard-linked into both versions) each get their own copy in their
/// data directory: a write by one is not seen by the other, the blob's
/// bytes never change, and the copy is made once — a restart or the next
/// version keeps the app's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundled_database_is_copied_never_written_through() {
    let wasm = tokio::task::block_in_place(|| std::fs::read(super::spin_app_wasm()).unwrap());
    let seed = seed_database().await;
    // A zero-length file is an empty SQLite database.
    let empty: &[u8] = b"";
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let manifest = "spin_manifest_version = 2\n[application]\nname = \"seeded\"\n\
                    [[trigger.http]]\nroute = \"/...\"\ncomponent = \"app\"\n\
                    [component.app]\nsource = \"app.wasm\"\n\
                    key_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]\n";
    let config = "[sqlite_database.default]\ntype = \"spin\"\npath = \"data/seed.db\"\n\
                  [key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n";
    let files: [(&str, &[u8]); 5] = [
        ("spin.toml", manifest.as_bytes()),
        ("runtime-config.toml", config.as_bytes()),
        ("app.wasm", &wasm),
        ("data/seed.db", &seed),
        ("data/kv.db", empty),
    ];
    let blob = |bytes: &[u8]| state.path().join("blobs/sha256").join(&sha256(bytes)[7..]);
    // Each blob still holds the bytes it is named by.
    let blobs_unchanged = || {
        for bytes in [&seed[..], empty] {
            let stored = std::fs::read(blob(bytes)).unwrap();
            assert_eq!(sha256(&stored), sha256(bytes), "a blob was written to");
        }
    };

    let reply = deploy_bundle(&host, "left", &files, &["left.test"]).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let sql = async |app: &str, statement: &str| {
        host.app_call(&format!("{app}.test"), "POST", "/sql", statement)
            .await
            .text()
    };
    let insert = sql("left", "INSERT INTO notes VALUES ('from left')").await;
    assert!(insert.contains("1 changed"), "{insert}");
    let stored = host.app_call("left.test", "PUT", "/kv/key", "left's").await;
    assert_eq!(stored.text(), "stored");
    blobs_unchanged();

    let reply = deploy_bundle(&host, "right", &files, &["right.test"]).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let right = sql("right", "SELECT text FROM notes").await;
    assert!(
        right.contains("seeded") && !right.contains("from left"),
        "{right}"
    );
    let left = sql("left", "SELECT text FROM notes").await;
    assert!(
        left.contains("seeded") && left.contains("from left"),
        "{left}"
    );
    assert_eq!(
        host.app_call("right.test", "GET", "/kv/key", "")
            .await
            .status,
        404
    );
    blobs_unchanged();
    for app in ["left", "right"] {
        let copy = state
            .path()
            .join("apps")
            .join(app)
            .join("data/data/seed.db");
        assert!(copy.is_file(), "{}", copy.display());
        assert_ne!(
            std::fs::metadata(&copy).unwrap().ino(),
            std::fs::metadata(blob(&seed)).unwrap().ino(),
            "{app}'s database is a copy, not a link to the blob"
        );
    }

    // The copy is made only when the app has none: its next version and a
    // restart keep what it wrote.
    let reply = deploy_bundle(&host, "left", &files, &["left.test"]).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let left = sql("left", "SELECT text FROM notes").await;
    assert!(left.contains("from left"), "{left}");
    host.kill_9();
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    let left = host
        .app_call("left.test", "POST", "/sql", "SELECT text FROM notes")
        .await;
    assert!(left.text().contains("from left"), "{}", left.text());
    let kept = host.app_call("left.test", "GET", "/kv/key", "").await;
    assert_eq!(kept.text(), "left's");
    blobs_unchanged();
}

/// A manifest with one route answered without a component: no compile.
fn static_manifest(name: &str, body: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"{name}\"\n\
         [[trigger.http]]\nroute = \"/late\"\nstatic_response = {{ body = \"{body}\\n\" }}\n"
    )
}

/// A deploy that lands while the host is still restoring other apps wins:
/// the restore does not put back the version it read at start.
#[tokio::test]
async fn a_deploy_during_the_restore_is_not_reverted() {
    let state = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = Host::start(
        state.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    // Eight apps restored first (by name), each a component of its own,
    // so the restore compiles eight times before it reaches `zz-late`.
    for i in 0..8 {
        let app = versioned_app(&format!("a{i}"), &format!("a{i}"), &format!("/a{i}"));
        std::fs::write(
            app.path().join("guest.wasm"),
            distinct_guest(&format!("ferry-restore-{i}")),
        )
        .unwrap();
        host.deploy(app.path(), &[]);
    }
    let one = static_manifest("zz-late", "version one");
    let reply = host
        .deploy_raw("zz-late", "spin.toml", &[("spin.toml", one.as_bytes())])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    host.kill_9();

    // A fresh cache: the restore compiles all eight.
    let cache = tempfile::tempdir().unwrap();
    let host = Host::start(
        state.path(),
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    let two = static_manifest("zz-late", "version two");
    let reply = host
        .deploy_raw("zz-late", "spin.toml", &[("spin.toml", two.as_bytes())])
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    // The deploy needs no compile: it landed while the restore ran.
    let ready = get(&format!("{}/readyz", host.admin)).await;
    assert_eq!(ready.status, 503, "the restore was already done");
    assert_eq!(host.get("/late").await.text(), "version two\n");
    host.until_ready().await;
    assert_eq!(host.get("/late").await.text(), "version two\n");
    assert_eq!(host.version("zz-late"), Some(2));
    assert_eq!(current(state.path(), "zz-late"), "2");
    assert_eq!(host.get("/a7/").await.text(), "hello from a7\n");
}

/// A restart writes nothing it did not change: each app's `current` is
/// the same file (inode and modification time) after the restore.
#[tokio::test]
async fn a_restart_rewrites_nothing() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("one", "one", "/one").path(), &[]);
    host.deploy(versioned_app("two", "two", "/two").path(), &[]);
    host.kill_9();
    let stat = |app: &str| {
        let meta = std::fs::metadata(state.path().join("apps").join(app).join("current")).unwrap();
        (meta.ino(), meta.mtime(), meta.mtime_nsec())
    };
    let before = [stat("one"), stat("two")];
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(host.get("/one/").await.text(), "hello from one\n");
    assert_eq!(host.get("/two/").await.text(), "hello from two\n");
    assert_eq!([stat("one"), stat("two")], before);
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where this user may not mount (not root).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        if output.status.success() {
            return Some(Self { dir });
        }
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_ne!(
            text(&uid.stdout).trim(),
            "0",
            "root cannot mount a tmpfs: {}",
            text(&output.stderr)
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem of `dir` until a write fails for want of space.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
            break;
        }
    }
    // The last bytes too: nothing at all fits.
    while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() {}
    path
}

/// On a full disk every app comes back after a restart — one with data
/// after a clean stop too, its data readable — and a deploy that cannot be
/// written is refused while the app it was for serves on.
/// Needs root (a tmpfs of its own); elsewhere it says so and checks
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_restores_every_app() {
    let Some(disk) = Tmpfs::mount("64m") else {
        eprintln!("not root: cannot mount a tmpfs to fill, so this test checks nothing here");
        return;
    };
    let state = disk.path().join("state");
    let cache = tempfile::tempdir().unwrap();
    let args = ["--cache-dir", cache.path().to_str().unwrap()];
    let host = Host::start(&state, &args);
    let one = versioned_app("one", "one", "/one");
    host.deploy(one.path(), &[]);
    host.deploy(versioned_app("two", "two", "/two").path(), &[]);
    // An app with data: after a clean stop its store files are closed.
    super::deploy_tenant(&host, "tenant");
    let stored = super::to_tenant(&host, "tenant", "PUT", "/kv/kept", "on a full disk").await;
    assert_eq!(stored.text(), "stored");
    for statement in ["CREATE TABLE t (x)", "INSERT INTO t VALUES ('a row')"] {
        assert!(
            !super::sql(&host, "tenant", statement)
                .await
                .starts_with("error")
        );
    }
    host.stop();
    fill(disk.path());

    let host = Host::start(&state, &args);
    host.until_ready().await;
    assert_eq!(host.get("/one/").await.text(), "hello from one\n");
    assert_eq!(host.get("/two/").await.text(), "hello from two\n");
    for app in host.apps()["apps"].as_array().unwrap() {
        assert_eq!(app["status"], "serving", "{app:#}");
    }
    // Its data reads as it was left; a write says the disk is full.
    let kept = super::to_tenant(&host, "tenant", "GET", "/kv/kept", "").await;
    assert_eq!(kept.text(), "on a full disk");
    assert_eq!(
        super::sql(&host, "tenant", "SELECT x FROM t").await,
        "x: [Value::Text(\"a row\")]; rowid 0, 0 changed"
    );
    let refused = super::sql(&host, "tenant", "INSERT INTO t VALUES ('more')").await;
    assert!(refused.contains("full"), "{refused}");
    // A new version cannot be written: refused, and version 1 serves on.
    write_manifest(&one, "one", "one again", "/one");
    let output = host.client(&["deploy", one.path().to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("500") && stderr.contains("No space left"),
        "a full disk is the host's failure, not a bad upload: {stderr}"
    );
    assert_eq!(host.get("/one/").await.text(), "hello from one\n");
    assert_eq!(host.version("one"), Some(1));
    drop(host);
}

/// A delete cut short (the app's directory renamed to `.deleted-<name>`,
/// not yet removed) is finished: the leftover goes at the next start, a
/// later delete of the same name works, and deleting an app whose
/// directory is already renamed away finishes the job — and no deleted
/// app comes back after a restart.
#[tokio::test]
async fn a_delete_cut_short_is_finished_and_never_comes_back() {
    let state = tempfile::tempdir().unwrap();
    let apps = state.path().join("apps");
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("phoenix", "phoenix", "/phoenix").path(), &[]);
    host.deploy(versioned_app("ghost", "ghost", "/ghost").path(), &[]);
    host.kill_9();
    // What a crash in the middle of an earlier delete of `phoenix` left.
    let leftover = apps.join(".deleted-phoenix/versions/1/tree");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("guest.wasm"), b"half removed").unwrap();

    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(
        entries(&apps),
        ["ghost", "phoenix"],
        "leftovers removed at start"
    );
    assert_eq!(host.get("/phoenix/").await.text(), "hello from phoenix\n");

    // A removal that failed half-way while the host ran: the next delete
    // of that name removes both.
    std::fs::create_dir_all(apps.join(".deleted-phoenix/data")).unwrap();
    let output = host.client(&["delete", "phoenix"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(host.get("/phoenix/").await.status, 404);
    assert_eq!(entries(&apps), ["ghost"]);

    // An app whose directory was already renamed away: deleting it again
    // finishes the job.
    std::fs::rename(apps.join("ghost"), apps.join(".deleted-ghost")).unwrap();
    let output = host.client(&["delete", "ghost"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(host.get("/ghost/").await.status, 404);
    assert_eq!(entries(&apps), Vec::<String>::new());
    let output = host.client(&["delete", "ghost"]);
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );

    host.kill_9();
    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(host.apps()["apps"], serde_json::json!([]));
    assert_eq!(host.get("/phoenix/").await.status, 404);
    assert_eq!(host.get("/ghost/").await.status, 404);
}

/// Clients uploading the same blob at once all succeed, and the blob
/// stored is exactly the bytes uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_uploads_of_one_blob_all_succeed() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let token = host.token();
    for round in 0..6u8 {
        let blob = Bytes::from(vec![round; 4 << 20]);
        let digest = sha256(&blob);
        let uploads: Vec<_> = (0..8)
            .map(|_| {
                let request = http::Request::put(format!("{}/v1/blobs/{digest}", host.admin))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::new(blob.clone()))
                    .unwrap();
                tokio::spawn(send(request))
            })
            .collect();
        for upload in uploads {
            let reply = upload.await.unwrap();
            assert_eq!(reply.status, 201, "round {round}: {}", reply.text());
        }
        let stored = std::fs::read(state.path().join("blobs/sha256").join(&digest[7..])).unwrap();
        assert!(
            stored[..] == blob[..],
            "round {round}: the stored blob is not what was uploaded"
        );
    }
    assert_eq!(entries(&state.path().join("blobs/sha256")).len(), 6);
}

/// If `current` names a version whose directory is gone (its rename never
/// reached the disk before a crash), the restore serves the newest kept
/// version before it, and records that.
#[tokio::test]
async fn a_missing_current_version_falls_back_to_the_one_before() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let app = versioned_app("steady", "one", "/");
    host.deploy(app.path(), &[]);
    write_manifest(&app, "steady", "two", "/");
    host.deploy(app.path(), &[]);
    host.kill_9();
    std::fs::remove_dir_all(state.path().join("apps/steady/versions/2")).unwrap();

    let host = Host::start(state.path(), &[]);
    host.until_ready().await;
    assert_eq!(host.get("/").await.text(), "hello from one\n");
    assert_eq!(host.version("steady"), Some(1));
    assert_eq!(current(state.path(), "steady"), "1");
    // The next deploy is numbered after the versions kept.
    write_manifest(&app, "steady", "three", "/");
    let deployed = host.deploy(app.path(), &[]);
    assert!(deployed.contains("version 2"), "{deployed}");
    assert_eq!(host.get("/").await.text(), "hello from three\n");
}

/// A bundle path with a name longer than a file name may be (255 bytes) is
/// refused with 422 before anything is written: a new app leaves no
/// directory, a serving one no version.
#[tokio::test]
async fn an_overlong_file_name_is_refused_before_anything_is_written() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    let wasm = std::fs::read(HTTP_GUEST).unwrap();
    let long = format!("static/{}.txt", "x".repeat(300));
    for name in ["fresh", "serving"] {
        if name == "serving" {
            host.deploy(versioned_app("serving", "serving", "/serving").path(), &[]);
        }
        let manifest = guest_manifest(name, &format!("/{name}"), "guest.wasm", "");
        let reply = host
            .deploy_raw(
                name,
                "spin.toml",
                &[
                    ("spin.toml", manifest.as_bytes()),
                    ("guest.wasm", &wasm),
                    (long.as_str(), b"hello"),
                ],
            )
            .await;
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert!(reply.text().contains("255 bytes"), "{}", reply.text());
    }
    assert_eq!(entries(&state.path().join("apps")), ["serving"]);
    assert_eq!(entries(&state.path().join("apps/serving/versions")), ["1"]);
    assert_eq!(host.get("/serving/").await.text(), "hello from serving\n");
}

/// A host name is a claim on every request to it: an app deployed with
/// `--hostname` answers all of them — a path it has no route for is its
/// 404, never handed to the apps routed by path, which go on serving
/// every other name. The deploy says which apps it takes that name from.
#[tokio::test]
async fn a_host_name_takes_every_request_to_it() {
    let state = tempfile::tempdir().unwrap();
    let host = Host::start(state.path(), &[]);
    host.deploy(versioned_app("plain", "plain", "/").path(), &[]);
    assert_eq!(
        host.get_host("/", "127.0.0.1").await.text(),
        "hello from plain\n"
    );
    let claimer = versioned_app("claimer", "claimer", "/claimed");
    let deployed = host.deploy(claimer.path(), &["--hostname", "127.0.0.1"]);
    assert!(
        deployed.contains("`127.0.0.1`") && deployed.contains("`plain`"),
        "{deployed}"
    );
    assert_eq!(
        host.get_host("/claimed/", "127.0.0.1").await.text(),
        "hello from claimer\n"
    );
    assert_eq!(host.get_host("/", "127.0.0.1").await.status, 404);
    assert_eq!(
        host.get_host("/", "localhost").await.text(),
        "hello from plain\n"
    );
    // Deleted, it gives the name back.
    assert!(host.client(&["delete", "claimer"]).status.success());
    assert_eq!(
        host.get_host("/", "127.0.0.1").await.text(),
        "hello from plain\n"
    );
}
