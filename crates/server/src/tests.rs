//! The table of many apps: which app a request reaches, and which apps
//! cannot share a host. The apps here answer with static responses, so the
//! table is tested without guests (guests are covered by `tests/all`).

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};

use crate::{LiveApps, LoadedApp};

/// An app called `name` at `base` whose routes answer with their own
/// route and the app's name.
fn app(name: &str, base: &str, routes: &[&str]) -> LoadedApp {
    let mut text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"{name}\"\n[application.trigger.http]\nbase = \"{base}\"\n"
    );
    for route in routes {
        text.push_str(&format!(
            "[[trigger.http]]\nroute = \"{route}\"\nstatic_response = {{ status_code = 200, body = \"{name} {route}\" }}\n"
        ));
    }
    let app = ferry_manifest::parse_app(&text, Path::new("/apps/spin.toml"), Path::new("/apps"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    LoadedApp::new(&app, Vec::new()).unwrap()
}

async fn get(apps: &LiveApps, host: &str, path: &str) -> (StatusCode, String) {
    let request = Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    let response = apps.current().handle(request, addr, addr).await;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn apps_at_different_bases_share_one_listener() {
    let apps = LiveApps::new();
    apps.install(app("shop", "/shop", &["/...", "/cart"]), Vec::new())
        .unwrap();
    apps.install(app("blog", "/blog", &["/..."]), Vec::new())
        .unwrap();
    assert_eq!(get(&apps, "x", "/shop/cart").await.1, "shop /cart");
    assert_eq!(get(&apps, "x", "/shop/item/1").await.1, "shop /...");
    assert_eq!(get(&apps, "x", "/blog/2026/post").await.1, "blog /...");
    assert_eq!(get(&apps, "x", "/other").await.0, StatusCode::NOT_FOUND);

    // Replacing one app leaves the other as it was.
    apps.install(app("shop", "/shop", &["/cart"]), Vec::new())
        .unwrap();
    assert_eq!(
        get(&apps, "x", "/shop/item/1").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&apps, "x", "/blog/a").await.1, "blog /...");

    assert!(apps.remove("blog").is_some());
    assert_eq!(get(&apps, "x", "/blog/a").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&apps, "x", "/shop/cart").await.1, "shop /cart");
    assert!(apps.remove("blog").is_none());
}

#[tokio::test]
async fn overlapping_routes_are_refused_naming_both_apps() {
    let apps = LiveApps::new();
    apps.install(app("shop", "/", &["/shop/...", "/health"]), Vec::new())
        .unwrap();
    let refused = apps
        .install(app("admin", "/", &["/admin/...", "/:any/cart"]), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("`admin`") && refused.contains("`shop`"),
        "{refused}"
    );
    assert!(
        refused.contains("/:any/cart") && refused.contains("/shop/..."),
        "{refused}"
    );
    // Nothing changed: the first app still serves, the second is not there.
    assert_eq!(get(&apps, "x", "/shop/cart").await.1, "shop /shop/...");
    assert!(apps.app("admin").is_none());
    // The same routes elsewhere are fine.
    apps.install(app("admin", "/", &["/admin/..."]), Vec::new())
        .unwrap();
    assert_eq!(get(&apps, "x", "/admin/x").await.1, "admin /admin/...");
}

#[tokio::test]
async fn host_names_pick_an_app_before_paths_do() {
    let apps = LiveApps::new();
    apps.install(app("one", "/", &["/..."]), vec!["one.example".into()])
        .unwrap();
    apps.install(app("two", "/", &["/..."]), vec!["two.example".into()])
        .unwrap();
    apps.install(app("any", "/", &["/..."]), Vec::new())
        .unwrap();
    assert_eq!(get(&apps, "one.example:3000", "/a").await.1, "one /...");
    assert_eq!(get(&apps, "TWO.example", "/a").await.1, "two /...");
    assert_eq!(get(&apps, "other.example", "/a").await.1, "any /...");

    let refused = apps
        .install(app("three", "/", &["/x"]), vec!["one.example".into()])
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("one.example") && refused.contains("`one`"),
        "{refused}"
    );
    assert_eq!(get(&apps, "one.example", "/x").await.1, "one /...");
}

#[tokio::test]
async fn a_renamed_app_takes_its_old_names_place() {
    let apps = LiveApps::new();
    apps.install(app("old", "/", &["/..."]), Vec::new())
        .unwrap();
    apps.install(app("other", "/", &["/x"]), vec!["x.example".into()])
        .unwrap();
    let refused = apps
        .replace("old", app("other", "/", &["/..."]), Vec::new())
        .unwrap_err();
    assert!(refused.to_string().contains("`other`"), "{refused}");
    let replaced = apps
        .replace("old", app("new", "/", &["/..."]), Vec::new())
        .unwrap();
    assert_eq!(
        replaced.map(|r| r.name().to_owned()).as_deref(),
        Some("old")
    );
    assert_eq!(get(&apps, "x", "/a").await.1, "new /...");
    assert!(apps.app("old").is_none());
}
