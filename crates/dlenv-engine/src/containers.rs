//! Containers: create with GPUs and dlenv's defaults, run attached, wait, remove.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use futures_util::StreamExt;
use serde::Serialize;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};

use crate::{Engine, EngineError, EngineKind, MANAGED_LABEL};

/// Which GPUs a container gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum GpuRequest {
    /// No GPU request at all.
    None,
    /// Every GPU.
    All,
    /// The first N GPUs.
    Count(u32),
    /// Specific GPUs: indexes, UUIDs or MIG ids.
    Devices(Vec<String>),
}

impl GpuRequest {
    /// Parse `all`, `none`, `N`, `0,1`, `GPU-…`, `MIG-…`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "all" => return Ok(Self::All),
            "none" | "" => return Ok(Self::None),
            _ => {}
        }
        if let Ok(n) = s.parse::<u32>() {
            return if n == 0 {
                Ok(Self::None)
            } else {
                Ok(Self::Count(n))
            };
        }
        let ids: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
        let valid = |id: &str| {
            !id.is_empty()
                && (id.chars().all(|c| c.is_ascii_digit())
                    || id.starts_with("GPU-")
                    || id.starts_with("MIG-")
                    || id
                        .split(':')
                        .all(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty()))
        };
        if let Some(bad) = ids.iter().find(|id| !valid(id)) {
            return Err(format!(
                "`{bad}` is not a GPU: use all, none, a count (2), indexes (0,1), \
                 GPU UUIDs (GPU-…) or MIG ids (MIG-… or 0:1)"
            ));
        }
        Ok(Self::Devices(ids))
    }

    /// Whether any GPU is requested.
    pub fn any(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// How the engine is asked for GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuMode {
    /// A device request for the NVIDIA driver (what `docker run --gpus` sends).
    NvidiaDriver,
    /// CDI device names (`nvidia.com/gpu=all`), for engines that list CDI devices and for
    /// Podman ≥ 5.4.
    Cdi,
}

/// A port to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Host address; `127.0.0.1` unless the user asked for a public port.
    pub host_ip: String,
    /// Host port (`None`: the same as the container port).
    pub host_port: Option<u16>,
    /// Container port.
    pub container_port: u16,
}

impl PortSpec {
    /// Parse `8888`, `HOST:CONTAINER` or `IP:HOST:CONTAINER` (an optional `/tcp` suffix is
    /// accepted), published on loopback unless `public` or an IP is written out.
    pub fn parse(s: &str, public: bool) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a port: use PORT, HOST_PORT:CONTAINER_PORT or IP:HOST_PORT:CONTAINER_PORT (1-65535, tcp)"
            )
        };
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad)
        };
        let body = s.strip_suffix("/tcp").unwrap_or(s);
        let default_ip = if public { "0.0.0.0" } else { "127.0.0.1" };
        let parts: Vec<&str> = body.split(':').collect();
        let (ip, host_port, container_port) = match parts.as_slice() {
            [c] => (default_ip.to_string(), None, port(c)?),
            [h, c] => (default_ip.to_string(), Some(port(h)?), port(c)?),
            [ip, h, c] if ip.parse::<std::net::IpAddr>().is_ok() => {
                (ip.to_string(), Some(port(h)?), port(c)?)
            }
            _ => return Err(bad()),
        };
        Ok(Self {
            host_ip: ip,
            host_port,
            container_port,
        })
    }

    /// Whether the port is reachable only from this machine.
    pub fn loopback_only(&self) -> bool {
        self.host_ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    /// Absolute host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// Everything about a container dlenv creates.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Image reference.
    pub image: String,
    /// Container name.
    pub name: Option<String>,
    /// Command (overrides the image's CMD).
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// `uid:gid`.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// GPUs.
    pub gpus: Option<GpuRequest>,
    /// How GPUs are requested.
    pub gpu_mode: Option<GpuMode>,
    /// `/dev/shm` size in bytes.
    pub shm_size: Option<i64>,
    /// Share the host's IPC namespace instead of a private `/dev/shm`.
    pub ipc_host: bool,
    /// `(name, soft, hard)` ulimits.
    pub ulimits: Vec<(String, i64, i64)>,
    /// Published ports.
    pub ports: Vec<PortSpec>,
    /// Bind mounts.
    pub mounts: Vec<MountSpec>,
    /// tmpfs mounts: path → options.
    pub tmpfs: BTreeMap<String, String>,
    /// Labels (dlenv adds its own).
    pub labels: BTreeMap<String, String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Keep stdin open.
    pub stdin: bool,
    /// Let the engine remove the container when it stops.
    pub auto_remove: bool,
}

