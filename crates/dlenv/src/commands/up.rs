//! `dlenv up`: the newcomer's one command — check the host, resolve and lock, build,
//! start Jupyter when the spec enables it, check the environment, and say how to connect.
//! It works on the spec in the current directory (`dlenv.toml`, or `[tool.dlenv]` in
//! `pyproject.toml`).

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::Globals;
use crate::commands::base::{BootstrapArgs, bootstrap_image};
use crate::commands::build::{BuildArgs, build_env};
use crate::commands::check::check_target;
use crate::commands::compat::load_db;
use crate::commands::jupyter::JupyterArgs;
use crate::commands::lock::load_spec;
use crate::commands::resolve::HostArgs;
use crate::commands::run::{ContainerArgs, target};
use crate::ui::{CliError, Exit};

/// Where the base image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaseSource {
    /// The spec's base (or the resolver's), pulled by the engine when missing.
    Spec,
    /// A Debian base built here by `dlenv base bootstrap` (no registry needed).
    Bootstrap,
}

/// Arguments of `dlenv up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the base image comes from: `spec`, or `bootstrap` for machines that cannot
    /// pull images (builds `dlenv/base:debian-bookworm` with debootstrap; needs root).
    #[arg(long, value_enum, default_value = "spec")]
    pub base: BaseSource,
    /// Pull Docker Hub base images through this mirror (host[:port]).
    #[arg(long, value_name = "HOST", env = "DLENV_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
    /// Do not start Jupyter even if the spec enables it.
    #[arg(long)]
    pub no_jupyter: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

#[derive(Serialize)]
struct UpOut {
    image: String,
    jupyter: Option<String>,
    check_ok: bool,
    gpu: bool,
}

/// `dlenv up`.
pub async fn run(a: UpArgs, g: &Globals) -> Result<Exit, CliError> {
    let p = g.printer;
    // 1. The host: an engine must answer; GPUs are optional (CPU fallback, said out loud).
    let engine = super::connect(g).await.map_err(|e| {
        let hint = e.hint.clone().unwrap_or_default();
        e.with_hint(format!("{hint}\n      `dlenv doctor` checks the whole host; `sudo dlenv setup` installs what is missing"))
    })?;
    p.info(format!(
        "engine: {:?} {} at {}",
        engine.kind(),
        engine.version(),
        engine.endpoint().uri
    ));
    let nv = dlenv_probe::facts::read_nvidia(&dlenv_probe::LiveHost::default());
    if nv.gpus.is_empty() && a.host.gpus.is_empty() && a.host.gpu_ccs.is_empty() {
        p.info(
            "no NVIDIA GPU on this host: setting up a CPU-only environment (on a GPU host the \
             same spec gets a CUDA stack)",
        );
    }

    // 2. The spec, with the bootstrapped base if asked.
    let db = load_db(g)?.db;
    let mut sf = load_spec(None, &db)?;
    if a.base == BaseSource::Bootstrap {
        let out = bootstrap_image(&BootstrapArgs::default(), g).await?;
        p.info(format!(
            "base: {} ({})",
            out.image,
            if out.reused { "reused" } else { "built" }
        ));
        sf.spec.env.base = dlenv_spec::spec::Choice::Value(out.image);
    }

    // 3. Lock and build.
    let build = BuildArgs {
        file: None,
        locked: false,
        no_cache: false,
        ca_bundle: None,
        registry_mirror: a.registry_mirror.clone(),
        host: a.host.clone(),
    };
    let built = build_env(&sf, &build, g).await?;
    p.info(format!(
        "built {} in {:.1} s ({} of {} steps from cache)",
        built.image, built.seconds, built.cached_steps, built.steps
    ));

    // 4. Check it, from inside.
    let c = ContainerArgs::default();
    let t = target(&c, g).await?;
    let (observed, verdict) = check_target(&c, &t, g).await?;
    let gpu = observed.frameworks.iter().any(|f| f.cuda_available);
    for f in &observed.frameworks {
        p.info(format!(
            "check: {} {} on {}",
            f.name,
            f.version.as_deref().unwrap_or("?"),
            if f.cuda_available {
                format!("{} GPU(s)", f.devices.len())
            } else {
                "CPU".into()
            }
        ));
    }
    if !verdict.ok {
        return Err(CliError::failure(format!(
            "the environment was built but its check failed:\n  - {}",
            verdict.problems.join("\n  - ")
        ))
        .with_hint("`dlenv check -v` shows the details; `dlenv doctor` checks the host"));
    }

    // 5. Jupyter, when the spec enables it.
    let jupyter = if sf.spec.jupyter.enabled && !a.no_jupyter {
        let ja = JupyterArgs {
            container: ContainerArgs::default(),
            port: None,
            detach: true,
            notebook: false,
            no_browser: true,
            timeout: 90,
        };
        let (_, url, _) = crate::commands::jupyter::start(&ja, &t, &engine, g).await?;
        Some(url)
    } else {
        None
    };

    // 6. How to connect.
    if p.json {
        p.json(&UpOut {
            image: built.latest.clone(),
            jupyter,
            check_ok: verdict.ok,
            gpu,
        });
        return Ok(Exit::Ok);
    }
    p.out(format!(
        "environment `{}` is up ({}, {})",
        sf.spec.env.name,
        built.latest,
        if gpu { "GPU" } else { "CPU only" }
    ));
    if let Some(url) = &jupyter {
        p.out(format!("  Jupyter:  {url}"));
    }
    p.out("  shell:    dlenv shell");
    p.out("  run:      dlenv run -- python your_script.py");
    p.out("  status:   dlenv ps      stop: dlenv stop NAME");
    Ok(Exit::Ok)
}
