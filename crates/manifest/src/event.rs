//! Triggers that run a component on events instead of HTTP requests:
//! `[[trigger.redis]]` (with `[application.trigger.redis]`) and
//! `[[trigger.cron]]`, in the shape Spin's Redis trigger and the
//! `spin-trigger-cron` plugin read, and Ferry's own `[[trigger.nats]]`
//! (with `[application.trigger.nats]`), which Spin has no trigger for.
//!
//! - Redis: `channel` and `component`, and `address` on the trigger or
//!   `[application.trigger.redis] address` for every trigger without one.
//!   Address and channel may be templates over application variables
//!   (`"redis://{{ redis_host }}"`), filled in when the app is loaded.
//! - NATS JetStream: `subject` and `component`, `url` on the trigger or
//!   `[application.trigger.nats] url`; optionally `stream` (an existing
//!   stream to consume; by default Ferry makes one for the subject),
//!   `max_deliver` (tries before a message is given up, default 5) and
//!   `dead_letter_subject` (where a given-up message is published).
//! - MQTT: `[application.trigger.mqtt]` `address` (`mqtt://HOST[:PORT]`),
//!   `username`, `password` (templates, as the plugin resolves them) and
//!   `keep_alive_interval` (seconds, a string); `[[trigger.mqtt]]`
//!   `component`, `topic` (a template) and `qos` (`"0"`, `"1"` or `"2"`,
//!   a string as the spin-trigger-mqtt plugin reads it).
//! - Command: `[[trigger.command]]` with `component` only (as the
//!   spin-trigger-command plugin reads it): `ferry up` runs the WASI command
//!   once, with the arguments after `--`, and exits with its exit code.
//! - Pipeline (Ferry's own): `[[trigger.pipeline]]` with `stages`, a list
//!   of component ids (or `{ component, args }`): `ferry up` runs them
//!   once as a shell pipeline runs programs, stdin → first stage → … →
//!   stdout, each stage a WASI command with its own component's grants, and
//!   exits with the first failing stage's status.
//! - Cron: `component` and `cron_expression`, six fields with seconds
//!   first (`sec min hour day-of-month month day-of-week`), in UTC, read
//!   by the same parser the plugin uses (`croner`, seconds required, day
//!   of month *and* day of week must both match).

use toml::de::DeValue;

use crate::trigger::{generated_id, read_component_ref};
use crate::variables::read_template;
use crate::walk::{Diagnostics, TableView, Value, as_table};
use crate::{App, Diagnostic, Sources, Template, diagnostic};

/// One trigger that runs its component on events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTrigger {
    /// `id` as written, or the one Spin generates (`<component>-<type>-trigger`).
    pub id: String,
    pub component: String,
    pub source: EventSource,
    /// 1-based line of the trigger in the manifest, for messages.
    pub line: usize,
}

impl EventTrigger {
    /// The trigger's type as the manifest names it (`redis`, `cron`).
    pub fn kind(&self) -> &'static str {
        self.source.kind()
    }

    /// The components it runs: its component, or each stage's.
    pub fn components(&self) -> Vec<&str> {
        match &self.source {
            EventSource::Pipeline { stages } => {
                stages.iter().map(|s| s.component.as_str()).collect()
            }
            _ => vec![self.component.as_str()],
        }
    }

    /// Whether `ferry up` runs it once (a command or a pipeline), rather
    /// than on events.
    pub fn runs_once(&self) -> bool {
        matches!(
            self.source,
            EventSource::Command | EventSource::Pipeline { .. }
        )
    }
}

/// Where a trigger's events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    /// Every message published on `channel` of the Redis server at
    /// `address` (plain SUBSCRIBE: at most once, as Redis pub/sub is).
    Redis {
        address: Template,
        channel: Template,
    },
    /// Every message on `subject` through a durable JetStream consumer:
    /// acknowledged when the guest succeeds, delivered again (with
    /// backoff) when it fails, up to `max_deliver` times, then published
    /// to `dead_letter` if there is one.
    Nats {
        url: Template,
        subject: Template,
        stream: Option<String>,
        max_deliver: u32,
        dead_letter: Option<Template>,
    },
    /// Every message on `topic` (a filter, `+` and `#` allowed) of the
    /// MQTT broker the app's `[application.trigger.mqtt]` names.
    Mqtt {
        broker: MqttBroker,
        topic: Template,
        qos: u8,
    },
    /// Each time the schedule names, in UTC.
    Cron { schedule: String },
    /// Once, when the app starts (`ferry up`), as a WASI command.
    Command,
    /// Once, when the app starts (`ferry up`): WASI commands connected
    /// stdout → stdin; the trigger's `component` is the first stage's.
    Pipeline { stages: Vec<PipelineStage> },
}

