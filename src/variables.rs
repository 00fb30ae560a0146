//! Where application variables get their values, as Spin's providers give
//! them (lowest precedence first):
//!
//! 1. the manifest's defaults (applied by `ferry_manifest::resolve_variables`);
//! 2. the `.env` file beside the manifest, read as Spin's environment
//!    provider reads it: `SPIN_VARIABLE_<NAME>=value` lines (Ferry also takes
//!    `FERRY_VARIABLE_<NAME>`);
//! 3. the same names in the process environment;
//! 4. `--variable`: `name=value`, `name=@file` (the file's contents), or
//!    `@file.json` / `@file.toml` (a table of names and string values).
//!
//! Values are never printed: errors name the variable and the source only.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use ferry_manifest::App;

/// Environment variable prefixes whose suffix, lowercased, names a variable.
const PREFIXES: [&str; 2] = ["SPIN_VARIABLE_", "FERRY_VARIABLE_"];

/// The values given for `app`'s variables by `.env`, the environment and
/// `--variable` flags, by variable name.
pub fn given(app: &App, flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let dotenv = app.dir.join(".env");
    if dotenv.is_file() {
        for entry in dotenvy::from_path_iter(&dotenv)
            .with_context(|| format!("reading {}", dotenv.display()))?
        {
            let (key, value) = entry.with_context(|| format!("reading {}", dotenv.display()))?;
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
    for flag in flags {
        for (name, value) in parse_flag(flag)? {
            values.insert(name, value);
        }
    }
    Ok(values)
}

/// `SPIN_VARIABLE_API_HOST` → `api_host`.
fn variable_name(key: &str) -> Option<String> {
    PREFIXES
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .map(str::to_ascii_lowercase)
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
        assert_eq!(
            variable_name("SPIN_VARIABLE_API_HOST").as_deref(),
            Some("api_host")
        );
        assert_eq!(variable_name("FERRY_VARIABLE_X").as_deref(), Some("x"));
        assert_eq!(variable_name("SPIN_VARIABLE_"), None);
        assert_eq!(variable_name("HOME"), None);
    }
}
