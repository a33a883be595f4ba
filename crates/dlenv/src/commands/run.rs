//! `dlenv run`, `ps`, `stop`, `rm`, `logs`: containers with dlenv's defaults.
//!
//! Defaults, each overridable: all GPUs when the host has NVIDIA GPUs (none otherwise, said
//! out loud); `/dev/shm` of 8 GiB (PyTorch DataLoader workers pass batches through shared
//! memory, and the engine's 64 MiB default makes them crash with "bus error"); the
//! `stack=64 MiB` and, with GPUs, `memlock=-1` ulimits that NVIDIA recommends for NCCL /
//! NGC containers; the invoking user's uid:gid with a writable tmpfs HOME, so files written to
//! mounts belong to the user; the current directory at `/workspace`; ports on 127.0.0.1
//! unless `--public`; the `dlenv.managed` label so `ps`/`stop`/`rm` find their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use dlenv_engine::{
    ContainerSpec, Engine, EngineError, EngineKind, GpuMode, GpuRequest, MountSpec, PortSpec,
};
use dlenv_probe::facts::NvidiaFacts;

use crate::cli::{Globals, interruptible};
use crate::ui::{CliError, Exit};

/// Default `/dev/shm` size.
pub const DEFAULT_SHM: &str = "8g";

/// Container options shared by `run`, `shell`, `jupyter` and `check`.
#[derive(Debug, Args, Clone, Default)]
pub struct ContainerArgs {
    /// Run this image instead of the environment built from dlenv.toml (nvidia/cuda,
    /// pytorch/pytorch, NGC, …): same defaults and the same pre-flight checks.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// GPUs: all, none, a count, indexes (0,1), GPU UUIDs or MIG ids (default: all when the
    /// host has NVIDIA GPUs, else none).
    #[arg(long, value_name = "GPUS")]
    pub gpus: Option<String>,
    /// Size of /dev/shm (e.g. 16g), or `host` to share the host's IPC namespace.
    /// (Default: the spec's `[run].shm`, else 8g.)
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Publish a port: PORT or HOST_PORT:CONTAINER_PORT, on 127.0.0.1 (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub ports: Vec<String>,
    /// Publish ports on all interfaces instead of 127.0.0.1 (anyone on the network can
    /// reach them).
    #[arg(long)]
    pub public: bool,
    /// Bind-mount SRC:DST[:ro] (repeatable).
    #[arg(long = "volume", value_name = "SRC:DST[:ro]")]
    pub volumes: Vec<String>,
    /// Do not mount the current directory at /workspace.
    #[arg(long)]
    pub no_workspace: bool,
    /// Set an environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Run as this uid:gid (default: yours).
    #[arg(long, value_name = "UID:GID")]
    pub user: Option<String>,
}

/// Arguments of `dlenv run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Leave it running in the background and print its name.
    #[arg(short, long)]
    pub detach: bool,
    /// The command to run, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// `1.5g`, `512m`, `1024k`, `1048576` → bytes.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| (n * mult as f64) as i64)
        .ok_or_else(|| format!("`{s}` is not a size: use e.g. 8g, 512m or host"))
}

/// The invoking user's uid:gid (the sudo caller's when run through sudo).
pub fn host_user() -> (u32, u32) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    match (uid, env("SUDO_UID"), env("SUDO_GID")) {
        (0, Some(u), Some(g)) => (u, g),
        _ => (uid, gid),
    }
}

/// What `ContainerArgs` resolve to, before talking to the engine.
pub struct Planned {
    /// The container.
    pub spec: ContainerSpec,
    /// Notes to print (e.g. why no GPU was requested).
    pub notes: Vec<String>,
}

/// A built dlenv.toml environment, as far as running it is concerned.
#[derive(Debug, Clone)]
pub struct EnvRun {
    /// Environment name.
    pub name: String,
    /// `dlenv/<name>:latest`.
    pub image: String,
    /// The spec's directory (relative mount sources are relative to it).
    pub dir: PathBuf,
    /// GPUs from `[run].gpus`, or none for a CPU stack.
    pub gpus: GpuRequest,
    /// Why the spec's GPUs were not requested, if so.
    pub gpu_note: Option<String>,
    /// `[run].shm`: `host` or a size.
    pub shm: Option<String>,
    /// `[run].ports`.
    pub ports: Vec<String>,
    /// `[run].mounts`.
    pub mounts: Vec<String>,
}

