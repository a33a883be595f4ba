//! `dlenv setup`: from a bare Ubuntu/Debian host to working GPU containers, idempotently.
//!
//! The plan is computed by `dlenv_probe::setup::plan` (pure: facts + options → steps);
//! this module asks for consent, checks for root and executes the steps. It never
//! `chmod 666`s the engine socket: users get the docker group instead.

use std::io::{BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use dlenv_probe::LiveHost;
use dlenv_probe::setup::{
    Action, DOCKERD_LOG, EngineChoice, EngineSource, Plan, SetupOptions, StepState, plan,
    render_plan,
};

use crate::cli::Globals;
use crate::ui::{CliError, Exit};

/// Which engine to install.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    /// Docker Engine.
    Docker,
    /// Podman (GPUs through CDI).
    Podman,
}

/// Where Docker Engine comes from.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// Docker's official apt repository (docker-ce), with a signed-by keyring.
    Docker,
    /// The distribution's package (docker.io).
    Distro,
}

/// Arguments of `setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Print the exact commands and file edits; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The engine to install.
    #[arg(long, value_enum, default_value = "docker")]
    pub engine: EngineArg,
    /// Where Docker Engine comes from.
    #[arg(long, value_enum, default_value = "docker")]
    pub engine_source: SourceArg,
    /// A Docker Hub mirror to add to /etc/docker/daemon.json (other keys are kept).
    #[arg(long, value_name = "URL")]
    pub registry_mirror: Option<String>,
}

#[derive(Serialize)]
struct Outcome<'a> {
    dry_run: bool,
    applied: usize,
    plan: &'a Plan,
}

/// Run `setup`.
pub async fn run(args: SetupArgs, g: &Globals) -> Result<Exit, CliError> {
    if let Some(m) = &args.registry_mirror
        && !(m.starts_with("https://") || m.starts_with("http://"))
    {
        return Err(CliError::usage(format!(
            "--registry-mirror must be an http(s) URL, got `{m}`"
        ))
        .with_hint("e.g. --registry-mirror https://mirror.gcr.io"));
    }
    let options = SetupOptions {
        engine: match args.engine {
            EngineArg::Docker => EngineChoice::Docker,
            EngineArg::Podman => EngineChoice::Podman,
        },
        engine_source: match args.engine_source {
            SourceArg::Docker => EngineSource::Docker,
            SourceArg::Distro => EngineSource::Distro,
        },
        registry_mirror: args.registry_mirror.clone(),
    };
    let (_, ef) = super::doctor::engine_facts(g).await;
    let facts = dlenv_probe::probe(&LiveHost::default(), ef);
    let mut the_plan = plan(&facts, &options);
    let p = &g.printer;
    if let Some(u) = &the_plan.unsupported {
        return Err(CliError::unsatisfiable(u.clone()));
    }
    if args.dry_run || !the_plan.has_work() {
        if p.json {
            p.json(&Outcome {
                dry_run: args.dry_run,
                applied: 0,
                plan: &the_plan,
            });
        } else {
            if args.dry_run {
                p.out("dlenv setup --dry-run: nothing is changed; these are the exact steps\n");
            }
            p.out(render_plan(&the_plan).trim_end());
        }
        return Ok(Exit::Ok);
    }
    if facts.access.uid != Some(0) {
        return Err(CliError::unsatisfiable(
            "setup installs packages and edits files under /etc: it needs root",
        )
        .with_hint(
            "run it with sudo (`sudo dlenv setup --yes`), or see the commands with `dlenv setup --dry-run`",
        ));
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "setup would change this machine and stdin is not a terminal to ask for consent",
            )
            .with_hint("review the steps with `dlenv setup --dry-run`, then apply them with `dlenv setup --yes`"));
        }
        eprintln!("{}", render_plan(&the_plan).trim_end());
        eprint!("\nApply these steps? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            p.info("nothing changed");
            return Ok(Exit::Ok);
        }
    }
    let applied = execute(&mut the_plan, g).await?;
    if p.json {
        p.json(&Outcome {
            dry_run: false,
            applied,
            plan: &the_plan,
        });
    } else {
        for s in &the_plan.steps {
            let state = match &s.state {
                StepState::Todo => "done now".to_string(),
                StepState::Done(w) => format!("already done: {w}"),
                StepState::Skipped(w) => format!("skipped: {w}"),
                StepState::Blocked(w) => format!("blocked: {w}"),
            };
            p.out(format!("{}: {state}", s.description));
        }
        for s in the_plan.steps.iter().filter(|s| s.is_todo()) {
            if let Some(n) = &s.note {
                p.out(format!("note: {n}"));
            }
        }
        p.out(format!(
            "setup finished: {applied} step(s) applied; check the result with `dlenv doctor`"
        ));
    }
    Ok(Exit::Ok)
}