/// One stage of a `[[trigger.pipeline]]`: a component run as a WASI
/// command with `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStage {
    pub component: String,
    pub args: Vec<String>,
}

/// `[application.trigger.mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttBroker {
    pub address: Template,
    pub username: Option<Template>,
    pub password: Option<Template>,
    pub keep_alive: std::time::Duration,
}

/// Tries of a NATS message before it is given up, unless the trigger says.
pub const DEFAULT_MAX_DELIVER: u32 = 5;

impl EventSource {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::Nats { .. } => "nats",
            Self::Mqtt { .. } => "mqtt",
            Self::Cron { .. } => "cron",
            Self::Command => "command",
            Self::Pipeline { .. } => "pipeline",
        }
    }

    /// How the trigger calls its component.
    pub fn executor(&self) -> crate::Executor {
        match self {
            Self::Redis { .. } | Self::Nats { .. } => crate::Executor::InboundRedis,
            Self::Mqtt { .. } => crate::Executor::Mqtt,
            Self::Cron { .. } => crate::Executor::Cron,
            Self::Command | Self::Pipeline { .. } => crate::Executor::Command,
        }
    }
}

/// Checks a cron expression as the cron trigger reads it.
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(expression)
        .with_seconds_required()
        .with_dom_and_dow()
        .parse()
        .map_err(|e| format!("invalid cron expression `{expression}`: {e}"))
}

/// `[application.trigger.redis] address` or `[application.trigger.nats]
/// url`: the default server of the type's triggers.
pub(crate) fn read_defaults(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    key: &str,
    app: &App,
) -> Option<Template> {
    let address = table.string(diags, key)?;
    read_template(diags, &address, &app.variables)
}

/// What `[application.trigger.*]` gives every trigger of its type.
#[derive(Default)]
pub(crate) struct Defaults {
    pub redis_address: Option<Template>,
    pub nats_url: Option<Template>,
    pub mqtt: Option<MqttBroker>,
}

/// `[application.trigger.mqtt]`: the broker every MQTT trigger uses.
pub(crate) fn read_mqtt_broker(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    app: &App,
) -> Option<MqttBroker> {
    let address = table.required_string(diags, "address");
    let username = table.string(diags, "username");
    let password = table.string(diags, "password");
    let keep_alive = match table.string(diags, "keep_alive_interval") {
        None => Some(std::time::Duration::from_secs(30)),
        Some(text) => match text.get_ref().trim().parse::<u64>() {
            Ok(secs) if (1..=65535).contains(&secs) => Some(std::time::Duration::from_secs(secs)),
            _ => {
                diags.error(
                    text.span(),
                    "`keep_alive_interval` is a number of seconds from 1 to 65535, written as a string (`\"30\"`)",
                );
                None
            }
        },
    };
    let template = |diags: &mut Diagnostics, t: Option<toml::Spanned<String>>| match t {
        Some(t) => read_template(diags, &t, &app.variables).map(Some),
        None => Some(None),
    };
    let username = template(diags, username);
    let password = template(diags, password);
    Some(MqttBroker {
        address: read_template(diags, &address?, &app.variables)?,
        username: username?,
        password: password?,
        keep_alive: keep_alive?,
    })
}

