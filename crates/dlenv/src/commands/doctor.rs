//! `dlenv doctor`: every host check, in dependency order, each failure with its fix.
//!
//! The checks and the `--json` schema (`dlenv.doctor/v1`) live in the `dlenv-probe`
//! crate (see its crate docs and README). This module fills the engine facts from the
//! engine client, runs the optional smoke test, and prints.
//!
//! Exit codes: 0 when no check fails (warnings allowed, e.g. a CPU-only host with no
//! NVIDIA driver), 1 when at least one check fails.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListImagesOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use clap::Args;
use futures_util::StreamExt;

use dlenv_engine::{
    AttemptFailure, Discovery, Engine, EngineError, EngineKind, EngineReport, MANAGED_LABEL,
};
use dlenv_probe::{Check, EngineFacts, EngineFailure, LiveHost, RecordingHost, Report, Status};

use crate::cli::Globals;
use crate::ui::{CliError, Exit};

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also start a throw-away container with a GPU request (like `docker run --gpus all`)
    /// from a local image (never pulled) and report what the engine answered.
    #[arg(long)]
    pub smoke: bool,
    /// Also write everything the probe read (files, command outputs, environment
    /// variables it asked for, NVML's answer, engine facts) to this new directory, in the
    /// layout of the test fixtures. Attach it to a bug report after reading it through.
    #[arg(long, value_name = "DIR")]
    pub record: Option<std::path::PathBuf>,
}

/// Engine facts from a report.
pub fn facts_from_report(r: &EngineReport) -> EngineFacts {
    EngineFacts {
        reachable: true,
        endpoint: Some(r.endpoint.uri.clone()),
        endpoint_source: Some(r.endpoint.source.to_string()),
        endpoint_configured: !matches!(
            r.endpoint.source,
            dlenv_engine::EndpointSource::WellKnown { .. }
        ),
        kind: Some(
            match r.kind {
                dlenv_engine::EngineKind::Docker => "docker",
                dlenv_engine::EngineKind::Podman => "podman",
            }
            .into(),
        ),
        version: Some(r.version.clone()),
        api_version: Some(r.api_version.clone()),
        operating_system: r.operating_system.clone(),
        runtimes: r.runtimes.clone(),
        default_runtime: r.default_runtime.clone(),
        rootless: r.rootless,
        cdi_spec_dirs: r.cdi_spec_dirs.clone(),
        discovered_devices: r.discovered_devices.clone(),
        data_root: r.data_root.clone(),
        data_root_free_bytes: r.data_root_free_bytes,
        cgroup_driver: r.cgroup_driver.clone(),
        cgroup_version: r.cgroup_version.clone(),
        proxy: r.https_proxy.clone().or_else(|| r.http_proxy.clone()),
        registry_mirrors: r.registry_mirrors.clone(),
        ..Default::default()
    }
}

/// Engine facts from a connection error.
pub fn facts_from_error(e: &EngineError) -> EngineFacts {
    let mut f = EngineFacts {
        error: Some(e.to_string()),
        hint: e.hint(),
        failure: Some(EngineFailure::Other),
        ..Default::default()
    };
    if let EngineError::Unreachable(attempts) = e {
        let has = |p: fn(&AttemptFailure) -> bool| attempts.iter().any(|a| p(&a.failure));
        f.failure = Some(if has(|a| matches!(a, AttemptFailure::PermissionDenied)) {
            EngineFailure::PermissionDenied
        } else if has(|a| matches!(a, AttemptFailure::ConnectionRefused)) {
            EngineFailure::ConnectionRefused
        } else if has(|a| matches!(a, AttemptFailure::NoAnswer(_))) {
            EngineFailure::NoAnswer
        } else if has(|a| matches!(a, AttemptFailure::SocketMissing)) {
            EngineFailure::SocketMissing
        } else {
            EngineFailure::Other
        });
        if let Some(a) = attempts.first() {
            f.endpoint = Some(a.endpoint.uri.clone());
            f.endpoint_source = Some(a.endpoint.source.to_string());
            f.endpoint_configured = !matches!(
                a.endpoint.source,
                dlenv_engine::EndpointSource::WellKnown { .. }
            );
        }
    }
    f
}

/// Connect and collect engine facts; the engine too when it answered.
pub async fn engine_facts(g: &Globals) -> (Option<Engine>, EngineFacts) {
    match Engine::connect(&Discovery::from_env(g.host.clone())).await {
        Ok(engine) => match engine.report().await {
            Ok(r) => {
                let f = facts_from_report(&r);
                (Some(engine), f)
            }
            Err(e) => (None, facts_from_error(&e)),
        },
        Err(e) => (None, facts_from_error(&e)),
    }
}