/// What a container is made from.
#[derive(Debug, Clone)]
pub enum Target {
    /// An image given with `--image`.
    Image(String),
    /// The environment of ./dlenv.toml.
    Env(Box<EnvRun>),
}

impl Target {
    /// The image reference.
    pub fn image(&self) -> &str {
        match self {
            Self::Image(i) => i,
            Self::Env(e) => &e.image,
        }
    }
}

/// `--image`, else the built environment of the spec in the current directory.
pub async fn target(a: &ContainerArgs, g: &Globals) -> Result<Target, CliError> {
    if let Some(i) = &a.image {
        return Ok(Target::Image(i.clone()));
    }
    let db = crate::commands::compat::load_db(g)?.db;
    let sf = crate::commands::lock::load_spec(None, &db).map_err(|e| {
        e.with_hint("run an image directly with --image REF, or write a spec with `dlenv init`")
    })?;
    let lock = match crate::commands::lock::read_lock(&sf)? {
        crate::commands::lock::LockState::Present(l) => *l,
        _ => {
            return Err(CliError::failure(format!(
                "environment `{}` is not built yet",
                sf.spec.env.name
            ))
            .with_hint("run `dlenv build` (or `dlenv up`) first"));
        }
    };
    let image = format!("{}:latest", crate::commands::build::image_repo(&lock));
    let engine = super::connect(g).await?;
    if engine.image_id(&image).await?.is_none() {
        return Err(
            CliError::failure(format!("environment image {image} is not in the engine"))
                .with_hint("run `dlenv build` (or `dlenv up`) first"),
        );
    }
    let run = &sf.spec.run;
    let (gpus, gpu_note) = if !lock.stack.is_gpu() {
        (
            GpuRequest::None,
            Some(format!(
                "`{}` is a CPU-only environment: no GPU requested",
                lock.env.name
            )),
        )
    } else {
        let g = match &run.gpus {
            dlenv_spec::spec::Gpus::All => GpuRequest::All,
            dlenv_spec::spec::Gpus::None => GpuRequest::None,
            dlenv_spec::spec::Gpus::Count(n) => GpuRequest::Count(*n),
            dlenv_spec::spec::Gpus::Devices(d) => GpuRequest::Devices(d.clone()),
        };
        (g, None)
    };
    Ok(Target::Env(Box::new(EnvRun {
        name: lock.env.name.clone(),
        image,
        dir: sf.dir.clone(),
        gpus,
        gpu_note,
        shm: run.shm.as_ref().map(|s| match s {
            dlenv_spec::spec::Shm::Host => "host".to_string(),
            dlenv_spec::spec::Shm::Size(s) => s.clone(),
        }),
        ports: run.ports.clone(),
        mounts: run.mounts.clone(),
    })))
}

fn parse_mount(v: &str, base: &Path) -> Result<MountSpec, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => return Err(format!("`{v}` is not SRC:DST[:ro]")),
    };
    if !dst.starts_with('/') {
        return Err(format!("`{dst}` must be an absolute container path"));
    }
    let src = std::path::absolute(base.join(src)).map_err(|e| format!("`{src}`: {e}"))?;
    Ok(MountSpec {
        source: src.to_string_lossy().into_owned(),
        target: dst.into(),
        read_only: ro,
    })
}

