//! What `ferry check` prints for each component and `GET /v1/apps/{name}`
//! returns: one [`ComponentSummary`] made here from the loaded guest, for
//! both.

use std::path::Path;

use ferry_api::human::human_size;
use ferry_api::{ComponentSummary, WagiSummary};
use ferry_manifest::{
    App, Component, ComponentVariables, EventSource, Executor, FileMount, Handler, Route,
};
use ferry_runtime::Guest;

/// How a component's variables are shown.
pub enum Variables<'a> {
    /// As resolved for this run (`ferry check`); a secret's value never.
    Resolved(Option<&'a ComponentVariables>),
    /// As the manifest writes them (a live host: a value may have come
    /// from a deploy or the host, and only names are shown).
    Written,
}

/// `component` of `app` (whose files lie in `dir`), loaded as `guest`.
pub fn summarize(
    app: &App,
    component: &Component,
    guest: &Guest,
    dir: &Path,
    variables: Variables<'_>,
) -> ComponentSummary {
    let info = guest.info();
    let mut executor = "wasi:http";
    let mut wagi = None;
    let mut routes = Vec::new();
    for trigger in &app.triggers {
        let Handler::Component { id, executor: e } = &trigger.handler else {
            continue;
        };
        if *id != component.id {
            continue;
        }
        if let Executor::Wagi(w) = e {
            executor = "wagi";
            wagi = Some(WagiSummary {
                argv: w.argv.clone(),
                entrypoint: w.entrypoint.clone(),
            });
        }
        routes.push(match &trigger.route {
            Route::Pattern(p) => p.full(),
            Route::Private => "(private)".into(),
        });
    }
    let mut triggers = Vec::new();
    for trigger in &app.event_triggers {
        if !trigger.components().contains(&component.id.as_str()) {
            continue;
        }
        executor = trigger.kind();
        triggers.push(format!(
            "{} `{}`: {}",
            trigger.kind(),
            trigger.id,
            match &trigger.source {
                EventSource::Redis { address, channel } => format!(
                    "channel `{channel}` on {}",
                    ferry_manifest::redacted(&address.to_string())
                ),
                EventSource::Nats {
                    url,
                    subject,
                    max_deliver,
                    dead_letter,
                    ..
                } => format!(
                    "subject `{subject}` on {}, up to {max_deliver} tries{}",
                    ferry_manifest::redacted(&url.to_string()),
                    dead_letter
                        .as_ref()
                        .map(|d| format!(", then to `{d}`"))
                        .unwrap_or_default()
                ),
                EventSource::Mqtt { broker, topic, qos } => format!(
                    "topic `{topic}` on {} at QoS {qos}",
                    ferry_manifest::redacted(&broker.address.to_string())
                ),
                EventSource::Cron { schedule } => format!("schedule `{schedule}` (UTC)"),
                EventSource::Command =>
                    "run once by `ferry up`, with the arguments after `--`".to_owned(),
                EventSource::Pipeline { stages } => format!(
                    "run once by `ferry up` as the pipeline {}",
                    stages
                        .iter()
                        .map(|s| std::iter::once(s.component.as_str())
                            .chain(s.args.iter().map(String::as_str))
                            .collect::<Vec<_>>()
                            .join(" "))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            }
        ));
    }
    let l = guest.limits();
    ComponentSummary {
        id: component.id.clone(),
        source: match &component.source {
            ferry_manifest::Source::File(path) => relative(dir, path),
            ferry_manifest::Source::Url { url, digest } => {
                format!("{}, {digest}", ferry_manifest::redacted(url))
            }
            ferry_manifest::Source::Package(package) => format!("package {package}"),
        },
        wasm_bytes: info.wasm_bytes,
        executor: executor.to_owned(),
        wagi,
        routes,
        triggers,
        serves: info.serves.as_ref().map(|serves| match info.adapted {
            Some(how) => format!("{serves} ({how})"),
            None => serves.clone(),
        }),
        // A dependency's denied imports are in `composed`.
        imports: info
            .imports
            .iter()
            .filter(|i| !i.starts_with(ferry_runtime::compose::DENIED_PREFIX))
            .cloned()
            .collect(),
        unsupported: info.unsupported.clone(),
        composed: info.composition.clone(),
        // The components a chained request can reach: those HTTP triggers
        // run (`LoadedApp`'s chaining routes), as the grants allow.
        chains_to: app
            .components
            .iter()
            .filter(|c| {
                app.triggers
                    .iter()
                    .any(|t| t.component() == Some(c.id.as_str()))
            })
            .filter(|c| component.allowed_outbound_hosts.allows_chaining(&c.id))
            .map(|c| format!("`{}`", c.id))
            .collect(),
        environment: component
            .environment
            .iter()
            .map(|(k, _)| k.clone())
            .collect(),
        variables: match variables {
            Variables::Resolved(resolved) => resolved
                .into_iter()
                .flat_map(|v| v.shown())
                .map(|(key, value)| format!("{key} = {value}"))
                .collect(),
            Variables::Written => component
                .variables
                .iter()
                .map(|(key, template)| format!("{key} = {:?}", template.to_string()))
                .collect(),
        },
        key_value_stores: component.key_value_stores.clone(),
        sqlite_databases: component.sqlite_databases.clone(),
        allowed_outbound_hosts: component
            .allowed_outbound_hosts
            .iter()
            .map(ToString::to_string)
            .collect(),
        files: component
            .files
            .iter()
            .map(|f| match f {
                FileMount::Glob(g) => format!("{g} -> /"),
                FileMount::Directory {
                    source,
                    destination,
                }
                | FileMount::File {
                    source,
                    destination,
                } => format!("{} -> {destination}", relative(dir, source)),
            })
            .collect(),
        limits: format!(
            "memory {}, timeout {:?}, request body {}, response body {}, {} concurrent, {} queued for up to {:?}",
            human_size(l.max_memory),
            l.request_timeout,
            human_size(l.max_request_body),
            l.max_response_body
                .map_or_else(|| "unlimited".to_owned(), human_size),
            l.max_concurrent_requests,
            l.max_queued_requests,
            l.queue_timeout,
        ),
    }
}

/// `path` relative to `dir` if it is inside it, for people.
pub fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}