impl ContainerSpec {
    /// A container of `image` running `cmd` as `user`, with nothing else.
    pub fn simple(image: &str, cmd: &[&str], user: Option<&str>) -> Self {
        Self {
            image: image.to_string(),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            user: user.map(String::from),
            ..Default::default()
        }
    }
}

/// The Engine API body for `spec`, as Docker takes it. Pure, so the exact request is
/// unit-tested.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    create_body_for(spec, EngineKind::Docker)
}

/// tmpfs options as `kind` accepts them. Podman (4.x and later) refuses Docker's `uid=` and
/// `gid=` tmpfs options ("unknown mount option"); its `U` option chowns the tmpfs to the
/// container's user instead, which is the same thing for dlenv, whose tmpfs owners are
/// always the container's user.
fn tmpfs_options(options: &str, kind: EngineKind) -> String {
    if kind == EngineKind::Docker {
        return options.to_string();
    }
    let mut owner = false;
    let mut kept: Vec<&str> = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        if o.starts_with("uid=") || o.starts_with("gid=") {
            owner = true;
        } else {
            kept.push(o);
        }
    }
    if owner && !kept.contains(&"U") {
        kept.push("U");
    }
    kept.join(",")
}

/// The Engine API body for `spec`, in the dialect of `kind`. Pure, so the exact request is
/// unit-tested.
pub fn create_body_for(spec: &ContainerSpec, kind: EngineKind) -> ContainerCreateBody {
    let device_requests = match (&spec.gpus, spec.gpu_mode.unwrap_or(GpuMode::NvidiaDriver)) {
        (None | Some(GpuRequest::None), _) => None,
        (Some(g), GpuMode::NvidiaDriver) => {
            let (count, device_ids) = match g {
                GpuRequest::All => (Some(-1), None),
                GpuRequest::Count(n) => (Some(i64::from(*n)), None),
                GpuRequest::Devices(ids) => (None, Some(ids.clone())),
                GpuRequest::None => unreachable!(),
            };
            // What `docker run --gpus` sends: an empty driver name selects the device
            // driver that offers the `gpu` capability (the NVIDIA Container Toolkit).
            Some(vec![DeviceRequest {
                driver: Some(String::new()),
                count,
                device_ids,
                capabilities: Some(vec![vec!["gpu".to_string()]]),
                options: None,
            }])
        }
        (Some(g), GpuMode::Cdi) => {
            let ids = match g {
                GpuRequest::All => vec!["nvidia.com/gpu=all".to_string()],
                GpuRequest::Count(n) => (0..*n).map(|i| format!("nvidia.com/gpu={i}")).collect(),
                GpuRequest::Devices(ids) => {
                    ids.iter().map(|i| format!("nvidia.com/gpu={i}")).collect()
                }
                GpuRequest::None => unreachable!(),
            };
            Some(vec![DeviceRequest {
                driver: Some("cdi".into()),
                count: None,
                device_ids: Some(ids),
                capabilities: Some(vec![vec!["cdi".to_string()]]),
                options: None,
            }])
        }
    };
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container_port);
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.unwrap_or(p.container_port).to_string()),
            });
    }
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(MANAGED_LABEL.to_string(), "true".to_string());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.cmd.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        labels: Some(labels),
        tty: Some(spec.tty),
        open_stdin: Some(spec.stdin),
        attach_stdin: Some(spec.stdin),
        // As `docker run -i`: the container's stdin closes when the attached client closes
        // its stdin (piped input reaches EOF), instead of staying open forever.
        stdin_once: Some(spec.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(HostConfig {
            device_requests,
            auto_remove: spec.auto_remove.then_some(true),
            shm_size: if spec.ipc_host { None } else { spec.shm_size },
            ipc_mode: spec.ipc_host.then(|| "host".to_string()),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(n, s, h)| ResourcesUlimits {
                        name: Some(n.clone()),
                        soft: Some(*s),
                        hard: Some(*h),
                    })
                    .collect()
            }),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            mounts: (!spec.mounts.is_empty()).then(|| {
                spec.mounts
                    .iter()
                    .map(|m| Mount {
                        typ: Some(MountType::BIND),
                        source: Some(m.source.clone()),
                        target: Some(m.target.clone()),
                        read_only: Some(m.read_only),
                        ..Default::default()
                    })
                    .collect()
            }),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| {
                spec.tmpfs
                    .iter()
                    .map(|(k, v)| (k.clone(), tmpfs_options(v, kind)))
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `RLIMIT_NOFILE` (how Podman reports a ulimit) → `nofile` (how requests name it).
fn ulimit_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_prefix("rlimit_")
        .map(str::to_string)
        .unwrap_or(lower)
}

