//! Facts about the container engine, as plain data. The probe never connects to an engine
//! itself: the caller (dlenv's `doctor`) fills [`EngineFacts`] from its engine client, and
//! tests load them from recorded JSON.

use serde::{Deserialize, Serialize};

/// Why the engine could not be reached (one value per reason, most telling first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineFailure {
    /// The socket exists but this user may not open it.
    PermissionDenied,
    /// A socket exists but nothing listens on it.
    ConnectionRefused,
    /// No socket at all: no engine installed or started.
    SocketMissing,
    /// Connected but no proper answer.
    NoAnswer,
    /// Anything else.
    Other,
}

/// What dlenv knows about the engine it would use. Stable JSON: fields are only added.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineFacts {
    /// Whether an engine answered.
    pub reachable: bool,
    /// The connection error, when unreachable.
    pub error: Option<String>,
    /// The engine layer's hint for that error.
    pub hint: Option<String>,
    /// The classified reason, when unreachable.
    pub failure: Option<EngineFailure>,
    /// The endpoint URI in use (or the first one tried).
    pub endpoint: Option<String>,
    /// Why that endpoint (`DOCKER_HOST`, `--host flag`, `default location of …`).
    pub endpoint_source: Option<String>,
    /// Whether the endpoint was configured (flag, `DOCKER_HOST`, context) rather than a
    /// default socket.
    pub endpoint_configured: bool,
    /// `docker` or `podman`.
    pub kind: Option<String>,
    /// Engine version, e.g. `27.3.1`.
    pub version: Option<String>,
    /// API version, e.g. `1.47`.
    pub api_version: Option<String>,
    /// Operating system as the engine reports it (`Docker Desktop` on Desktop).
    pub operating_system: Option<String>,
    /// Registered OCI runtimes.
    pub runtimes: Vec<String>,
    /// The default runtime.
    pub default_runtime: Option<String>,
    /// Whether the engine runs rootless.
    pub rootless: bool,
    /// CDI spec directories (`None`: not reported, API < 1.47).
    pub cdi_spec_dirs: Option<Vec<String>>,
    /// Discovered devices, e.g. `nvidia.com/gpu=0`.
    pub discovered_devices: Option<Vec<String>>,
    /// Data root (`/var/lib/docker`).
    pub data_root: Option<String>,
    /// Free bytes on the data-root filesystem.
    pub data_root_free_bytes: Option<u64>,
    /// `cgroupfs` or `systemd`.
    pub cgroup_driver: Option<String>,
    /// `1` or `2`.
    pub cgroup_version: Option<String>,
    /// The engine's HTTP(S) proxy, if any.
    pub proxy: Option<String>,
    /// Registry mirrors.
    pub registry_mirrors: Vec<String>,
}

impl EngineFacts {
    /// Whether the engine is Docker Desktop (a VM without the host's GPUs on Linux).
    pub fn is_docker_desktop(&self) -> bool {
        self.operating_system
            .as_deref()
            .is_some_and(|o| o.contains("Docker Desktop"))
            || self
                .endpoint
                .as_deref()
                .is_some_and(|e| e.contains("/.docker/desktop/"))
    }

    /// Whether the engine is Podman.
    pub fn is_podman(&self) -> bool {
        self.kind.as_deref() == Some("podman")
    }

    /// The unix socket path of the endpoint, if it is one.
    pub fn socket_path(&self) -> Option<&str> {
        self.endpoint.as_deref()?.strip_prefix("unix://")
    }

    /// Whether the engine's version is below `major.minor` (unknown or unreadable: no).
    pub fn version_below(&self, major: u32, minor: u32) -> bool {
        let Some(v) = self.version.as_deref() else {
            return false;
        };
        let mut parts = v
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b)) => (a, b) < (major, minor),
            _ => false,
        }
    }

    /// The engine's major version number (`27` of `27.3.1`, `20` of `20.10.24+dfsg1`).
    pub fn major_version(&self) -> Option<u32> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }
}
