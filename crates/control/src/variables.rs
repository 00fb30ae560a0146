//! Where application variables get their values.
//!
//! `ferry up` and `ferry check` take them as Spin's providers give them
//! (lowest precedence first):
//!
//! 1. the manifest's defaults (applied by `ferry_manifest::resolve_variables`);
//! 2. the `.env` file beside the manifest, read as Spin's environment
//!    provider reads it: `SPIN_VARIABLE_<NAME>=value` lines (Ferry also takes
//!    `FERRY_VARIABLE_<NAME>`);
//! 3. the same names in the process environment;
//! 4. `--variable`: `name=value`, `name=@file` (the file's contents), or
//!    `@file.json` / `@file.toml` (a table of names and string values).
//!
//! A live host (`ferry serve`) runs many tenants' apps, so its environment
//! is nobody's by default. An app there gets, lowest precedence first:
//!
//! 1. the manifest's defaults;
//! 2. its own bundle's `.env`, read literally: a `$NAME` substitution, which
//!    would read the host's environment, is refused;
//! 3. the host's `SPIN_VARIABLE_<NAME>` / `FERRY_VARIABLE_<NAME>` only for
//!    the names the operator gave as `ferry serve --host-variable NAME`,
//!    read once at start;
//! 4. the values its deploy gave (`ferry deploy --variable`), stored with
//!    the version: every deploy gives all of its values, and a rollback or a
//!    restart uses that version's own.
//!
//! Values are never printed: errors name the variable and the source only,
//! and every type here holding values shows only names in its `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;
use ferry_manifest::{App, MissingVariables};

/// Environment variable prefixes whose suffix, lowercased, names a variable.
const PREFIXES: [&str; 2] = ["SPIN_VARIABLE_", "FERRY_VARIABLE_"];

/// Where a loaded app's variable values come from.
#[derive(Clone)]
pub enum Sources {
    /// `ferry up`, `ferry check`: `.env`, the whole environment and these
    /// `--variable` flags, as Spin gives them.
    Local(Vec<String>),
    /// An app on a live host.
    Host {
        /// The values of the host's environment the operator gives every
        /// app (`--host-variable`), by variable name.
        environment: Values,
        /// The values the version's deploy gave.
        deployed: Values,
    },
}

/// Names only: values may be secret.
impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A flag may be `name=value`: only what names it is shown.
            Self::Local(flags) => f
                .debug_tuple("Local")
                .field(
                    &flags
                        .iter()
                        .map(|flag| flag.split('=').next().unwrap_or_default())
                        .collect::<Vec<_>>(),
                )
                .finish(),
            Self::Host {
                environment,
                deployed,
            } => f
                .debug_struct("Host")
                .field("environment", environment)
                .field("deployed", deployed)
                .finish(),
        }
    }
}

impl Sources {
    /// The same sources for a version whose deploy gave `deployed` (a live
    /// host's; `Local` sources are returned as they are).
    pub fn with_deployed(&self, deployed: Values) -> Self {
        match self {
            Self::Local(flags) => Self::Local(flags.clone()),
            Self::Host { environment, .. } => Self::Host {
                environment: environment.clone(),
                deployed,
            },
        }
    }

    /// What to say of required variables that got no value: where a value
    /// comes from depends on the command.
    pub fn missing(&self, missing: &MissingVariables) -> String {
        match self {
            Self::Local(_) => missing.to_string(),
            Self::Host { .. } => {
                let flags: Vec<String> = missing
                    .0
                    .iter()
                    .map(|name| format!("--variable {name}=VALUE"))
                    .collect();
                let names: Vec<String> = missing.0.iter().map(|n| format!("`{n}`")).collect();
                format!(
                    "required variable{} {} {} no value: give {} with `ferry deploy {}` (a deploy gives all of a version's values; none are taken from an earlier one)",
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    if names.len() == 1 { "has" } else { "have" },
                    if names.len() == 1 { "it" } else { "them" },
                    flags.join(" ")
                )
            }
        }
    }
}

pub use ferry_api::Values;

/// The host environment's values for the variables `names`
/// (`ferry serve --host-variable`): `FERRY_VARIABLE_<NAME>`, else
/// `SPIN_VARIABLE_<NAME>`. Also the names the environment has no value for.
pub fn host_environment(names: &[String]) -> anyhow::Result<(Values, Vec<String>)> {
    let mut values = BTreeMap::new();
    let mut unset = Vec::new();
    for name in names {
        if let Err(e) = ferry_manifest::check_variable_name(name) {
            let hint = variable_name(name)
                .or_else(|| Some(name.to_ascii_lowercase()))
                .filter(|n| ferry_manifest::check_variable_name(n).is_ok())
                .map(|n| format!("; name it as the manifest does: `--host-variable {n}`"))
                .unwrap_or_default();
            anyhow::bail!("`--host-variable`: invalid variable name {e}{hint}");
        }
        let mut found = None;
        for (key, value) in std::env::vars_os() {
            if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
                && variable_name(key).as_deref() == Some(name)
                && (found.is_none() || key.starts_with("FERRY_"))
            {
                found = Some(value.to_owned());
            }
        }
        match found {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None => unset.push(name.clone()),
        }
    }
    Ok((Values(values), unset))
}

