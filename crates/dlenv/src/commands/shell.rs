//! `dlenv shell` and `dlenv exec`: interactive sessions in containers.
//!
//! `shell` creates a container with exactly `dlenv run`'s defaults (GPUs, shared memory,
//! ulimits, your uid, the workspace mount), attaches to it *before* starting it so no early
//! output is lost, and removes it afterwards. `exec` runs a command in one of dlenv's
//! running containers.
//!
//! The terminal side follows one pattern for both:
//! - raw mode only when stdin *and* stdout are terminals; the saved settings are restored by
//!   a guard's `Drop` and by a panic hook, on every exit path, before any error is printed;
//!   raw mode turns Ctrl-C, Ctrl-D and Ctrl-Z into bytes for the container's terminal;
//! - stdin is read on a dedicated OS thread (not `tokio::io::stdin`, whose blocking read
//!   cannot be cancelled and would hold up runtime shutdown) and forwarded to the session;
//!   when the session ends, the process exits while that thread is still blocked in
//!   `read` — it is a plain thread the runtime does not wait for, so returning from `main`
//!   ends the process promptly, and no `std::process::exit` is needed;
//! - the window size is sent at start and on every SIGWINCH;
//! - without a terminal, no TTY is allocated: stdin is streamed through and closed at EOF
//!   (so `echo 'echo hi' | dlenv shell` works) and stdout and stderr stay separate.

use std::io::{IsTerminal, Read, Write};
use std::sync::{Mutex, Once};

use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use rustix::termios::{OptionalActions, Termios};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use dlenv_engine::{Attached, Engine, ExecSpec, OutputChunk};

use crate::cli::Globals;
use crate::commands::run::{
    ContainerArgs, create, find_managed, plan, target, translate_start_error,
};
use crate::ui::{CliError, Exit};

/// The default command of `dlenv shell`: bash when the image has it, else sh.
pub const DEFAULT_SHELL: [&str; 3] = [
    "sh",
    "-c",
    "command -v bash >/dev/null 2>&1 && exec bash || exec sh",
];

/// Arguments of `dlenv shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
    /// The command to run instead of the shell, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// Arguments of `dlenv exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The dlenv container (name or id, from `dlenv ps`); it must be running.
    pub container: String,
    /// Keep stdin open and forward it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal (when this one is a terminal; ignored with a warning otherwise).
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user (uid:gid or name; default: the container's user).
    #[arg(short, long, value_name = "USER")]
    pub user: Option<String>,
    /// Working directory in the container (default: the container's).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The local terminal.

/// The terminal settings to restore, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn restore_terminal() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &t);
    }
}

/// Raw mode on stdin while alive; `Drop` (and a panic hook) put the old settings back.
struct RawMode;

impl RawMode {
    fn enable() -> Result<Self, CliError> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        let failed = |e: rustix::io::Errno| {
            CliError::failure(format!("cannot put the terminal into raw mode: {e}"))
        };
        let saved = rustix::termios::tcgetattr(std::io::stdin()).map_err(failed)?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        // `Now`, not `Flush`: keys typed before the session starts still reach it.
        if let Err(e) = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &raw) {
            restore_terminal();
            return Err(failed(e));
        }
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Whether this process can drive an interactive terminal session.
fn on_a_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's (rows, columns).
fn window_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Read stdin on a dedicated OS thread; the channel closes at EOF.
fn spawn_stdin_reader() -> Result<mpsc::Receiver<Bytes>, CliError> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    std::thread::Builder::new()
        .name("dlenv-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .map_err(|e| CliError::failure(format!("cannot start the stdin reader: {e}")))?;
    Ok(rx)
}

/// Forward stdin to the session's input; at EOF, close the input (the process then sees
/// EOF on its stdin).
fn forward_stdin(
    attached_input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) -> Result<(), CliError> {
    let mut rx = spawn_stdin_reader()?;
    let mut input = attached_input;
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
                return;
            }
        }
        let _ = input.shutdown().await;
    });
    Ok(())
}

/// What a window-size change resizes.
enum Tty<'a> {
    Container(&'a str),
    Exec(&'a str),
}

impl Tty<'_> {
    async fn resize(&self, engine: &Engine) {
        let Some((rows, cols)) = window_size() else {
            return;
        };
        // A resize that races the process's exit fails harmlessly.
        let _ = match self {
            Tty::Container(id) => engine.resize_container_tty(id, rows, cols).await,
            Tty::Exec(id) => engine.exec_resize(id, rows, cols).await,
        };
    }
}

/// Copy the session's output to stdout/stderr until it ends, resizing the remote TTY on
/// SIGWINCH when there is one.
async fn pump_output(
    engine: &Engine,
    output: &mut dlenv_engine::OutputStream,
    tty: Option<Tty<'_>>,
) -> Result<(), CliError> {
    let mut winch = match &tty {
        Some(_) => Some(signal(SignalKind::window_change()).map_err(|e| {
            CliError::failure(format!("cannot listen for window-size changes: {e}"))
        })?),
        None => None,
    };
    if let Some(t) = &tty {
        t.resize(engine).await;
    }
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(OutputChunk::Stdout(b))) => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&b);
                    let _ = o.flush();
                }
                Some(Ok(OutputChunk::Stderr(b))) => {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(&b);
                    let _ = e.flush();
                }
                // A broken stream ends the session like a closed one; the exit code says
                // how the process ended.
                Some(Err(_)) | None => return Ok(()),
            },
            Some(()) = async { winch.as_mut()?.recv().await } => {
                if let Some(t) = &tty {
                    t.resize(engine).await;
                }
            }
        }
    }
}

