//! Located spec errors: `file:line:col`, a message, a suggestion, and a snippet of the
//! offending line with a caret under the bad part.

use std::fmt;
use std::ops::Range;

/// What kind of problem a spec has (stable, for tests and tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file is not valid TOML (includes duplicate keys).
    Syntax,
    /// A key dlenv does not know.
    UnknownKey,
    /// A value of the wrong TOML type (e.g. a string where a list is expected).
    WrongType,
    /// A value of the right type that is not valid (bad framework, port, mount…).
    InvalidValue,
    /// A version that parses but that the compat database does not know.
    UnknownVersion,
    /// A required key or table is missing.
    Missing,
}

/// A problem in a spec, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The kind of problem.
    pub kind: ErrorKind,
    /// The file as named in messages.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The offending line with a caret underneath (two lines, no trailing newline).
    pub snippet: String,
}

impl fmt::Display for SpecError {
    /// `path:line:col: message`, then the snippet. The hint is not included: callers print
    /// it where hints go.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.col, self.message
        )?;
        if !self.snippet.is_empty() {
            write!(f, "\n{}", self.snippet)?;
        }
        Ok(())
    }
}

/// The source a spec was parsed from (for locating errors after parsing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The file as named in messages.
    pub path: String,
    /// Its text.
    pub text: String,
}

impl Source {
    /// An error at byte range `span`.
    pub fn error(
        &self,
        span: Range<usize>,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> SpecError {
        let start = span.start.min(self.text.len());
        let end = span.end.clamp(start, self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let col = self.text[line_start..start].chars().count() + 1;
        let src_line = self.text[line_start..line_end].trim_end_matches('\r');
        let width = self.text[start..end.min(line_end)].chars().count().max(1);
        let gutter = line.to_string().len();
        let snippet = if self.text.is_empty() {
            String::new()
        } else {
            format!(
                "{:>gutter$} | {src_line}\n{:>gutter$} | {}{}",
                line,
                "",
                " ".repeat(col - 1),
                "^".repeat(width)
            )
        };
        SpecError {
            kind,
            path: self.path.clone(),
            line,
            col,
            message: message.into(),
            hint,
            snippet,
        }
    }
}

/// Edit distance, for "did you mean".
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest option within a small edit distance.
pub fn closest<'a>(input: &str, options: &[&'a str]) -> Option<&'a str> {
    let low = input.to_ascii_lowercase();
    options
        .iter()
        .map(|o| (levenshtein(&low, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min()
        .map(|(_, o)| o)
}
