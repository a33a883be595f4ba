//! `dlenv dockerfile`: print the Dockerfile for the spec.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use dlenv_render::{RenderOptions, render};

use crate::cli::Globals;
use crate::commands::compat::load_db;
use crate::commands::lock::{LockState, current, load_spec, read_lock, resolve_lock};
use crate::commands::resolve::HostArgs;
use crate::ui::{CliError, Exit};

/// Arguments of `dlenv dockerfile`.
#[derive(Debug, Args)]
pub struct DockerfileArgs {
    /// The spec (default: dlenv.toml, then pyproject.toml, in the current directory).
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Behind a TLS-intercepting proxy: mount .dlenv/ca-bundle.pem from the build context
    /// into downloading steps (never stored in the image).
    #[arg(long)]
    pub ca_bundle: bool,
    /// Default uid of the image's user (default: yours).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Default gid of the image's user (default: yours).
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,
    /// Name of the image's non-root user.
    #[arg(long, value_name = "NAME", default_value = "dlenv")]
    pub user: String,
    /// Copy the project directory into /workspace as the last layer.
    #[arg(long)]
    pub copy_project: bool,
    /// Pull Docker Hub base images through this mirror (host[:port]).
    #[arg(long, value_name = "HOST", env = "DLENV_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Serialize)]
struct Out<'a> {
    dockerfile: &'a str,
    context_files: &'a [String],
    from_lock: bool,
}

/// `dlenv dockerfile`.
pub fn run(a: DockerfileArgs, g: &Globals) -> Result<Exit, CliError> {
    let db = load_db(g)?.db;
    let sf = load_spec(a.file.as_deref(), &db)?;
    let p = &g.printer;
    let fresh = match read_lock(&sf)? {
        LockState::Present(l) => {
            let reasons = l.staleness(&current(&sf, &db)?);
            if reasons.is_empty() {
                Some(*l)
            } else {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                p.warn(format!(
                    "{} is stale ({}); rendering from a fresh resolution (run `dlenv lock` to \
                     update the lock)",
                    sf.lock_path().display(),
                    why.join("; ")
                ));
                None
            }
        }
        LockState::OtherFormat(r) => {
            p.warn(format!(
                "{}: {r}; resolving afresh",
                sf.lock_path().display()
            ));
            None
        }
        LockState::Missing => {
            p.info(format!(
                "note: no {}; resolving in memory (run `dlenv lock` to pin it)",
                sf.lock_path().display()
            ));
            None
        }
    };
    let from_lock = fresh.is_some();
    let lock = match fresh {
        Some(l) => l,
        None => resolve_lock(&sf, &db, &a.host, g)?,
    };
    let (uid, gid) = crate::commands::run::host_user();
    let opts = RenderOptions {
        uid: a.uid.unwrap_or(uid),
        gid: a.gid.unwrap_or(gid),
        user: a.user,
        ca_bundle: a.ca_bundle,
        copy_project: a.copy_project,
        registry_mirror: a.registry_mirror.clone(),
    };
    if let Err(why) = dlenv_spec::spec::check_name(&opts.user) {
        return Err(CliError::usage(format!("--user {:?}: {why}", opts.user)));
    }
    let r = render(&lock, &opts);
    if p.json {
        p.json(&Out {
            dockerfile: &r.dockerfile,
            context_files: &r.context_files,
            from_lock,
        });
    } else {
        print!("{}", r.dockerfile);
    }
    Ok(Exit::Ok)
}