/// Run `doctor`.
pub async fn run(args: DoctorArgs, g: &Globals) -> Result<Exit, CliError> {
    let (engine, ef) = engine_facts(g).await;
    if let Some(dir) = &args.record
        && dir.exists()
    {
        return Err(CliError::usage(format!(
            "--record {}: already exists; give a new directory",
            dir.display()
        )));
    }
    let facts = match &args.record {
        None => dlenv_probe::probe(&LiveHost::default(), ef),
        Some(dir) => {
            let rec = RecordingHost::new(LiveHost::default());
            let facts = dlenv_probe::probe(&rec, ef.clone());
            let saved = rec.save(dir).and_then(|()| {
                let json = serde_json::to_string_pretty(&ef).map_err(std::io::Error::other)?;
                std::fs::write(dir.join("engine.json"), json + "\n")
            });
            if let Err(e) = saved {
                let _ = std::fs::remove_dir_all(dir);
                return Err(CliError::failure(format!(
                    "could not write the recording to {}: {e}",
                    dir.display()
                )));
            }
            g.printer
                .info(format!("recorded what the probe read in {}", dir.display()));
            facts
        }
    };
    let mut report = dlenv_probe::report(facts);
    if args.smoke {
        let c = match &engine {
            Some(e) => smoke(e, &report).await,
            None => Check {
                id: "smoke.gpu".into(),
                group: "smoke".into(),
                status: Status::Skip,
                summary: "skipped: no container engine answered (see engine.reachable)".into(),
                fix: None,
                details: vec![],
            },
        };
        report.push(c);
    }
    let p = &g.printer;
    if p.json {
        p.json(&report);
    } else {
        print_human(&report, g);
    }
    Ok(if report.healthy {
        Exit::Ok
    } else {
        Exit::Failure
    })
}

fn print_human(r: &Report, g: &Globals) {
    let p = &g.printer;
    let mut group = "";
    for c in &r.checks {
        if c.group != group {
            group = &c.group;
            p.out(format!("{group}:"));
        }
        let tag = match c.status {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        p.out(format!("  [{tag}] {:<22} {}", c.id, c.summary));
        let show_details = p.verbose > 0 || matches!(c.status, Status::Warn | Status::Fail);
        if show_details {
            for d in &c.details {
                p.out(format!("         {:<22} - {d}", ""));
            }
        }
        if let Some(fix) = &c.fix
            && matches!(c.status, Status::Warn | Status::Fail)
        {
            for (i, line) in fix.lines().enumerate() {
                let lead = if i == 0 { "fix:" } else { "" };
                p.out(format!("         {:<22} {lead:<4} {line}", ""));
            }
        }
    }
    let s = &r.summary;
    p.out(format!(
        "\n{}: {} passed, {} warning(s), {} failed, {} skipped",
        if r.healthy {
            "healthy"
        } else {
            "problems found"
        },
        s.pass,
        s.warn,
        s.fail,
        s.skip
    ));
}

/// Images tried first for the smoke test (dlenv's own test and base images).
const SMOKE_IMAGES: &[&str] = &[
    "busybox:dlenv-test",
    "dlenv-test/busybox:latest",
    "dlenv/base:debian-bookworm",
];

async fn pick_local_image(engine: &Engine) -> Result<Option<String>, String> {
    let images = engine
        .client()
        .list_images(None::<ListImagesOptions>)
        .await
        .map_err(|e| e.to_string())?;
    let tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .filter(|t| t != "<none>:<none>")
        .collect();
    // Podman names local images `localhost/…` and Docker Hub ones `docker.io/…`.
    let bare = |t: &str| {
        t.strip_prefix("localhost/")
            .or_else(|| t.strip_prefix("docker.io/"))
            .unwrap_or(t)
            .to_string()
    };
    Ok(SMOKE_IMAGES
        .iter()
        .find_map(|want| tags.iter().find(|t| bare(t) == *want).cloned())
        .or_else(|| {
            let mut t = tags.clone();
            t.sort();
            t.into_iter().next()
        }))
}

fn smoke_check(status: Status, summary: impl Into<String>) -> Check {
    Check {
        id: "smoke.gpu".into(),
        group: "smoke".into(),
        status,
        summary: summary.into(),
        fix: None,
        details: vec![],
    }
}

/// Start a throw-away container with the GPU request `dlenv run --gpus all` would send
/// (Docker: `--gpus all`'s device request; Podman: the CDI device `nvidia.com/gpu=all`) and
/// report.
async fn smoke(engine: &Engine, r: &Report) -> Check {
    let podman = engine.kind() == EngineKind::Podman;
    if podman && engine.version_below(5, 4) {
        // Its compat API drops every device request: a container would start without
        // GPUs and prove nothing.
        let has_driver = r.facts.nvidia.driver_present();
        let mut c = smoke_check(
            if has_driver {
                Status::Warn
            } else {
                Status::Skip
            },
            format!(
                "skipped: Podman {} ignores GPU (CDI) requests over the Docker API (they arrive \
                 in 5.4), so a container would run without GPUs and prove nothing",
                engine.version()
            ),
        );
        if has_driver {
            c.fix = Some(
                "upgrade Podman to 5.4 or later, or use Docker with the NVIDIA Container \
                 Toolkit: sudo dlenv setup --yes"
                    .into(),
            );
        }
        return c;
    }
    let image = match pick_local_image(engine).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return smoke_check(
                Status::Skip,
                "skipped: no local image to run the smoke test in (dlenv never pulls for it); build one with `sudo dlenv base bootstrap`",
            );
        }
        Err(e) => return smoke_check(Status::Fail, format!("cannot list images: {e}")),
    };
    let docker = engine.client();
    let name = format!("dlenv-doctor-smoke-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        cmd: Some(vec!["nvidia-smi".into(), "-L".into()]),
        labels: Some(HashMap::from([
            (MANAGED_LABEL.to_string(), "true".to_string()),
            ("dlenv.purpose".to_string(), "doctor-smoke".to_string()),
        ])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            device_requests: Some(vec![if podman {
                // What `dlenv run --gpus all` sends to Podman (it reads driver `cdi` only).
                DeviceRequest {
                    driver: Some("cdi".into()),
                    device_ids: Some(vec!["nvidia.com/gpu=all".into()]),
                    capabilities: Some(vec![vec!["cdi".into()]]),
                    ..Default::default()
                }
            } else {
                // Exactly what `docker run --gpus all` sends.
                DeviceRequest {
                    driver: Some(String::new()),
                    count: Some(-1),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }
            }]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    let id = match docker.create_container(Some(opts), body).await {
        Ok(c) => c.id,
        Err(e) => return explain_smoke_error(r, &image, &e.to_string()),
    };
    let outcome = match docker.start_container(&id, None).await {
        Err(e) => explain_smoke_error(r, &image, &e.to_string()),
        Ok(()) => {
            let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
            let code = match tokio::time::timeout(Duration::from_secs(30), wait.next()).await {
                Ok(Some(Ok(w))) => Some(w.status_code),
                Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError {
                    code, ..
                }))) => Some(code),
                _ => None,
            };
            let mut logs = String::new();
            let mut stream = docker.logs(
                &id,
                Some(
                    LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            );
            while let Some(Ok(chunk)) = stream.next().await {
                logs.push_str(&chunk.to_string());
            }
            match code {
                Some(0) => {
                    let mut c = smoke_check(
                        Status::Pass,
                        format!("a GPU container ran in {image}: the engine gave it the GPUs"),
                    );
                    c.details = logs.lines().map(String::from).collect();
                    c
                }
                other => {
                    let mut c = smoke_check(
                        Status::Warn,
                        format!(
                            "the engine accepted the GPU request, but `nvidia-smi -L` in {image} {}",
                            other.map_or("did not finish in 30 s".to_string(), |c| format!(
                                "exited {c}"
                            ))
                        ),
                    );
                    c.details = logs.lines().map(String::from).collect();
                    c
                }
            }
        }
    };
    let _ = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    outcome
}

