//! Routing one request among 1,000 routes. Run: `cargo bench -p ferry-server`.

use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_server::Router;

fn routing(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    let mut manifest = String::from("spin_manifest_version = 2\n[application]\nname = \"bench\"\n");
    for i in 0..1000 {
        write!(
            manifest,
            "[[trigger.http]]\nroute = \"/app{i}/users/:id/...\"\ncomponent = \"c{i}\"\n[component.c{i}]\nsource = \"app.wasm\"\n"
        )
        .unwrap();
    }
    let app = ferry_manifest::parse_app(&manifest, Path::new("spin.toml"), dir.path()).unwrap();
    let router = Router::new(&app).unwrap();
    let (route, matched) = router.route("/app999/users/42/posts").unwrap();
    assert_eq!(route.component(), Some("c999"));
    assert_eq!(matched.path_info, "/posts");
    c.bench_function("route_among_1000", |b| {
        b.iter(|| {
            router
                .route(std::hint::black_box("/app500/users/42/posts"))
                .unwrap()
                .0
                .pattern
                .is_wildcard()
        })
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
