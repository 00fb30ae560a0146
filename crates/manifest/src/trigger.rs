//! `[[trigger.http]]` entries, the dispatch of event triggers to
//! `event.rs`, and the refusal of every other trigger type.
//!
//! Spin 3.x's HTTP trigger accepts `id`, `route`, `component` (an id or an
//! inline component), `static_response` and `executor`; so does Ferry.
//! Duplicate routes follow Spin too: the later trigger wins and the earlier
//! one is reported as never used (a warning, not an error).

use std::ops::Range;

use toml::de::DeValue;

use crate::walk::{Diagnostics, TableView, Value, as_table, expect_string};
use crate::{
    App, Diagnostic, Executor, Handler, HttpTrigger, Route, RoutePattern, Sources, StaticResponse,
    WagiConfig, component, diagnostic,
};

/// Reads `[trigger]`: every `[[trigger.http]]`, every event trigger Ferry
/// runs (`event.rs`), and an error at every other trigger type.
/// `defined_at` gets the manifest offset of each inline component, in step
/// with `app.components`. `defaults` are what `[application.trigger.*]`
/// gives every trigger of a type.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_all(
    diags: &mut Diagnostics,
    mut triggers: TableView<'_, '_>,
    text: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
    defaults: &crate::event::Defaults,
) {
    // HTTP first: Spin generates ids for HTTP triggers before the others.
    let mut kinds = triggers.key_names();
    kinds.sort_by_key(|k| k != "http");
    for kind in kinds {
        let span = triggers.key_span(&kind).unwrap_or(0..0);
        let Some(value) = triggers.get(&kind) else {
            continue;
        };
        match kind.as_str() {
            "http" => read_http(diags, value, text, sources, app, defined_at),
            "redis" | "nats" | "mqtt" | "cron" | "command" | "pipeline" => crate::event::read(
                diags, &kind, value, text, sources, app, defined_at, defaults,
            ),
            _ => diags.push(refuse_kind(span, &format!("trigger.{kind}"), &kind)),
        }
    }
}

/// Trigger types whose application-level table Ferry reads.
pub(crate) const EVENT_KINDS: &[&str] = &["redis", "nats", "mqtt", "cron", "command"];

/// The error for a trigger type other than HTTP, at `span`.
pub(crate) fn refuse_kind(span: Range<usize>, qualified: &str, kind: &str) -> Diagnostic {
    let needs = match kind {
        "sqs" | "mqtt" | "kafka" => {
            format!("a {kind} consumer that runs the component for each message")
        }
        other => format!("what Spin's `trigger-{other}` plugin provides"),
    };
    Diagnostic::new(span, format!("`{qualified}` is not supported by Ferry")).with_help(format!(
        "Ferry runs `http`, `redis`, `nats`, `mqtt`, `cron`, `command` and `pipeline` triggers; a `{kind}` trigger needs {needs}"
    ))
}

