//! Shared test support: running dlenv, the busybox test image, cleanup guards.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Label on every object the tests create, valued with this run's id.
pub const TEST_LABEL: &str = "dlenv.test";

/// The tiny image built from busybox-static.
pub const BUSYBOX_IMAGE: &str = "dlenv-test/busybox:latest";

/// A unique id for this test process, so parallel runs don't collide.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{}-{}", std::process::id(), nanos()))
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A unique name for a test object.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", run_id(), nanos() % 1_000_000)
}

/// `dlenv` with a clean engine environment (no DOCKER_HOST/DOCKER_CONTEXT leaking in).
pub fn dlenv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlenv"));
    c.env_remove("DOCKER_HOST").env_remove("DOCKER_CONTEXT");
    c
}

/// The docker CLI, used only as an independent witness and to make fixtures.
pub fn docker() -> Command {
    let mut c = Command::new("docker");
    c.env_remove("DOCKER_HOST").env_remove("DOCKER_CONTEXT");
    c
}

/// Run and capture.
pub fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse stdout as JSON, with a helpful panic.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            stdout(o),
            stderr(o)
        )
    })
}

/// Build the busybox image once per machine (cached by tag): a root filesystem holding
/// the static busybox and its applet links, imported with `docker import`.
pub fn busybox_image() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if run(docker().args(["image", "inspect", BUSYBOX_IMAGE]))
            .status
            .success()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let archive = busybox_rootfs_tar(dir.path());
        let out = run(docker()
            .args(["import", "--change", "LABEL dlenv.test=fixture"])
            .args(["--change", "CMD [\"/bin/sh\"]"])
            .arg(&archive)
            .arg(BUSYBOX_IMAGE));
        assert!(
            out.status.success(),
            "docker import failed: {}",
            stderr(&out)
        );
    });
    BUSYBOX_IMAGE
}

/// Write the busybox image's root filesystem as `DIR/rootfs.tar`: the static busybox, its
/// applet links, a root account, `/tmp`, `/workspace`. Returns the archive's path.
pub fn busybox_rootfs_tar(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["tmp", "etc", "workspace", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (apt-get install busybox-static)");
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    let applets = run(Command::new(busybox).arg("--list"));
    for a in stdout(&applets)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
    }
    let archive = dir.join("rootfs.tar");
    let t = run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    assert!(t.status.success(), "tar failed: {}", stderr(&t));
    archive
}

/// Removes every container labelled with this guard's value when dropped, so a failing
/// test leaves nothing running.
pub struct ContainerGuard {
    /// The label value.
    pub label_value: String,
}

impl ContainerGuard {
    /// A guard with a fresh label value.
    pub fn new() -> Self {
        Self {
            label_value: unique("c"),
        }
    }

    /// `--label dlenv.test=VALUE` for docker-CLI-created containers.
    pub fn label_arg(&self) -> String {
        format!("{TEST_LABEL}={}", self.label_value)
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let ids = run(docker().args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={TEST_LABEL}={}", self.label_value),
        ]));
        for id in stdout(&ids).split_whitespace() {
            let _ = run(docker().args(["rm", "-f", id]));
        }
    }
}

/// Removes the named container (however it was created) when dropped.
pub struct NameGuard(pub String);

impl NameGuard {
    /// A guard for a fresh unique name.
    pub fn new(prefix: &str) -> Self {
        Self(unique(prefix))
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        let _ = run(docker().args(["rm", "-f", &self.0]));
    }
}

/// The Debian base image, bootstrapped once per machine (cached by its recipe tag).
pub fn debian_base() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let o = run(dlenv().args(["base", "bootstrap", "-q"]));
        assert!(
            o.status.success(),
            "dlenv base bootstrap failed: {}",
            stderr(&o)
        );
    });
    "dlenv/base:debian-bookworm"
}

/// Removes every tag of an image repository when dropped.
pub struct RepoGuard(pub String);

impl Drop for RepoGuard {
    fn drop(&mut self) {
        let o = run(docker().args(["images", "--format", "{{.Repository}}:{{.Tag}}", &self.0]));
        for tag in stdout(&o).split_whitespace() {
            let _ = run(docker().args(["rmi", "-f", tag]));
        }
    }
}

/// A running container started with the docker CLI, not by dlenv; removed on drop.
pub fn foreign_container(prefix: &str) -> (NameGuard, ContainerGuard) {
    let name = NameGuard::new(prefix);
    let guard = ContainerGuard::new();
    let o = run(docker()
        .args([
            "run",
            "-d",
            "--label",
            &guard.label_arg(),
            "--name",
            &name.0,
        ])
        .args([busybox_image(), "sleep", "30"]));
    assert!(o.status.success(), "{}", stderr(&o));
    (name, guard)
}
