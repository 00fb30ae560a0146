//! Guests' log lines, kept for `ferry logs`: the last lines of every app,
//! and a feed of new ones for `--follow`; and the last guest failures
//! (`ferry::failure` events), for the dashboard.
//!
//! A `tracing` layer takes each `ferry::guest` event (the runtime writes one
//! per line a guest prints, with app, component, route and request id) into
//! [`GuestLogs`]: a bounded buffer per app, and a broadcast channel that
//! followers read. Nothing here blocks the guest: a follower that falls
//! behind loses lines (and is told how many), never slows a request.
//!
//! Lines are kept by app name and by the app's life (the `incarnation` the
//! server gives each app installed with no predecessor): when an app is
//! deleted its lines are forgotten and its followers ended, and a line its
//! requests still write afterwards is dropped, so a new app of the same
//! name never shows the old one's output.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept per app for `ferry logs` without `--follow`.
pub const KEPT_PER_APP: usize = 1000;

/// Failures kept, all apps together.
pub const KEPT_FAILURES: usize = 100;

pub use ferry_api::GuestLine;

pub struct GuestLogs {
    kept: Mutex<BTreeMap<String, AppLines>>,
    feed: broadcast::Sender<Arc<GuestLine>>,
    failures: Mutex<VecDeque<Arc<GuestLine>>>,
}

/// One app's kept lines, of one life of it.
struct AppLines {
    /// The life the lines are from (0 until the first line says).
    incarnation: u64,
    lines: VecDeque<Arc<GuestLine>>,
    /// The app was deleted: lines of this life (or an older one) are
    /// dropped.
    deleted: bool,
    /// Dropped when this life ends (its app is deleted, or a new life
    /// starts): each follower's receiver then ends.
    alive: watch::Sender<()>,
}

impl AppLines {
    fn new(incarnation: u64) -> Self {
        Self {
            incarnation,
            lines: VecDeque::new(),
            deleted: false,
            alive: watch::Sender::new(()),
        }
    }

    /// Whether `line` belongs to this life, moving on to a newer one (and
    /// ending the old one's followers) if it starts one.
    fn admit(&mut self, line: &GuestLine) -> bool {
        let incarnation = line.incarnation;
        if incarnation > self.incarnation && (self.deleted || self.incarnation != 0) {
            *self = Self::new(incarnation);
            return true;
        }
        if self.deleted {
            // A deleted life's request, still running, wrote it.
            return false;
        }
        if incarnation == 0 || self.incarnation == 0 {
            self.incarnation = self.incarnation.max(incarnation);
            return true;
        }
        incarnation == self.incarnation
    }
}

/// What a follower of one app reads: the lines kept when it started, the
/// feed of later ones (every app's: the follower picks its app's out), and
/// a receiver that ends when the app's life does.
pub struct Following {
    pub kept: Vec<Arc<GuestLine>>,
    pub feed: broadcast::Receiver<Arc<GuestLine>>,
    /// `changed()` fails (the sender is gone) when the app is deleted.
    pub alive: watch::Receiver<()>,
    /// Which of the feed's lines are this follower's.
    pub filter: LineFilter,
}

/// Picks one app's lines, of one life of it, out of the feed.
#[derive(Debug, Clone)]
pub struct LineFilter {
    app: String,
    /// 0: the app had written nothing yet when the follower started.
    incarnation: u64,
}

