//! The command line: clap types (their doc comments are the `--help` text) and dispatch.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::ui::{CliError, Exit, Printer};

/// GPU deep-learning environments in containers, without CUDA hell.
///
/// dlenv resolves a framework / CUDA / Python stack that runs on this host's NVIDIA
/// driver and GPUs, builds it into a container image, and runs it with the GPUs.
#[derive(Debug, Parser)]
#[command(
    name = "dlenv",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Machine-readable JSON on stdout (human text otherwise).
    #[arg(long, global = true)]
    pub json: bool,

    /// Engine endpoint (unix:///path, tcp://host:port). Default: DOCKER_HOST, the
    /// current docker context, then the usual Docker and Podman sockets.
    #[arg(long, global = true, value_name = "URI")]
    pub host: Option<String>,

    /// Only print results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Use the compat database in DIR instead of the installed or embedded one.
    #[arg(long, global = true, value_name = "DIR", env = "DLENV_COMPAT_DB")]
    pub compat_db: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// dlenv's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The container engine dlenv talks to.
    #[command(subcommand)]
    Engine(commands::engine::EngineCommand),
    /// Base images built locally, with no registry.
    #[command(subcommand)]
    Base(commands::base::BaseCommand),
    /// Check this host for GPU containers: OS, NVIDIA driver and GPUs, engine, NVIDIA
    /// Container Toolkit, CDI. Prints pass / warn / fail with the command that fixes each
    /// failure. Exit 0 when nothing fails (warnings allowed), 1 otherwise.
    Doctor(commands::doctor::DoctorArgs),
    /// Install what GPU containers need (Docker Engine or Podman, the docker group, the
    /// NVIDIA Container Toolkit, an optional registry mirror), skipping what is done.
    Setup(commands::setup::SetupArgs),
    /// Pick a full stack (framework build, Python, CUDA, cuDNN, base image) that runs on
    /// this host's driver and GPUs, or explain why none does. Exit 0 with a stack, 3 when
    /// none exists, 2 on malformed input.
    Resolve(commands::resolve::ResolveArgs),
    /// Which framework versions and builds run on this host, and why the others don't.
    Matrix(commands::resolve::MatrixArgs),
    /// The compatibility database: which one is in use, and updating it.
    #[command(subcommand)]
    Compat(commands::compat::CompatCommand),
}

/// Global settings every command receives.
#[derive(Debug, Clone)]
pub struct Globals {
    /// Output settings.
    pub printer: Printer,
    /// `--host`.
    pub host: Option<String>,
    /// `--compat-db`.
    pub compat_db: Option<std::path::PathBuf>,
}

/// Parse, run, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let globals = Globals {
        printer: Printer {
            json: cli.json,
            quiet: cli.quiet,
            verbose: cli.verbose,
        },
        host: cli.host.clone(),
        compat_db: cli.compat_db.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            r = run(cli.command, &globals) => r,
            _ = tokio::signal::ctrl_c() => Err(CliError::interrupted()),
        }
    });
    // Dropping the runtime cancels what is left; guards clean up on drop.
    drop(runtime);
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("{e}");
            e.exit.into()
        }
    }
}

async fn run(command: Command, g: &Globals) -> Result<Exit, CliError> {
    match command {
        Command::Engine(c) => commands::engine::run(c, g).await,
        Command::Base(c) => commands::base::run(c, g).await,
        Command::Doctor(a) => commands::doctor::run(a, g).await,
        Command::Setup(a) => commands::setup::run(a, g).await,
        Command::Resolve(a) => commands::resolve::resolve(a, g),
        Command::Matrix(a) => commands::resolve::matrix(a, g),
        Command::Compat(c) => commands::compat::run(c, g),
    }
}
