//! Application variables (`[variables]`), the templates components build
//! from them (`[component.<id>.variables]`), and resolving both once values
//! are known.
//!
//! As in Spin: an application variable has a default or is required, and may
//! be secret; a component sees only its own keys, each a template such as
//! `"https://{{ api_host }}/v1"` over application variables. Values come from
//! the caller (the CLI merges environment, `.env` and `--variable`), so this
//! module stays pure data. A secret's value is never in a `Debug` or
//! `Display` of anything here, and neither is any value built from one.

use std::collections::BTreeMap;
use std::fmt;

use crate::Diagnostic;
use crate::walk::{Diagnostics, TableView};

/// One `[variables]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

/// A string with `{{ name }}` references to application variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    /// Parses `{{ name }}` references (whitespace inside the braces is
    /// ignored, as in Spin). Text outside them is taken literally.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(0) => {
                    let Some((name, after)) = rest[2..].split_once("}}") else {
                        return Err("`{{` without a closing `}}`".to_owned());
                    };
                    let name = name.trim();
                    check_name(name).map_err(|e| format!("`{{{{ {name} }}}}`: {e}"))?;
                    parts.push(Part::Variable(name.to_owned()));
                    rest = after;
                }
                Some(start) => {
                    parts.push(Part::Literal(rest[..start].to_owned()));
                    rest = &rest[start..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        Ok(Self { parts })
    }

    /// The application variables it refers to, in order.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    fn render(&self, value: impl Fn(&str) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.clone(),
                Part::Variable(name) => value(name),
            })
            .collect()
    }
}

/// As written: `{{ name }}` for each reference.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Variable(name) => write!(f, "{{{{ {name} }}}}")?,
            }
        }
        Ok(())
    }
}

/// Spin's rule for variable names (and the names a guest asks for): words of
/// lowercase ASCII letters and digits, each starting with a letter, joined by
/// single underscores.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a variable name cannot be empty".to_owned());
    }
    for word in name.split('_') {
        let mut chars = word.chars();
        match chars.next() {
            None => {
                return Err(format!(
                    "`{name}`: words must be joined by single underscores, with none at either end"
                ));
            }
            Some(first) if !first.is_ascii_lowercase() => {
                return Err(format!(
                    "`{name}`: each word must start with a lowercase ASCII letter"
                ));
            }
            Some(_) => {}
        }
        if let Some(bad) = chars.find(|c| !c.is_ascii_lowercase() && !c.is_ascii_digit()) {
            return Err(format!(
                "`{name}`: only lowercase ASCII letters, digits and `_` are allowed, found {bad:?}"
            ));
        }
    }
    Ok(())
}

/// `[variables]`.
pub(crate) fn read_app_variables(
    diags: &mut Diagnostics,
    root: &mut TableView<'_, '_>,
) -> Vec<Variable> {
    let Some(mut table) = root.table(diags, "variables") else {
        return Vec::new();
    };
    let mut variables = Vec::new();
    for name in table.key_names() {
        let span = table.key_span(&name).unwrap_or(0..0);
        if let Err(e) = check_name(&name) {
            diags.error(span.clone(), format!("invalid variable name {e}"));
        }
        let Some(mut entry) = table.table(diags, &name) else {
            continue;
        };
        let default = entry.string(diags, "default").map(|d| d.into_inner());
        let required_given = entry.peek("required").is_some();
        let required = entry.bool(diags, "required");
        // A `required` of the wrong type was reported; say nothing more.
        let checked = required.is_some() || !required_given;
        let required = required.unwrap_or(false);
        let secret = entry.bool(diags, "secret").unwrap_or(false);
        let _ = entry.string(diags, "description");
        entry.finish(diags, &[]);
        match (required, &default) {
            _ if !checked => {}
            (true, Some(_)) => diags.push(
                Diagnostic::new(
                    span,
                    format!("variable `{name}` is required and has a default"),
                )
                .with_help("a required variable must be given a value when the app runs: drop `default` or `required`"),
            ),
            (false, None) => diags.push(
                Diagnostic::new(span, format!("variable `{name}` has no default and is not required"))
                    .with_help("give it `default = \"…\"`, or `required = true` to make every run supply it"),
            ),
            _ => {}
        }
        variables.push(Variable {
            name,
            default,
            required,
            secret,
        });
    }
    table.finish(diags, &[]);
    variables
}

