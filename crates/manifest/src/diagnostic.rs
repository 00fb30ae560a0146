//! Errors and warnings that point at the manifest text.
//!
//! Every problem Ferry finds in a manifest is a [`Diagnostic`]: a byte span in
//! the file and a message. [`ManifestError`] and [`Warnings`] carry the file's
//! text so that they can render each diagnostic the way compilers do — file,
//! line and column, then the offending line with the span underlined —
//! without the caller having to keep the text around.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One problem at one place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Range<usize>,
    pub message: String,
    /// A hint on how to fix it, printed under the snippet.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Why a manifest (or runtime config) could not be loaded.
#[derive(Debug, Clone)]
pub enum ManifestError {
    /// The file could not be found or read.
    Io { path: PathBuf, message: String },
    /// The file was read but has problems; all of them are listed.
    Invalid {
        path: PathBuf,
        text: Arc<str>,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ManifestError {
    pub(crate) fn io(path: &Path, err: impl fmt::Display) -> Self {
        Self::Io {
            path: path.to_owned(),
            message: err.to_string(),
        }
    }

    pub(crate) fn invalid(path: &Path, text: &str, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
        diagnostics.dedup();
        Self::Invalid {
            path: path.to_owned(),
            text: text.into(),
            diagnostics,
        }
    }

    /// The diagnostics, with their line and column (1-based), for callers that
    /// present errors themselves.
    pub fn diagnostics(&self) -> Vec<(usize, usize, &Diagnostic)> {
        match self {
            Self::Io { .. } => Vec::new(),
            Self::Invalid {
                text, diagnostics, ..
            } => diagnostics
                .iter()
                .map(|d| {
                    let (line, col) = line_col(text, d.span.start);
                    (line, col, d)
                })
                .collect(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, message } => write!(f, "cannot read {}: {message}", path.display()),
            Self::Invalid {
                path,
                text,
                diagnostics,
            } => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        writeln!(f, "\n")?;
                    }
                    render(f, "error", path, text, d)?;
                }
                if diagnostics.len() > 1 {
                    write!(f, "\n\n{} errors in {}", diagnostics.len(), path.display())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// What a manifest asks for that Ferry accepts but the user should change
/// (legacy syntax, say). Empty for most manifests; printed by every command
/// that reads one.
#[derive(Debug, Clone, Default)]
pub struct Warnings {
    path: PathBuf,
    text: Arc<str>,
    diagnostics: Vec<Diagnostic>,
}

impl Warnings {
    pub(crate) fn new(path: &Path, text: &str, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
        Self {
            path: path.to_owned(),
            text: text.into(),
            diagnostics,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter()
    }
}

impl fmt::Display for Warnings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f, "\n")?;
            }
            render(f, "warning", &self.path, &self.text, d)?;
        }
        Ok(())
    }
}

fn render(
    f: &mut fmt::Formatter<'_>,
    severity: &str,
    path: &Path,
    text: &str,
    d: &Diagnostic,
) -> fmt::Result {
    let (line, col) = line_col(text, d.span.start);
    writeln!(f, "{severity}: {}", d.message)?;
    writeln!(f, "  --> {}:{line}:{col}", path.display())?;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let gutter = " ".repeat(line.to_string().len());
    writeln!(f, "{gutter} |")?;
    writeln!(f, "{line} | {line_text}")?;
    // Underline the span, clipped to the first line it covers.
    let (end_line, end_col) = line_col(text, d.span.end.max(d.span.start));
    let width = if end_line == line {
        end_col.saturating_sub(col).max(1)
    } else {
        (line_text.chars().count() + 1).saturating_sub(col).max(1)
    };
    write!(f, "{gutter} | {}{}", " ".repeat(col - 1), "^".repeat(width))?;
    if let Some(help) = &d.help {
        write!(f, "\n{gutter} = help: {help}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
    }
}