/// Turn the flags (and the spec's `[run]`, for an environment) into a container spec with
/// dlenv's defaults. Flags win over the spec.
pub fn plan(
    a: &ContainerArgs,
    target: &Target,
    cmd: Option<Vec<String>>,
) -> Result<Planned, CliError> {
    let usage = |flag: &str, e: String| CliError::usage(format!("{flag}: {e}"));
    let image = target.image();
    let env_run = match target {
        Target::Env(e) => Some(e.as_ref()),
        Target::Image(_) => None,
    };
    let mut notes = Vec::new();
    let gpus = match (&a.gpus, env_run) {
        (Some(g), _) => GpuRequest::parse(g).map_err(|e| usage("--gpus", e))?,
        (None, Some(e)) => {
            notes.extend(e.gpu_note.clone());
            e.gpus.clone()
        }
        (None, None) => {
            let nv = dlenv_probe::facts::read_nvidia(&dlenv_probe::LiveHost::default());
            if nv.gpus.is_empty() {
                notes.push(
                    "no NVIDIA GPU found on this host: running without GPUs \
                     (pass --gpus all to request them anyway)"
                        .to_string(),
                );
                GpuRequest::None
            } else {
                GpuRequest::All
            }
        }
    };
    let shm = a
        .shm_size
        .clone()
        .or_else(|| env_run.and_then(|e| e.shm.clone()))
        .unwrap_or_else(|| DEFAULT_SHM.to_string());
    let (shm_size, ipc_host) = if shm == "host" {
        (None, true)
    } else {
        (
            Some(parse_size(&shm).map_err(|e| usage("--shm-size", e))?),
            false,
        )
    };
    let mut ports = Vec::new();
    for p in env_run
        .map(|e| e.ports.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(&a.ports)
    {
        ports.push(PortSpec::parse(p, a.public).map_err(|e| usage("--publish", e))?);
    }
    let exposed: Vec<String> = ports
        .iter()
        .filter(|p| !p.loopback_only())
        .map(|p| format!("{}:{}", p.host_ip, p.host_port.unwrap_or(p.container_port)))
        .collect();
    if !exposed.is_empty() {
        notes.push(format!(
            "ports {} are reachable from every network this host is on",
            exposed.join(", ")
        ));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::failure(format!("cannot read the current directory: {e}")))?;
    let mut mounts = Vec::new();
    if !a.no_workspace {
        match env_run {
            // The spec's mounts (default `.:/workspace`), relative to the spec.
            Some(e) => {
                for m in &e.mounts {
                    mounts.push(parse_mount(m, &e.dir).map_err(|e| usage("[run].mounts", e))?);
                }
            }
            None => mounts.push(MountSpec {
                source: cwd.to_string_lossy().into_owned(),
                target: "/workspace".into(),
                read_only: false,
            }),
        }
    }
    for v in &a.volumes {
        mounts.push(parse_mount(v, &cwd).map_err(|e| usage("--volume", e))?);
    }
    for e in &a.env {
        if !e.contains('=') || e.starts_with('=') {
            return Err(usage("--env", format!("`{e}` is not KEY=VALUE")));
        }
    }
    // NVIDIA's recommendation for NCCL/NGC containers; memlock only matters with GPUs
    // (and some hosts cap it, so a CPU container should not depend on raising it).
    let mut ulimits = vec![("stack".to_string(), 67_108_864, 67_108_864)];
    if gpus.any() {
        ulimits.push(("memlock".to_string(), -1, -1));
    }
    let (uid, gid) = host_user();
    let user = match &a.user {
        Some(u) => u.clone(),
        None => format!("{uid}:{gid}"),
    };
    let (u, g) = user
        .split_once(':')
        .unwrap_or((user.as_str(), user.as_str()));
    // A brought image may have no home for this uid: give it a writable tmpfs one. A
    // dlenv-built image has /home/dlenv owned by the same uid already.
    let mut env = Vec::new();
    let mut tmpfs = BTreeMap::new();
    if env_run.is_none() {
        env.push("HOME=/home/dlenv".to_string());
        tmpfs.insert(
            "/home/dlenv".to_string(),
            format!("uid={u},gid={g},mode=0700"),
        );
    }
    env.extend(a.env.iter().cloned());
    let mut labels = BTreeMap::new();
    labels.insert("dlenv.image".to_string(), image.to_string());
    if let Some(e) = env_run {
        labels.insert("dlenv.env".to_string(), e.name.clone());
    }
    labels.insert(
        "dlenv.gpus".to_string(),
        a.gpus.clone().unwrap_or_else(|| match gpus {
            GpuRequest::None => "none".into(),
            _ => "all".into(),
        }),
    );
    Ok(Planned {
        spec: ContainerSpec {
            image: image.to_string(),
            name: a.name.clone(),
            cmd,
            env,
            user: Some(user),
            workdir: mounts
                .iter()
                .any(|m| m.target == "/workspace")
                .then(|| "/workspace".to_string()),
            gpus: Some(gpus),
            gpu_mode: None,
            shm_size,
            ipc_host,
            ulimits,
            ports,
            mounts,
            tmpfs,
            labels,
            tty: false,
            stdin: false,
            auto_remove: false,
        },
        notes,
    })
}

/// The engine's answer to a GPU request it cannot serve, in words a user can act on.
pub fn translate_start_error(e: EngineError) -> CliError {
    let text = e.to_string();
    if text.contains("could not select device driver") {
        return CliError::unsatisfiable(format!(
            "this engine has no NVIDIA runtime: the NVIDIA Container Toolkit is missing or not \
             registered with it (the engine said: {})",
            text.lines().next().unwrap_or_default()
        ))
        .with_hint(
            "run `sudo dlenv setup` to install and register the toolkit (`dlenv doctor` shows \
             what is missing), or run without GPUs: --gpus none",
        );
    }
    if text.contains("error setting rlimit") {
        return CliError::failure(format!(
            "the engine could not apply the container's ulimits: {text}"
        ))
        .with_hint(rlimit_hint(&text));
    }
    if text.contains("unresolvable CDI devices") || text.contains("CDI device injection failed") {
        return CliError::unsatisfiable(format!(
            "the engine could not inject CDI GPU devices: {text}"
        ))
        .with_hint(
            "regenerate the CDI spec: `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`",
        );
    }
    e.into()
}

/// What to do about a limit the OCI runtime could not set (`error setting rlimit type N`,
/// N as numbered on Linux: 6 nproc, 7 nofile, 8 memlock). The engine asks for more than
/// the host lets it raise to: root without CAP_SYS_RESOURCE (some VMs and containers) can
/// only lower its hard limits.
fn rlimit_hint(text: &str) -> String {
    let kind = text
        .split("rlimit type ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok());
    match kind {
        Some(8) => "this host caps locked memory below what NCCL wants (memlock=unlimited); \
                    raise the engine's limit (dockerd: LimitMEMLOCK=infinity in its systemd \
                    unit; Podman: `ulimit -l unlimited` where its service starts), or run \
                    without GPUs (--gpus none)"
            .into(),
        Some(n @ (6 | 7)) => {
            let (name, flag, h) = if n == 7 {
                ("open-files", "nofile", "n")
            } else {
                ("processes", "nproc", "u")
            };
            format!(
                "the engine asked for a higher {name} limit ({flag}) than this host lets it \
                 set: root without CAP_SYS_RESOURCE cannot go above its own hard limit \
                 (`ulimit -H{h}`), and rootful Podman asks for {flag}=1048576 unless \
                 containers.conf's default_ulimits names it. Set both under [containers] in \
                 /etc/containers/containers.conf, e.g. `default_ulimits = [\"nofile=N:N\", \
                 \"nproc=P:P\"]` with N and P at most those hard limits (the list replaces \
                 Podman's built-in one, so name both), and restart its service"
            )
        }
        _ => "the engine asked for a limit above what this host allows it; compare the \
              container's ulimits with the engine's own (`cat /proc/$(pidof dockerd || pidof \
              podman)/limits`)"
            .into(),
    }
}

/// Pick how to ask this engine for GPUs: CDI when it lists NVIDIA CDI devices or is
/// Podman (whose compat API ignores NVIDIA device requests), else the NVIDIA driver.
/// Podman before 5.4 ignores every device request on its compat API, CDI ones included:
/// the container would silently run without GPUs, so dlenv refuses instead.
async fn gpu_mode(engine: &Engine) -> Result<GpuMode, CliError> {
    if engine.kind() == EngineKind::Podman {
        if engine.version_below(5, 4) {
            return Err(CliError::unsatisfiable(format!(
                "Podman {} cannot give this container GPUs through its Docker-compatible API: \
                 before Podman 5.4 it ignores GPU (CDI) device requests, so the container \
                 would run without them",
                engine.version()
            ))
            .with_hint(
                "upgrade Podman to 5.4 or later (with a CDI spec: `sudo nvidia-ctk cdi generate \
                 --output=/etc/cdi/nvidia.yaml`), use Docker with the NVIDIA Container Toolkit \
                 (`sudo dlenv setup`), or run without GPUs: --gpus none",
            ));
        }
        return Ok(GpuMode::Cdi);
    }
    let r = engine.report().await?;
    let cdi = r
        .discovered_devices
        .unwrap_or_default()
        .iter()
        .any(|d| d.starts_with("nvidia.com/gpu"));
    Ok(if cdi {
        GpuMode::Cdi
    } else {
        GpuMode::NvidiaDriver
    })
}

/// How an image's `NVIDIA_REQUIRE_CUDA` compares with this host.
pub enum Requirement {
    /// The image states none (not a CUDA image).
    None,
    /// No NVIDIA driver here to compare with; the requirement's first condition.
    NoDriver(String),
    /// The driver meets it for every GPU.
    Met,
    /// It does not: the error says why and what to do.
    NotMet(CliError),
}

/// Evaluate the `NVIDIA_REQUIRE_CUDA` in an image's `env` against this host's driver and
/// GPUs `nv` (their brands select the image's driver-branch exceptions).
fn cuda_requirement(
    g: &Globals,
    nv: &NvidiaFacts,
    image: &str,
    env: &[String],
) -> Result<Requirement, CliError> {
    let Some(require) = env
        .iter()
        .find_map(|e| e.strip_prefix("NVIDIA_REQUIRE_CUDA="))
        .filter(|r| !r.trim().is_empty())
    else {
        return Ok(Requirement::None);
    };
    let floor = require
        .split_whitespace()
        .next()
        .unwrap_or(require)
        .to_string();
    let Some(driver) = nv.driver_version.as_deref().and_then(|d| d.parse().ok()) else {
        return Ok(Requirement::NoDriver(floor));
    };
    let db = crate::commands::compat::load_db(g)?.db;
    let driver_cuda = db.driver_cuda(&driver);
    for gpu in nv
        .gpus
        .iter()
        .map(Some)
        .chain(nv.gpus.is_empty().then_some(None))
    {
        let product = gpu.and_then(|g| dlenv_compat::lookup_gpu(&db, &g.name).ok());
        let ctx = dlenv_compat::rules::RequireCtx {
            driver: &driver,
            driver_cuda: driver_cuda.as_ref(),
            brand: product.map(|p| p.brand.as_str()),
            cc: product.map(|p| p.cc),
        };
        if let dlenv_compat::rules::RequireOutcome::Fail { .. } =
            dlenv_compat::rules::eval_require(require, &ctx)
        {
            return Ok(Requirement::NotMet(
                CliError::unsatisfiable(format!(
                    "{image} requires {floor} (NVIDIA_REQUIRE_CUDA), and this host's driver \
                     {driver} {}does not meet it{}",
                    driver_cuda
                        .as_ref()
                        .map(|c| format!("(CUDA {c}) "))
                        .unwrap_or_default(),
                    gpu.map(|g| format!(" for {}", g.name)).unwrap_or_default()
                ))
                .with_hint(
                    "upgrade the NVIDIA driver, or use an image for an older CUDA \
                     (`dlenv resolve --framework none` names one that fits)",
                ),
            ));
        }
    }
    Ok(Requirement::Met)
}

/// Check the GPU code an image carries (its `dlenv.gpu-archs` label, written by `dlenv
/// build` from the lock) against this host's GPUs: refuse when a GPU gets no code at all,
/// warn when it only gets PTX (JIT-compiled at first use, which takes minutes).
fn arch_requirement(
    g: &Globals,
    nv: &NvidiaFacts,
    image: &str,
    labels: &std::collections::HashMap<String, String>,
) -> Result<Requirement, CliError> {
    let Some(archs) = labels
        .get("dlenv.gpu-archs")
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(Requirement::None);
    };
    let archs: Vec<&str> = archs.split_whitespace().collect();
    if nv.gpus.is_empty() {
        return Ok(Requirement::None);
    }
    let db = crate::commands::compat::load_db(g)?.db;
    let gpus: Vec<(String, dlenv_compat::ComputeCapability)> = nv
        .gpus
        .iter()
        .filter_map(|gpu| {
            let cc = gpu
                .compute_capability
                .as_deref()
                .and_then(|c| c.parse().ok())
                .or_else(|| dlenv_compat::lookup_gpu(&db, &gpu.name).ok().map(|p| p.cc));
            if cc.is_none() {
                g.printer.warn(format!(
                    "cannot tell the compute capability of GPU {} ({}): not checking {image}'s GPU code for it",
                    gpu.index, gpu.name
                ));
            }
            Some((gpu.name.clone(), cc?))
        })
        .collect();
    let mut missing = Vec::new();
    for c in dlenv_compat::rules::gpu_coverage(&db, &archs, &gpus) {
        match c.coverage {
            dlenv_compat::rules::Coverage::Sass(_) => {}
            dlenv_compat::rules::Coverage::Ptx(p) => g.printer.warn(format!(
                "{image} has no native code for {} ({}): the driver JIT-compiles its {} PTX at \
                 first use, which can take minutes",
                c.name,
                c.cc.sm(),
                p.compute()
            )),
            dlenv_compat::rules::Coverage::None => {
                missing.push(format!("{} ({})", c.name, c.cc.sm()))
            }
        }
    }
    if missing.is_empty() {
        return Ok(Requirement::Met);
    }
    Ok(Requirement::NotMet(
        CliError::unsatisfiable(format!(
            "{image} carries GPU code for {} and none of it runs on {}",
            archs.join(" "),
            missing.join(", ")
        ))
        .with_hint(
            "re-resolve and rebuild on this host (`dlenv lock && dlenv build`: the resolver \
             picks a framework build with code for these GPUs), or run without GPUs (`--gpus none`)",
        ),
    ))
}

/// [`cuda_requirement`] and then [`arch_requirement`]: whether this host's driver and GPUs
/// can run the image. The first requirement not met wins. Shared by `run`'s pre-flight and
/// the re-checks of `import` and `pull`.
pub fn host_requirement(
    g: &Globals,
    image: &str,
    env: &[String],
    labels: &std::collections::HashMap<String, String>,
) -> Result<Requirement, CliError> {
    let states_any = env.iter().any(|e| e.starts_with("NVIDIA_REQUIRE_CUDA="))
        || labels.contains_key("dlenv.gpu-archs");
    if !states_any {
        return Ok(Requirement::None);
    }
    // One read of the driver and GPUs (NVML) for both checks.
    let nv = dlenv_probe::facts::read_nvidia(&dlenv_probe::LiveHost::default());
    let cuda = cuda_requirement(g, &nv, image, env)?;
    if matches!(cuda, Requirement::NotMet(_)) {
        return Ok(cuda);
    }
    match arch_requirement(g, &nv, image, labels)? {
        r @ Requirement::NotMet(_) => Ok(r),
        _ => Ok(cuda),
    }
}

/// Refuse, before creating anything, an image whose `NVIDIA_REQUIRE_CUDA` this host's
/// driver cannot meet, or whose GPU code none of this host's GPUs can run (instead of
/// failing deep inside CUDA). Without a driver the engine
/// gets to answer (and its answer is translated).
async fn preflight(
    engine: &Engine,
    g: &Globals,
    image: &str,
    gpus: &GpuRequest,
) -> Result<(), CliError> {
    if !gpus.any() {
        return Ok(());
    }
    let (env, labels) = (
        engine.image_env(image).await?,
        engine.image_labels(image).await?,
    );
    match host_requirement(g, image, &env, &labels)? {
        Requirement::NotMet(e) => Err(e),
        _ => Ok(()),
    }
}

/// Create and start a container from `planned`, translating GPU errors and never leaving
/// a created-but-unstartable container behind. Returns its id.
pub async fn create(
    engine: &Engine,
    g: &Globals,
    mut planned: Planned,
) -> Result<String, CliError> {
    for n in &planned.notes {
        g.printer.info(format!("note: {n}"));
    }
    let gpus = planned.spec.gpus.clone().unwrap_or(GpuRequest::None);
    if engine.image_id(&planned.spec.image).await?.is_none() {
        return Err(CliError::failure(format!(
            "image {} is not in the engine",
            planned.spec.image
        ))
        .with_hint(
            "build it (`dlenv build`), load it (`docker load`), or pull it (`docker pull`)",
        ));
    }
    preflight(engine, g, &planned.spec.image, &gpus).await?;
    if gpus.any() {
        planned.spec.gpu_mode = Some(gpu_mode(engine).await?);
    }
    Ok(engine.create_container(&planned.spec).await?)
}

/// `dlenv run`.
pub async fn run(a: RunArgs, g: &Globals) -> Result<Exit, CliError> {
    let target = target(&a.container, g).await?;
    let engine = super::connect(g).await?;
    let cmd = (!a.cmd.is_empty()).then(|| a.cmd.clone());
    let planned = plan(&a.container, &target, cmd)?;
    let id = create(&engine, g, planned).await?;
    if a.detach {
        if let Err(e) = engine.start_container(&id).await {
            let _ = engine.remove_container(&id).await;
            return Err(translate_start_error(e));
        }
        g.printer.out(&id[..12.min(id.len())]);
        return Ok(Exit::Ok);
    }
    let result = interruptible(async {
        engine
            .run_attached(&id)
            .await
            .map_err(translate_start_error)
    })
    .await;
    // Always remove the container, also after Ctrl-C or a failed start.
    let _ = engine.remove_container(&id).await;
    Ok(Exit::from_child(result?))
}

#[derive(Serialize)]
struct PsLine {
    name: String,
    env: Option<String>,
    jupyter: Option<String>,
    id: String,
    image: String,
    state: String,
    status: String,
    gpus: String,
    ports: Vec<String>,
}

/// `dlenv ps`.
pub async fn ps(g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let lines: Vec<PsLine> = engine
        .list_containers()
        .await?
        .into_iter()
        .map(|c| PsLine {
            name: c.names.first().cloned().unwrap_or_default(),
            env: c.labels.get("dlenv.env").cloned(),
            jupyter: c.labels.get("dlenv.jupyter").cloned(),
            id: c.id.chars().take(12).collect(),
            image: c.image,
            state: c.state,
            status: c.status,
            gpus: c
                .labels
                .get("dlenv.gpus")
                .cloned()
                .unwrap_or_else(|| "-".into()),
            ports: c.ports,
        })
        .collect();
    if g.printer.json {
        g.printer.json(&lines);
        return Ok(Exit::Ok);
    }
    g.printer.out(format!(
        "{:<24} {:<12} {:<12} {:<10} {:<6} {:<28} image",
        "name", "id", "env", "state", "gpus", "ports"
    ));
    for l in lines {
        g.printer.out(format!(
            "{:<24} {:<12} {:<12} {:<10} {:<6} {:<28} {}",
            l.name,
            l.id,
            l.env.as_deref().unwrap_or("-"),
            l.state,
            l.gpus,
            l.ports.join(","),
            l.image
        ));
        if let Some(url) = &l.jupyter {
            g.printer.out(format!("  jupyter: {url}"));
        }
    }
    Ok(Exit::Ok)
}

/// Find one of dlenv's containers by name or id prefix; refuse others (dlenv never acts
/// on containers it did not create).
pub async fn find_managed(
    engine: &Engine,
    which: &str,
) -> Result<dlenv_engine::ContainerLine, CliError> {
    find_in(engine.list_containers().await?, which)
}

/// Find any container by name or id prefix (for read-only or copying operations such as
/// `commit`).
pub async fn find_any(
    engine: &Engine,
    which: &str,
) -> Result<dlenv_engine::ContainerLine, CliError> {
    find_in(engine.list_all_containers().await?, which).map_err(|e| CliError {
        message: e.message.replace("no dlenv container", "no container"),
        ..e
    })
}

fn find_in(
    all: Vec<dlenv_engine::ContainerLine>,
    which: &str,
) -> Result<dlenv_engine::ContainerLine, CliError> {
    let mut hits: Vec<_> = all
        .into_iter()
        .filter(|c| {
            c.names.iter().any(|n| n == which) || (!which.is_empty() && c.id.starts_with(which))
        })
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(
            CliError::failure(format!("no dlenv container named `{which}`"))
                .with_hint("`dlenv ps` lists dlenv's containers (dlenv does not touch others)"),
        ),
        n => Err(CliError::usage(format!(
            "`{which}` matches {n} containers: give more of the id"
        ))),
    }
}