/// Run `fut` until it finishes or dlenv is told to stop: Ctrl-C as a signal (only without
/// raw mode, or from `kill`), SIGTERM, or SIGHUP (the terminal went away). The caller
/// then cleans up.
async fn until_signalled<T>(
    fut: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    let listen = |k: SignalKind| {
        signal(k).map_err(|e| CliError::failure(format!("cannot listen for signals: {e}")))
    };
    let mut term = listen(SignalKind::terminate())?;
    let mut hup = listen(SignalKind::hangup())?;
    let stopped = |sig: &str, code: u8| CliError {
        exit: Exit::Child(code),
        message: format!("{sig}: stopped the session"),
        hint: None,
    };
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::interrupted()),
        _ = term.recv() => Err(stopped("SIGTERM", 143)),
        _ = hup.recv() => Err(stopped("SIGHUP", 129)),
    }
}

// ---------------------------------------------------------------------------------------
// `dlenv shell`.

/// `dlenv shell`.
pub async fn shell(a: ShellArgs, g: &Globals) -> Result<Exit, CliError> {
    // `--image REF`, else the built environment of ./dlenv.toml (as `dlenv run`).
    let target = target(&a.container, g).await?;
    let engine = super::connect(g).await?;
    let cmd = if a.cmd.is_empty() {
        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
    } else {
        a.cmd.clone()
    };
    let tty = on_a_terminal();
    let mut planned = plan(&a.container, &target, Some(cmd))?;
    planned.spec.tty = tty;
    planned.spec.stdin = true;
    let id = create(&engine, g, planned).await?;
    let result = until_signalled(shell_session(&engine, &id, tty)).await;
    // Always remove the container: after the exit, a failed start, an error or a signal.
    let _ = engine.remove_container(&id).await;
    Ok(Exit::from_child(result?))
}

async fn shell_session(engine: &Engine, id: &str, tty: bool) -> Result<i64, CliError> {
    let Attached { mut output, input } = engine.attach_interactive(id).await?;
    let raw = if tty { Some(RawMode::enable()?) } else { None };
    engine
        .start_container(id)
        .await
        .map_err(translate_start_error)?;
    forward_stdin(input)?;
    let pumped = pump_output(engine, &mut output, tty.then_some(Tty::Container(id))).await;
    // The terminal is restored before anything else is printed.
    drop(raw);
    pumped?;
    Ok(engine.wait_container(id).await?)
}

// ---------------------------------------------------------------------------------------
// `dlenv exec`.

/// Find one of dlenv's running containers by name or id prefix; refuse others.
async fn find_running(engine: &Engine, which: &str) -> Result<String, CliError> {
    let c = find_managed(engine, which).await?;
    if c.state != "running" {
        return Err(CliError::failure(format!(
            "dlenv container `{which}` is not running (it is {})",
            c.state
        ))
        .with_hint("`dlenv ps` lists dlenv's containers and their state"));
    }
    Ok(c.id)
}

/// `dlenv exec`.
pub async fn exec(a: ExecArgs, g: &Globals) -> Result<Exit, CliError> {
    for e in &a.env {
        if !e.contains('=') || e.starts_with('=') {
            return Err(CliError::usage(format!("--env: `{e}` is not KEY=VALUE")));
        }
    }
    let engine = super::connect(g).await?;
    let id = find_running(&engine, &a.container).await?;
    let tty = a.tty && on_a_terminal();
    if a.tty && !tty {
        g.printer
            .warn("-t: stdin and stdout are not both terminals; running without a TTY");
    }
    let spec = ExecSpec {
        cmd: a.cmd.clone(),
        tty,
        stdin: a.interactive,
        env: a.env.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
    };
    let exec_id = engine.exec_create(&id, &spec).await?;
    until_signalled(exec_session(&engine, &exec_id, tty, a.interactive))
        .await
        .map(Exit::from_child)
}

async fn exec_session(
    engine: &Engine,
    exec_id: &str,
    tty: bool,
    stdin: bool,
) -> Result<i64, CliError> {
    let raw = if tty { Some(RawMode::enable()?) } else { None };
    let Attached { mut output, input } = engine.exec_start(exec_id, tty).await?;
    if stdin {
        forward_stdin(input)?;
    } else {
        drop(input);
    }
    let pumped = pump_output(engine, &mut output, tty.then_some(Tty::Exec(exec_id))).await;
    drop(raw);
    pumped?;
    Ok(engine.exec_exit_code(exec_id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_dlenv_exits() {
        assert_eq!(Exit::from_child(0), Exit::Ok);
        assert_eq!(Exit::from_child(3), Exit::Child(3));
        assert_eq!(Exit::from_child(300), Exit::Child(255));
        assert_eq!(Exit::from_child(-1), Exit::Failure);
    }

    #[test]
    fn default_shell_prefers_bash() {
        assert_eq!(DEFAULT_SHELL[0], "sh");
        assert!(DEFAULT_SHELL[2].contains("exec bash"));
    }
}