/// The values given for `app`'s variables by `sources`, by variable name.
pub fn given(app: &App, sources: &Sources) -> anyhow::Result<BTreeMap<String, String>> {
    match sources {
        Sources::Local(flags) => given_locally(app, flags),
        Sources::Host {
            environment,
            deployed,
        } => {
            ferry_api::values::check_declared(app, deployed).map_err(anyhow::Error::msg)?;
            let mut values = BTreeMap::new();
            let dotenv = app.dir.join(".env");
            if dotenv.is_file() {
                let text = std::fs::read_to_string(&dotenv)
                    .context("reading the app's `.env`: it is not UTF-8 text")?;
                values.extend(dotenv_literally(&text)?);
            }
            values.extend(environment.0.clone());
            values.extend(deployed.0.clone());
            Ok(values)
        }
    }
}

/// What `ferry up` gives: `.env`, the environment, then `flags`.
fn given_locally(app: &App, flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let dotenv = app.dir.join(".env");
    if dotenv.is_file() {
        for entry in dotenvy::from_path_iter(&dotenv)
            .with_context(|| format!("reading {}", dotenv.display()))?
        {
            // dotenvy's error quotes the line, which may hold a secret.
            let (key, value) = entry.map_err(|e| match e {
                dotenvy::Error::LineParse(_, at) => anyhow::anyhow!(
                    "reading {}: a line cannot be parsed (at character {at} of it; the line is not shown, as it may hold a secret)",
                    dotenv.display()
                ),
                other => anyhow::Error::new(other).context(format!("reading {}", dotenv.display())),
            })?;
            if let Some(name) = variable_name(&key) {
                values.insert(name, value);
            }
        }
    }
    for (key, value) in std::env::vars_os() {
        if let (Some(key), Some(value)) = (key.to_str(), value.to_str())
            && let Some(name) = variable_name(key)
        {
            values.insert(name, value.to_owned());
        }
    }
    values.extend(ferry_api::values::from_flags(flags)?.0);
    Ok(values)
}

/// Why a `.env` value could not be read literally.
#[derive(Debug, PartialEq, Eq)]
enum Unread {
    /// A quote is still open at the end of the text.
    Unclosed,
    /// An unescaped `$` outside single quotes: dotenvy would substitute.
    Substitution,
    Malformed,
}

/// A `.env` file's `SPIN_VARIABLE_*` / `FERRY_VARIABLE_*` values, in the
/// syntax dotenvy reads (quotes, escapes, `export`, comments, values over
/// several lines in quotes) but taken literally: a `$` substitution — which
/// dotenvy fills from the process environment, here the host's — is an
/// error naming the line. Errors never quote a line: it may hold a secret.
fn dotenv_literally(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut values = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            anyhow::bail!("the app's `.env` line {number} is not NAME=VALUE");
        };
        let key = key.trim_end();
        let mut value = rest.trim_start().to_owned();
        let parsed = loop {
            match literal_value(&value) {
                Err(Unread::Unclosed) => match lines.next() {
                    Some((_, more)) => {
                        value.push('\n');
                        value.push_str(more);
                    }
                    None => break Err(Unread::Unclosed),
                },
                other => break other,
            }
        };
        // Only variables matter here; other lines are the app's business.
        let Some(name) = variable_name(key) else {
            continue;
        };
        match parsed {
            Ok(value) => values.push((name, value)),
            Err(Unread::Substitution) => anyhow::bail!(
                "the app's `.env` line {number}: `{key}` uses `$` substitution, which a live host does not do (it would read the host's environment): write the value out, in single quotes or with `\\$` if it holds a `$`"
            ),
            Err(Unread::Unclosed) => {
                anyhow::bail!(
                    "the app's `.env` line {number}: `{key}`'s value has a quote that is never closed"
                )
            }
            Err(Unread::Malformed) => anyhow::bail!(
                "the app's `.env` line {number}: `{key}`'s value cannot be parsed (it is not shown, as it may be secret)"
            ),
        }
    }
    Ok(values)
}