impl LineFilter {
    /// Whether `line` is one the follower shows: its app's, of the life
    /// it follows (any, if it started before the first line).
    pub fn wants(&self, line: &GuestLine) -> bool {
        line.app == self.app
            && (self.incarnation == 0
                || line.incarnation == 0
                || line.incarnation == self.incarnation)
    }
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
            .flat_map(|app| app.lines.iter().rev().take(n).cloned())
            .collect();
        lines.sort_by(|a, b| a.time.cmp(&b.time));
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    fn push(&self, line: GuestLine) {
        let line = Arc::new(line);
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let app = kept
                .entry(line.app.clone())
                .or_insert_with(|| AppLines::new(line.incarnation));
            if !app.admit(&line) {
                return;
            }
            if app.lines.len() == KEPT_PER_APP {
                app.lines.pop_front();
            }
            app.lines.push_back(line.clone());
            // Sent under the lock, so a follower that has read the kept
            // lines sees every later one once.
            // No follower is not an error.
            let _ = self.feed.send(line);
        }
    }

    /// The lines kept for `app`, oldest first, and the feed of later ones
    /// (subscribed under the same lock, so nothing falls between or comes
    /// twice).
    pub fn follow(&self, app: &str) -> Following {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let feed = self.feed.subscribe();
        let lines = kept
            .entry(app.to_owned())
            .or_insert_with(|| AppLines::new(0));
        let alive = if lines.deleted {
            // Deleted since the caller looked: nothing to follow.
            watch::channel(()).1
        } else {
            lines.alive.subscribe()
        };
        Following {
            kept: lines.lines.iter().cloned().collect(),
            feed,
            alive,
            filter: LineFilter {
                app: app.to_owned(),
                incarnation: lines.incarnation,
            },
        }
    }

    /// Forgets `app`'s lines and failures and ends its followers (it was
    /// deleted).
    /// Lines of a life up to `newest` (`ferry_server::newest_incarnation`
    /// read before the delete: the deleted life's, or older) that its
    /// requests still write are dropped; a later life's are kept.
    pub fn forget(&self, app: &str, newest: u64) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let lines = kept
            .entry(app.to_owned())
            .or_insert_with(|| AppLines::new(0));
        let incarnation = lines.incarnation.max(newest);
        *lines = AppLines::new(incarnation);
        lines.deleted = true;
        drop(kept);
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|failure| failure.app != app);
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
        match field.name() {
            "status" => self.0.status = Some(value),
            "incarnation" => self.0.incarnation = value,
            _ => {}
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

/// `ferry up -L DIR`, as Spin's `spin up -L`: each component's output
/// lines appended to `DIR/<component>_stdout.txt` and
/// `DIR/<component>_stderr.txt`, as they come.
pub struct GuestFiles {
    dir: std::path::PathBuf,
    open: Mutex<BTreeMap<(String, String), std::fs::File>>,
}

impl GuestFiles {
    /// Makes `dir` if it is not there.
    pub fn new(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("making the log directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn write(&self, line: &GuestLine) {
        use std::io::Write as _;
        let stream = match line.stream.as_str() {
            "stdout" | "stderr" => line.stream.clone(),
            _ => return,
        };
        // Component ids are kebab-case; anything else is kept out of the
        // path all the same.
        let component = ferry_manifest::plain_name(&line.component);
        if component.is_empty() {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let key = (component, stream);
        if !open.contains_key(&key) {
            let path = self.dir.join(format!("{}_{}.txt", key.0, key.1));
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
            {
                Ok(file) => {
                    open.insert(key.clone(), file);
                }
                Err(e) => {
                    // Once per file: it is not retried.
                    eprintln!("cannot write guest output to {}: {e}", path.display());
                    return;
                }
            }
        }
        if let Some(file) = open.get_mut(&key) {
            let mut text = String::with_capacity(line.message.len() + 1);
            text.push_str(&line.message);
            text.push('\n');
            let _ = file.write_all(text.as_bytes());
        }
    }

    /// The layer that writes `ferry::guest` events to the files.
    pub fn layer(self: &Arc<Self>) -> GuestFileLayer {
        GuestFileLayer(self.clone())
    }
}

pub struct GuestFileLayer(Arc<GuestFiles>);

impl<S: tracing::Subscriber> Layer<S> for GuestFileLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "ferry::guest" {
            return;
        }
        let mut line = GuestLine::default();
        event.record(&mut Fields(&mut line));
        self.0.write(&line);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(app: &str, incarnation: u64, message: &str) -> GuestLine {
        GuestLine {
            app: app.into(),
            incarnation,
            message: message.into(),
            ..GuestLine::default()
        }
    }

    fn kept(logs: &GuestLogs, app: &str) -> Vec<String> {
        logs.follow(app)
            .kept
            .iter()
            .map(|l| l.message.clone())
            .collect()
    }

    #[test]
    fn a_deleted_apps_late_lines_and_failures_never_reach_its_successor() {
        let logs = GuestLogs::new();
        logs.push(line("a", 3, "old"));
        logs.push_failure(line("a", 0, "old failure"));
        logs.push(line("b", 2, "other app"));
        let mut follower = logs.follow("a");
        logs.forget("a", 4);
        // The follower's app is gone: its stream ends.
        assert!(follower.alive.has_changed().is_err());
        // A request of the deleted life (or an older one) writes on.
        logs.push(line("a", 3, "late"));
        logs.push(line("a", 4, "late too"));
        assert!(kept(&logs, "a").is_empty());
        assert!(logs.failures().is_empty());
        // A new app of the name has a newer life.
        logs.push(line("a", 5, "new"));
        logs.push(line("a", 3, "later still"));
        assert_eq!(kept(&logs, "a"), ["new"]);
        assert_eq!(kept(&logs, "b"), ["other app"]);
        // The old follower saw the old life's lines only.
        let mut seen = Vec::new();
        while let Ok(next) = follower.feed.try_recv() {
            if follower.filter.wants(&next) {
                seen.push(next.message.clone());
            }
        }
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn a_follower_sees_each_later_line_of_its_app_once() {
        let logs = GuestLogs::new();
        logs.push(line("a", 1, "kept"));
        let mut follower = logs.follow("a");
        assert_eq!(follower.kept.len(), 1);
        logs.push(line("b", 2, "not mine"));
        logs.push(line("a", 1, "next"));
        let mut seen = Vec::new();
        while let Ok(next) = follower.feed.try_recv() {
            if follower.filter.wants(&next) {
                seen.push(next.message.clone());
            }
        }
        assert_eq!(seen, ["next"]);
        assert!(!follower.alive.has_changed().unwrap_or(true));
    }
}
