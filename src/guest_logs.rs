//! Guests' log lines, kept for `ferry logs`: the last lines of every app,
//! and a feed of new ones for `--follow`; and the last guest failures
//! (`ferry::failure` events), for the dashboard.
//!
//! A `tracing` layer takes each `ferry::guest` event (the runtime writes one
//! per line a guest prints, with app, component, route and request id) into
//! [`GuestLogs`]: a bounded buffer per app, and a broadcast channel that
//! followers read. Nothing here blocks the guest: a follower that falls
//! behind loses lines (and is told how many), never slows a request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept per app for `ferry logs` without `--follow`.
pub const KEPT_PER_APP: usize = 1000;

/// Failures kept, all apps together.
pub const KEPT_FAILURES: usize = 100;

/// One line a guest wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuestLine {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub level: String,
    pub app: String,
    pub component: String,
    pub route: String,
    pub request_id: String,
    pub stream: String,
    /// A failure's status (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u64>,
    pub message: String,
}

pub struct GuestLogs {
    kept: Mutex<BTreeMap<String, VecDeque<Arc<GuestLine>>>>,
    feed: broadcast::Sender<Arc<GuestLine>>,
    failures: Mutex<VecDeque<Arc<GuestLine>>>,
}

impl GuestLogs {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            kept: Mutex::default(),
            feed: broadcast::channel(4096).0,
            failures: Mutex::default(),
        })
    }

    fn push_failure(&self, line: GuestLine) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() == KEPT_FAILURES {
            failures.pop_front();
        }
        failures.push_back(Arc::new(line));
    }

    /// The last failures, oldest first.
    pub fn failures(&self) -> Vec<Arc<GuestLine>> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.iter().cloned().collect()
    }

    /// The last `n` guest lines of every app, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<GuestLine>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<Arc<GuestLine>> = kept
            .values()
            .flat_map(|lines| lines.iter().rev().take(n).cloned())
            .collect();
        lines.sort_by(|a, b| a.time.cmp(&b.time));
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    fn push(&self, line: GuestLine) {
        let line = Arc::new(line);
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let app = kept.entry(line.app.clone()).or_default();
            if app.len() == KEPT_PER_APP {
                app.pop_front();
            }
            app.push_back(line.clone());
        }
        // No follower is not an error.
        let _ = self.feed.send(line);
    }

    /// The lines kept for `app`, oldest first, and (subscribed before
    /// they were read, so nothing falls between) the feed of later ones.
    pub fn follow(&self, app: &str) -> (Vec<Arc<GuestLine>>, broadcast::Receiver<Arc<GuestLine>>) {
        let feed = self.feed.subscribe();
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let lines = kept
            .get(app)
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default();
        (lines, feed)
    }

    /// Forgets `app`'s lines (it was deleted).
    pub fn forget(&self, app: &str) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app);
    }

    /// The layer that feeds this from `ferry::guest` events.
    pub fn layer(self: &Arc<Self>) -> GuestLogLayer {
        GuestLogLayer(self.clone())
    }
}

pub struct GuestLogLayer(Arc<GuestLogs>);

impl<S: tracing::Subscriber> Layer<S> for GuestLogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if target != "ferry::guest" && target != "ferry::failure" {
            return;
        }
        let mut line = GuestLine {
            time: now_rfc3339_ms(),
            level: event.metadata().level().to_string(),
            ..GuestLine::default()
        };
        event.record(&mut Fields(&mut line));
        if line.app.is_empty() || line.app == "-" {
            return;
        }
        if target == "ferry::failure" {
            self.0.push_failure(line);
        } else {
            self.0.push(line);
        }
    }
}

struct Fields<'a>(&'a mut GuestLine);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "app" => &mut self.0.app,
            "component" => &mut self.0.component,
            "route" => &mut self.0.route,
            "request_id" => &mut self.0.request_id,
            "stream" => &mut self.0.stream,
            "message" => &mut self.0.message,
            _ => return,
        };
        value.clone_into(slot);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.0.status = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The message is formatted (`"{line}"`), so it arrives as Debug of
        // format arguments, which prints the text itself.
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        }
    }
}

fn now_rfc3339_ms() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = crate::state::rfc3339(now.as_secs());
    // `…:SSZ` → `…:SS.mmmZ`
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        now.subsec_millis()
    )
}
