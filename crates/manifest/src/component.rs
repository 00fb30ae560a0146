//! `[component.<id>]` tables (and inline components in triggers).
//!
//! Spin's component table rejects unknown keys, and so does this walk. Of the
//! keys it defines, the ones Ferry cannot honour yet are refused here with
//! the reason; `build`, `tool`, `targets` and the legacy `allowed_http_hosts`
//! are accepted as the README's manifest table says.

use std::path::Path;

use toml::Spanned;
use toml::de::DeValue;

use crate::walk::{self, Diagnostics, TableView, Value, as_table};
use crate::{
    AllowedHost, AllowedOutboundHosts, Build, Component, Diagnostic, FileMount, Package,
    Sha256Digest, Source, Sources,
};

/// Checks a component id against Spin's rule: words of ASCII letters and
/// digits joined by `-`, each starting with a letter and either all
/// lowercase or all uppercase.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if spin_words(id, '-') {
        Ok(())
    } else {
        Err(format!(
            "component id `{id}` must be kebab-case: words of letters and digits joined by `-`, each starting with a letter and all lowercase or all uppercase"
        ))
    }
}

/// Spin's identifier shape: words joined by `sep`, each starting with an
/// ASCII letter, made of ASCII letters and digits, and all lowercase or all
/// uppercase.
fn spin_words(text: &str, sep: char) -> bool {
    !text.is_empty()
        && text.split(sep).all(|word| {
            word.starts_with(|c: char| c.is_ascii_alphabetic())
                && word.chars().all(|c| c.is_ascii_alphanumeric())
                && (word.chars().all(|c| !c.is_ascii_uppercase())
                    || word.chars().all(|c| !c.is_ascii_lowercase()))
        })
}

/// Reads one component table. `table.finish` is the caller's, so an inline
/// component gets the same unknown-key checks.
pub(crate) fn read(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    id: &str,
    dir: &Path,
    sources: Sources,
    app_variables: &[crate::Variable],
) -> Component {
    let prefix = table.path.clone();
    let build = table
        .table(diags, "build")
        .and_then(|build| read_build(diags, build, dir));
    let mut component = Component {
        description: table.string(diags, "description").map(Spanned::into_inner),
        build,
        ..Component::granted_nothing(id, Source::File(dir.to_owned()))
    };

    match table.get("source") {
        None => diags.error(table.span.clone(), format!("missing `{prefix}.source`")),
        Some(value) => {
            if let Some(source) = read_source(diags, value, &prefix, dir) {
                if let Source::File(path) = &source
                    && sources == Sources::MustExist
                    && !path.is_file()
                {
                    let mut missing = Diagnostic::new(
                        value.span(),
                        format!(
                            "component source `{}` is not a file (paths are relative to the manifest's directory)",
                            path.strip_prefix(dir).unwrap_or(path).display()
                        ),
                    );
                    if component.build.is_some() {
                        missing = missing.with_help(
                            "the component has a build command: run `ferry build` (or `ferry up --build`) first",
                        );
                    }
                    diags.push(missing);
                }
                component.source = source;
            }
        }
    }

    if let Some(value) = table.get("files") {
        component.files = read_files(diags, value, &prefix, dir, sources);
    }
    for pattern in table.string_list(diags, "exclude_files") {
        if let Err(e) = check_relative_glob(pattern.get_ref()) {
            diags.error(pattern.span(), e);
        }
        component.exclude_files.push(pattern.into_inner());
    }

    if let Some(mut env) = table.table(diags, "environment") {
        for key in env.key_names() {
            let span = env.key_span(&key).unwrap_or(0..0);
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                diags.error(
                    span,
                    format!("`{key}` is not a valid environment variable name"),
                );
            }
            if let Some(value) = env.string(diags, &key) {
                component.environment.push((key, value.into_inner()));
            }
        }
        env.finish(diags, &[]);
    }

    let variables = crate::variables::read_component_variables(diags, table);
    crate::variables::check_references(diags, app_variables, &variables);
    component.variables = variables
        .into_iter()
        .map(|(key, template, _)| (key, template))
        .collect();
    (
        component.allowed_outbound_hosts,
        component.outbound_templates,
    ) = read_outbound(diags, table, &prefix, app_variables);
    (component.key_value_stores, component.sqlite_databases) =
        read_state_grants(diags, table, &prefix);
    component.dependencies =
        crate::dependency::read_component_dependencies(diags, table, &prefix, dir);
    check_targets(diags, table);
    walk::check_tool_tables(diags, table);
    component
}

