//! Interactive I/O with containers: attach with stdin (for `dlenv shell`), exec sessions
//! (for `dlenv exec`), and TTY resizes. The terminal side (raw mode, the stdin thread,
//! SIGWINCH) belongs to the CLI; this module only speaks the Engine API.

use std::pin::Pin;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder, ResizeExecOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWrite;

use crate::{Engine, EngineError};

/// One chunk of a container's or exec session's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    /// Bytes for stdout (with a TTY, everything the terminal shows).
    Stdout(Bytes),
    /// Bytes for stderr (only without a TTY).
    Stderr(Bytes),
}

/// The output stream of an attached session.
pub type OutputStream = Pin<Box<dyn Stream<Item = Result<OutputChunk, EngineError>> + Send>>;

/// The two ends of an attached session: what the process writes, and its stdin.
pub struct Attached {
    /// The process's output; ends when the process closes it (normally: exits).
    pub output: OutputStream,
    /// The process's stdin. Shutting it down closes the process's stdin when the container
    /// was created with `stdin` (which sets `StdinOnce`) and has no TTY, or for an exec.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached")
    }
}

/// What to run in an exec session.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Attach stdin.
    pub stdin: bool,
    /// Extra `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// `uid:gid` or a user name (default: the container's user).
    pub user: Option<String>,
    /// Working directory (default: the container's).
    pub workdir: Option<String>,
}

fn map_output(
    s: Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    what: &'static str,
) -> OutputStream {
    Box::pin(s.filter_map(move |chunk| async move {
        match chunk {
            Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk::Stderr(message))),
            Ok(LogOutput::StdIn { .. }) => None,
            Ok(other) => Some(Ok(OutputChunk::Stdout(other.into_bytes()))),
            Err(e) => Some(Err(EngineError::api(what, e))),
        }
    }))
}

fn dims(rows: u16, cols: u16) -> (i32, i32) {
    (i32::from(rows.max(1)), i32::from(cols.max(1)))
}

impl Engine {
    /// Attach to a created (not yet started) container with stdin, stdout and stderr.
    /// Attach before starting, so no early output is lost.
    pub async fn attach_interactive(&self, id: &str) -> Result<Attached, EngineError> {
        let opts = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let r = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| EngineError::api("attach to the container", e))?;
        Ok(Attached {
            output: map_output(r.output, "read the container's output"),
            input: r.input,
        })
    }

    /// Set a container's TTY size.
    pub async fn resize_container_tty(
        &self,
        id: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), EngineError> {
        let (h, w) = dims(rows, cols);
        let opts = ResizeContainerTTYOptionsBuilder::new().h(h).w(w).build();
        self.docker
            .resize_container_tty(id, opts)
            .await
            .map_err(|e| EngineError::api("resize the container's terminal", e))
    }

    /// Create an exec session in a running container. Returns the exec id.
    pub async fn exec_create(&self, id: &str, spec: &ExecSpec) -> Result<String, EngineError> {
        let opts = CreateExecOptions::<String> {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.cmd.clone()),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        self.docker
            .create_exec(id, opts)
            .await
            .map(|r| r.id)
            .map_err(|e| EngineError::api(format!("create an exec session in {id}"), e))
    }

    /// Start an exec session attached.
    pub async fn exec_start(&self, exec_id: &str, tty: bool) -> Result<Attached, EngineError> {
        let opts = StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        match self.docker.start_exec(exec_id, Some(opts)).await {
            Ok(StartExecResults::Attached { output, input }) => Ok(Attached {
                output: map_output(output, "read the exec session's output"),
                input,
            }),
            Ok(StartExecResults::Detached) => Err(EngineError::Local {
                what: "start the exec session".into(),
                message: "the engine started it detached".into(),
            }),
            Err(e) => Err(EngineError::api("start the exec session", e)),
        }
    }

    /// Set an exec session's TTY size.
    pub async fn exec_resize(
        &self,
        exec_id: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), EngineError> {
        let (h, w) = dims(rows, cols);
        let opts = ResizeExecOptionsBuilder::new().h(h).w(w).build();
        self.docker
            .resize_exec(exec_id, opts)
            .await
            .map_err(|e| EngineError::api("resize the exec session's terminal", e))
    }

    /// The exit code of a finished exec session, waiting up to 10 s for it to finish
    /// (its output can end a moment before the engine records the exit).
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<i64, EngineError> {
        for _ in 0..200 {
            let r = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| EngineError::api("inspect the exec session", e))?;
            if r.running != Some(true)
                && let Some(code) = r.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(EngineError::Local {
            what: "wait for the exec session".into(),
            message: "it still runs 10 s after its output ended".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{ContainerSpec, create_body};

    #[test]
    fn interactive_containers_close_stdin_when_the_client_does() {
        let spec = ContainerSpec {
            image: "i".into(),
            tty: true,
            stdin: true,
            ..Default::default()
        };
        let b = create_body(&spec);
        assert_eq!(
            (b.tty, b.open_stdin, b.attach_stdin, b.stdin_once),
            (Some(true), Some(true), Some(true), Some(true))
        );
        let b = create_body(&ContainerSpec::default());
        assert_eq!((b.open_stdin, b.stdin_once), (Some(false), Some(false)));
    }

    #[test]
    fn terminal_sizes_are_never_zero() {
        assert_eq!(super::dims(0, 0), (1, 1));
        assert_eq!(super::dims(40, 120), (40, 120));
    }
}
