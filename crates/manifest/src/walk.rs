//! Reading a parsed TOML document while keeping every span.
//!
//! We walk `toml`'s spanned document tree ([`DeTable`]) by hand instead of
//! deriving `serde::Deserialize`: serde stops at the first error and cannot
//! point at a key, while a user fixing a manifest wants every problem at once,
//! each underlined where it is. [`TableView`] records which keys were read so
//! that anything left over is reported as unknown (or, for Spin features Ferry
//! lacks, as unsupported) instead of being silently ignored.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::Diagnostic;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Collects diagnostics while a document is walked.
#[derive(Default)]
pub(crate) struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    /// Accepted, but worth telling the user (legacy syntax).
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(span, message));
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.errors.push(diagnostic);
    }

    pub fn warn(&mut self, diagnostic: Diagnostic) {
        self.warnings.push(diagnostic);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// A table being read: `path` is its dotted name for messages (`component.hello`).
pub(crate) struct TableView<'t, 'i> {
    table: &'t DeTable<'i>,
    pub span: Range<usize>,
    pub path: String,
    read: Vec<&'t str>,
}

/// Keys Spin defines that Ferry refuses, with why (and what to do instead).
pub(crate) type Unsupported<'a> = &'a [(&'a str, &'a str)];

impl<'t, 'i> TableView<'t, 'i> {
    pub fn new(table: &'t DeTable<'i>, span: Range<usize>, path: impl Into<String>) -> Self {
        Self {
            table,
            span,
            path: path.into(),
            read: Vec::new(),
        }
    }

    fn qualified(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value under `key`, marking it read.
    pub fn get(&mut self, key: &str) -> Option<&'t Value<'i>> {
        let (k, v) = self.table.get_key_value(key)?;
        self.read.push(k.get_ref().as_ref());
        Some(v)
    }

    /// The value under `key`, without marking it read.
    pub fn peek(&self, key: &str) -> Option<&'t Value<'i>> {
        self.table.get(key)
    }

    /// Every key of the table, in document order.
    pub fn key_names(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.table.keys().collect();
        keys.sort_by_key(|k| k.span().start);
        keys.into_iter().map(|k| k.get_ref().to_string()).collect()
    }

    /// The span of `key` itself (not its value), for "this key is wrong" errors.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get_key_value(key).map(|(k, _)| k.span())
    }

    pub fn string(&mut self, diags: &mut Diagnostics, key: &str) -> Option<Spanned<String>> {
        let value = self.get(key)?;
        let qualified = self.qualified(key);
        expect_string(diags, value, &qualified)
    }

    pub fn required_string(
        &mut self,
        diags: &mut Diagnostics,
        key: &str,
    ) -> Option<Spanned<String>> {
        if self.table.get(key).is_none() {
            diags.error(
                self.span.clone(),
                format!("missing `{}`", self.qualified(key)),
            );
            return None;
        }
        self.string(diags, key)
    }

    pub fn bool(&mut self, diags: &mut Diagnostics, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                diags.error(
                    value.span(),
                    format!(
                        "`{}` must be true or false, found {}",
                        self.qualified(key),
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, diags: &mut Diagnostics, key: &str) -> Vec<Spanned<String>> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let qualified = self.qualified(key);
        match value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| expect_string(diags, item, &format!("{qualified}[]")))
                .collect(),
            other => {
                diags.error(
                    value.span(),
                    format!(
                        "`{qualified}` must be an array of strings, found {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    pub fn table(&mut self, diags: &mut Diagnostics, key: &str) -> Option<TableView<'t, 'i>> {
        let value = self.get(key)?;
        let qualified = self.qualified(key);
        as_table(diags, value, qualified)
    }

    /// Warns that each key not read so far is ignored (where Spin ignores
    /// extra keys, Ferry says so rather than drop them silently), naming it
    /// `{shown}.{key}`, and marks it read.
    pub fn ignore_unread(&mut self, diags: &mut Diagnostics, shown: &str, help: &str) {
        for key in self.key_names() {
            if self.read.contains(&key.as_str()) {
                continue;
            }
            let span = self.key_span(&key).unwrap_or(0..0);
            let _ = self.get(&key);
            diags
                .warn(Diagnostic::new(span, format!("`{shown}.{key}` is ignored")).with_help(help));
        }
    }

    /// Reports every key that was not read: as unsupported when Spin defines it
    /// (`unsupported` says why), as unknown otherwise.
    pub fn finish(self, diags: &mut Diagnostics, unsupported: Unsupported<'_>) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref().as_ref();
            if self.read.contains(&name) {
                continue;
            }
            let qualified = self.qualified(name);
            match unsupported.iter().find(|(k, _)| *k == name) {
                Some((_, why)) => diags.push(
                    Diagnostic::new(
                        key.span(),
                        format!("`{qualified}` is not supported by Ferry"),
                    )
                    .with_help(*why),
                ),
                None => diags.error(key.span(), format!("unknown field `{qualified}`")),
            }
        }
    }
}

pub(crate) fn expect_string(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    what: &str,
) -> Option<Spanned<String>> {
    match value.get_ref() {
        DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
        other => {
            diags.error(
                value.span(),
                format!("`{what}` must be a string, found {}", other.type_str()),
            );
            None
        }
    }
}

pub(crate) fn as_table<'t, 'i>(
    diags: &mut Diagnostics,
    value: &'t Value<'i>,
    what: String,
) -> Option<TableView<'t, 'i>> {
    match value.get_ref() {
        DeValue::Table(t) => Some(TableView::new(t, value.span(), what)),
        other => {
            diags.error(
                value.span(),
                format!("`{what}` must be a table, found {}", other.type_str()),
            );
            None
        }
    }
}

/// `tool`: a table of tables that tools other than Spin read. Spin ignores
/// them and so does Ferry; only their shape is checked.
pub(crate) fn check_tool_tables(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) {
    let Some(mut tools) = table.table(diags, "tool") else {
        return;
    };
    for name in tools.key_names() {
        let _ = tools.table(diags, &name);
    }
    tools.finish(diags, &[]);
}