fn explain_smoke_error(r: &Report, image: &str, err: &str) -> Check {
    let f = &r.facts;
    let has_driver = f.nvidia.driver_present();
    let short = err
        .rsplit_once("message: ")
        .map_or(err, |(_, m)| m)
        .trim_matches('"')
        .to_string();
    if err.contains("could not select device driver") {
        let mut c = smoke_check(
            if has_driver {
                Status::Fail
            } else {
                Status::Warn
            },
            format!("the engine refused the GPU request: {short}"),
        );
        c.details.push(if has_driver {
            "the NVIDIA Container Toolkit is missing or not registered with the engine, or the engine was not restarted after installing it".into()
        } else {
            "expected on a host without an NVIDIA driver and NVIDIA Container Toolkit: the engine has no GPU device driver to hand out GPUs".into()
        });
        c.fix = Some(if has_driver {
            format!(
                "{}\nsudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker",
                dlenv_probe::checks::toolkit_install_commands(f)
            )
        } else {
            "install an NVIDIA driver first (see nvidia.driver), then `sudo dlenv setup --yes`"
                .into()
        });
        return c;
    }
    if err.contains("executable file not found") || err.contains("no such file or directory") {
        return smoke_check(
            Status::Pass,
            format!(
                "the engine accepted the GPU request (the image {image} has no nvidia-smi to run)"
            ),
        );
    }
    let mut c = smoke_check(
        if has_driver {
            Status::Fail
        } else {
            Status::Warn
        },
        format!("the GPU container failed: {short}"),
    );
    for (needle, why) in [
        (
            "version mismatch",
            "driver/library version mismatch: reboot (see nvidia.mismatch)",
        ),
        (
            "libnvidia-ml.so.1",
            "the toolkit cannot find the driver's libraries: no driver, Docker Desktop, or a driver outside the ld cache",
        ),
        (
            "unknown or invalid runtime",
            "the nvidia runtime is not registered (see toolkit.runtime)",
        ),
        (
            "devices.allow",
            "rootless engine: set no-cgroups = true (see toolkit.cgroups)",
        ),
        (
            "unsatisfied condition: cuda",
            "the image needs a newer CUDA than the driver supports",
        ),
    ] {
        if err.contains(needle) {
            c.details.push(why.into());
        }
    }
    c
}
