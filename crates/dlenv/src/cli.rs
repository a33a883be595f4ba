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

/// dlenv's commands, in the order of the pipeline.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Spec to running, checked environment in one command.
    ///
    /// Host check, resolve, lock, build, Jupyter (when the spec enables it), check, and how
    /// to connect.
    Up(commands::up::UpArgs),
    /// Write a dlenv.toml spec.
    ///
    /// A flag for every field, prompts on a terminal, defaults the resolver accepts on this
    /// host. Refuses to overwrite without --force.
    Init(Box<commands::init::InitArgs>),
    /// Resolve the spec and write dlenv.lock.
    ///
    /// Written atomically. With --locked, only check that the lock is up to date: exit 3
    /// naming why when it is stale or missing.
    Lock(commands::lock::LockArgs),
    /// Print the environment's Dockerfile.
    ///
    /// From dlenv.lock when it is fresh, else resolved in memory. It builds without dlenv:
    /// `dlenv dockerfile > Dockerfile`.
    Dockerfile(commands::dockerfile::DockerfileArgs),
    /// Build the environment's image.
    ///
    /// Resolves and locks first when needed, builds through the engine's BuildKit, and
    /// records the installed packages in dlenv.lock.
    Build(commands::build::BuildArgs),
    /// Run a command in the environment (or --image).
    ///
    /// With GPUs, shared memory, your uid and the project at /workspace; its exit code
    /// becomes dlenv's. The container is removed afterwards unless `-d`.
    Run(commands::run::RunArgs),
    /// An interactive shell in a new container.
    ///
    /// bash when the image has it, else sh (or CMD after `--`), with `dlenv run`'s
    /// defaults; its exit code becomes dlenv's and the container is removed afterwards.
    /// Without a terminal, stdin is streamed through.
    Shell(commands::shell::ShellArgs),
    /// Run a command in a running dlenv container.
    ///
    /// Its exit code becomes dlenv's. -i forwards stdin, -t allocates a terminal.
    Exec(commands::shell::ExecArgs),
    /// Start JupyterLab safely: a token, 127.0.0.1, your uid.
    ///
    /// Prints its URL once it answers.
    Jupyter(commands::jupyter::JupyterArgs),
    /// What the framework sees inside the environment.
    ///
    /// Import, CUDA, each GPU with a small matmul, the CPU, versions. Exit 1 when
    /// something expected fails.
    Check(commands::check::CheckArgs),
    /// List dlenv's containers.
    Ps,
    /// Stop dlenv containers.
    Stop(commands::run::TargetArgs),
    /// Remove dlenv containers.
    Rm(commands::run::TargetArgs),
    /// Show a dlenv container's log.
    Logs(commands::run::LogsArgs),
    /// Commit a container as an image, safely.
    ///
    /// Refuses (unless --force) when the container's changes include host NVIDIA driver
    /// files or likely secrets.
    Commit(commands::commit::CommitArgs),
    /// Write an environment or image to one file for another host.
    ///
    /// --recipe (spec, lock, Dockerfile: kilobytes), --full (every layer) or --delta (the
    /// layers above a public base). Layers are compressed with multithreaded zstd and every
    /// member carries a sha256. --format docker-archive writes what `docker load` takes.
    Export(commands::share::ExportArgs),
    /// Load a bundle (or a `docker save` archive) on this host.
    ///
    /// Verifies every member's digest before the engine sees a byte, re-checks the image's
    /// CUDA requirement and GPU code against this host's driver and GPUs, checks each
    /// layer's diff id while streaming (no image is left if one fails), and restores a
    /// recipe's files.
    Import(commands::share::ImportArgs),
    /// Push an environment or image to a registry.
    ///
    /// Credentials come from the docker config (`docker login`, credential helpers);
    /// progress is shown per layer.
    Push(commands::registry::PushArgs),
    /// Pull an image from a registry and re-check it against this host's driver.
    Pull(commands::registry::PullArgs),
    /// List the images dlenv made.
    Images,
    /// Remove images dlenv made.
    Rmi(commands::share::RmiArgs),
    /// Pick a stack that runs on this host, or explain why none does.
    ///
    /// Framework build, Python, CUDA, cuDNN and base image, for this host's driver and GPUs
    /// (or the ones given). Exit 0 with a stack, 3 when none exists, 2 on malformed input.
    Resolve(commands::resolve::ResolveArgs),
    /// Which framework builds run on this host, and why the others don't.
    Matrix(commands::resolve::MatrixArgs),
    /// The compatibility database: which one is in use, and updating it.
    #[command(subcommand)]
    Compat(commands::compat::CompatCommand),
    /// Check this host for GPU containers.
    ///
    /// OS, NVIDIA driver and GPUs, engine, NVIDIA Container Toolkit, CDI: pass / warn / fail
    /// with the command that fixes each failure. Exit 0 when nothing fails (warnings
    /// allowed), 1 otherwise.
    Doctor(commands::doctor::DoctorArgs),
    /// Install what GPU containers need, skipping what is done.
    ///
    /// Docker Engine or Podman, the docker group, the NVIDIA Container Toolkit, an optional
    /// registry mirror.
    Setup(commands::setup::SetupArgs),
    /// The container engine dlenv talks to.
    #[command(subcommand)]
    Engine(commands::engine::EngineCommand),
    /// Base images built locally, with no registry.
    #[command(subcommand)]
    Base(commands::base::BaseCommand),
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
    // Commands that must clean up on Ctrl-C listen for it themselves (see
    // `interruptible`); elsewhere SIGINT keeps its default effect.
    let result = runtime.block_on(run(cli.command, &globals));
    drop(runtime);
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("{e}");
            e.exit.into()
        }
    }
}

/// Run `fut` until it finishes or Ctrl-C arrives; on Ctrl-C the future is dropped (its
/// guards clean up) and the command exits 130.
pub async fn interruptible<T>(
    fut: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => Err(CliError::interrupted()),
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
        Command::Run(a) => commands::run::run(a, g).await,
        Command::Shell(a) => commands::shell::shell(a, g).await,
        Command::Exec(a) => commands::shell::exec(a, g).await,
        Command::Build(a) => commands::build::run(a, g).await,
        Command::Check(a) => commands::check::run(a, g).await,
        Command::Jupyter(a) => commands::jupyter::run(a, g).await,
        Command::Up(a) => commands::up::run(a, g).await,
        Command::Commit(a) => commands::commit::run(a, g).await,
        Command::Export(a) => commands::share::export(a, g).await,
        Command::Import(a) => commands::share::import(a, g).await,
        Command::Push(a) => commands::registry::push(a, g).await,
        Command::Pull(a) => commands::registry::pull(a, g).await,
        Command::Images => commands::share::images(g).await,
        Command::Rmi(a) => commands::share::rmi(a, g).await,
        Command::Ps => commands::run::ps(g).await,
        Command::Stop(a) => commands::run::stop(a, g).await,
        Command::Rm(a) => commands::run::rm(a, g).await,
        Command::Logs(a) => commands::run::logs(a, g).await,
        Command::Init(a) => commands::init::run(*a, g),
        Command::Lock(a) => commands::lock::run(a, g),
        Command::Dockerfile(a) => commands::dockerfile::run(a, g),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