/// Every `[[trigger.<kind>]]` of an event kind, with the application's
/// `defaults`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read(
    diags: &mut Diagnostics,
    kind: &str,
    value: &Value<'_>,
    text: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
    defaults: &Defaults,
) {
    let DeValue::Array(items) = value.get_ref() else {
        diags.push(
            Diagnostic::new(
                value.span(),
                format!("`trigger.{kind}` must be an array of tables"),
            )
            .with_help(format!("write each trigger as `[[trigger.{kind}]]`")),
        );
        return;
    };
    // Ids taken: every earlier trigger's, and this array's explicit ones
    // (a generated id never takes one written later, as in Spin).
    let earlier: Vec<String> = app
        .triggers
        .iter()
        .map(|t| t.id.clone())
        .chain(app.event_triggers.iter().map(|t| t.id.clone()))
        .collect();
    let mut ids = earlier.clone();
    ids.extend(items.iter().filter_map(|item| match item.get_ref() {
        DeValue::Table(t) => match t.get("id").map(|v| v.get_ref()) {
            Some(DeValue::String(id)) if !id.is_empty() => Some(id.to_string()),
            _ => None,
        },
        _ => None,
    }));
    let mut explicit_seen: Vec<String> = Vec::new();
    let mut counter = 1;
    for (index, item) in items.iter().enumerate() {
        if matches!(kind, "command" | "pipeline")
            && (index > 0 || app.event_triggers.iter().any(EventTrigger::runs_once))
        {
            diags.push(
                Diagnostic::new(item.span(), "a second `[[trigger.command]]` or `[[trigger.pipeline]]`")
                    .with_help("an app runs one command or pipeline (Spin's command trigger uses only the first); give each an app of its own"),
            );
            continue;
        }
        let path = format!("trigger.{kind}[]");
        let Some(mut table) = as_table(diags, item, path.clone()) else {
            continue;
        };
        let line = diagnostic::line_col(text, table.span.start).0;
        let id = match table
            .string(diags, "id")
            .filter(|id| !id.get_ref().is_empty())
        {
            Some(id) => {
                // Metrics, logs and a NATS trigger's durable consumer are
                // named by it: two triggers may not share one.
                if earlier.contains(id.get_ref()) || explicit_seen.contains(id.get_ref()) {
                    diags.error(
                        id.span(),
                        format!("another trigger has the id `{}`", id.get_ref()),
                    );
                }
                explicit_seen.push(id.get_ref().clone());
                id.into_inner()
            }
            None => generated_id(&table, kind, &mut ids, &mut counter),
        };
        let mut stages = None;
        let component = match table.get("component") {
            _ if kind == "pipeline" => {
                stages = read_stages(diags, &mut table, &id, sources, app, defined_at);
                stages
                    .as_ref()
                    .and_then(|s: &Vec<PipelineStage>| s.first())
                    .map(|s| s.component.clone())
            }
            Some(value) => read_component_ref(diags, value, &id, sources, app, defined_at),
            None => {
                diags.error(
                    table.span.clone(),
                    format!("missing `component` in `[[trigger.{kind}]]`"),
                );
                None
            }
        };
        let source = match kind {
            "redis" => read_redis(diags, &mut table, app, defaults.redis_address.as_ref()),
            "nats" => read_nats(diags, &mut table, app, defaults.nats_url.as_ref()),
            "mqtt" => read_mqtt(diags, &mut table, app, defaults.mqtt.as_ref()),
            "cron" => read_cron(diags, &mut table),
            "command" => Some(EventSource::Command),
            "pipeline" => stages.map(|stages| EventSource::Pipeline { stages }),
            _ => unreachable!("only event kinds are read here"),
        };
        table.finish(diags, &[]);
        if let (Some(component), Some(source)) = (component, source) {
            app.event_triggers.push(EventTrigger {
                id,
                component,
                source,
                line,
            });
        }
    }
}