/// The engine's `defaults`, with `own` replacing those of the same name.
fn merge_ulimits(
    defaults: &[(String, i64, i64)],
    own: &[(String, i64, i64)],
) -> Vec<(String, i64, i64)> {
    let named = |n: &str| own.iter().any(|(o, _, _)| ulimit_name(o) == ulimit_name(n));
    defaults
        .iter()
        .filter(|(n, _, _)| !named(n))
        .chain(own)
        .cloned()
        .collect()
}

/// One of dlenv's containers.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerLine {
    /// Id.
    pub id: String,
    /// Names.
    pub names: Vec<String>,
    /// Image.
    pub image: String,
    /// `running`, `exited`, …
    pub state: String,
    /// Human status, e.g. `Up 3 minutes`.
    pub status: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Published ports as `host_ip:host_port->container_port`.
    pub ports: Vec<String>,
}

/// A container of `GET /containers/json`, read leniently (see `list_with_label`).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SummaryJson {
    id: Option<String>,
    names: Option<Vec<String>>,
    image: Option<String>,
    state: Option<String>,
    status: Option<String>,
    labels: Option<HashMap<String, String>>,
    ports: Option<Vec<PortJson>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PortJson {
    #[serde(rename = "IP")]
    ip: Option<String>,
    private_port: u16,
    public_port: Option<u16>,
}

impl From<SummaryJson> for ContainerLine {
    fn from(c: SummaryJson) -> Self {
        Self {
            id: c.id.unwrap_or_default(),
            names: c
                .names
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.trim_start_matches('/').to_string())
                .collect(),
            image: c.image.unwrap_or_default(),
            state: docker_state(c.state.as_deref().unwrap_or_default()).to_string(),
            status: c.status.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            ports: c
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some(format!(
                        "{}:{}->{}",
                        p.ip.unwrap_or_default(),
                        p.public_port?,
                        p.private_port
                    ))
                })
                .collect(),
        }
    }
}

/// Docker's name for a container state: Podman's `stopped` (the process exited, the
/// container is not cleaned up yet) is Docker's `exited`.
fn docker_state(state: &str) -> &str {
    match state {
        "stopped" => "exited",
        other => other,
    }
}

