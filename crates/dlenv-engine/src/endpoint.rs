//! Where is the engine? Endpoint discovery in the docker CLI's order, plus rootless
//! Docker and Podman sockets.
//!
//! Order (the first rule that applies decides; only the last one falls back):
//! 1. `--host` on the command line;
//! 2. `DOCKER_HOST`;
//! 3. the docker context named by `DOCKER_CONTEXT`, else `currentContext` in
//!    `$DOCKER_CONFIG/config.json` (default `~/.docker`), read from
//!    `contexts/meta/<sha256(name)>/meta.json`; the context `default` means rule 4;
//! 4. the well-known sockets, tried in turn until one answers: `/var/run/docker.sock`,
//!    rootless Docker `$XDG_RUNTIME_DIR/docker.sock`, rootless Podman
//!    `$XDG_RUNTIME_DIR/podman/podman.sock`, rootful Podman `/run/podman/podman.sock`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::EngineError;

/// Why an endpoint was chosen (or tried).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EndpointSource {
    /// `--host` on the command line.
    Flag,
    /// The `DOCKER_HOST` environment variable.
    DockerHostEnv,
    /// A docker context.
    Context {
        /// Context name.
        name: String,
        /// `DOCKER_CONTEXT` or `config.json`.
        selected_by: String,
    },
    /// A well-known socket path, tried because nothing was configured.
    WellKnown {
        /// What normally listens there.
        what: String,
    },
}

impl fmt::Display for EndpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => write!(f, "--host flag"),
            Self::DockerHostEnv => write!(f, "DOCKER_HOST"),
            Self::Context { name, selected_by } => {
                write!(f, "docker context `{name}` (selected by {selected_by})")
            }
            Self::WellKnown { what } => write!(f, "default location of {what}"),
        }
    }
}

/// One engine address with the reason it is considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// `unix:///path`, `tcp://host:port`, `http://…`, `ssh://…`, `npipe://…`.
    pub uri: String,
    /// Why this address.
    pub source: EndpointSource,
}

impl Endpoint {
    /// The socket path of a `unix://` endpoint.
    pub fn unix_path(&self) -> Option<&Path> {
        self.uri.strip_prefix("unix://").map(Path::new)
    }
}

/// Everything endpoint discovery reads from the process environment, captured once so
/// that tests can construct it freely.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// `--host`.
    pub host_flag: Option<String>,
    /// `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// `DOCKER_CONTEXT`.
    pub docker_context: Option<String>,
    /// `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub docker_config_dir: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`, else `/run/user/<uid>`.
    pub xdg_runtime_dir: Option<PathBuf>,
}

impl Discovery {
    /// Capture the environment of this process.
    pub fn from_env(host_flag: Option<String>) -> Self {
        let non_empty = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let docker_config_dir = non_empty("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|h| PathBuf::from(h).join(".docker")));
        let xdg_runtime_dir = non_empty("XDG_RUNTIME_DIR").map(PathBuf::from).or_else(|| {
            let uid = rustix::process::getuid().as_raw();
            (uid != 0).then(|| PathBuf::from(format!("/run/user/{uid}")))
        });
        Self {
            host_flag: host_flag.filter(|h| !h.is_empty()),
            docker_host: non_empty("DOCKER_HOST"),
            docker_context: non_empty("DOCKER_CONTEXT"),
            docker_config_dir,
            xdg_runtime_dir,
        }
    }

    /// The endpoints to try, in order. An explicit setting (flag, `DOCKER_HOST`, a
    /// context) yields exactly one endpoint: like the docker CLI, dlenv never silently
    /// falls back from what the user configured.
    pub fn candidates(&self) -> Result<Vec<Endpoint>, EngineError> {
        if let Some(h) = &self.host_flag {
            return Ok(vec![Endpoint {
                uri: normalize(h),
                source: EndpointSource::Flag,
            }]);
        }
        if let Some(h) = &self.docker_host {
            return Ok(vec![Endpoint {
                uri: normalize(h),
                source: EndpointSource::DockerHostEnv,
            }]);
        }
        if let Some((name, selected_by)) = self.selected_context()?
            && name != "default"
        {
            let uri = self.context_endpoint(&name)?;
            return Ok(vec![Endpoint {
                uri,
                source: EndpointSource::Context { name, selected_by },
            }]);
        }
        let mut out = vec![Endpoint {
            uri: "unix:///var/run/docker.sock".into(),
            source: EndpointSource::WellKnown {
                what: "Docker Engine".into(),
            },
        }];
        if let Some(run) = &self.xdg_runtime_dir {
            out.push(Endpoint {
                uri: format!("unix://{}", run.join("docker.sock").display()),
                source: EndpointSource::WellKnown {
                    what: "rootless Docker".into(),
                },
            });
            out.push(Endpoint {
                uri: format!("unix://{}", run.join("podman/podman.sock").display()),
                source: EndpointSource::WellKnown {
                    what: "rootless Podman".into(),
                },
            });
        }
        out.push(Endpoint {
            uri: "unix:///run/podman/podman.sock".into(),
            source: EndpointSource::WellKnown {
                what: "Podman (rootful)".into(),
            },
        });
        Ok(out)
    }

    fn selected_context(&self) -> Result<Option<(String, String)>, EngineError> {
        if let Some(c) = &self.docker_context {
            return Ok(Some((c.clone(), "DOCKER_CONTEXT".into())));
        }
        let Some(dir) = &self.docker_config_dir else {
            return Ok(None);
        };
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EngineError::Config {
                    path,
                    message: e.to_string(),
                });
            }
        };
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(rename = "currentContext")]
            current_context: Option<String>,
        }
        let cfg: Config = serde_json::from_str(&text).map_err(|e| EngineError::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(cfg
            .current_context
            .filter(|c| !c.is_empty())
            .map(|c| (c, format!("currentContext in {}", path.display()))))
    }

    fn context_endpoint(&self, name: &str) -> Result<String, EngineError> {
        let Some(dir) = &self.docker_config_dir else {
            return Err(EngineError::Context {
                name: name.into(),
                message: "no docker config directory (set DOCKER_CONFIG or HOME)".into(),
            });
        };
        let path = context_meta_path(dir, name);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::Context {
            name: name.into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(rename = "Endpoints")]
            endpoints: std::collections::HashMap<String, MetaEndpoint>,
        }
        #[derive(serde::Deserialize)]
        struct MetaEndpoint {
            #[serde(rename = "Host")]
            host: Option<String>,
        }
        let meta: Meta = serde_json::from_str(&text).map_err(|e| EngineError::Context {
            name: name.into(),
            message: format!("{}: {e}", path.display()),
        })?;
        meta.endpoints
            .get("docker")
            .and_then(|e| e.host.clone())
            .filter(|h| !h.is_empty())
            .map(|h| normalize(&h))
            .ok_or_else(|| EngineError::Context {
                name: name.into(),
                message: format!("{} has no Endpoints.docker.Host", path.display()),
            })
    }
}

