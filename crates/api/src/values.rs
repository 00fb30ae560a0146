//! The variable values a deploy gives (`ferry deploy --variable`), and the
//! bounds both the client and the host hold them to: the client refuses
//! before uploading anything, the host refuses whatever a client sends.
//!
//! Errors name variables, never values: a value may be a secret.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use ferry_manifest::App;

use crate::Values;
use crate::human::human_size;

/// The most variables one deploy may give.
pub const MAX_DEPLOYED: usize = 256;
/// The largest value one deploy may give a variable.
pub const MAX_DEPLOYED_VALUE: usize = 64 << 10;
/// The longest variable name a deploy may give.
pub const MAX_NAME: usize = 256;
/// The most bytes of names and values one deploy may give in all.
pub const MAX_DEPLOYED_TOTAL: usize = 1 << 20;

/// Refuses what a deploy may not give, before anything is stored: names
/// that are not variable names (or longer than [`MAX_NAME`]), more than
/// [`MAX_DEPLOYED`] variables, a value over [`MAX_DEPLOYED_VALUE`] or more
/// than [`MAX_DEPLOYED_TOTAL`] in all. Errors name variables, never values.
pub fn check_deployed(values: &Values) -> Result<(), String> {
    if values.0.len() > MAX_DEPLOYED {
        return Err(format!(
            "{} variables given; a deploy may give at most {MAX_DEPLOYED}",
            values.0.len()
        ));
    }
    let mut total = 0;
    for (name, value) in &values.0 {
        if name.len() > MAX_NAME {
            return Err(format!(
                "a variable name is {} bytes long; names may be at most {MAX_NAME}",
                name.len()
            ));
        }
        ferry_manifest::check_variable_name(name)
            .map_err(|e| format!("invalid variable name {}", e.escape_debug()))?;
        if value.len() > MAX_DEPLOYED_VALUE {
            return Err(format!(
                "variable `{name}`: its value is {}; a value may be at most 64 KiB",
                human_size(value.len() as u64)
            ));
        }
        total += name.len() + value.len();
    }
    if total > MAX_DEPLOYED_TOTAL {
        return Err(format!(
            "the variables given are {} in all; a deploy may give at most 1 MiB",
            human_size(total as u64)
        ));
    }
    Ok(())
}

/// Refuses a deploy's value for a variable `app` does not declare (a typo
/// would otherwise be stored and never used).
pub fn check_declared(app: &App, values: &Values) -> Result<(), String> {
    let undeclared: Vec<String> = values
        .0
        .keys()
        .filter(|name| !app.variables.iter().any(|v| &v.name == *name))
        .map(|name| format!("`{name}`"))
        .collect();
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the deploy gives {} {}, which the manifest's `[variables]` does not declare",
        if undeclared.len() == 1 {
            "variable"
        } else {
            "variables"
        },
        undeclared.join(", ")
    ))
}

/// The values of `--variable` flags (the same forms as `ferry up` takes).
pub fn from_flags(flags: &[String]) -> anyhow::Result<Values> {
    let mut values = BTreeMap::new();
    for flag in flags {
        values.extend(parse_flag(flag)?);
    }
    Ok(Values(values))
}

/// One `--variable` flag's values.
fn parse_flag(flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    if let Some(path) = flag.strip_prefix('@') {
        return read_table(Path::new(path));
    }
    let Some((name, value)) = flag.split_once('=') else {
        anyhow::bail!(
            "`--variable {flag}`: expected NAME=VALUE, NAME=@FILE, or @FILE.json / @FILE.toml"
        );
    };
    ferry_manifest::check_variable_name(name)
        .map_err(|e| anyhow::anyhow!("`--variable`: invalid variable name {e}"))?;
    let value = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("`--variable {name}=@{path}`: cannot read {path}"))?,
        None => value.to_owned(),
    };
    Ok(vec![(name.to_owned(), value)])
}

/// `@file.json` or `@file.toml`: a table of variable names and string values.
fn read_table(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("`--variable @{shown}`: cannot read {shown}"))?;
    let table: BTreeMap<String, String> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text)
            .with_context(|| format!("`--variable @{shown}`: expected a JSON object of strings"))?,
        Some("toml") => toml::from_str(&text)
            .with_context(|| format!("`--variable @{shown}`: expected a TOML table of strings"))?,
        _ => anyhow::bail!("`--variable @{shown}`: the file must end in .json or .toml"),
    };
    for name in table.keys() {
        ferry_manifest::check_variable_name(name)
            .map_err(|e| anyhow::anyhow!("`--variable @{shown}`: invalid variable name {e}"))?;
    }
    Ok(table.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_spins_forms() {
        assert_eq!(
            parse_flag("api_host=a=b").unwrap(),
            [("api_host".to_owned(), "a=b".to_owned())]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token.txt");
        std::fs::write(&file, "s3cr3t").unwrap();
        assert_eq!(
            parse_flag(&format!("token=@{}", file.display())).unwrap(),
            [("token".to_owned(), "s3cr3t".to_owned())]
        );
        let json = dir.path().join("vars.json");
        std::fs::write(&json, r#"{"a": "1", "b_c": "2"}"#).unwrap();
        assert_eq!(
            parse_flag(&format!("@{}", json.display())).unwrap(),
            [("a".into(), "1".into()), ("b_c".into(), "2".into())]
        );
        let toml = dir.path().join("vars.toml");
        std::fs::write(&toml, "a = \"1\"\n").unwrap();
        assert_eq!(
            parse_flag(&format!("@{}", toml.display())).unwrap(),
            [("a".into(), "1".into())]
        );
        for bad in ["novalue", "Bad=1", "@vars.yaml"] {
            assert!(parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deployed_values_are_bounded() {
        let values = Values([("token".to_owned(), "s3cr3t".to_owned())].into());
        assert_eq!(check_deployed(&values), Ok(()));
        let bad =
            |name: &str, value: String| check_deployed(&Values([(name.to_owned(), value)].into()));
        assert!(bad("Token", "x".into()).unwrap_err().contains("`Token`"));
        assert!(
            bad("t", "v".repeat(65 << 10))
                .unwrap_err()
                .contains("64 KiB")
        );
        assert!(
            bad(&"a".repeat(300), String::new())
                .unwrap_err()
                .contains("at most 256")
        );
        let many = Values(
            (0..=MAX_DEPLOYED)
                .map(|i| (format!("v{i}"), String::new()))
                .collect(),
        );
        assert!(check_deployed(&many).unwrap_err().contains("at most 256"));
    }
}
