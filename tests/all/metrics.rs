//! Prometheus metrics, read the way Prometheus reads them: `/metrics`
//! parsed with a Prometheus text parser, and the values (not only the
//! names) checked against the requests the test sent.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;

use crate::support::*;

/// A scrape, parsed.
pub(crate) struct Scrape(pub prometheus_parse::Scrape);

impl Scrape {
    pub(crate) fn parse(text: &str) -> Self {
        assert!(
            text.ends_with("# EOF\n"),
            "an OpenMetrics exposition ends with # EOF"
        );
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        Self(prometheus_parse::Scrape::parse(lines).expect("Prometheus text"))
    }

    /// How many observations of the histogram `name` (with `labels`) were
    /// at most `le`.
    pub(crate) fn bucket(&self, name: &str, labels: &[(&str, &str)], le: f64) -> f64 {
        let sample = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no histogram {name} {labels:?}"));
        let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
            panic!("{name} is not a histogram");
        };
        buckets
            .iter()
            .find(|b| b.less_than == le)
            .unwrap_or_else(|| panic!("{name} has no bucket le={le}"))
            .count
    }

    /// The value of the sample `name` whose labels include all of `labels`;
    /// fails unless exactly one matches.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<&prometheus_parse::Sample> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{name} {labels:?}: {} samples match",
            matching.len()
        );
        match &matching[0].value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map_or(f64::NAN, |b| b.count)
            }
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
}

/// `ferry up --metrics-listen`'s address, from what it printed.
pub(crate) fn metrics_url(ferry: &Ferry) -> String {
    ferry
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| l.strip_prefix("Metrics on ").map(str::to_owned))
        .expect("the metrics address is printed")
}

pub(crate) async fn read_metrics(url: &str) -> Scrape {
    let reply = get(url).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.header("content-type")
    );
    Scrape::parse(&reply.text())
}

/// Waits until nothing is in flight on the route: a request's series are
/// written when its body has been sent, just after the client has read it.
async fn settled(url: &str, route: &[(&str, &str)]) -> Scrape {
    settled_by(|| read_metrics(url), route).await
}

/// [`settled`], scraping with `scrape` (a live host's `/metrics`, say):
/// the first scrape ([`eventually`]) with nothing in flight on `route`.
pub(crate) async fn settled_by<F, Fut>(mut scrape: F, route: &[(&str, &str)]) -> Scrape
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Scrape>,
{
    let what = format!("ferry_requests_in_flight {route:?} to fall to 0");
    eventually(&what, || {
        let scraped = scrape();
        async move {
            let scrape = scraped.await;
            let in_flight = scrape.value("ferry_requests_in_flight", route);
            if in_flight == 0.0 {
                Ok(scrape)
            } else {
                Err(in_flight)
            }
        }
    })
    .await
}