/// Arguments naming dlenv containers.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Container names or ids (from `dlenv ps`).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `dlenv stop`.
pub async fn stop(a: TargetArgs, g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    for c in &a.containers {
        let found = find_managed(&engine, c).await?;
        let (id, ephemeral) = (
            found.id,
            found
                .labels
                .get("dlenv.ephemeral")
                .is_some_and(|v| v == "true"),
        );
        engine.stop_container(&id).await?;
        if ephemeral {
            engine.remove_container(&id).await?;
            g.printer.info(format!("stopped and removed {c}"));
        } else {
            g.printer.info(format!("stopped {c}"));
        }
    }
    Ok(Exit::Ok)
}

/// `dlenv rm`.
pub async fn rm(a: TargetArgs, g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    for c in &a.containers {
        let id = find_managed(&engine, c).await?.id;
        engine.remove_container(&id).await?;
        g.printer.info(format!("removed {c}"));
    }
    Ok(Exit::Ok)
}

/// Arguments of `dlenv logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container name or id.
    pub container: String,
    /// Lines from the end.
    #[arg(long, default_value_t = 200)]
    pub tail: usize,
}

/// `dlenv logs`.
pub async fn logs(a: LogsArgs, g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let id = find_managed(&engine, &a.container).await?.id;
    let text = engine.logs_tail(&id, a.tail).await?;
    print!("{text}");
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8g").unwrap(), 8 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1g").is_err());
    }

    #[test]
    fn rlimit_hints_name_the_limit() {
        let err = |n| {
            format!(
                "runc create failed: error setting rlimits for ready process: error setting \
                 rlimit type {n}: operation not permitted"
            )
        };
        assert!(rlimit_hint(&err(7)).contains("(nofile)"));
        assert!(rlimit_hint(&err(7)).contains("default_ulimits"));
        assert!(rlimit_hint(&err(6)).contains("(nproc)"));
        assert!(rlimit_hint(&err(8)).contains("memlock=unlimited"));
        assert!(rlimit_hint("error setting rlimit").contains("/limits"));
    }
}