async fn execute(plan: &mut Plan, g: &Globals) -> Result<usize, CliError> {
    let p = &g.printer;
    let mut applied = 0;
    for step in plan.steps.iter().filter(|s| s.is_todo()) {
        p.info(format!("==> {}", step.description));
        for a in &step.actions {
            match a {
                Action::Run { command } => {
                    p.info(format!("$ {command}"));
                    let status = tokio::process::Command::new("sh")
                        .arg("-c")
                        .arg(command)
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .stdin(std::process::Stdio::null())
                        // stdout carries dlenv's result: the commands' chatter goes to stderr.
                        .stdout(std::io::stderr())
                        .status()
                        .await
                        .map_err(|e| CliError::failure(format!("cannot run `{command}`: {e}")))?;
                    if !status.success() {
                        return Err(CliError::failure(format!(
                            "setup step `{}` failed: `{command}` exited with {}",
                            step.description,
                            status.code().map_or("a signal".into(), |c| c.to_string())
                        ))
                        .with_hint(
                            "fix the cause and run `dlenv setup` again: steps already done are skipped",
                        ));
                    }
                }
                Action::WriteFile { path, content } => {
                    p.info(format!("write {path}"));
                    write_file(path, content)?;
                }
                Action::StartDockerd => start_dockerd(g).await?,
            }
        }
        applied += 1;
    }
    Ok(applied)
}

fn write_file(path: &str, content: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::failure(format!("cannot write {path}: {e}"));
    let path = std::path::Path::new(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    if path.exists() {
        let backup = format!("{}.dlenv-backup", path.display());
        std::fs::copy(path, &backup).map_err(fail)?;
    }
    // Write beside, then rename: a crash never leaves a half-written file.
    let tmp = format!("{}.dlenv-tmp", path.display());
    std::fs::write(&tmp, content).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// `GET /_ping` on the default Docker socket.
fn ping(socket: &str) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

fn log_tail(n: usize) -> String {
    let Ok(mut f) = std::fs::File::open(DOCKERD_LOG) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn start_dockerd(g: &Globals) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let socket = "/var/run/docker.sock";
    if ping(socket) {
        return Ok(());
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .map_err(|e| CliError::failure(format!("cannot open {DOCKERD_LOG}: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| CliError::failure(e.to_string()))?;
    g.printer.info(format!(
        "$ dockerd >>{DOCKERD_LOG} 2>&1 &   (no systemd: this dockerd will not survive a reboot)"
    ));
    let mut child = std::process::Command::new("dockerd")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        // Its own process group: a Ctrl-C in this terminal does not stop it.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            CliError::failure(format!("cannot start dockerd: {e}"))
                .with_hint("is Docker Engine installed? `apt-get install -y docker.io`")
        })?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if ping(socket) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::failure(format!(
                "dockerd exited ({status}) before answering; last lines of {DOCKERD_LOG}:\n{}",
                log_tail(30)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(CliError::failure(format!(
        "dockerd did not answer /_ping within 60 s; last lines of {DOCKERD_LOG}:\n{}",
        log_tail(30)
    )))
}