/// One `.env` value (what follows `=`), as dotenvy's `parse_value` reads
/// it, without substitution.
fn literal_value(input: &str) -> Result<String, Unread> {
    let input = input.trim_end();
    if input.is_empty() || input.starts_with('#') {
        return Ok(String::new());
    }
    let (mut strong, mut weak, mut escaped, mut expecting_end) = (false, false, false, false);
    let mut output = String::new();
    for c in input.chars() {
        if expecting_end {
            match c {
                ' ' | '\t' => {}
                '#' => break,
                _ => return Err(Unread::Malformed),
            }
        } else if escaped {
            match c {
                '\\' | '\'' | '"' | '$' | ' ' => output.push(c),
                'n' => output.push('\n'),
                _ => return Err(Unread::Malformed),
            }
            escaped = false;
        } else if strong {
            if c == '\'' {
                strong = false;
            } else {
                output.push(c);
            }
        } else if c == '$' {
            return Err(Unread::Substitution);
        } else if weak {
            match c {
                '"' => weak = false,
                '\\' => escaped = true,
                _ => output.push(c),
            }
        } else {
            match c {
                '\'' => strong = true,
                '"' => weak = true,
                '\\' => escaped = true,
                ' ' | '\t' => expecting_end = true,
                _ => output.push(c),
            }
        }
    }
    if strong || weak {
        Err(Unread::Unclosed)
    } else {
        Ok(output)
    }
}

/// `SPIN_VARIABLE_API_HOST` → `api_host`.
fn variable_name(key: &str) -> Option<String> {
    PREFIXES
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_name_variables() {
        assert_eq!(
            variable_name("SPIN_VARIABLE_API_HOST").as_deref(),
            Some("api_host")
        );
        assert_eq!(variable_name("FERRY_VARIABLE_X").as_deref(), Some("x"));
        assert_eq!(variable_name("SPIN_VARIABLE_"), None);
        assert_eq!(variable_name("HOME"), None);
    }

    #[test]
    fn a_hosts_dotenv_is_read_literally() {
        let read = |text: &str| dotenv_literally(text).map_err(|e| e.to_string());
        assert_eq!(
            read(
                "# comment\n\nexport SPIN_VARIABLE_A = plain # trailing\n\
                 FERRY_VARIABLE_B='single $NOT_SUBSTITUTED'\n\
                 SPIN_VARIABLE_C=\"double \\$ \\\" \\n\"\n\
                 SPIN_VARIABLE_D=\"two\nlines\"\n\
                 OTHER=${HOME}\nSPIN_VARIABLE_E=\n"
            )
            .unwrap(),
            [
                ("a".to_owned(), "plain".to_owned()),
                ("b".to_owned(), "single $NOT_SUBSTITUTED".to_owned()),
                ("c".to_owned(), "double $ \" \n".to_owned()),
                ("d".to_owned(), "two\nlines".to_owned()),
                ("e".to_owned(), String::new()),
            ]
        );
        for (text, says) in [
            (
                "SPIN_VARIABLE_X=${HOME}",
                "line 1: `SPIN_VARIABLE_X` uses `$` substitution",
            ),
            (
                "\nSPIN_VARIABLE_X=\"a$HOME\"",
                "line 2: `SPIN_VARIABLE_X` uses `$`",
            ),
            ("SPIN_VARIABLE_X='s3cr3t", "never closed"),
            ("SPIN_VARIABLE_X=s3cr3t junk", "cannot be parsed"),
            ("s3cr3t", "line 1 is not NAME=VALUE"),
        ] {
            let error = read(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
            assert!(
                !error.contains("s3cr3t") && !error.contains("HOME"),
                "{error}"
            );
        }
    }

    #[test]
    fn deployed_values_are_bounded_and_never_echoed() {
        let parse = |json: &str| serde_json::from_str::<Values>(json).map_err(|e| e.to_string());
        assert_eq!(
            parse(r#"{"a": "1"}"#).unwrap(),
            Values([("a".to_owned(), "1".to_owned())].into())
        );
        for json in [r#""s3cr3t""#, r#"{"a": ["s3cr3t"]}"#, r#"{"a": 5}"#] {
            let error = parse(json).unwrap_err();
            assert!(!error.contains("s3cr3t"), "{error}");
        }
        let values = Values([("token".to_owned(), "s3cr3t".to_owned())].into());
        assert_eq!(format!("{values:?}"), r#"{"token"}"#);
        let sources = Sources::Host {
            environment: values.clone(),
            deployed: values.clone(),
        };
        assert!(!format!("{sources:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", Sources::Local(vec!["token=s3cr3t".into()])).contains("s3cr3t"));
    }
}