fn read_http(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    text: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
) {
    let DeValue::Array(items) = value.get_ref() else {
        diags.push(
            Diagnostic::new(value.span(), "`trigger.http` must be an array of tables")
                .with_help("write each trigger as `[[trigger.http]]`"),
        );
        return;
    };
    // Spin gives every trigger without an `id` one of its own before it
    // names inline components after their triggers; the explicit ids come
    // first so that a generated one never takes an id written later.
    let mut ids: Vec<String> = items
        .iter()
        .filter_map(|item| match item.get_ref() {
            DeValue::Table(t) => match t.get("id").map(|v| v.get_ref()) {
                Some(DeValue::String(id)) if !id.is_empty() => Some(id.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let mut counter = 1;
    // Index in `app.triggers` and line of every public route so far, for
    // duplicates.
    let mut seen: Vec<(usize, usize)> = Vec::new();
    for item in items.iter() {
        let Some(mut table) = as_table(diags, item, "trigger.http[]".into()) else {
            continue;
        };
        let explicit = table
            .get("id")
            .and_then(|v| expect_string(diags, v, "trigger.http[].id"))
            .map(|id| id.into_inner())
            .filter(|id| !id.is_empty());
        let id = match explicit {
            Some(id) => id,
            None => generated_id(&table, "http", &mut ids, &mut counter),
        };
        let handler = read_handler(diags, &mut table, &id, sources, app, defined_at);
        let middleware = crate::dependency::read_trigger_dependencies(diags, &mut table, &app.dir);
        let route_value = table.get("route");
        let trigger_span = table.span.clone();
        table.finish(
            diags,
            &[(
                "components",
                "Spin reserves `components` for future use and its HTTP trigger refuses it; name one `component`",
            )],
        );
        let Some(route_value) = route_value else {
            diags.error(trigger_span, "missing `route` in `[[trigger.http]]`");
            continue;
        };
        let line = diagnostic::line_col(text, route_value.span().start).0;
        let Some(route) = read_route(diags, route_value, &app.base) else {
            continue;
        };
        let Some(handler) = handler else {
            continue;
        };
        if let Route::Pattern(pattern) = &route {
            let earlier = seen.iter().position(|&(index, _)| {
                matches!(&app.triggers[index].route, Route::Pattern(p) if p.same_paths_as(pattern))
            });
            if let Some(position) = earlier {
                let (index, earlier_line) = seen.remove(position);
                let shadowed = app.triggers.remove(index);
                for (later, _) in &mut seen {
                    if *later > index {
                        *later -= 1;
                    }
                }
                // Spin drops a route written exactly like a later one; two
                // spellings of the same paths (`:id`, `:name`) it leaves to
                // its router. Ferry lets the later win either way, so an app
                // never depends on which.
                let same_text =
                    matches!(&shadowed.route, Route::Pattern(p) if p.raw() == pattern.raw());
                diags.warn(
                    Diagnostic::new(
                        route_value.span(),
                        format!(
                            "duplicate route `{}`: the trigger at line {earlier_line}{} serves the same paths and is never used",
                            pattern.full(),
                            shadowed.component().map(|c| format!(" (component `{c}`)")).unwrap_or_default()
                        ),
                    )
                    .with_help(if same_text {
                        "as in Spin, the later trigger wins; remove one of them"
                    } else {
                        "the later trigger wins (Spin would pick either); remove one of them"
                    }),
                );
            }
            seen.push((app.triggers.len(), line));
        }
        app.triggers.push(HttpTrigger {
            id,
            route,
            handler,
            line,
            middleware,
        });
    }
}

/// `route`: a pattern (a missing leading `/` is added, as Spin does) or
/// `{ private = true }`.
fn read_route(diags: &mut Diagnostics, value: &Value<'_>, base: &str) -> Option<Route> {
    match value.get_ref() {
        DeValue::String(route) => {
            let route = if route.starts_with('/') {
                route.to_string()
            } else {
                format!("/{route}")
            };
            match RoutePattern::parse(base, &route) {
                Ok(pattern) => Some(Route::Pattern(pattern)),
                Err(e) => {
                    diags.error(value.span(), e);
                    None
                }
            }
        }
        DeValue::Table(_) => {
            let mut route = as_table(diags, value, "route".into())?;
            let private = route.get("private");
            route.finish(diags, &[]);
            match private.map(|v| v.get_ref()) {
                Some(DeValue::Boolean(true)) => Some(Route::Private),
                _ => {
                    diags.error(value.span(), "a route table must be `{ private = true }`");
                    None
                }
            }
        }
        other => {
            diags.error(
                value.span(),
                format!("`route` must be a string, found {}", other.type_str()),
            );
            None
        }
    }
}

/// The id Spin gives a trigger written without one: `<component>-<kind>-trigger`
/// when it names a component by id and that is free, else the first free
/// `<kind>-trigger<N>`. `ids` holds every id taken so far.
pub(crate) fn generated_id(
    table: &TableView<'_, '_>,
    kind: &str,
    ids: &mut Vec<String>,
    counter: &mut usize,
) -> String {
    let natural = match table.peek("component").map(|v| v.get_ref()) {
        Some(DeValue::String(component)) => Some(format!("{component}-{kind}-trigger")),
        _ => None,
    };
    let id = match natural.filter(|id| !ids.contains(id)) {
        Some(id) => id,
        None => loop {
            let id = format!("{kind}-trigger{counter}");
            if !ids.contains(&id) {
                break id;
            }
            *counter += 1;
        },
    };
    ids.push(id.clone());
    id
}

/// `component` (with `executor`) or `static_response`: exactly one.
fn read_handler(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    trigger_id: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
) -> Option<Handler> {
    let executor = read_executor(diags, table);
    let component = table.get("component");
    let fixed = table.get("static_response");
    match (component, fixed) {
        (Some(_), Some(fixed)) => {
            diags.error(
                fixed.span(),
                "a trigger has either `component` or `static_response`, not both",
            );
            None
        }
        (None, None) => {
            diags.push(
                Diagnostic::new(
                    table.span.clone(),
                    "missing `component` in `[[trigger.http]]`",
                )
                .with_help("name the component to run, or give a `static_response`"),
            );
            None
        }
        (None, Some(fixed)) => read_static_response(diags, fixed).map(Handler::Static),
        (Some(value), None) => {
            let id = read_component_ref(diags, value, trigger_id, sources, app, defined_at)?;
            Some(Handler::Component { id, executor })
        }
    }
}

pub(crate) fn read_component_ref(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    trigger_id: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
) -> Option<String> {
    match value.get_ref() {
        DeValue::String(id) => {
            if app.component(id).is_none() {
                diags.push(
                    Diagnostic::new(
                        value.span(),
                        format!("no component `{id}` in this manifest"),
                    )
                    .with_help(format!("define it with a `[component.{id}]` table")),
                );
                return None;
            }
            Some(id.to_string())
        }
        DeValue::Table(_) => {
            let id = inline_component_id(app, trigger_id);
            let mut inline = as_table(diags, value, "component".into())?;
            let dir = app.dir.clone();
            let component = component::read(diags, &mut inline, &id, &dir, sources, &app.variables);
            inline.finish(diags, &[]);
            app.components.push(component);
            defined_at.push(value.span().start);
            Some(id)
        }
        other => {
            diags.error(
                value.span(),
                format!(
                    "`component` must be a component id or an inline table, found {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

/// The id Spin gives an inline component: `<trigger id>-component` when that
/// is a valid, unused component id, otherwise the first unused
/// `inline-component<N>`. `ferry build --component-id` and
/// `runtime-config.toml` name it by this id.
fn inline_component_id(app: &App, trigger_id: &str) -> String {
    let natural = format!("{trigger_id}-component");
    if component::check_id(&natural).is_ok() && app.component(&natural).is_none() {
        return natural;
    }
    (1..)
        .map(|n| format!("inline-component{n}"))
        .find(|id| app.component(id).is_none())
        .expect("an unused id")
}

fn read_executor(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) -> Executor {
    let Some(mut executor) = table.table(diags, "executor") else {
        return Executor::Http;
    };
    let kind = executor.required_string(diags, "type");
    let result = match kind.as_ref().map(|k| k.get_ref().as_str()) {
        // `wasip3-unstable` is how Spin 3.5+ marks a WASI 0.3 release
        // candidate component; Ferry tells WASI versions apart by their
        // exports, so it is the same executor.
        Some("http") | Some("spin") | Some("wasip3-unstable") | None => {
            // Spin ignores anything beside `type` here.
            executor.ignore_unread(
                diags,
                "executor",
                "the `http` executor has no settings besides `type`",
            );
            Executor::Http
        }
        Some("wagi") => {
            let mut wagi = WagiConfig::default();
            if let Some(argv) = executor.string(diags, "argv") {
                wagi.argv = argv.into_inner();
            }
            if let Some(entrypoint) = executor.string(diags, "entrypoint") {
                wagi.entrypoint = entrypoint.into_inner();
            }
            Executor::Wagi(wagi)
        }
        Some(other) => {
            diags.error(
                kind.as_ref().map_or(executor.span.clone(), |k| k.span()),
                format!(
                    "unknown executor `{other}`: expected `http`, `spin`, `wagi` or `wasip3-unstable`"
                ),
            );
            Executor::Http
        }
    };
    executor.finish(diags, &[]);
    result
}

/// `static_response = { status_code = 200, headers = { … }, body = "…" }`.
/// Everything `ferry up` would send is checked here, so that `ferry check`
/// refuses what could not be served.
fn read_static_response(diags: &mut Diagnostics, value: &Value<'_>) -> Option<StaticResponse> {
    let mut table = as_table(diags, value, "static_response".into())?;
    let errors_before = diags.errors.len();
    let status = match table.get("status_code") {
        None => 200,
        Some(code) => match code.get_ref() {
            // 1xx are interim answers, never a response of their own.
            DeValue::Integer(i) => match i.as_str().parse::<u16>() {
                Ok(status) if (200..=999).contains(&status) => status,
                _ => {
                    diags.error(
                        code.span(),
                        "`status_code` must be a final HTTP status code (200 to 999)",
                    );
                    200
                }
            },
            other => {
                diags.error(
                    code.span(),
                    format!(
                        "`status_code` must be an integer, found {}",
                        other.type_str()
                    ),
                );
                200
            }
        },
    };
    let body = table
        .string(diags, "body")
        .map(|b| b.into_inner())
        .unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(mut table) = table.table(diags, "headers") {
        for name in table.key_names() {
            let span = table.key_span(&name).unwrap_or(0..0);
            if let Err(e) = check_header_name(&name) {
                diags.error(span.clone(), e);
            }
            let Some(value) = table.string(diags, &name) else {
                continue;
            };
            // What `http::HeaderValue` accepts: visible ASCII, spaces, tabs
            // and bytes above 0x7f.
            if value
                .get_ref()
                .bytes()
                .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                diags.error(
                    value.span(),
                    "a header value cannot contain control characters",
                );
            }
            match name.to_ascii_lowercase().as_str() {
                "transfer-encoding" => diags.error(
                    span,
                    "`transfer-encoding` cannot be set: Ferry frames the body itself",
                ),
                "content-length" if value.get_ref().trim() != body.len().to_string() => diags
                    .error(
                        value.span(),
                        format!(
                            "`content-length` must be the body's length ({}), or left out",
                            body.len()
                        ),
                    ),
                _ => {}
            }
            headers.push((name, value.into_inner()));
        }
        table.finish(diags, &[]);
    }
    // Spin ignores anything else here.
    table.ignore_unread(
        diags,
        "static_response",
        "a static response has `status_code`, `headers` and `body`",
    );
    table.finish(diags, &[]);
    (diags.errors.len() == errors_before).then_some(StaticResponse {
        status,
        headers,
        body,
    })
}

fn check_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.is_empty() && name.chars().all(token) {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid header name"))
    }
}