/// `[component.<id>.variables]`: each key with its template, and where the
/// template is written (its references are checked once every application
/// variable is known).
pub(crate) fn read_component_variables(
    diags: &mut Diagnostics,
    component: &mut TableView<'_, '_>,
) -> Vec<(String, Template, std::ops::Range<usize>)> {
    let Some(mut table) = component.table(diags, "variables") else {
        return Vec::new();
    };
    let mut variables = Vec::new();
    for key in table.key_names() {
        if let Err(e) = check_name(&key) {
            let span = table.key_span(&key).unwrap_or(0..0);
            diags.error(span, format!("invalid variable name {e}"));
        }
        let Some(value) = table.string(diags, &key) else {
            continue;
        };
        match Template::parse(value.get_ref()) {
            Ok(template) => variables.push((key, template, value.span())),
            Err(e) => diags.error(value.span(), format!("invalid template: {e}")),
        }
    }
    table.finish(diags, &[]);
    variables
}

/// Every template refers only to declared application variables.
pub(crate) fn check_references(
    diags: &mut Diagnostics,
    declared: &[Variable],
    templates: &[(String, Template, std::ops::Range<usize>)],
) {
    for (_, template, span) in templates {
        for name in template.references() {
            if !declared.iter().any(|v| v.name == name) {
                diags.push(
                    Diagnostic::new(span.clone(), format!("no application variable `{name}`"))
                        .with_help(format!(
                            "declare it in `[variables]`, e.g. `{name} = {{ default = \"…\" }}`"
                        )),
                );
            }
        }
    }
}

/// A manifest string written as a template: its references must be
/// declared application variables.
pub(crate) fn read_template(
    diags: &mut Diagnostics,
    entry: &toml::Spanned<String>,
    declared: &[Variable],
) -> Option<Template> {
    let template = match Template::parse(entry.get_ref()) {
        Ok(template) => template,
        Err(e) => {
            diags.error(entry.span(), format!("invalid template: {e}"));
            return None;
        }
    };
    let before = diags.errors.len();
    check_references(
        diags,
        declared,
        &[(String::new(), template.clone(), entry.span())],
    );
    (diags.errors.len() == before).then_some(template)
}

/// An `allowed_outbound_hosts` entry written as a template: its references
/// must be declared, and none may be secret (hosts are shown by `ferry
/// check` and in logs).
pub(crate) fn read_host_template(
    diags: &mut Diagnostics,
    entry: &toml::Spanned<String>,
    declared: &[Variable],
) -> Option<Template> {
    let template = read_template(diags, entry, declared)?;
    let before = diags.errors.len();
    for name in template.references() {
        if declared.iter().any(|v| v.name == name && v.secret) {
            diags.push(
                Diagnostic::new(entry.span(), format!("`{name}` is a secret variable"))
                    .with_help("an allowed host is shown by `ferry check` and in logs, so it cannot come from a secret"),
            );
        }
    }
    (diags.errors.len() == before).then_some(template)
}

/// A component's variables with their values. `Debug` shows secret values as
/// `(secret)`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ComponentVariables {
    values: BTreeMap<String, Resolved>,
}

#[derive(Clone, PartialEq, Eq)]
struct Resolved {
    value: String,
    /// Built from a secret application variable.
    secret: bool,
}

