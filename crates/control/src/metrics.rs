//! The process's metrics, as `GET /metrics` serves them (Prometheus text,
//! OpenMetrics flavour): the request path's families (recorded by
//! `ferry-server`), each engine's instance pool (read at scrape time),
//! compiles and the compile cache, and a live host's deploys and rollbacks.
//!
//! This is the only place the registry is encoded; the layers below only
//! record into the families they registered.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use ferry_runtime::Runtime;
use ferry_server::ServerMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompileLabels {
    /// `compiled` or `cached` (loaded from the compile cache).
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    app: String,
    /// `ok` or `failed`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOpLabels {
    app: String,
    store: String,
    op: &'static str,
    /// `ok` or `error`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    app: String,
    store: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabels {
    app: String,
    database: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseTimeLabels {
    app: String,
    database: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    engine: &'static str,
}

type PoolGauges = Family<PoolLabels, Gauge<i64, AtomicI64>>;

pub struct Metrics {
    registry: Registry,
    server: ServerMetrics,
    triggers: ferry_trigger::TriggerMetrics,
    compiles: Family<CompileLabels, Counter>,
    compile_seconds: Family<CompileLabels, Histogram, fn() -> Histogram>,
    deploys: Family<ChangeLabels, Counter>,
    rollbacks: Family<ChangeLabels, Counter>,
    key_value_ops: Family<StoreOpLabels, Counter>,
    key_value_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
    sql_statements: Family<DatabaseLabels, Counter>,
    sql_seconds: Family<DatabaseTimeLabels, Histogram, fn() -> Histogram>,
    component_instances: PoolGauges,
    core_instances: PoolGauges,
    pool_capacity: PoolGauges,
    converges: Family<ChangeLabels, Counter>,
    converge_seconds: Histogram,
    serving_version: Family<AppLabels, Gauge<i64, AtomicI64>>,
    cluster_connected: Gauge<i64, AtomicI64>,
    runtime: std::sync::OnceLock<Arc<Runtime>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

fn store_histogram() -> Histogram {
    // 10 µs (a cached read) to ~10 s (a statement at its timeout).
    Histogram::new(exponential_buckets(0.000_01, 4.0, 12))
}

fn compile_histogram() -> Histogram {
    // 100 µs (a cache load) to ~100 s (a large compile).
    Histogram::new(exponential_buckets(0.000_1, 4.0, 11))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let server = ServerMetrics::register(&mut registry);
        let triggers = ferry_trigger::TriggerMetrics::register(&mut registry);
        let metrics = Self {
            server,
            triggers,
            compiles: Family::default(),
            compile_seconds: Family::new_with_constructor(compile_histogram),
            deploys: Family::default(),
            rollbacks: Family::default(),
            key_value_ops: Family::default(),
            key_value_seconds: Family::new_with_constructor(store_histogram),
            sql_statements: Family::default(),
            sql_seconds: Family::new_with_constructor(store_histogram),
            component_instances: Family::default(),
            core_instances: Family::default(),
            pool_capacity: Family::default(),
            converges: Family::default(),
            converge_seconds: compile_histogram(),
            serving_version: Family::default(),
            cluster_connected: Gauge::default(),
            runtime: std::sync::OnceLock::new(),
            registry: Registry::default(),
        };
        registry.register(
            "ferry_component_loads",
            "Components loaded: compiled, or loaded compiled from the cache",
            metrics.compiles.clone(),
        );
        registry.register(
            "ferry_component_load_seconds",
            "Time to compile a component, or to load it from the cache",
            metrics.compile_seconds.clone(),
        );
        registry.register(
            "ferry_deploys",
            "Deploys to a live host, by app and result",
            metrics.deploys.clone(),
        );
        registry.register(
            "ferry_rollbacks",
            "Rollbacks on a live host, by app and result",
            metrics.rollbacks.clone(),
        );
        registry.register(
            "ferry_key_value_operations",
            "Key-value operations guests made, by app, store, operation and result",
            metrics.key_value_ops.clone(),
        );
        registry.register(
            "ferry_key_value_operation_seconds",
            "Time of a key-value operation",
            metrics.key_value_seconds.clone(),
        );
        registry.register(
            "ferry_sqlite_statements",
            "SQLite statements guests ran, by app, database and result",
            metrics.sql_statements.clone(),
        );
        registry.register(
            "ferry_sqlite_statement_seconds",
            "Time of a SQLite statement",
            metrics.sql_seconds.clone(),
        );
        registry.register(
            "ferry_component_instances",
            "Component instances alive in the engine's pool",
            metrics.component_instances.clone(),
        );
        registry.register(
            "ferry_core_instances",
            "Core instances alive in the engine's pool (WAGI modules, and inside components)",
            metrics.core_instances.clone(),
        );
        registry.register(
            "ferry_instance_pool_capacity",
            "Component instances the engine's pool holds at most (--max-instances)",
            metrics.pool_capacity.clone(),
        );
        registry.register(
            "ferry_cluster_converges",
            "Versions a cluster's node activated because another node decided so, by app and result",
            metrics.converges.clone(),
        );
        registry.register(
            "ferry_cluster_converge_seconds",
            "From hearing of a version another node decided to serving it here (the node's convergence lag)",
            metrics.converge_seconds.clone(),
        );
        registry.register(
            "ferry_cluster_connected",
            "Whether this cluster node is connected to a NATS server (1) or cut off (0)",
            metrics.cluster_connected.clone(),
        );
        registry.register(
            "ferry_app_serving_version",
            "The version of each app this host serves",
            metrics.serving_version.clone(),
        );
        // Pre-created at zero, so a dashboard sees the series before the
        // first compile.
        for result in ["compiled", "cached"] {
            let _ = metrics.compiles.get_or_create(&CompileLabels { result });
        }
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    /// The request path's families, for the apps table.
    pub fn server(&self) -> ServerMetrics {
        self.server.clone()
    }

    /// The event triggers' series.
    pub fn triggers(&self) -> &ferry_trigger::TriggerMetrics {
        &self.triggers
    }

    /// The engine whose pools the scrape reads.
    pub fn watch_runtime(&self, runtime: Arc<Runtime>) {
        let _ = self.runtime.set(runtime);
    }

    pub fn component_loaded(&self, from_cache: bool, elapsed: Duration) {
        let labels = CompileLabels {
            result: if from_cache { "cached" } else { "compiled" },
        };
        self.compiles.get_or_create(&labels).inc();
        self.compile_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn key_value_op(&self, app: &str, store: &str, op: &'static str, took: Duration, ok: bool) {
        self.key_value_ops
            .get_or_create(&StoreOpLabels {
                app: app.to_owned(),
                store: store.to_owned(),
                op,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.key_value_seconds
            .get_or_create(&StoreLabels {
                app: app.to_owned(),
                store: store.to_owned(),
                op,
            })
            .observe(took.as_secs_f64());
    }

    pub fn sql_statement(&self, app: &str, database: &str, took: Duration, ok: bool) {
        self.sql_statements
            .get_or_create(&DatabaseLabels {
                app: app.to_owned(),
                database: database.to_owned(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.sql_seconds
            .get_or_create(&DatabaseTimeLabels {
                app: app.to_owned(),
                database: database.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn deployed(&self, app: &str, ok: bool) {
        self.deploys.get_or_create(&change(app, ok)).inc();
    }

    pub fn rolled_back(&self, app: &str, ok: bool) {
        self.rollbacks.get_or_create(&change(app, ok)).inc();
    }

    /// A cluster node activated (or failed to) what another node decided,
    /// `took` after it heard of it.
    pub fn converged(&self, app: &str, ok: bool, took: Duration) {
        self.converges.get_or_create(&change(app, ok)).inc();
        if ok {
            self.converge_seconds.observe(took.as_secs_f64());
        }
    }

    /// The version of `app` served now (none: no longer served).
    pub fn serving(&self, app: &str, version: Option<u64>) {
        let labels = AppLabels {
            app: app.to_owned(),
        };
        match version {
            Some(version) => {
                self.serving_version
                    .get_or_create(&labels)
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
            }
            None => {
                self.serving_version.remove(&labels);
            }
        }
    }

    pub fn cluster_connected(&self, connected: bool) {
        self.cluster_connected.set(i64::from(connected));
    }

    /// Each engine's instance pool, read now (none before a runtime is
    /// watched).
    pub fn pools(&self) -> Vec<ferry_runtime::PoolUsage> {
        self.runtime
            .get()
            .map(|runtime| runtime.pools())
            .unwrap_or_default()
    }

    /// Every family, with the pools read now.
    pub fn encode(&self) -> String {
        if let Some(runtime) = self.runtime.get() {
            for pool in runtime.pools() {
                let labels = PoolLabels {
                    engine: pool.engine,
                };
                let set = |family: &PoolGauges, value: u64| {
                    family
                        .get_or_create(&labels)
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                };
                set(&self.component_instances, pool.component_instances);
                set(&self.core_instances, pool.core_instances);
                set(&self.pool_capacity, pool.capacity);
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn change(app: &str, ok: bool) -> ChangeLabels {
    ChangeLabels {
        app: app.to_owned(),
        result: if ok { "ok" } else { "failed" },
    }
}
