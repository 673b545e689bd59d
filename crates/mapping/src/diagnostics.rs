//! Load errors that name the file, the line and the field path, collected so that one run
//! reports every problem of every file.

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::expression::Expression;
use crate::template::Template;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no line (e.g. an unreadable file).
    pub line: u64,
    /// Dotted field path inside the file, e.g. `unified.user-directory.users.list.response_mapping`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error of a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl std::fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        write!(f, "{} error(s)", self.0.len())
    }
}

impl std::error::Error for LoadErrors {}

/// Compiles the pieces of one file, recording errors against it.
pub(crate) struct FileCompiler<'a> {
    pub file: &'a Path,
    pub errors: &'a mut Vec<LoadError>,
}

impl FileCompiler<'_> {
    pub fn error_line(&mut self, line: u64, path: &str, message: &str) {
        self.errors.push(LoadError {
            file: self.file.to_owned(),
            line,
            path: path.to_owned(),
            message: message.to_owned(),
        });
    }

    pub fn error_at<T>(&mut self, at: &Spanned<T>, path: &str, message: &str) {
        self.error_line(at.referenced.line(), path, message);
    }

    pub fn template(&mut self, text: &Spanned<String>, path: &str) -> Option<Template> {
        Template::compile(&text.value)
            .map_err(|message| self.error_at(text, path, &format!("bad template: {message}")))
            .ok()
    }

    pub fn expression(&mut self, text: &Spanned<String>, path: &str) -> Option<Expression> {
        match Expression::compile(&text.value) {
            Ok(expression) => Some(expression),
            Err(error) => {
                let line = self.line_in_scalar(text, error.offset);
                self.error_line(
                    line,
                    path,
                    &format!(
                        "JSONata does not compile: {} ({})",
                        error.message, error.code
                    ),
                );
                None
            }
        }
    }

    /// An optional expression: `Ok(None)` when absent, `Err(())` when present but broken (the
    /// error is recorded), so a broken one is never mistaken for an absent one.
    pub fn optional_expression(
        &mut self,
        text: Option<&Spanned<String>>,
        path: &str,
    ) -> Result<Option<Expression>, ()> {
        match text {
            None => Ok(None),
            Some(text) => self.expression(text, path).map(Some).ok_or(()),
        }
    }

    /// The file line of byte `offset` inside a scalar. The scalar's location is the line its
    /// text starts on (the line after the key for block scalars).
    fn line_in_scalar(&self, text: &Spanned<String>, offset: Option<usize>) -> u64 {
        let start = text.referenced.line();
        let Some(offset) = offset else {
            return start;
        };
        let before = text.value[..offset.min(text.value.len())].trim_end_matches('\n');
        start + before.matches('\n').count() as u64
    }
}

/// The dotted path of the key on `line` (1-based) in a block-style YAML text, found by walking up
/// to keys of smaller indentation. Serde errors give a line; this gives the field path.
pub(crate) fn path_at_line(text: &str, line: u64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = (line as usize)
        .checked_sub(1)
        .filter(|index| *index < lines.len())
    else {
        return String::new();
    };
    let indent_of = |raw: &str| raw.len() - raw.trim_start().len();
    let is_item = |raw: &str| {
        let trimmed = raw.trim_start();
        trimmed.starts_with("- ") || trimmed == "-"
    };
    // The key a line names, and the column it starts at (past a sequence item's dash).
    let key_of = |raw: &str| -> Option<(usize, String)> {
        let indent = indent_of(raw) + if is_item(raw) { 2 } else { 0 };
        let trimmed = raw.trim_start().trim_start_matches("- ");
        if trimmed.starts_with('#') {
            return None;
        }
        let (key, _) = trimmed.split_once(':')?;
        let key = key.trim().trim_matches('"').trim_matches('\'');
        (!key.is_empty() && !key.contains(' ')).then(|| (indent, key.to_owned()))
    };
    let meaningful = |raw: &str| !raw.trim().is_empty() && !raw.trim_start().starts_with('#');
    let mut segments = Vec::new();
    let mut limit = usize::MAX;
    for at in (0..=start).rev() {
        let raw = lines[at];
        if !meaningful(raw) {
            continue;
        }
        if let Some((indent, key)) = key_of(raw)
            && indent < limit
        {
            segments.push(key);
            limit = indent;
        }
        let indent = indent_of(raw);
        if is_item(raw) && indent < limit {
            // Its index: the items before it at its column, up to the key that holds them.
            let index = lines[..at]
                .iter()
                .rev()
                .filter(|raw| meaningful(raw))
                .take_while(|raw| indent_of(raw) >= indent)
                .filter(|raw| indent_of(raw) == indent && is_item(raw))
                .count();
            segments.push(format!("[{index}]"));
            limit = indent;
        }
        if limit == 0 {
            break;
        }
    }
    segments.reverse();
    let mut path = String::new();
    for segment in segments {
        if !path.is_empty() && !segment.starts_with('[') {
            path.push('.');
        }
        path.push_str(&segment);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_path_of_a_line() {
        let text = "name: x\nresources:\n  users:\n    list:\n      path: /u\n      bogus: 1\nauth:\n  kind: none\n";
        assert_eq!(path_at_line(text, 6), "resources.users.list.bogus");
        assert_eq!(path_at_line(text, 8), "auth.kind");
        assert_eq!(path_at_line(text, 1), "name");
        assert_eq!(path_at_line(text, 99), "");
        let items = "variants:\n  - name: a\n    when: x\n  # one more\n  - name: b\n    with:\n      bogus: 1\n";
        assert_eq!(path_at_line(items, 2), "variants[0].name");
        assert_eq!(path_at_line(items, 3), "variants[0].when");
        assert_eq!(path_at_line(items, 7), "variants[1].with.bogus");
    }
}
