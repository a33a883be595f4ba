//! Output and exit codes: one place decides what goes to stdout (results, JSON) and what
//! goes to stderr (progress, warnings, errors).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde::Serialize;

/// dlenv's exit codes (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok,
    /// The operation failed.
    Failure,
    /// The command line was malformed.
    Usage,
    /// No compatible stack exists, or a precondition is not met.
    Unsatisfiable,
    /// Interrupted by Ctrl-C (128 + SIGINT, the shell convention).
    Interrupted,
    /// The exit code of a command dlenv ran in a container, passed through.
    Child(u8),
}

impl Exit {
    /// A container command's exit code as dlenv's (negative codes, which the engine uses
    /// for "unknown", become a failure).
    pub fn from_child(code: i64) -> Self {
        match code {
            0 => Self::Ok,
            c if c < 0 => Self::Failure,
            c => Self::Child(u8::try_from(c).unwrap_or(255)),
        }
    }

    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Unsatisfiable => 3,
            Self::Interrupted => 130,
            Self::Child(c) => c,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// An error as the user sees it: what failed, why, and what to do.
#[derive(Debug)]
pub struct CliError {
    /// The exit code it maps to.
    pub exit: Exit,
    /// One-line summary (may continue on more lines).
    pub message: String,
    /// What to try.
    pub hint: Option<String>,
}

impl CliError {
    /// A failure (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Failure,
            message: message.into(),
            hint: None,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
            hint: None,
        }
    }

    /// A precondition that is not met (exit 3).
    pub fn unsatisfiable(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Unsatisfiable,
            message: message.into(),
            hint: None,
        }
    }

    /// Add a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The interrupted error.
    pub fn interrupted() -> Self {
        Self {
            exit: Exit::Interrupted,
            message: "interrupted".into(),
            hint: None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n\nhint: {h}")?;
        }
        Ok(())
    }
}

impl From<dlenv_engine::EngineError> for CliError {
    fn from(e: dlenv_engine::EngineError) -> Self {
        let hint = e.hint();
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(&format!("\n  caused by: {text}"));
            }
            src = s.source();
        }
        Self {
            exit: Exit::Failure,
            message,
            hint,
        }
    }
}

impl From<dlenv_base::BaseError> for CliError {
    fn from(e: dlenv_base::BaseError) -> Self {
        let exit = match e {
            dlenv_base::BaseError::Input { .. } => Exit::Usage,
            dlenv_base::BaseError::NotRoot | dlenv_base::BaseError::MissingTool { .. } => {
                Exit::Unsatisfiable
            }
            _ => Exit::Failure,
        };
        Self {
            exit,
            message: e.to_string(),
            hint: e.hint(),
        }
    }
}

/// Global output settings.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Machine-readable output on stdout.
    pub json: bool,
    /// Suppress progress and informational messages.
    pub quiet: bool,
    /// Extra detail.
    pub verbose: u8,
}

impl Printer {
    /// Print a result value as pretty JSON on stdout.
    pub fn json<T: Serialize>(&self, value: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }

    /// Print a line of the human result on stdout.
    pub fn out(&self, line: impl fmt::Display) {
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// An informational message on stderr (hidden by `-q`).
    pub fn info(&self, line: impl fmt::Display) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    /// A warning on stderr (always shown).
    pub fn warn(&self, line: impl fmt::Display) {
        let _ = writeln!(std::io::stderr().lock(), "warning: {line}");
    }

    /// A spinner on stderr with a message line, when live progress may be drawn.
    pub fn spinner(&self) -> Option<indicatif::ProgressBar> {
        if !self.live_progress() {
            return None;
        }
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}").ok()?,
        );
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(b)
    }

    /// Whether live progress bars may be drawn (stderr is a terminal, not quiet/JSON).
    pub fn live_progress(&self) -> bool {
        !self.quiet && !self.json && std::io::stderr().is_terminal()
    }
}