/// `source`: a path, `{ url, digest }`, or a registry package (refused).
fn read_source(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    prefix: &str,
    dir: &Path,
) -> Option<Source> {
    match value.get_ref() {
        DeValue::String(path) => Some(Source::File(dir.join(path.as_ref()))),
        DeValue::Table(_) => {
            let mut table = as_table(diags, value, format!("{prefix}.source"))?;
            if table.key_span("url").is_some() {
                let url = table.required_string(diags, "url");
                let digest = table.required_string(diags, "digest");
                table.finish(diags, &[]);
                let (url, digest) = (url?, digest?);
                if let Err(e) = check_download_url(url.get_ref()) {
                    diags.error(url.span(), e);
                }
                let digest = Sha256Digest::parse(digest.get_ref())
                    .map_err(|e| diags.error(digest.span(), e))
                    .ok()?;
                Some(Source::Url {
                    url: url.into_inner(),
                    digest,
                })
            } else if table.key_span("package").is_some() {
                let registry = table.string(diags, "registry").map(Spanned::into_inner);
                let name = table.required_string(diags, "package");
                let version = table.required_string(diags, "version");
                table.finish(diags, &[]);
                let (name, version) = (name?, version?);
                // A component's version is exact, as in Spin.
                let exact = semver::Version::parse(version.get_ref())
                    .map_err(|e| {
                        diags.error(
                            version.span(),
                            format!("`{}` is not a version (`1.2.3`): {e}", version.get_ref()),
                        )
                    })
                    .ok()?;
                let package = Package {
                    registry,
                    name: name.into_inner(),
                    version: format!("={exact}"),
                };
                if let Err(e) = package.check() {
                    diags.error(value.span(), e);
                    return None;
                }
                Some(Source::Package(package))
            } else {
                diags.push(
                    Diagnostic::new(value.span(), format!("`{prefix}.source` must be a path, `{{ url, digest }}` or `{{ registry, package, version }}`")),
                );
                None
            }
        }
        other => {
            diags.error(
                value.span(),
                format!(
                    "`{prefix}.source` must be a path to a .wasm file, found {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

/// A URL Ferry can download from: `http` or `https`, with a host.
pub(crate) fn check_download_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must be an `https://` (or `http://`) URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

/// `[component.<id>.build]`: `command` (a string or a list), `workdir`,
/// `watch`. Spin's table has nothing else (no `environment`: commands run in
/// the environment `ferry build` runs in).
fn read_build(diags: &mut Diagnostics, mut table: TableView<'_, '_>, dir: &Path) -> Option<Build> {
    let prefix = table.path.clone();
    let commands = match table.get("command") {
        None => {
            diags.error(table.span.clone(), format!("missing `{prefix}.command`"));
            None
        }
        Some(value) => match value.get_ref() {
            DeValue::String(command) => Some(vec![command.to_string()]),
            DeValue::Array(_) => Some(
                table
                    .string_list(diags, "command")
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
            ),
            other => {
                diags.error(
                    value.span(),
                    format!(
                        "`{prefix}.command` must be a command line or a list of them, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        },
    };
    let workdir = match table.string(diags, "workdir") {
        None => dir.to_owned(),
        Some(workdir) => {
            let path = Path::new(workdir.get_ref());
            if path.components().any(|c| {
                matches!(
                    c,
                    std::path::Component::Prefix(_) | std::path::Component::RootDir
                )
            }) {
                diags.push(
                    Diagnostic::new(workdir.span(), "`workdir` must be relative to the manifest's directory")
                        .with_help("write the directory as a path from the manifest's directory, e.g. `workdir = \"app\"`"),
                );
            }
            dir.join(path)
        }
    };
    let watch = table
        .string_list(diags, "watch")
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    table.finish(
        diags,
        &[(
            "environment",
            "Spin's build table has no `environment`: commands run with the environment `ferry build` runs in; set variables in the command itself (`FOO=bar cargo build`)",
        )],
    );
    Some(Build {
        commands: commands?,
        workdir,
        watch,
    })
}

/// `allowed_outbound_hosts`, and the legacy `allowed_http_hosts` that Spin
/// still accepts in version 2 manifests: each of its hosts grants both
/// `http://` and `https://`, as Spin converts them, with a warning.
fn read_outbound(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    prefix: &str,
    app_variables: &[crate::Variable],
) -> (AllowedOutboundHosts, Vec<crate::Template>) {
    let mut hosts = Vec::new();
    let mut templates = Vec::new();
    for entry in table.string_list(diags, "allowed_outbound_hosts") {
        if entry.get_ref().contains("{{") {
            if let Some(template) =
                crate::variables::read_host_template(diags, &entry, app_variables)
            {
                templates.push(template);
            }
            continue;
        }
        match AllowedHost::parse(entry.get_ref()) {
            Ok(host) => hosts.push(host),
            Err(e) => diags.error(entry.span(), e),
        }
    }
    let legacy_span = table.key_span("allowed_http_hosts");
    let legacy = table.string_list(diags, "allowed_http_hosts");
    if let Some(span) = legacy_span
        && !legacy.is_empty()
    {
        let mut converted = Vec::new();
        let allow_all = legacy.iter().any(|e| e.get_ref() == "insecure:allow-all");
        if allow_all {
            converted.extend(["http://*:*", "https://*:*", "http://self"].map(String::from));
        } else {
            for entry in &legacy {
                match convert_http_host(entry.get_ref()) {
                    Ok(grants) => converted.extend(grants),
                    Err(e) => diags.error(entry.span(), e),
                }
            }
        }
        for grant in &converted {
            match AllowedHost::parse(grant) {
                Ok(host) => hosts.push(host),
                Err(e) => diags.error(span.clone(), e),
            }
        }
        let quoted: Vec<String> = converted.iter().map(|g| format!("\"{g}\"")).collect();
        diags.warn(
            Diagnostic::new(span, format!("`{prefix}.allowed_http_hosts` is deprecated"))
                .with_help(format!(
                    "Ferry grants it as Spin does; to fix, replace it with `allowed_outbound_hosts = [{}]`",
                    quoted.join(", ")
                )),
        );
    }
    (AllowedOutboundHosts::new(hosts), templates)
}

/// One `allowed_http_hosts` entry (`host`, `host:port`, `self`, or an
/// `http(s)://host[:port]` URL) as the `allowed_outbound_hosts` it means.
fn convert_http_host(entry: &str) -> Result<Vec<String>, String> {
    if entry == "self" {
        return Ok(vec!["http://self".into()]);
    }
    // Spin reads a bare `host[:port]` as an `http://` URL.
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), entry),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("`{entry}` is not a valid host or host:port"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "`{entry}` contains a path; an allowed HTTP host is a host and an optional port"
        ));
    }
    if authority.is_empty() || authority.contains(['*', '@', ' ']) {
        return Err(format!("`{entry}` is not a valid host or host:port"));
    }
    // As a URL parser does, Spin drops the scheme's own default port, so
    // `example.com:80` grants both schemes on their default ports.
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(authority);
    Ok(vec![
        format!("http://{authority}"),
        format!("https://{authority}"),
    ])
}

/// `key_value_stores`, `sqlite_databases` and `ai_models`: what the
/// component may use. An empty list asks for nothing and is fine; a store or
/// database is refused until Ferry has them, and models are refused outright.
/// `key_value_stores` and `sqlite_databases`: the labels granted, each once.
fn read_state_grants(
    diags: &mut Diagnostics,
    table: &mut TableView<'_, '_>,
    prefix: &str,
) -> (Vec<String>, Vec<String>) {
    let read_labels = |diags: &mut Diagnostics, table: &mut TableView<'_, '_>, key: &str| {
        let labels = table.string_list(diags, key);
        for label in &labels {
            if let Err(e) = check_label(label.get_ref()) {
                diags.error(label.span(), e);
            }
        }
        labels
    };
    let mut unique = |key: &str| {
        let mut labels: Vec<String> = Vec::new();
        for label in read_labels(diags, table, key) {
            if !labels.contains(label.get_ref()) {
                labels.push(label.into_inner());
            }
        }
        labels
    };
    let key_value_stores = unique("key_value_stores");
    let sqlite_databases = unique("sqlite_databases");
    let span = table.key_span("ai_models");
    let models = table.string_list(diags, "ai_models");
    if let (Some(span), false) = (span, models.is_empty()) {
        diags.push(
            Diagnostic::new(span, format!("`{prefix}.ai_models` is not supported by Ferry"))
                .with_help("Ferry does not run AI models: an app that uses them needs a host with Spin's LLM interface (`fermyon:spin/llm`) backed by an inference engine"),
        );
    }
    (key_value_stores, sqlite_databases)
}

/// A key-value or SQLite label: kebab-case or snake_case, as Spin accepts.
fn check_label(label: &str) -> Result<(), String> {
    if spin_words(label, '-') || spin_words(label, '_') {
        Ok(())
    } else {
        Err(format!(
            "`{label}` is not a valid label: expected kebab-case or snake_case"
        ))
    }
}

/// `targets` (application or component): deployment environments that `spin
/// build` checks components against. Nothing at run time uses them; Ferry
/// checks their shape and keeps nothing.
pub(crate) fn check_targets(diags: &mut Diagnostics, table: &mut TableView<'_, '_>) {
    let Some(value) = table.get("targets") else {
        return;
    };
    let DeValue::Array(items) = value.get_ref() else {
        diags.error(
            value.span(),
            format!(
                "`targets` must be an array, found {}",
                value.get_ref().type_str()
            ),
        );
        return;
    };
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(_) => {}
            DeValue::Table(_) => {
                let Some(mut target) = as_table(diags, item, "targets[]".into()) else {
                    continue;
                };
                if target.key_span("path").is_some() {
                    target.string(diags, "path");
                } else {
                    target.required_string(diags, "registry");
                    target.required_string(diags, "id");
                }
                target.finish(diags, &[]);
            }
            other => diags.error(
                item.span(),
                format!(
                    "a `targets` entry must be an environment id, `{{ registry, id }}` or `{{ path }}`, found {}",
                    other.type_str()
                ),
            ),
        }
    }
}

/// A `files` string as Spin reads it: relative to the app directory, with
/// any leading `./` dropped (Spin suggests `./*` itself). It may not climb
/// out (`..`) or name the app directory itself (`.`).
fn normalize_pattern(pattern: &str) -> Result<String, String> {
    let mut rest = pattern;
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped.trim_start_matches('/');
    }
    check_relative_glob(rest)?;
    if rest.is_empty() || rest == "." || rest.ends_with("/.") {
        return Err(format!(
            "`{pattern}` names the app directory itself; list what to include, e.g. `./**/*` or a directory name"
        ));
    }
    Ok(rest.to_owned())
}

pub(crate) fn check_relative_glob(pattern: &str) -> Result<(), String> {
    if pattern.starts_with('/') {
        return Err(format!("`{pattern}` must be relative to the app directory"));
    }
    if pattern.split(['/', '\\']).any(|part| part == "..") {
        return Err(format!(
            "`{pattern}` cannot reach outside the app directory (`..`)"
        ));
    }
    crate::files::glob_set([pattern])
        .map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    Ok(())
}

fn read_files(
    diags: &mut Diagnostics,
    value: &Value<'_>,
    prefix: &str,
    dir: &Path,
    sources: Sources,
) -> Vec<FileMount> {
    let DeValue::Array(items) = value.get_ref() else {
        diags.error(value.span(), format!("`{prefix}.files` must be an array"));
        return Vec::new();
    };
    let mut mounts = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(pattern) => match normalize_pattern(pattern) {
                Ok(pattern) => mounts.push(FileMount::Glob(pattern)),
                Err(e) => diags.error(item.span(), e),
            },
            DeValue::Table(_) => {
                let Some(mut mount) = as_table(diags, item, format!("{prefix}.files[]")) else {
                    continue;
                };
                let source = mount.required_string(diags, "source");
                let destination = mount.required_string(diags, "destination");
                mount.finish(diags, &[]);
                let (Some(source), Some(destination)) = (source, destination) else {
                    continue;
                };
                if let Some(mount) = read_placement(diags, &source, &destination, dir, sources) {
                    mounts.push(mount);
                }
            }
            other => diags.error(
                item.span(),
                format!("a `files` entry must be a glob or a `{{ source, destination }}` table, found {}", other.type_str()),
            ),
        }
    }
    mounts
}