#[cfg(test)]
mod arch_tests {
    use super::*;

    /// The driver and GPUs of the real H200 recording (2026-11-30).
    fn h200() -> NvidiaFacts {
        dlenv_probe::facts::read_nvidia(&dlenv_probe::FixtureHost::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dlenv-probe/tests/fixtures/hosts/h200-ubuntu-24.04"
        )))
    }

    fn globals() -> Globals {
        Globals {
            printer: crate::ui::Printer {
                json: false,
                quiet: true,
                verbose: 0,
            },
            host: None,
            compat_db: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../dlenv-compat/data").into()),
        }
    }

    fn labels(archs: &str) -> std::collections::HashMap<String, String> {
        [("dlenv.gpu-archs".to_string(), archs.to_string())].into()
    }

    #[test]
    fn an_image_without_code_for_the_gpu_is_refused_with_the_reason() {
        let g = globals();
        let old = labels("sm_37 sm_50 sm_60 sm_70 sm_75 sm_80 sm_86");
        let Requirement::NotMet(e) = arch_requirement(&g, &h200(), "old:1", &old).unwrap() else {
            panic!("torch 1.13's archs must not pass on an H200");
        };
        assert_eq!(e.exit.code(), 3);
        assert!(
            e.message.contains("none of it runs on NVIDIA H200 (sm_90)"),
            "{}",
            e.message
        );
        assert!(e.hint.unwrap().contains("dlenv lock && dlenv build"));
    }

    #[test]
    fn native_code_or_ptx_passes_and_no_label_is_no_check() {
        let g = globals();
        let real = labels("sm_75 sm_80 sm_86 sm_90 sm_100 sm_120");
        assert!(matches!(
            arch_requirement(&g, &h200(), "new:1", &real).unwrap(),
            Requirement::Met
        ));
        let ptx = labels("sm_80 compute_80");
        assert!(matches!(
            arch_requirement(&g, &h200(), "ptx:1", &ptx).unwrap(),
            Requirement::Met
        ));
        assert!(matches!(
            arch_requirement(&g, &h200(), "plain:1", &Default::default()).unwrap(),
            Requirement::None
        ));
    }
}
