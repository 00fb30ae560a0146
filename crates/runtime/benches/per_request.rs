//! In-process per-request costs: a fresh store + instantiate + handle for a
//! wasi:http component and for a WAGI module, and loading a compiled guest
//! from the compile cache. Run: `cargo bench -p ferry-runtime`.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ferry_manifest::{Component, Executor, Limits, Source, WagiConfig};
use ferry_runtime::{CompileCache, EngineOptions, Guest, RequestInfo, Runtime};
use http_body_util::{BodyExt, Full};

fn component(source: &str) -> Component {
    Component {
        environment: vec![("NAME".into(), "bench".into())],
        ..Component::granted_nothing("bench", Source::File(source.into()))
    }
}

fn info() -> RequestInfo {
    let addr: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    RequestInfo {
        client_addr: addr,
        server_name: "127.0.0.1".into(),
        server_port: 3000,
        full_url: "http://127.0.0.1:3000/".into(),
        script_name: String::new(),
        path_info: String::new(),
        matched_route: "/...".into(),
        component_route: "/".into(),
        raw_component_route: "/...".into(),
        base_path: "/".into(),
    }
}

/// One request through `guest`, its body read whole.
async fn request(guest: &Guest, info: &RequestInfo) -> Bytes {
    let request = http::Request::get("http://127.0.0.1:3000/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = guest
        .handle(request, || info.clone(), ())
        .await
        .expect("guest failed");
    response.into_body().collect().await.unwrap().to_bytes()
}

fn per_request(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    // A small pool: one request runs at a time, and it lets the bench run
    // under valgrind (which cannot reserve the default pool's address space).
    let runtime = Runtime::new(
        &EngineOptions {
            max_instances: 4,
            ..EngineOptions::default()
        },
        CompileCache::new(Some(cache.path().to_owned())),
    )
    .unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = tokio.enter();
    let info = info();
    let dir = Path::new(".");

    // Reading the file is part of loading, as it is for `ferry up`.
    let load = |source: &str, executor: &Executor| {
        let wasm = std::fs::read(source).unwrap();
        runtime
            .load(
                &component(source),
                Default::default(),
                &wasm,
                executor,
                Limits::default(),
                dir,
                None,
            )
            .unwrap()
    };

    let http = load(ferry_test_programs::HELLO, &Executor::Http);
    assert_eq!(tokio.block_on(request(&http, &info)), "Hello, world!\n");
    c.bench_function("wasi_http_store_instantiate_handle", |b| {
        b.iter(|| tokio.block_on(request(&http, &info)))
    });

    let wagi = load(
        ferry_test_programs::WAGI_HELLO_C,
        &Executor::Wagi(WagiConfig::default()),
    );
    assert_eq!(tokio.block_on(request(&wagi, &info)), "Hello, world!\n");
    c.bench_function("wagi_store_instantiate_handle", |b| {
        b.iter(|| tokio.block_on(request(&wagi, &info)))
    });

    // The cache already holds the component (loaded above).
    c.bench_function("compile_cache_load_wasi_http", |b| {
        b.iter(|| load(ferry_test_programs::HELLO, &Executor::Http))
    });
}

criterion_group!(benches, per_request);
criterion_main!(benches);
