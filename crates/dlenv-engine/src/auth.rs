//! Registry credentials, found the way the docker CLI finds them: the docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), its per-registry
//! `credHelpers`, its default `credsStore`, and its `auths` entries.
//!
//! Credential helpers are the `docker-credential-NAME` programs of the docker-credential-helpers
//! protocol: `docker-credential-NAME get` reads the server address on stdin and prints
//! `{"ServerURL": …, "Username": …, "Secret": …}`; a `Username` of `<token>` means the
//! secret is an identity token.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// The docker config's key for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// Registry host as the config names it (`127.0.0.1:5000`, Docker Hub's key).
    pub server: String,
    /// User name (empty with an identity token).
    pub username: String,
    /// Password (empty with an identity token).
    pub password: String,
    /// OAuth identity token, when the login produced one.
    pub identity_token: Option<String>,
    /// Where they came from (`credential helper docker-credential-pass`, `config.json auths`).
    pub source: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

impl RegistryAuth {
    /// The `X-Registry-Auth` header value: base64url of the JSON auth config.
    pub fn header_value(&self) -> String {
        let v = match &self.identity_token {
            Some(t) => serde_json::json!({ "identitytoken": t, "serveraddress": self.server }),
            None => serde_json::json!({
                "username": self.username,
                "password": self.password,
                "serveraddress": self.server,
            }),
        };
        base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file exists but is not valid.
    #[error("docker config {}: {message}", path.display())]
    Config {
        /// config.json.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} for {server}: {message}")]
    Helper {
        /// Helper name (after `docker-credential-`).
        helper: String,
        /// The server asked for.
        server: String,
        /// What failed.
        message: String,
    },
}

/// The registry host of an image reference: `127.0.0.1:5000/a/b:1` → `127.0.0.1:5000`,
/// `ghcr.io/o/x` → `ghcr.io`, `nvidia/cuda:12.4.1-base-ubuntu22.04` and `ubuntu` →
/// `docker.io` (Docker Hub). The first path component names a registry only when it has
/// a `.` or a `:` or is `localhost`, as in the docker CLI.
pub fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            if first == "index.docker.io" || first == "registry-1.docker.io" {
                "docker.io".into()
            } else {
                first.to_string()
            }
        }
        _ => "docker.io".into(),
    }
}

/// Split `name[:tag][@digest]` into the name and the tag (`latest` when absent) or digest.
pub fn split_reference(reference: &str) -> (String, String) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name.to_string(), digest.to_string());
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (
            reference[..slash + i].to_string(),
            reference[slash + i + 1..].to_string(),
        ),
        None => (reference.to_string(), "latest".into()),
    }
}

/// The docker config file: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// A config key (`https://127.0.0.1:5000/v2/`, `registry.example.com`) as a bare host.
fn key_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// The server address a helper is asked for: Docker Hub's legacy key, else the host.
fn helper_server(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_KEY.into()
    } else {
        host.into()
    }
}

/// Credentials for `host` (as [`registry_host`] returns it) from the docker config at
/// `config` (absent file = no credentials). Helpers are looked up in PATH.
pub fn credentials_for(config: &Path, host: &str) -> Result<Option<RegistryAuth>, AuthError> {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::Config {
                path: config.into(),
                message: e.to_string(),
            });
        }
    };
    let cfg: ConfigFile = serde_json::from_str(&text).map_err(|e| AuthError::Config {
        path: config.into(),
        message: format!("not valid JSON: {e}"),
    })?;
    let helper = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| key_host(k) == host)
        .map(|(_, v)| v.clone())
        .or(cfg.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(h) = helper
        && let Some(a) = from_helper(&h, host)?
    {
        return Ok(Some(a));
    }
    let Some((key, entry)) = cfg.auths.iter().find(|(k, _)| key_host(k) == host) else {
        return Ok(None);
    };
    let bad = |message: String| AuthError::Config {
        path: config.into(),
        message,
    };
    let (mut username, mut password) = (
        entry.username.clone().unwrap_or_default(),
        entry.password.clone().unwrap_or_default(),
    );
    if let Some(a) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| bad(format!("auths.\"{key}\".auth is not base64: {e}")))?;
        let text = String::from_utf8(raw)
            .map_err(|_| bad(format!("auths.\"{key}\".auth is not UTF-8")))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.\"{key}\".auth is not `user:password`")))?;
        (username, password) = (u.to_string(), p.to_string());
    }
    let identity_token = entry.identitytoken.clone().filter(|t| !t.is_empty());
    if username.is_empty() && identity_token.is_none() {
        return Ok(None);
    }
    Ok(Some(RegistryAuth {
        server: helper_server(host),
        username,
        password,
        identity_token,
        source: format!("{} auths", config.display()),
    }))
}