#[tokio::test]
async fn requests_and_failures_are_counted_by_route() {
    let app = TestApp::new(&(trigger("/...", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(
        &app,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-request-body",
            "64",
            "--request-timeout",
            "1s",
            "--max-memory",
            "32MiB",
        ],
    );
    let url = metrics_url(&ferry);
    for _ in 0..3 {
        assert_eq!(get(&format!("{}/", ferry.url)).await.status, 200);
    }
    assert_eq!(get(&format!("{}/trap", ferry.url)).await.status, 500);
    assert_eq!(
        get(&format!("{}/sleep?ms=3000", ferry.url)).await.status,
        504
    );
    assert_eq!(
        get(&format!("{}/status?code=404", ferry.url)).await.status,
        404
    );
    let echo = send(
        http::Request::post(format!("{}/echo", ferry.url))
            .body(Full::new(Bytes::from_static(b"12345")))
            .unwrap(),
    )
    .await;
    assert_eq!(echo.text(), "12345");
    let too_big = send(
        http::Request::post(format!("{}/echo", ferry.url))
            .body(Full::new(Bytes::from(vec![b'x'; 100])))
            .unwrap(),
    )
    .await;
    assert_eq!(too_big.status, 413);
    assert_eq!(get(&format!("{}/oom", ferry.url)).await.status, 500);

    let route = [
        ("app", "test-app"),
        ("component", "guest"),
        ("route", "/..."),
    ];
    let scrape = settled(&url, &route).await;
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = route.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        scrape.value("ferry_requests_total", &with(("status", "2xx"))),
        4.0
    );
    assert_eq!(
        scrape.value("ferry_requests_total", &with(("status", "4xx"))),
        2.0
    );
    assert_eq!(
        scrape.value("ferry_requests_total", &with(("status", "5xx"))),
        3.0
    );
    assert_eq!(
        scrape.value("ferry_requests_total", &with(("status", "3xx"))),
        0.0
    );
    assert_eq!(
        scrape.value("ferry_guest_failures_total", &with(("kind", "trap"))),
        1.0
    );
    assert_eq!(
        scrape.value(
            "ferry_guest_failures_total",
            &with(("kind", "out_of_memory"))
        ),
        1.0
    );
    assert_eq!(
        scrape.value("ferry_guest_failures_total", &with(("kind", "timeout"))),
        1.0
    );
    assert_eq!(
        scrape.value(
            "ferry_guest_failures_total",
            &with(("kind", "body_too_large"))
        ),
        1.0
    );
    assert_eq!(
        scrape.value("ferry_guest_failures_total", &with(("kind", "rejected"))),
        0.0
    );
    // Every request, failed or not, has its times.
    assert_eq!(scrape.value("ferry_request_head_seconds", &route), 9.0);
    assert_eq!(scrape.value("ferry_request_duration_seconds", &route), 9.0);
    assert_eq!(
        scrape.value("ferry_request_duration_seconds_count", &route),
        9.0
    );
    // Each request that reached the guest made an instance (the 413 was
    // refused before), and its memory was measured.
    assert_eq!(
        scrape.value("ferry_instantiation_seconds_count", &route),
        8.0
    );
    assert!(scrape.value("ferry_instantiation_seconds_sum", &route) > 0.0);
    assert_eq!(scrape.value("ferry_peak_memory_bytes_count", &route), 8.0);
    assert_eq!(
        scrape.bucket("ferry_peak_memory_bytes", &route, 4.0 * 1024.0 * 1024.0),
        7.0,
        "all but the hungry request had under 4 MiB"
    );
    assert!(scrape.value("ferry_peak_memory_bytes_sum", &route) > 16.0 * 1024.0 * 1024.0);
    // The 504 waited for its timeout: the total time holds at least that.
    assert!(scrape.value("ferry_request_duration_seconds_sum", &route) >= 1.0);
    // Only the echoed body was read; the 413's was refused unread.
    assert_eq!(scrape.value("ferry_request_body_bytes_total", &route), 5.0);
    assert!(scrape.value("ferry_response_body_bytes_total", &route) >= 5.0);
    // The one component: loaded once, its instances gone after the requests.
    let loads = scrape.value("ferry_component_loads_total", &[("result", "compiled")])
        + scrape.value("ferry_component_loads_total", &[("result", "cached")]);
    assert_eq!(loads, 1.0);
    assert_eq!(
        scrape.value("ferry_instance_pool_capacity", &[("engine", "wasi-0.2")]),
        1000.0
    );
    assert_eq!(
        scrape.value("ferry_component_instances", &[("engine", "wasi-0.2")]),
        0.0
    );

    // A request in flight is seen as one, and its instance as alive.
    let slow = tokio::spawn({
        let url = format!("{}/sleep?ms=800", ferry.url);
        async move { get(&url).await }
    });
    let what = "ferry_component_instances to be 1 while the request sleeps";
    eventually(what, || async {
        // In flight from its arrival, an instance once the guest runs.
        let now = read_metrics(&url).await;
        let instances = now.value("ferry_component_instances", &[("engine", "wasi-0.2")]);
        if instances == 1.0 {
            assert_eq!(now.value("ferry_requests_in_flight", &route), 1.0);
            Ok(())
        } else {
            Err(instances)
        }
    })
    .await;
    assert_eq!(slow.await.unwrap().status, 200);

    // A path outside every route is counted apart, with no raw path as a label.
    let app = TestApp::new(&(trigger("/only", "guest") + &http_component("guest", "")));
    let ferry = Ferry::start(&app, &["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&ferry);
    assert_eq!(
        get(&format!("{}/elsewhere/12345", ferry.url)).await.status,
        404
    );
    let scrape = settled(&url, &[("app", "-")]).await;
    assert_eq!(
        scrape.value(
            "ferry_requests_total",
            &[("app", "-"), ("route", "-"), ("status", "4xx")]
        ),
        1.0
    );
    assert!(
        !scrape
            .0
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains("12345"))),
        "a raw path became a label"
    );
}

/// Key-value operations and SQLite statements of a real Spin app (spin-sdk
/// 7, built by `ferry build`) are counted by app, store, operation and
/// result, and timed.
#[tokio::test]
async fn key_value_and_sqlite_operations_are_counted() {
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/test-programs/spin-apps/rust-sdk7");
    let built = ferry().arg("build").arg(&app).output().unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let ferry = Ferry::start_at(&app, &["--metrics-listen", "127.0.0.1:0"]);
    let url = metrics_url(&ferry);
    let call = |method: &'static str, path: &'static str, body: &'static str| {
        let url = format!("{}{path}", ferry.url);
        async move {
            send(
                http::Request::builder()
                    .method(method)
                    .uri(url)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(call("PUT", "/kv/a", "one").await.text(), "stored");
    assert_eq!(call("GET", "/kv/a", "").await.text(), "one");
    assert_eq!(call("GET", "/kv/b", "").await.status, 404);
    assert_eq!(call("POST", "/sql", "SELECT 1").await.status, 200);
    let _ = call("POST", "/sql", "THIS IS NOT SQL").await;

    let scrape = settled(&url, &[("app", "rust-sdk7"), ("route", "/...")]).await;
    let kv = |op: &str| {
        scrape.value(
            "ferry_key_value_operations_total",
            &[
                ("app", "rust-sdk7"),
                ("store", "default"),
                ("op", op),
                ("result", "ok"),
            ],
        )
    };
    assert_eq!(kv("set"), 1.0);
    assert_eq!(kv("get"), 2.0);
    assert_eq!(
        scrape.value(
            "ferry_key_value_operation_seconds_count",
            &[("app", "rust-sdk7"), ("store", "default"), ("op", "get")]
        ),
        2.0
    );
    let sql = |result: &str| {
        scrape.value(
            "ferry_sqlite_statements_total",
            &[
                ("app", "rust-sdk7"),
                ("database", "default"),
                ("result", result),
            ],
        )
    };
    assert_eq!(sql("ok"), 1.0);
    assert_eq!(sql("error"), 1.0);
    assert_eq!(
        scrape.value(
            "ferry_sqlite_statement_seconds_count",
            &[("app", "rust-sdk7"), ("database", "default")]
        ),
        2.0
    );
}
