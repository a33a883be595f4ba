//! One module per command group: clap arguments plus an async `run`.

pub mod base;
pub mod build;
pub mod check;
pub mod commit;
pub mod compat;
pub mod dockerfile;
pub mod doctor;
pub mod engine;
pub mod init;
pub mod jupyter;
pub mod lock;
pub mod registry;
pub mod resolve;
pub mod run;
pub mod setup;
pub mod share;
pub mod shell;
pub mod up;

use dlenv_engine::{Discovery, Engine};

use crate::cli::Globals;
use crate::ui::CliError;

/// Connect to the engine the user configured (or the first default that answers).
pub async fn connect(g: &Globals) -> Result<Engine, CliError> {
    Ok(Engine::connect(&Discovery::from_env(g.host.clone())).await?)
}