/// Ask `docker-credential-<helper>` for `host`. `Ok(None)` when it has none.
fn from_helper(helper: &str, host: &str) -> Result<Option<RegistryAuth>, AuthError> {
    let server = helper_server(host);
    let fail = |message: String| AuthError::Helper {
        helper: helper.into(),
        server: server.clone(),
        message,
    };
    let prog = format!("docker-credential-{helper}");
    let mut child = match Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(format!(
                "`{prog}` is not installed (the docker config names it); install it or remove \
                 it from the config"
            )));
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let said = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // The protocol's answer for "nothing stored for this server".
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("exited with {}: {}", out.status, said.trim())));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_str(stdout.trim()).map_err(|e| {
        fail(format!(
            "printed something that is not its JSON answer: {e}"
        ))
    })?;
    let token = a.username == "<token>";
    Ok(Some(RegistryAuth {
        server,
        username: if token { String::new() } else { a.username },
        password: if token {
            String::new()
        } else {
            a.secret.clone()
        },
        identity_token: token.then_some(a.secret),
        source: format!("credential helper {prog}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_like_the_docker_cli() {
        for (r, h) in [
            ("127.0.0.1:5000/dlenv/x:1", "127.0.0.1:5000"),
            ("localhost/x", "localhost"),
            ("ghcr.io/o/x:2", "ghcr.io"),
            ("nvidia/cuda:12.4.1-base-ubuntu22.04", "docker.io"),
            ("ubuntu", "docker.io"),
            ("index.docker.io/library/ubuntu", "docker.io"),
            ("dlenv/quickstart:latest", "docker.io"),
        ] {
            assert_eq!(registry_host(r), h, "{r}");
        }
    }

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b".into(), "latest".into())
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_reference("x@sha256:abc"),
            ("x".into(), "sha256:abc".into())
        );
    }

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn auths_entries_decode_and_match_any_key_form() {
        let (_d, p) = config(
            r#"{"auths": {
                "https://127.0.0.1:5000/v2/": {"auth": "YWxpY2U6czNjcjN0"},
                "https://index.docker.io/v1/": {"identitytoken": "tok"}
            }}"#,
        );
        let a = credentials_for(&p, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "s3cr3t")
        );
        assert!(!format!("{a:?}").contains("s3cr3t"), "Debug must redact");
        let hub = credentials_for(&p, "docker.io").unwrap().unwrap();
        assert_eq!(hub.identity_token.as_deref(), Some("tok"));
        assert_eq!(hub.server, DOCKER_HUB_KEY);
        assert!(credentials_for(&p, "ghcr.io").unwrap().is_none());
    }

    #[test]
    fn a_missing_config_means_no_credentials_and_a_bad_one_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            credentials_for(&d.path().join("nope.json"), "x.io")
                .unwrap()
                .is_none()
        );
        let (_d, p) = config("{not json");
        let e = credentials_for(&p, "x.io").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let (_d2, p2) = config(r#"{"auths": {"x.io": {"auth": "!!!"}}}"#);
        let e = credentials_for(&p2, "x.io").unwrap_err().to_string();
        assert!(e.contains("not base64"), "{e}");
    }

    #[test]
    fn a_missing_helper_is_named() {
        let (_d, p) = config(r#"{"credHelpers": {"x.io": "dlenv-no-such-helper"}}"#);
        let e = credentials_for(&p, "x.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-dlenv-no-such-helper` is not installed"),
            "{e}"
        );
    }

    #[test]
    fn the_header_is_base64url_json() {
        let a = RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "alice".into(),
            password: "pw".into(),
            identity_token: None,
            source: String::new(),
        };
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(a.header_value())
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["username"], "alice");
        assert_eq!(v["serveraddress"], "127.0.0.1:5000");
    }
}
