//! The `dlenv` binary: parse the command line, run the command, map the outcome to an
//! exit code. All behaviour lives in the command modules and the library crates.

mod cli;
mod commands;
mod ui;

fn main() -> std::process::ExitCode {
    cli::main()
}
