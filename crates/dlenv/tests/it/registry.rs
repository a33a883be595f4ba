//! `dlenv push` / `dlenv pull` against a real registry: Debian's `docker-registry` (the
//! CNCF distribution registry), started per test on a free loopback port, with and
//! without htpasswd credentials. The engine talks to it over plain HTTP, which Docker allows
//! for loopback registries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pw";

/// A running registry; killed and its storage removed on drop.
struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    fn start(with_auth: bool) -> Self {
        let exe = ["/usr/bin/docker-registry", "/usr/bin/registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the registry is not installed: `sudo apt-get install docker-registry` (.ci/run does)");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if with_auth {
            let o = run(std::process::Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
            assert!(
                o.status.success(),
                "htpasswd (apache2-utils) failed: {}",
                stderr(&o)
            );
            std::fs::write(dir.path().join("htpasswd"), &o.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: dlenv-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = std::process::Command::new(exe)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let r = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while r.get("/v2/", with_auth).is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not answer: {}",
                std::fs::read_to_string(r.dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A plain HTTP GET on the registry API (the independent witness): status line and body.
    fn get(&self, path: &str, auth: bool) -> Option<(String, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let basic = if auth {
            use base64::Engine as _;
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            )
        } else {
            String::new()
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{basic}Connection: close\r\n\r\n",
            self.host()
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_string(), body.to_string()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh image with one layer of its own (a file holding `marker`), made with the docker
/// CLI from the busybox test image, tagged `<repo>:<unique>`. Each test uses a repository of
/// its own: tests run in parallel and a [`RepoGuard`] removes every tag of its repository.
fn unique_image(repo: &str, marker: &str) -> String {
    let name = NameGuard::new("reg");
    let o = run(docker().args([
        "run",
        "--name",
        &name.0,
        busybox_image(),
        "sh",
        "-c",
        &format!("echo {marker} > /marker"),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let tag = format!("{repo}:{}", unique("img"));
    let o = run(docker().args(["commit", &name.0, &tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    tag
}

/// A docker config directory holding `config`.
fn docker_config(config: &serde_json::Value) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    d
}

fn auth_entry(user: &str, password: &str) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    })
}

#[test]
fn push_then_pull_round_trip_through_a_local_registry() {
    let reg = Registry::start(false);
    let images = RepoGuard(format!("dlenv-test/{}", unique("registry")));
    let marker = unique("marker");
    let image = unique_image(&images.0, &marker);
    let dest = format!("{}/dlenv-test/shared:v1", reg.host());
    let _dest_images = RepoGuard(format!("{}/dlenv-test/shared", reg.host()));

    let o = run(dlenv().args(["push", "--json", &image, &dest]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["pushed"], dest.as_str());
    let digest = v["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{v}");
    let layers = v["layers"].as_array().unwrap();
    assert!(
        layers.iter().any(|l| l["status"] == "Pushed"),
        "the new layer was pushed: {v}"
    );

    // The registry itself lists the tag and serves the manifest under the reported digest.
    let (status, body) = reg.get("/v2/dlenv-test/shared/tags/list", false).unwrap();
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("\"v1\""), "{body}");
    let (status, _) = reg
        .get(&format!("/v2/dlenv-test/shared/manifests/{digest}"), false)
        .unwrap();
    assert!(status.contains("200"), "manifest by digest: {status}");

    // Remove every local copy of the unique layer, then pull it back.
    for t in [&image, &dest] {
        assert!(run(docker().args(["rmi", t])).status.success());
    }
    let env = unique("pulled").replace('-', "");
    let _env_images = RepoGuard(format!("dlenv/{env}"));
    let o = run(dlenv().args(["pull", "--json", &dest, "--as", &env]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["tagged"], format!("dlenv/{env}:latest").as_str());
    assert!(
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["status"] == "Pull complete"),
        "the unique layer came from the registry: {v}"
    );

    // And it runs, with the file.
    let o = run(dlenv().args([
        "run",
        "--gpus",
        "none",
        "--no-workspace",
        "--image",
        &format!("dlenv/{env}:latest"),
        "--",
        "cat",
        "/marker",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), marker);
}

#[test]
fn a_registry_with_credentials() {
    let reg = Registry::start(true);
    let images = RepoGuard(format!("dlenv-test/{}", unique("registry")));
    let image = unique_image(&images.0, "locked");
    let dest = format!("{}/dlenv-test/private:1", reg.host());
    let _dest_images = RepoGuard(format!("{}/dlenv-test/private", reg.host()));
    let empty = docker_config(&serde_json::json!({}));

    // No credentials: a clear refusal that says how to log in.
    let o = run(dlenv()
        .env("DOCKER_CONFIG", empty.path())
        .args(["push", &image, &dest]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker login {}", reg.host())),
        "{err}"
    );

    // Wrong password in the config: the hint says the credentials were refused.
    let wrong = docker_config(&serde_json::json!({
        "auths": { format!("https://{}", reg.host()): auth_entry(USER, "nope") }
    }));
    let o = run(dlenv()
        .env("DOCKER_CONFIG", wrong.path())
        .args(["push", &image, &dest]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused the credentials"),
        "{}",
        stderr(&o)
    );

    // `docker login`'s config entry.
    let good = docker_config(&serde_json::json!({
        "auths": { reg.host(): auth_entry(USER, PASSWORD) }
    }));
    let o = run(dlenv()
        .env("DOCKER_CONFIG", good.path())
        .args(["push", "--json", &image, &dest]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        json(&o)["credentials"]
            .as_str()
            .unwrap()
            .contains("config.json"),
        "{}",
        stdout(&o)
    );
    let (status, body) = reg.get("/v2/dlenv-test/private/tags/list", true).unwrap();
    assert!(
        status.contains("200") && body.contains("\"1\""),
        "{status} {body}"
    );

    // A credential helper (the docker-credential-helpers protocol) for the pull.
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-dlenvtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
             if [ \"$server\" = \"{host}\" ]; then\n\
             echo '{{\"ServerURL\":\"{host}\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            host = reg.host()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let helper_config = docker_config(&serde_json::json!({
        "credHelpers": { reg.host(): "dlenvtest" }
    }));
    assert!(run(docker().args(["rmi", &dest])).status.success());
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = run(dlenv()
        .env("DOCKER_CONFIG", helper_config.path())
        .env("PATH", &path)
        .args(["pull", "--json", &dest]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        json(&o)["credentials"]
            .as_str()
            .unwrap()
            .contains("docker-credential-dlenvtest"),
        "{}",
        stdout(&o)
    );
    let o = run(docker().args(["image", "inspect", &dest]));
    assert!(o.status.success(), "the pulled image is in the engine");
}

#[test]
fn pulling_what_does_not_exist_names_the_problem() {
    let reg = Registry::start(false);
    let o = run(dlenv().args(["pull", &format!("{}/dlenv-test/none:missing", reg.host())]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not found") || err.contains("unknown"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    // An environment needs a destination (its `dlenv/NAME` would mean Docker Hub).
    let o = run(dlenv().args(["push", "someenv"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("say where to push dlenv/someenv:latest"),
        "{}",
        stderr(&o)
    );
    // A push of an image that is not here fails before any transfer.
    let o = run(dlenv().args([
        "push",
        "dlenv-test/registry:does-not-exist",
        &format!("{}/x:1", reg.host()),
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no image dlenv-test/registry:does-not-exist"),
        "{}",
        stderr(&o)
    );
}