/// `stages`: at least two, each a component id (or an inline component) or
/// `{ component, args }`.
fn read_stages(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    id: &str,
    sources: Sources,
    app: &mut App,
    defined_at: &mut Vec<usize>,
) -> Option<Vec<PipelineStage>> {
    let Some(value) = table.get("stages") else {
        diags.error(
            table.span.clone(),
            "missing `stages` in `[[trigger.pipeline]]`",
        );
        return None;
    };
    let DeValue::Array(items) = value.get_ref() else {
        diags.error(
            value.span(),
            format!(
                "`stages` must be an array of component ids or `{{ component, args }}` tables, found {}",
                value.get_ref().type_str()
            ),
        );
        return None;
    };
    if items.len() < 2 {
        diags.push(
            Diagnostic::new(value.span(), "a pipeline needs at least two stages")
                .with_help("for one program, use `[[trigger.command]]`"),
        );
        return None;
    }
    let mut stages = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let stage_id = format!("{id}-stage{n}");
        let stage = match item.get_ref() {
            DeValue::String(_) => read_component_ref(
                diags, item, &stage_id, sources, app, defined_at,
            )
            .map(|component| PipelineStage {
                component,
                args: Vec::new(),
            }),
            DeValue::Table(_) => {
                let mut stage = as_table(diags, item, format!("stages[{n}]"))?;
                let component = match stage.get("component") {
                    Some(value) => {
                        read_component_ref(diags, value, &stage_id, sources, app, defined_at)
                    }
                    None => {
                        diags.error(item.span(), format!("missing `stages[{n}].component`"));
                        None
                    }
                };
                let args = stage
                    .string_list(diags, "args")
                    .into_iter()
                    .map(|a| a.into_inner())
                    .collect();
                stage.finish(diags, &[]);
                component.map(|component| PipelineStage { component, args })
            }
            other => {
                diags.error(
                    item.span(),
                    format!(
                        "a stage is a component id or `{{ component, args }}`, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        };
        stages.push(stage?);
    }
    Some(stages)
}

fn read_redis(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    app: &App,
    default_address: Option<&Template>,
) -> Option<EventSource> {
    let channel = table.required_string(diags, "channel");
    let address = table.string(diags, "address");
    let channel = read_template(diags, &channel?, &app.variables)?;
    let address = match address {
        Some(address) => read_template(diags, &address, &app.variables)?,
        None => match default_address {
            Some(address) => address.clone(),
            None => {
                diags.push(
                    Diagnostic::new(table.span.clone(), "no Redis `address` for this trigger")
                        .with_help(
                            "set `address` here, or a default for every Redis trigger with `[application.trigger.redis] address = \"redis://HOST:PORT\"`",
                        ),
                );
                return None;
            }
        },
    };
    Some(EventSource::Redis { address, channel })
}

fn read_nats(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    app: &App,
    default_url: Option<&Template>,
) -> Option<EventSource> {
    let subject = table.required_string(diags, "subject");
    let url = table.string(diags, "url");
    let stream = table.string(diags, "stream");
    let dead_letter = table.string(diags, "dead_letter_subject");
    let max_deliver = match table.get("max_deliver") {
        None => Some(DEFAULT_MAX_DELIVER),
        Some(value) => match value.get_ref() {
            DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Some(n),
                _ => {
                    diags.error(value.span(), "`max_deliver` must be from 1 to 1000");
                    None
                }
            },
            other => {
                diags.error(
                    value.span(),
                    format!(
                        "`max_deliver` must be an integer, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        },
    };
    if let Some(stream) = &stream
        && (stream.get_ref().is_empty()
            || stream
                .get_ref()
                .contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c)))
    {
        diags.error(
            stream.span(),
            "a JetStream stream name has no spaces, `.`, `*`, `>`, `/` or `\\`",
        );
    }
    let subject = read_template(diags, &subject?, &app.variables)?;
    let dead_letter = match dead_letter {
        Some(d) => Some(read_template(diags, &d, &app.variables)?),
        None => None,
    };
    let url = match url {
        Some(url) => read_template(diags, &url, &app.variables)?,
        None => match default_url {
            Some(url) => url.clone(),
            None => {
                diags.push(
                    Diagnostic::new(table.span.clone(), "no NATS `url` for this trigger")
                        .with_help(
                            "set `url` here, or a default for every NATS trigger with `[application.trigger.nats] url = \"nats://HOST:PORT\"`",
                        ),
                );
                return None;
            }
        },
    };
    Some(EventSource::Nats {
        url,
        subject,
        stream: stream.map(toml::Spanned::into_inner),
        max_deliver: max_deliver?,
        dead_letter,
    })
}

fn read_mqtt(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    app: &App,
    broker: Option<&MqttBroker>,
) -> Option<EventSource> {
    let topic = table.required_string(diags, "topic");
    let qos = match table.get("qos") {
        None => Some(0),
        Some(value) => match value.get_ref() {
            DeValue::String(q) if ["0", "1", "2"].contains(&q.as_ref()) => q.parse().ok(),
            _ => {
                diags.push(
                    Diagnostic::new(value.span(), "`qos` must be \"0\", \"1\" or \"2\"")
                        .with_help("the MQTT trigger reads the quality of service as a string, as the spin-trigger-mqtt plugin does"),
                );
                None
            }
        },
    };
    let topic = read_template(diags, &topic?, &app.variables)?;
    let Some(broker) = broker else {
        diags.push(
            Diagnostic::new(table.span.clone(), "no MQTT broker for this trigger").with_help(
                "name it with `[application.trigger.mqtt] address = \"mqtt://HOST:PORT\"`",
            ),
        );
        return None;
    };
    Some(EventSource::Mqtt {
        broker: broker.clone(),
        topic,
        qos: qos?,
    })
}

fn read_cron(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) -> Option<EventSource> {
    let expression = table.required_string(diags, "cron_expression")?;
    match parse_schedule(expression.get_ref()) {
        Ok(_) => Some(EventSource::Cron {
            schedule: expression.into_inner(),
        }),
        Err(e) => {
            diags.push(Diagnostic::new(expression.span(), e).with_help(
                "six fields, seconds first: `sec min hour day-of-month month day-of-week` (UTC), e.g. `*/5 * * * * *` for every five seconds",
            ));
            None
        }
    }
}
