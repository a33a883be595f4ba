//! `engine info`: the engine's facts that matter to GPU containers.

use serde::Serialize;

use crate::{Endpoint, Engine, EngineError, EngineKind};

/// What dlenv knows about the connected engine. Stable JSON: fields are only added.
#[derive(Debug, Clone, Serialize)]
pub struct EngineReport {
    /// The endpoint in use and why.
    pub endpoint: Endpoint,
    /// Docker or Podman.
    pub kind: EngineKind,
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The engine's newest API version.
    pub api_version: String,
    /// The engine's oldest supported API version.
    pub min_api_version: Option<String>,
    /// Operating system as the engine reports it.
    pub operating_system: Option<String>,
    /// `linux` (or `windows`).
    pub os_type: Option<String>,
    /// Kernel version.
    pub kernel_version: Option<String>,
    /// CPU architecture, e.g. `x86_64`.
    pub architecture: Option<String>,
    /// Storage driver, e.g. `overlay2`.
    pub storage_driver: Option<String>,
    /// Where the engine keeps images and containers.
    pub data_root: Option<String>,
    /// Free bytes on the data-root filesystem, when it is on this machine and readable.
    pub data_root_free_bytes: Option<u64>,
    /// Size of the data-root filesystem in bytes.
    pub data_root_total_bytes: Option<u64>,
    /// Registered OCI runtimes, sorted.
    pub runtimes: Vec<String>,
    /// Whether the `nvidia` runtime is registered.
    pub nvidia_runtime: bool,
    /// The default runtime.
    pub default_runtime: Option<String>,
    /// `cgroupfs` or `systemd`.
    pub cgroup_driver: Option<String>,
    /// `1` or `2`.
    pub cgroup_version: Option<String>,
    /// Whether the engine runs rootless.
    pub rootless: bool,
    /// Security options (apparmor, seccomp, rootless, …).
    pub security_options: Vec<String>,
    /// CDI spec directories; `None` when the engine does not report them (API < 1.47).
    pub cdi_spec_dirs: Option<Vec<String>>,
    /// Devices the engine discovered (e.g. `nvidia.com/gpu=0`); `None` when not reported.
    pub discovered_devices: Option<Vec<String>>,
    /// Registry mirrors configured in the engine.
    pub registry_mirrors: Vec<String>,
    /// Engine proxy settings, as the engine reports them (credentials masked by it).
    pub http_proxy: Option<String>,
    /// HTTPS proxy.
    pub https_proxy: Option<String>,
    /// NO_PROXY.
    pub no_proxy: Option<String>,
    /// The engine's own warnings.
    pub warnings: Vec<String>,
}

impl Engine {
    /// Ask the engine for its facts.
    pub async fn report(&self) -> Result<EngineReport, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::api("GET /info", e))?;
        let mut runtimes: Vec<String> = info
            .runtimes
            .as_ref()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        runtimes.sort();
        let security_options = info.security_options.clone().unwrap_or_default();
        let rootless = security_options.iter().any(|o| o.contains("name=rootless"));
        let (free, total) = match &info.docker_root_dir {
            // Only meaningful when the engine is on this machine (a unix socket).
            Some(root) if self.endpoint.unix_path().is_some() => disk_space(root),
            _ => (None, None),
        };
        let none_if_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Ok(EngineReport {
            endpoint: self.endpoint.clone(),
            kind: self.kind,
            version: self.version.clone(),
            api_version: self.api_version.clone(),
            min_api_version: self.min_api_version.clone(),
            operating_system: info.operating_system.clone(),
            os_type: info.os_type.clone(),
            kernel_version: info.kernel_version.clone(),
            architecture: info.architecture.clone(),
            storage_driver: info.driver.clone(),
            data_root: info.docker_root_dir.clone(),
            data_root_free_bytes: free,
            data_root_total_bytes: total,
            nvidia_runtime: runtimes.iter().any(|r| r == "nvidia"),
            runtimes,
            default_runtime: info.default_runtime.clone(),
            cgroup_driver: info.cgroup_driver.map(|d| d.to_string()),
            cgroup_version: info.cgroup_version.map(|v| v.to_string()),
            rootless,
            security_options,
            cdi_spec_dirs: info.cdi_spec_dirs.clone(),
            discovered_devices: info
                .discovered_devices
                .as_ref()
                .map(|d| d.iter().map(|d| d.id.clone().unwrap_or_default()).collect()),
            registry_mirrors: info
                .registry_config
                .as_ref()
                .and_then(|r| r.mirrors.clone())
                .unwrap_or_default(),
            http_proxy: none_if_empty(info.http_proxy.clone()),
            https_proxy: none_if_empty(info.https_proxy.clone()),
            no_proxy: none_if_empty(info.no_proxy.clone()),
            warnings: info.warnings.clone().unwrap_or_default(),
        })
    }
}

fn disk_space(path: &str) -> (Option<u64>, Option<u64>) {
    match rustix::fs::statvfs(path) {
        Ok(s) => (Some(s.f_bavail * s.f_frsize), Some(s.f_blocks * s.f_frsize)),
        Err(_) => (None, None),
    }
}
