//! The cron trigger: runs its component at each time its schedule names
//! (UTC, to the second), as the spin-trigger-cron plugin does, with the
//! tick's time in seconds since the Unix epoch.
//!
//! Ticks are not queued behind a slow guest beyond the component's
//! concurrency limit: a tick that comes while every slot is busy waits for
//! one. A tick missed because the process was not running is not made up.

use std::sync::Arc;

use chrono::Utc;
use ferry_runtime::Event;
use tokio::sync::watch;

use crate::{Invocations, Invoker, Link};

pub(crate) async fn run(
    schedule: String,
    invoker: Arc<Invoker>,
    mut stopped: watch::Receiver<bool>,
) {
    let cron = match ferry_manifest::parse_schedule(&schedule) {
        Ok(cron) => cron,
        Err(e) => {
            // Checked when the app loads.
            tracing::error!(target: "ferry::trigger", trigger = &*invoker.trigger, "{e}");
            return;
        }
    };
    let mut invocations = Invocations::new();
    let mut link = Link::new([&invoker]);
    link.set(true);
    // The last tick run: a clock that steps back never runs one twice.
    let mut last = None;
    loop {
        let now = Utc::now();
        let after = match last {
            Some(last) if last > now => last,
            _ => now,
        };
        let next = match cron.find_next_occurrence(&after, false) {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(
                    target: "ferry::trigger",
                    trigger = &*invoker.trigger,
                    "the schedule `{schedule}` names no time after {now}: {e}; the trigger stops"
                );
                break;
            }
        };
        // Slept on the monotonic clock; the schedule is on the wall clock.
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = invocations.join_next(), if !invocations.is_empty() => continue,
            () = tokio::time::sleep(wait) => {}
        }
        last = Some(next);
        let timestamp = u64::try_from(next.timestamp()).unwrap_or_default();
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            () = invoker.dispatch(Event::Tick { timestamp }, &mut invocations) => {}
        }
    }
    link.set(false);
    while invocations.join_next().await.is_some() {}
}
