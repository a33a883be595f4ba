//! `dlenv engine …`

use clap::Subcommand;

use crate::cli::Globals;
use crate::ui::{CliError, Exit};

/// Engine commands.
#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Show the engine in use: endpoint and why, Docker or Podman, versions, storage,
    /// runtimes (is `nvidia` registered), cgroups, rootless, CDI devices.
    Info,
}

/// Run an engine command.
pub async fn run(cmd: EngineCommand, g: &Globals) -> Result<Exit, CliError> {
    match cmd {
        EngineCommand::Info => info(g).await,
    }
}

async fn info(g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let r = engine.report().await?;
    let p = &g.printer;
    if p.json {
        p.json(&r);
        return Ok(Exit::Ok);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let kind = match r.kind {
        dlenv_engine::EngineKind::Docker => "Docker Engine",
        dlenv_engine::EngineKind::Podman => "Podman",
    };
    p.out(format!("endpoint:         {}", r.endpoint.uri));
    p.out(format!("  chosen from:    {}", r.endpoint.source));
    p.out(format!("engine:           {kind} {}", r.version));
    p.out(format!(
        "API version:      {} (oldest supported: {})",
        r.api_version,
        opt(&r.min_api_version)
    ));
    p.out(format!(
        "OS:               {} ({}, kernel {})",
        opt(&r.operating_system),
        opt(&r.architecture),
        opt(&r.kernel_version)
    ));
    p.out(format!("storage driver:   {}", opt(&r.storage_driver)));
    let space = match (r.data_root_free_bytes, r.data_root_total_bytes) {
        (Some(f), Some(t)) => format!(" ({} free of {})", human_bytes(f), human_bytes(t)),
        _ => String::new(),
    };
    p.out(format!("data root:        {}{space}", opt(&r.data_root)));
    let podman = r.kind == dlenv_engine::EngineKind::Podman;
    p.out(format!(
        "runtimes:         {} (default: {}{})",
        r.runtimes.join(", "),
        opt(&r.default_runtime),
        // Podman lists every runtime containers.conf knows, installed or not.
        if podman {
            "; every configured one, installed or not"
        } else {
            ""
        }
    ));
    p.out(format!(
        "nvidia runtime:   {}",
        match (r.nvidia_runtime, podman) {
            (_, true) => "not used by Podman (GPUs through CDI)",
            (true, false) => "registered",
            (false, false) => "not registered",
        }
    ));
    p.out(format!(
        "cgroups:          driver {}, version {}",
        opt(&r.cgroup_driver),
        opt(&r.cgroup_version)
    ));
    p.out(format!(
        "rootless:         {}",
        if r.rootless { "yes" } else { "no" }
    ));
    match (&r.cdi_spec_dirs, &r.discovered_devices) {
        (None, None) if podman && engine.version_below(5, 4) => p.out(format!(
            "CDI:              Podman {} ignores GPU (CDI) requests over the Docker API \
             (needs 5.4+): `dlenv run --gpus` refuses",
            r.version
        )),
        (None, None) if podman => p.out(
            "CDI:              Podman reads the specs itself (/etc/cdi, /var/run/cdi); \
             `dlenv doctor` checks them",
        ),
        (None, None) => p.out("CDI:              not reported by this engine (needs API 1.47+)"),
        (dirs, devs) => {
            p.out(format!(
                "CDI spec dirs:    {}",
                dirs.clone().unwrap_or_default().join(", ")
            ));
            let devs = devs.clone().unwrap_or_default();
            p.out(format!(
                "CDI devices:      {}",
                if devs.is_empty() {
                    "none".to_string()
                } else {
                    devs.join(", ")
                }
            ));
        }
    }
    if !r.registry_mirrors.is_empty() {
        p.out(format!(
            "registry mirrors: {}",
            r.registry_mirrors.join(", ")
        ));
    }
    for (name, v) in [
        ("HTTP proxy", &r.http_proxy),
        ("HTTPS proxy", &r.https_proxy),
    ] {
        if let Some(v) = v {
            p.out(format!("{name:<17} {v}"));
        }
    }
    for w in &r.warnings {
        p.warn(format!("engine: {w}"));
    }
    Ok(Exit::Ok)
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