impl ComponentVariables {
    /// The value of `key`, if the component has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|r| r.value.as_str())
    }

    /// Every key with its value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(k, r)| (k.as_str(), r.value.as_str()))
    }

    /// Every key with its value as it may be shown: secrets hidden.
    pub fn shown(&self) -> impl Iterator<Item = (&str, String)> {
        self.values.iter().map(|(k, r)| {
            let shown = if r.secret {
                "(secret)".to_owned()
            } else {
                format!("{:?}", r.value)
            };
            (k.as_str(), shown)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl fmt::Debug for ComponentVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Already formatted by `shown`.
        struct Shown(String);
        impl fmt::Debug for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        f.debug_map()
            .entries(self.shown().map(|(key, value)| (key, Shown(value))))
            .finish()
    }
}

/// Required variables that got no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVariables(pub Vec<String>);

impl fmt::Display for MissingVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|n| format!("`{n}`")).collect();
        write!(
            f,
            "required variable{} {} {} no value: give {} with `--variable NAME=VALUE`, a `SPIN_VARIABLE_<NAME>` environment variable, or the `.env` file beside the manifest",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if names.len() == 1 { "has" } else { "have" },
            if names.len() == 1 { "it" } else { "them" },
        )
    }
}

impl std::error::Error for MissingVariables {}

/// Every component's variables, from the application variables' defaults
/// and `given` values (which win). Fails naming every required variable
/// that has no value, whether or not a component uses it (as Spin does: an
/// app that needs it should not start without it).
pub fn resolve(
    app: &crate::App,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, ComponentVariables>, MissingVariables> {
    let values = values(app, given)?;
    Ok(app
        .components
        .iter()
        .map(|component| {
            let resolved = component
                .variables
                .iter()
                .map(|(key, template)| {
                    let secret = template
                        .references()
                        .any(|name| values.get(name).is_some_and(|(_, secret)| *secret));
                    let value = render(template, &values);
                    (key.clone(), Resolved { value, secret })
                })
                .collect();
            (
                component.id.clone(),
                ComponentVariables { values: resolved },
            )
        })
        .collect())
}

/// Each component's `allowed_outbound_hosts` entries written as templates,
/// filled in and parsed. An entry that is not a valid host once filled in is
/// an error naming the component and the entry as written.
pub fn resolve_outbound_templates(
    app: &crate::App,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Vec<crate::AllowedHost>>, String> {
    let values = values(app, given).map_err(|missing| missing.to_string())?;
    let mut hosts = BTreeMap::new();
    for component in &app.components {
        for template in &component.outbound_templates {
            let host = crate::AllowedHost::parse(&render(template, &values)).map_err(|e| {
                format!(
                    "component `{}`: `allowed_outbound_hosts` entry `{template}` is not a valid host once its variables are filled in: {e}",
                    component.id
                )
            })?;
            hosts
                .entry(component.id.clone())
                .or_insert_with(Vec::new)
                .push(host);
        }
    }
    Ok(hosts)
}

/// `template` filled in from the application variables' defaults and
/// `given` values (which win).
pub fn render_template(
    app: &crate::App,
    given: &BTreeMap<String, String>,
    template: &Template,
) -> Result<String, MissingVariables> {
    let values = values(app, given)?;
    Ok(render(template, &values))
}

/// Every application variable's value and whether it is secret.
fn values<'a>(
    app: &'a crate::App,
    given: &'a BTreeMap<String, String>,
) -> Result<BTreeMap<&'a str, (&'a str, bool)>, MissingVariables> {
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for variable in &app.variables {
        match given.get(&variable.name).or(variable.default.as_ref()) {
            Some(value) => {
                values.insert(variable.name.as_str(), (value.as_str(), variable.secret));
            }
            None => missing.push(variable.name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(values)
    } else {
        Err(MissingVariables(missing))
    }
}

fn render(template: &Template, values: &BTreeMap<&str, (&str, bool)>) -> String {
    template.render(|name| values.get(name).map_or("", |(v, _)| v).to_owned())
}