/// `{ source, destination }`: a directory's tree or one file, placed at a
/// guest path. The source must stay inside the app directory (no `..`, no
/// absolute path, no symlink leading out); Spin refuses paths outside it too.
fn read_placement(
    diags: &mut Diagnostics,
    source: &Spanned<String>,
    destination: &Spanned<String>,
    dir: &Path,
    sources: Sources,
) -> Option<FileMount> {
    let relative = Path::new(source.get_ref());
    if relative.has_root()
        || relative.components().any(|c| {
            !matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
    {
        diags.error(
            source.span(),
            format!(
                "`{}` must be a path inside the app directory (relative, without `..`)",
                source.get_ref()
            ),
        );
        return None;
    }
    let dest = destination.get_ref();
    if !dest.starts_with('/') || dest.split(['/', '\\']).any(|p| p == "..") {
        diags.error(
            destination.span(),
            "`destination` must be an absolute guest path without `..`",
        );
        return None;
    }
    let path = dir.join(relative);
    let escapes = |path: &Path| match (path.canonicalize(), dir.canonicalize()) {
        (Ok(real), Ok(root)) => !real.starts_with(root),
        _ => false,
    };
    if path.exists() && escapes(&path) {
        diags.error(
            source.span(),
            format!(
                "`{}` leads outside the app directory (through a symlink)",
                source.get_ref()
            ),
        );
        return None;
    }
    if path.is_file() {
        if dest.ends_with('/') {
            diags.error(
                destination.span(),
                format!("`{dest}` is a directory; a file's `destination` is the path the file gets, e.g. `{dest}{}`", source.get_ref().rsplit('/').next().unwrap_or_default()),
            );
            return None;
        }
        return Some(FileMount::File {
            source: path,
            destination: dest.clone(),
        });
    }
    if !path.is_dir() && sources == Sources::MustExist {
        diags.error(
            source.span(),
            format!("`{}` is not a file or directory", source.get_ref()),
        );
        return None;
    }
    // A directory, or (for `ferry build`) whatever the build will make.
    Some(FileMount::Directory {
        source: path,
        destination: dest.clone(),
    })
}