/// `contexts/meta/<sha256(name)>/meta.json`, as the docker CLI stores contexts.
pub fn context_meta_path(config_dir: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    config_dir
        .join("contexts")
        .join("meta")
        .join(hex)
        .join("meta.json")
}

/// Accept a bare socket path as shorthand for `unix://PATH`.
fn normalize(host: &str) -> String {
    if host.starts_with('/') {
        format!("unix://{host}")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc() -> Discovery {
        Discovery {
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Default::default()
        }
    }

    #[test]
    fn flag_beats_env_and_context() {
        let d = Discovery {
            host_flag: Some("tcp://1.2.3.4:2375".into()),
            docker_host: Some("unix:///x.sock".into()),
            docker_context: Some("remote".into()),
            ..disc()
        };
        let c = d.candidates().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].uri, "tcp://1.2.3.4:2375");
        assert_eq!(c[0].source, EndpointSource::Flag);
    }

    #[test]
    fn docker_host_beats_context() {
        let d = Discovery {
            docker_host: Some("/tmp/d.sock".into()),
            docker_context: Some("remote".into()),
            ..disc()
        };
        let c = d.candidates().unwrap();
        assert_eq!(
            c,
            vec![Endpoint {
                uri: "unix:///tmp/d.sock".into(),
                source: EndpointSource::DockerHostEnv
            }]
        );
    }

    #[test]
    fn defaults_in_documented_order() {
        let c = disc().candidates().unwrap();
        let uris: Vec<_> = c.iter().map(|e| e.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "unix:///var/run/docker.sock",
                "unix:///run/user/1000/docker.sock",
                "unix:///run/user/1000/podman/podman.sock",
                "unix:///run/podman/podman.sock",
            ]
        );
    }

    #[test]
    fn context_from_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"colima"}"#,
        )
        .unwrap();
        let meta = context_meta_path(dir.path(), "colima");
        std::fs::create_dir_all(meta.parent().unwrap()).unwrap();
        std::fs::write(
            &meta,
            r#"{"Name":"colima","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///home/u/.colima/docker.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        let d = Discovery {
            docker_config_dir: Some(dir.path().into()),
            ..disc()
        };
        let c = d.candidates().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].uri, "unix:///home/u/.colima/docker.sock");
        assert!(matches!(&c[0].source, EndpointSource::Context { name, .. } if name == "colima"));
    }

    #[test]
    fn default_context_means_well_known_sockets() {
        let d = Discovery {
            docker_context: Some("default".into()),
            ..disc()
        };
        assert_eq!(d.candidates().unwrap().len(), 4);
    }

    #[test]
    fn missing_context_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = Discovery {
            docker_context: Some("nope".into()),
            docker_config_dir: Some(dir.path().into()),
            ..disc()
        };
        let err = d.candidates().unwrap_err().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn meta_path_uses_sha256_of_name() {
        // sha256("default") is well known.
        let p = context_meta_path(Path::new("/c"), "default");
        assert_eq!(
            p,
            Path::new(
                "/c/contexts/meta/37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f/meta.json"
            )
        );
    }
}