impl Engine {
    /// Create a container (not started). Returns its id.
    pub async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let merged;
        let spec = if self.replaces_default_ulimits() && !spec.ulimits.is_empty() {
            merged = ContainerSpec {
                ulimits: merge_ulimits(&self.default_ulimits(&spec.image).await?, &spec.ulimits),
                ..spec.clone()
            };
            &merged
        } else {
            spec
        };
        let mut opts = CreateContainerOptionsBuilder::new();
        if let Some(n) = &spec.name {
            opts = opts.name(n);
        }
        self.docker
            .create_container(Some(opts.build()), create_body_for(spec, self.kind))
            .await
            .map(|r| r.id)
            .map_err(|e| EngineError::api(format!("create a container from {}", spec.image), e))
    }

    /// Whether a container's own ulimits *replace* the engine's default ones instead of
    /// being added to them: so on Podman before 4.5, whose compat API then drops the
    /// `default_ulimits` of containers.conf (and falls back to nofile=1048576, which hosts
    /// without CAP_SYS_RESOURCE refuse) as soon as a request names any ulimit. Docker and
    /// later Podman keep the defaults for the limits a request does not name.
    fn replaces_default_ulimits(&self) -> bool {
        self.kind == EngineKind::Podman && self.version_below(4, 5)
    }

    /// The ulimits the engine gives a container that names none, read from a container
    /// created (never started) for the purpose and removed again.
    async fn default_ulimits(&self, image: &str) -> Result<Vec<(String, i64, i64)>, EngineError> {
        let probe = ContainerSpec::simple(image, &["true"], None);
        let id = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                create_body_for(&probe, self.kind),
            )
            .await
            .map(|r| r.id)
            .map_err(|e| EngineError::api(format!("create a container from {image}"), e))?;
        let path = format!("/v{}/containers/{id}/json", self.api_version);
        let inspected = self
            .get_json::<serde_json::Value>("read the engine's default ulimits", &path)
            .await;
        let _ = self.remove_container(&id).await;
        let ulimits = inspected?
            .pointer("/HostConfig/Ulimits")
            .and_then(|u| u.as_array().cloned())
            .unwrap_or_default();
        Ok(ulimits
            .iter()
            .filter_map(|u| {
                Some((
                    ulimit_name(u.get("Name")?.as_str()?),
                    u.get("Soft")?.as_i64()?,
                    u.get("Hard")?.as_i64()?,
                ))
            })
            .collect())
    }

    /// Start a created container.
    pub async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| EngineError::api("start the container", e))
    }

    /// Stop (with a grace period) and remove a container; missing containers are fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::api(format!("remove container {id}"), e)),
        }
    }

    /// Whether the container exists and is running.
    pub async fn is_running(&self, id: &str) -> Result<bool, EngineError> {
        // Raw JSON for the same reason as the container list (Podman's `stopped`).
        let path = format!(
            "/v{}/containers/{}/json",
            self.api_version,
            crate::build::percent_encode(id)
        );
        match self
            .get_json::<serde_json::Value>(&format!("inspect container {id}"), &path)
            .await
        {
            Ok(c) => Ok(c
                .pointer("/State/Running")
                .and_then(|r| r.as_bool())
                .unwrap_or(false)),
            Err(e) if e.status_code() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stop a container (10 s grace period).
    pub async fn stop_container(&self, id: &str) -> Result<(), EngineError> {
        let opts = StopContainerOptionsBuilder::new().t(10).build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::api(format!("stop container {id}"), e)),
        }
    }

    /// dlenv's containers (label `dlenv.managed`), running or not.
    pub async fn list_containers(&self) -> Result<Vec<ContainerLine>, EngineError> {
        self.list_with_label(Some(MANAGED_LABEL)).await
    }

    /// Every container, running or not.
    pub async fn list_all_containers(&self) -> Result<Vec<ContainerLine>, EngineError> {
        self.list_with_label(None).await
    }

    /// Read through the engine's JSON directly rather than bollard's models: Podman's
    /// compat API reports states Docker does not have (`stopped`: exited, not yet cleaned
    /// up), which bollard's state enum refuses, failing the whole list.
    async fn list_with_label(
        &self,
        label: Option<&str>,
    ) -> Result<Vec<ContainerLine>, EngineError> {
        let mut path = format!("/v{}/containers/json?all=1", self.api_version);
        if let Some(l) = label {
            let filters = serde_json::json!({ "label": [l] }).to_string();
            path.push_str(&format!(
                "&filters={}",
                crate::build::percent_encode(&filters)
            ));
        }
        let list: Vec<SummaryJson> = self.get_json("list containers", &path).await?;
        Ok(list.into_iter().map(ContainerLine::from).collect())
    }

    /// GET `path` and parse the JSON answer; an error status becomes the same
    /// [`EngineError::Api`] bollard would have returned.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<T, EngineError> {
        use http_body_util::BodyExt;
        let local = |message: String| EngineError::Local {
            what: what.to_string(),
            message,
        };
        let req = http::Request::get(path)
            .header(http::header::HOST, "docker")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .map_err(|e| local(e.to_string()))?;
        let response = self.raw_send(req).await.map_err(local)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| local(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(EngineError::api(
                what,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: status.as_u16(),
                    message,
                },
            ));
        }
        serde_json::from_slice(&body).map_err(|e| local(format!("the engine's answer: {e}")))
    }

    /// Attach to a created container, start it, copy its output to this process's stdout
    /// and stderr until it exits, and return its exit code.
    pub async fn run_attached(&self, id: &str) -> Result<i64, EngineError> {
        self.start_streaming(id, |is_err, bytes| {
            let _ = if is_err {
                let mut e = std::io::stderr().lock();
                e.write_all(bytes).and_then(|_| e.flush())
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(bytes).and_then(|_| o.flush())
            };
        })
        .await
    }

    /// Attach to a created container (before starting it, so no early output is lost),
    /// start it, hand each output chunk to `sink` (`true` for stderr) until it exits, and
    /// return its exit code.
    async fn start_streaming(
        &self,
        id: &str,
        mut sink: impl FnMut(bool, &[u8]),
    ) -> Result<i64, EngineError> {
        let opts = AttachContainerOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = self
            .docker
            .attach_container(id, Some(opts))
            .await
            .map_err(|e| EngineError::api("attach to the container", e))?;
        self.start_container(id).await?;
        let mut output = attached.output;
        while let Some(chunk) = output.next().await {
            match chunk {
                Ok(bollard::container::LogOutput::StdErr { message }) => sink(true, &message),
                Ok(other) => sink(false, &other.into_bytes()),
                Err(_) => break,
            }
        }
        self.wait_container(id).await
    }

    /// Run a throw-away container and return its exit code, stdout and stderr (use
    /// [`ContainerSpec::simple`] for a plain command). The container is removed afterwards,
    /// also when starting it fails.
    pub async fn run_capture(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(i64, String, String), EngineError> {
        let id = self.create_container(spec).await?;
        self.run_created_capture(&id).await
    }

    /// Start a created container, capture its output until it exits, and remove it.
    pub async fn run_created_capture(
        &self,
        id: &str,
    ) -> Result<(i64, String, String), EngineError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = self
            .start_streaming(id, |is_err, bytes| {
                if is_err { &mut err } else { &mut out }.extend_from_slice(bytes)
            })
            .await;
        let _ = self.remove_container(id).await;
        Ok((
            result?,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }

    /// Wait for a container to exit and return its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(id, Some(opts));
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(EngineError::api("wait for the container", e)),
            None => Err(EngineError::Local {
                what: "wait for the container".into(),
                message: "the engine closed the wait stream without an exit code".into(),
            }),
        }
    }

    /// The last `tail` lines of a container's log.
    pub async fn logs_tail(&self, id: &str, tail: usize) -> Result<String, EngineError> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let mut s = self.docker.logs(id, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => out.extend_from_slice(&c.into_bytes()),
                Err(e) => return Err(EngineError::api(format!("logs of {id}"), e)),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gpus: GpuRequest, mode: GpuMode) -> ContainerSpec {
        ContainerSpec {
            image: "img".into(),
            gpus: Some(gpus),
            gpu_mode: Some(mode),
            ..Default::default()
        }
    }

    fn requests(s: &ContainerSpec) -> Vec<DeviceRequest> {
        create_body(s)
            .host_config
            .unwrap()
            .device_requests
            .unwrap_or_default()
    }

    #[test]
    fn gpus_all_is_what_docker_run_gpus_sends() {
        let r = requests(&spec(GpuRequest::All, GpuMode::NvidiaDriver));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].driver.as_deref(), Some(""));
        assert_eq!(r[0].count, Some(-1));
        assert_eq!(r[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert_eq!(r[0].device_ids, None);
    }

    #[test]
    fn gpu_counts_ids_and_none() {
        let r = requests(&spec(GpuRequest::Count(2), GpuMode::NvidiaDriver));
        assert_eq!(r[0].count, Some(2));
        let ids = GpuRequest::parse("GPU-1234,MIG-abcd").unwrap();
        let r = requests(&spec(ids, GpuMode::NvidiaDriver));
        assert_eq!(
            r[0].device_ids,
            Some(vec!["GPU-1234".into(), "MIG-abcd".into()])
        );
        assert_eq!(r[0].count, None);
        assert!(requests(&spec(GpuRequest::None, GpuMode::NvidiaDriver)).is_empty());
    }

    #[test]
    fn cdi_mode_names_cdi_devices() {
        let r = requests(&spec(GpuRequest::All, GpuMode::Cdi));
        assert_eq!(r[0].driver.as_deref(), Some("cdi"));
        assert_eq!(r[0].device_ids, Some(vec!["nvidia.com/gpu=all".into()]));
        let r = requests(&spec(GpuRequest::parse("0,1").unwrap(), GpuMode::Cdi));
        assert_eq!(
            r[0].device_ids,
            Some(vec!["nvidia.com/gpu=0".into(), "nvidia.com/gpu=1".into()])
        );
    }

    #[test]
    fn gpu_request_parsing() {
        assert_eq!(GpuRequest::parse("all").unwrap(), GpuRequest::All);
        assert_eq!(GpuRequest::parse("none").unwrap(), GpuRequest::None);
        assert_eq!(GpuRequest::parse("0").unwrap(), GpuRequest::None);
        assert_eq!(GpuRequest::parse("3").unwrap(), GpuRequest::Count(3));
        assert_eq!(
            GpuRequest::parse("0:1").unwrap(),
            GpuRequest::Devices(vec!["0:1".into()])
        );
        assert!(GpuRequest::parse("some").unwrap_err().contains("`some`"));
        assert!(GpuRequest::parse("0,,1").is_err());
    }

    #[test]
    fn ports_default_to_loopback() {
        let p = PortSpec::parse("8888", false).unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", None, 8888)
        );
        let p = PortSpec::parse("18888:8888", true).unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port), ("0.0.0.0", Some(18888)));
        assert!(PortSpec::parse("http", false).is_err());
        assert!(PortSpec::parse("0", false).is_err());
        let p = PortSpec::parse("127.0.0.2:8080:80/tcp", true).unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.2", Some(8080), 80)
        );
        assert!(p.loopback_only());
        assert!(PortSpec::parse("53/udp", false).is_err());
        assert!(PortSpec::parse("host:1:2", false).is_err());
        let s = ContainerSpec {
            image: "i".into(),
            ports: vec![PortSpec::parse("8888", false).unwrap()],
            ..Default::default()
        };
        let b = create_body(&s);
        let pb = b.host_config.unwrap().port_bindings.unwrap();
        let binding = &pb["8888/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("8888"));
        assert_eq!(b.exposed_ports, Some(vec!["8888/tcp".to_string()]));
    }

    #[test]
    fn podman_gets_its_own_tmpfs_owner_option() {
        let mut s = ContainerSpec {
            image: "i".into(),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        s.tmpfs
            .insert("/home/dlenv".into(), "uid=1000,gid=1000,mode=0700".into());
        let tmpfs = |k| create_body_for(&s, k).host_config.unwrap().tmpfs.unwrap();
        assert_eq!(
            tmpfs(EngineKind::Docker)["/home/dlenv"],
            "uid=1000,gid=1000,mode=0700"
        );
        assert_eq!(tmpfs(EngineKind::Podman)["/home/dlenv"], "mode=0700,U");
        assert_eq!(tmpfs_options("size=64m", EngineKind::Podman), "size=64m");
        assert_eq!(tmpfs_options("uid=1,U", EngineKind::Podman), "U");
    }

    #[test]
    fn podman_container_lists_parse_with_its_own_states() {
        // From Podman 4.3's GET /containers/json (abridged): `stopped` is not a Docker
        // state, and bollard's model refuses it.
        let json = r#"[{"Id":"7d63","Names":["/pm-run"],"Image":"localhost/bb:latest",
            "State":"stopped","Status":"Exited (0) 1 second ago","Labels":{"dlenv.managed":"true"},
            "Ports":[{"IP":"127.0.0.1","PrivatePort":8000,"PublicPort":18931,"Type":"tcp"}]},
            {"Id":"8e46","Names":["/x"],"Image":"i","State":"running","Status":"Up",
            "Labels":null,"Ports":null}]"#;
        let list: Vec<SummaryJson> = serde_json::from_str(json).unwrap();
        let lines: Vec<ContainerLine> = list.into_iter().map(ContainerLine::from).collect();
        assert_eq!(lines[0].state, "exited");
        assert_eq!(lines[0].names, vec!["pm-run".to_string()]);
        assert_eq!(lines[0].ports, vec!["127.0.0.1:18931->8000".to_string()]);
        assert_eq!(lines[1].state, "running");
        assert!(lines[1].labels.is_empty() && lines[1].ports.is_empty());
    }

    #[test]
    fn own_ulimits_replace_only_the_defaults_they_name() {
        let defaults = vec![
            ("RLIMIT_NOFILE".to_string(), 20000, 20000),
            ("RLIMIT_NPROC".to_string(), 32768, 32768),
            ("RLIMIT_STACK".to_string(), 8 << 20, -1),
        ];
        let own = vec![("stack".to_string(), 64 << 20, 64 << 20)];
        assert_eq!(
            merge_ulimits(&defaults, &own),
            vec![
                ("RLIMIT_NOFILE".to_string(), 20000, 20000),
                ("RLIMIT_NPROC".to_string(), 32768, 32768),
                ("stack".to_string(), 64 << 20, 64 << 20),
            ]
        );
        assert_eq!(ulimit_name("RLIMIT_MEMLOCK"), "memlock");
        assert_eq!(ulimit_name("nofile"), "nofile");
    }

    #[test]
    fn ipc_host_replaces_shm_size_and_labels_mark_dlenv() {
        let s = ContainerSpec {
            image: "i".into(),
            ipc_host: true,
            shm_size: Some(1 << 30),
            ..Default::default()
        };
        let b = create_body(&s);
        let h = b.host_config.unwrap();
        assert_eq!(h.ipc_mode.as_deref(), Some("host"));
        assert_eq!(h.shm_size, None);
        assert_eq!(b.labels.unwrap()[MANAGED_LABEL], "true");
    }
}
