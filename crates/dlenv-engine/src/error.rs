use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Why one endpoint could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum AttemptFailure {
    /// The socket file does not exist.
    SocketMissing,
    /// The socket exists but this user may not open it.
    PermissionDenied,
    /// The socket exists but nothing listens on it (a stale socket).
    ConnectionRefused,
    /// Connected, but the engine did not answer `/_ping` properly.
    NoAnswer(String),
    /// This build cannot speak that scheme.
    UnsupportedScheme(String),
    /// Anything else.
    Other(String),
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SocketMissing => write!(f, "socket does not exist"),
            Self::PermissionDenied => write!(f, "permission denied"),
            Self::ConnectionRefused => write!(f, "connection refused (nothing is listening)"),
            Self::NoAnswer(m) => write!(f, "no answer to /_ping: {m}"),
            Self::UnsupportedScheme(s) => write!(f, "scheme `{s}` is not supported by this build"),
            Self::Other(m) => write!(f, "{m}"),
        }
    }
}

/// One endpoint that was tried and failed.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The endpoint.
    pub endpoint: crate::Endpoint,
    /// What went wrong.
    pub failure: AttemptFailure,
}

/// Errors of the engine layer. Each carries its context as data; [`EngineError::hint`]
/// says what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No endpoint answered.
    #[error("no container engine answered; tried:\n{}", format_attempts(.0))]
    Unreachable(Vec<Attempt>),
    /// The docker config file could not be read.
    #[error("cannot read docker config {}: {message}", path.display())]
    Config {
        /// config.json path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A docker context could not be resolved.
    #[error("docker context `{name}`: {message}")]
    Context {
        /// Context name.
        name: String,
        /// What failed.
        message: String,
    },
    /// The engine answered with an error.
    #[error("{what}: {source}")]
    Api {
        /// The operation.
        what: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// An image build failed.
    #[error("build failed{}: {}", .0.step.as_ref().map(|s| format!(" at step {s}")).unwrap_or_default(), .0.message)]
    Build(Box<crate::BuildFailure>),
    /// A registry transfer (push or pull) failed; `message` is what the engine said.
    #[error("{what}: {message}")]
    Registry {
        /// The operation (`push 127.0.0.1:5000/x:1`).
        what: String,
        /// The registry's or engine's message.
        message: String,
        /// The registry host the operation talked to.
        registry: String,
        /// Whether dlenv sent credentials.
        sent_credentials: bool,
    },
    /// Something outside the engine failed (I/O on a local stream).
    #[error("{what}: {message}")]
    Local {
        /// The operation.
        what: String,
        /// What failed.
        message: String,
    },
}

fn format_attempts(a: &[Attempt]) -> String {
    a.iter()
        .map(|a| {
            format!(
                "  - {} ({}): {}",
                a.endpoint.uri, a.endpoint.source, a.failure
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl EngineError {
    /// Wrap a bollard error with the operation that failed.
    pub fn api(what: impl Into<String>, source: bollard::errors::Error) -> Self {
        Self::Api {
            what: what.into(),
            source,
        }
    }

    /// The HTTP status of an API error, if any.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Api {
                source: bollard::errors::Error::DockerResponseServerError { status_code, .. },
                ..
            } => Some(*status_code),
            _ => None,
        }
    }

    /// A suggestion for the user, when there is a likely fix.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Unreachable(attempts) => Some(unreachable_hint(attempts)),
            Self::Context { .. } => Some(
                "list contexts with `docker context ls`, pick one with `docker context use NAME`, \
                 or unset DOCKER_CONTEXT"
                    .into(),
            ),
            Self::Api { source, .. } if connection_broke(source) => Some(
                "the engine closed the connection in the middle of the request: it stopped, \
                 restarted or crashed (see its log, e.g. `journalctl -u docker`), or something \
                 between dlenv and its socket dropped it. Check it with `dlenv doctor` and retry"
                    .into(),
            ),
            Self::Registry {
                message,
                registry,
                sent_credentials,
                ..
            } => registry_hint(message, registry, *sent_credentials),
            _ => None,
        }
    }
}

/// Whether an API error is the connection to the engine breaking (reset, closed early).
pub(crate) fn connection_broke(e: &bollard::errors::Error) -> bool {
    use std::io::ErrorKind::*;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        {
            return true;
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("IncompleteMessage")
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn registry_hint(message: &str, registry: &str, sent_credentials: bool) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let auth = [
        "unauthorized",
        "authentication required",
        "no basic auth",
        "denied",
    ]
    .iter()
    .any(|k| m.contains(k));
    if auth && sent_credentials {
        return Some(format!(
            "the registry refused the credentials dlenv found for {registry} in the docker \
             config: log in again with `docker login {registry}`"
        ));
    }
    if auth {
        return Some(format!(
            "the registry wants credentials and none were found for {registry}: run \
             `docker login {registry}` (dlenv reads ~/.docker/config.json, DOCKER_CONFIG and \
             credential helpers)"
        ));
    }
    if m.contains("http response to https client") || m.contains("server gave http response") {
        return Some(format!(
            "{registry} speaks plain HTTP: the engine only allows that for registries listed \
             in `insecure-registries` in /etc/docker/daemon.json (loopback addresses are allowed \
             by default)"
        ));
    }
    if m.contains("connection refused") || m.contains("no such host") || m.contains("i/o timeout") {
        return Some(format!(
            "the engine could not reach {registry}: check the address, that the registry is \
             running, and the engine's proxy settings (`dlenv engine info`)"
        ));
    }
    if m.contains("not found") || m.contains("manifest unknown") {
        return Some("check the name and tag (the registry has no such image)".into());
    }
    None
}

fn unreachable_hint(attempts: &[Attempt]) -> String {
    use AttemptFailure::*;
    let has = |f: fn(&AttemptFailure) -> bool| attempts.iter().any(|a| f(&a.failure));
    if has(|f| matches!(f, PermissionDenied)) {
        return "your user may not open the engine socket. Add yourself to the `docker` group \
                (`sudo usermod -aG docker $USER`), then log out and back in (or run `newgrp docker`). \
                Do not `chmod 666` the socket: that gives every local user root on this machine."
            .into();
    }
    if has(|f| matches!(f, ConnectionRefused)) {
        return "a socket exists but no engine listens on it: start the engine \
                (`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd)"
            .into();
    }
    if attempts.len() == 1
        && !matches!(
            attempts[0].endpoint.source,
            crate::EndpointSource::WellKnown { .. }
        )
    {
        return format!(
            "the endpoint comes from {}; check that it is right, or unset it to use the \
             default socket. If no engine is installed: `sudo apt-get install docker.io`",
            attempts[0].endpoint.source
        );
    }
    "no container engine is installed or running. Install and start one: \
     `sudo apt-get install docker.io` then `sudo systemctl start docker` (`sudo dockerd &` without \
     systemd)"
        .into()
}
