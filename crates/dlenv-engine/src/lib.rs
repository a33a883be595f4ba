//! dlenv's container-engine layer.
//!
//! Everything dlenv asks of Docker or Podman goes through this crate, over the Engine
//! API (bollard); nothing here shells out to a CLI. The crate knows nothing of dlenv's
//! command line: it takes plain values and returns typed errors ([`EngineError`]) whose
//! [`EngineError::hint`] says what the user can do.

pub mod auth;
mod build;
mod containers;
mod endpoint;
mod error;
mod exec;
mod images;
mod info;
mod registry;
mod share;

use std::time::Duration;

use bollard::Docker;
use serde::Serialize;

pub use auth::{AuthError, RegistryAuth};
pub use build::{BuildEvent, BuildFailure, BuildOutcome, BuildSpec};
pub use containers::{
    ContainerLine, ContainerSpec, GpuMode, GpuRequest, MountSpec, PortSpec, create_body,
    create_body_for,
};
pub use endpoint::{Discovery, Endpoint, EndpointSource, context_meta_path};
pub use error::{Attempt, AttemptFailure, EngineError};
pub use exec::{Attached, ExecSpec, OutputChunk, OutputStream};
pub use images::{ImageSummaryLine, ImportProgress};
pub use info::EngineReport;
pub use registry::{LayerOutcome, TransferEvent, TransferOutcome};
pub use share::{Change, ChangeKind, ImageDetails};

/// Label put on every container and image dlenv creates, so it can find (and clean up)
/// its own objects.
pub const MANAGED_LABEL: &str = "dlenv.managed";

/// Timeout for quick metadata calls.
const FAST_TIMEOUT_SECS: u64 = 120;

/// Docker or Podman.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Docker Engine (moby).
    Docker,
    /// Podman's Docker-compatible API.
    Podman,
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: Endpoint,
    kind: EngineKind,
    version: String,
    api_version: String,
    min_api_version: Option<String>,
}

impl Engine {
    /// Try the discovery candidates in order and return the first engine that answers.
    pub async fn connect(discovery: &Discovery) -> Result<Self, EngineError> {
        let mut attempts = Vec::new();
        for endpoint in discovery.candidates()? {
            match Self::connect_one(&endpoint).await {
                Ok(engine) => return Ok(engine),
                Err(failure) => attempts.push(Attempt { endpoint, failure }),
            }
        }
        Err(EngineError::Unreachable(attempts))
    }

    async fn connect_one(endpoint: &Endpoint) -> Result<Self, AttemptFailure> {
        let uri = endpoint.uri.as_str();
        let docker = if let Some(path) = endpoint.unix_path() {
            // Classify the socket first: bollard's errors do not say *why* a connect failed.
            if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => AttemptFailure::SocketMissing,
                    std::io::ErrorKind::PermissionDenied => AttemptFailure::PermissionDenied,
                    std::io::ErrorKind::ConnectionRefused => AttemptFailure::ConnectionRefused,
                    _ => AttemptFailure::Other(e.to_string()),
                });
            }
            Docker::connect_with_unix(uri, FAST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else if uri.starts_with("tcp://") || uri.starts_with("http://") {
            Docker::connect_with_http(uri, FAST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else {
            let scheme = uri.split("://").next().unwrap_or(uri).to_string();
            return Err(AttemptFailure::UnsupportedScheme(scheme));
        }
        .map_err(|e| AttemptFailure::Other(e.to_string()))?;

        let ping = tokio::time::timeout(Duration::from_secs(10), docker.ping()).await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(AttemptFailure::NoAnswer(e.to_string())),
            Err(_) => return Err(AttemptFailure::NoAnswer("timed out after 10 s".into())),
        }
        let version = docker
            .version()
            .await
            .map_err(|e| AttemptFailure::NoAnswer(e.to_string()))?;
        let kind = if version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"))
        {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        };
        // Lower the client's API version to the server's when the server is older.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| AttemptFailure::NoAnswer(format!("API version negotiation: {e}")))?;
        Ok(Self {
            docker,
            endpoint: endpoint.clone(),
            kind,
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            min_api_version: version.min_api_version,
        })
    }

    /// The endpoint in use and why it was chosen.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Docker or Podman.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The engine's version string.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the engine's version is below `major.minor` (an unreadable version is taken
    /// as new). For Podman features that its compat API gained in a given release.
    pub fn version_below(&self, major: u64, minor: u64) -> bool {
        version_below(&self.version, (major, minor))
    }

    /// The engine's (maximum) API version.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The raw bollard client, for crates that extend this one.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// A client whose response-header timeout is raised for slow calls (commit, load,
    /// import): bollard's default would cut them off after two minutes.
    pub(crate) fn slow_client(&self) -> Docker {
        self.docker
            .clone()
            .with_timeout(Duration::from_secs(60 * 60))
    }
}

/// Whether a version string such as `4.3.1`, `4.4.0-rc1` or `20.10.24+dfsg1` is below
/// `major.minor` (an unreadable one is taken as new).
fn version_below(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::version_below;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(version_below("4.3.1", (4, 5)));
        assert!(version_below("4.4.0-rc1", (4, 5)));
        assert!(!version_below("4.5.0", (4, 5)));
        assert!(!version_below("5.0.3", (4, 5)));
        assert!(version_below("5.3.2", (5, 4)));
        assert!(!version_below("5.4.0", (5, 4)));
        assert!(!version_below("20.10.24+dfsg1", (5, 4)));
        assert!(!version_below("", (5, 4)));
        assert!(!version_below("dev", (5, 4)));
    }
}
