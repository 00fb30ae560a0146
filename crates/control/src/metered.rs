//! Key-value stores and SQLite databases as metrics see them: each
//! operation counted by app, store and result, and timed.
//!
//! A store is wrapped ([`MeteredKeyValue`]) where assembly hands it to a
//! component, and a database is given an observer; neither `ferry-store`
//! nor the runtime knows metrics exist.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_store::{Error, KeyValue};

use crate::metrics::Metrics;

/// A store that records each operation in `metrics` as `app`'s `label`.
pub struct MeteredKeyValue {
    inner: Arc<dyn KeyValue>,
    metrics: Arc<Metrics>,
    app: Arc<str>,
    label: Arc<str>,
}

impl MeteredKeyValue {
    pub fn wrap(
        inner: Arc<dyn KeyValue>,
        metrics: Arc<Metrics>,
        app: &str,
        label: &str,
    ) -> Arc<dyn KeyValue> {
        Arc::new(Self {
            inner,
            metrics,
            app: app.into(),
            label: label.into(),
        })
    }

    fn record<T>(&self, op: &'static str, started: Instant, result: &Result<T, Error>) {
        self.metrics.key_value_op(
            &self.app,
            &self.label,
            op,
            started.elapsed(),
            result.is_ok(),
        );
    }
}

#[async_trait::async_trait]
impl KeyValue for MeteredKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record("get", started, &result);
        result
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let started = Instant::now();
        let result = self.inner.get_many(keys).await;
        self.record("get_many", started, &result);
        result
    }

    async fn exists(&self, key: &str) -> Result<bool, Error> {
        let started = Instant::now();
        let result = self.inner.exists(key).await;
        self.record("exists", started, &result);
        result
    }

    async fn keys(&self) -> Result<Vec<String>, Error> {
        let started = Instant::now();
        let result = self.inner.keys().await;
        self.record("keys", started, &result);
        result
    }

    async fn keys_page(&self, after: Option<String>, limit: usize) -> Result<Vec<String>, Error> {
        let started = Instant::now();
        let result = self.inner.keys_page(after, limit).await;
        self.record("keys", started, &result);
        result
    }

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        let started = Instant::now();
        let result = self.inner.set(key, value).await;
        self.record("set", started, &result);
        result
    }

    async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        let started = Instant::now();
        let result = self.inner.set_many(entries).await;
        self.record("set_many", started, &result);
        result
    }

    async fn delete(&self, key: String) -> Result<(), Error> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record("delete", started, &result);
        result
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        let started = Instant::now();
        let result = self.inner.delete_many(keys).await;
        self.record("delete_many", started, &result);
        result
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        let started = Instant::now();
        let result = self.inner.increment(key, delta).await;
        self.record("increment", started, &result);
        result
    }

    async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, Error> {
        let started = Instant::now();
        let result = self.inner.compare_and_swap(key, expected, new).await;
        self.record("compare_and_swap", started, &result);
        result
    }
}

/// An observer that records a database's statements in `metrics`.
pub fn sql_observer(metrics: Arc<Metrics>, app: &str, label: &str) -> ferry_store::SqlObserver {
    let (app, label): (Arc<str>, Arc<str>) = (app.into(), label.into());
    Arc::new(move |took: Duration, ok: bool| metrics.sql_statement(&app, &label, took, ok))
}
