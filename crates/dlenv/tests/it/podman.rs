//! Podman through its Docker-compatible API: the real `dlenv` binary against a real,
//! rootful `podman system service` that each test starts on its own socket (no systemd
//! needed) and stops when it ends. Images come from the busybox-static root filesystem
//! (`podman import`) and, for builds, from the Debian base that the Docker tests bootstrap
//! (`docker save | podman load`). The podman CLI is only used to set up and as a witness.
//!
//! The service gets its own containers.conf (`CONTAINERS_CONF`) with
//! `default_ulimits = ["nofile=N:N", "nproc=P:P"]`, N the hard open-files limit of this
//! process and P the kernel's pid_max (capped at the hard process limit): rootful Podman
//! otherwise asks the runtime for nofile=1048576, which root without CAP_SYS_RESOURCE
//! (these VMs) cannot grant, and every container fails with "error setting rlimit type 7".
//! nproc must be named too: a `default_ulimits` list replaces Podman's built-in one
//! (`nproc=pid_max`), and without it Podman asks for nproc=1048576 ("rlimit type 6").
//!
//! Without podman every test prints `SKIPPED: podman is not installed` and returns
//! (`.ci/run` installs it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::*;

/// The busybox image, in Podman's storage (`localhost/dlenv-test/busybox:latest`).
const PODMAN_BUSYBOX: &str = "dlenv-test/busybox:latest";

/// The podman CLI (set-up and witness only).
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env_remove("CONTAINER_HOST").env_remove("CONTAINERS_CONF");
    c
}

/// The hard limit of `resource` ("Max open files", …) of this process, from
/// /proc/self/limits; `None` when unlimited or unreadable.
fn hard_limit(resource: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with(resource))?;
    line[resource.len()..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The open-files limit the test services give containers by default.
fn nofile_limit() -> u64 {
    hard_limit("Max open files").unwrap_or(1 << 20).min(1 << 20)
}

/// The process limit they give: Podman's own default (the kernel's pid_max), within this
/// process's hard limit.
fn nproc_limit() -> u64 {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(32768);
    hard_limit("Max processes").map_or(pid_max, |h| h.min(pid_max))
}

/// A `podman system service` on a socket of its own; stopped (SIGTERM, then SIGKILL) on
/// drop.
struct PodmanService {
    child: Child,
    dir: tempfile::TempDir,
}

impl PodmanService {
    /// Start one with the ulimit fix, or `None` (after saying so) without podman.
    fn start() -> Option<Self> {
        Self::start_with(true)
    }

    /// Start one; `ulimit_fix: false` leaves Podman's own defaults.
    fn start_with(ulimit_fix: bool) -> Option<Self> {
        if Command::new("podman")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIPPED: podman is not installed (apt-get install podman)");
            return None;
        }
        if !rustix::process::getuid().is_root() {
            eprintln!("SKIPPED: the podman tests run a rootful podman service and need root");
            return None;
        }
        // One start at a time, after the busybox image exists: a fresh machine's first
        // podman processes initialise its storage and network configuration.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        podman_busybox();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("containers.conf");
        let mut text = String::from("[containers]\n");
        if ulimit_fix {
            let (n, p) = (nofile_limit(), nproc_limit());
            text.push_str(&format!(
                "default_ulimits = [\"nofile={n}:{n}\", \"nproc={p}:{p}\"]\n"
            ));
        }
        std::fs::write(&conf, text).unwrap();
        let sock = dir.path().join("podman.sock");
        let log = std::fs::File::create(dir.path().join("service.log")).unwrap();
        let child = podman()
            .env("CONTAINERS_CONF", &conf)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start podman system service");
        let svc = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ping(&sock) {
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer /_ping in 20 s:\n{}",
                svc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(svc)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// `unix:///…/podman.sock`.
    fn uri(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// `dlenv` talking to this service through `DOCKER_HOST`.
    fn dlenv(&self) -> Command {
        let mut c = dlenv();
        c.env("DOCKER_HOST", self.uri());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something answers `GET /_ping` with `OK` on `sock`.
fn ping(sock: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.ends_with("OK")
}

/// Import the busybox root filesystem into Podman's storage once per machine.
fn podman_busybox() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if run(podman().args(["image", "exists", PODMAN_BUSYBOX]))
            .status
            .success()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let archive = busybox_rootfs_tar(dir.path());
        let o = run(podman()
            .args(["import", "--change", "LABEL dlenv.test=fixture"])
            .args(["--change", "CMD [\"/bin/sh\"]"])
            .arg(&archive)
            .arg(PODMAN_BUSYBOX));
        assert!(o.status.success(), "podman import: {}", stderr(&o));
    });
    PODMAN_BUSYBOX
}

/// The Debian base image in Podman's storage: the one the Docker tests bootstrap, copied
/// once per machine with `docker save | podman load`.
fn podman_debian_base() -> &'static str {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let base = debian_base();
        if run(podman().args(["image", "exists", base]))
            .status
            .success()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("base.tar");
        let o = run(docker().args(["save", "-o"]).arg(&archive).arg(base));
        assert!(o.status.success(), "docker save: {}", stderr(&o));
        let o = run(podman().args(["load", "-q", "-i"]).arg(&archive));
        assert!(o.status.success(), "podman load: {}", stderr(&o));
    });
    "dlenv/base:debian-bookworm"
}

/// Removes a Podman container by name when dropped.
struct PodmanName(String);

impl PodmanName {
    fn new(prefix: &str) -> Self {
        Self(unique(prefix))
    }
}

impl Drop for PodmanName {
    fn drop(&mut self) {
        let _ = run(podman().args(["rm", "-f", "-t", "0", &self.0]));
    }
}

/// Removes Podman images when dropped: by reference, and every image labelled
/// `dlenv.env=<env>`.
#[derive(Default)]
struct PodmanImages {
    refs: Vec<String>,
    env: Option<String>,
}

impl Drop for PodmanImages {
    fn drop(&mut self) {
        let mut ids: Vec<String> = self.refs.clone();
        if let Some(env) = &self.env {
            let o = run(podman().args([
                "images",
                "-a",
                "-q",
                "--filter",
                &format!("label=dlenv.env={env}"),
            ]));
            ids.extend(stdout(&o).split_whitespace().map(String::from));
        }
        ids.dedup();
        for id in ids {
            let _ = run(podman().args(["rmi", "-f", &id]));
        }
    }
}

/// Whether a container (any state) of this name exists in Podman.
fn podman_has_container(name: &str) -> bool {
    let o = run(podman().args([
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("name=^{name}$"),
    ]));
    stdout(&o).lines().any(|l| l.trim() == name)
}

/// Run with a deadline (a hung engine must fail the test, not stall the suite).
fn run_timeout(c: &mut Command, secs: u64) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let e = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("{c:?} did not finish in {secs} s; its stderr:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// `podman version`'s server version, the witness for what dlenv reports.
fn podman_version() -> String {
    let o = run(podman().args(["version", "--format", "{{.Version}}"]));
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// Whether a Podman version is below `major.minor`.
fn below(version: &str, major: u64, minor: u64) -> bool {
    let mut p = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .unwrap_or(0)
    });
    (p.next().unwrap_or(0), p.next().unwrap_or(0)) < (major, minor)
}

#[test]
fn engine_info_reports_podman_by_flag_and_by_docker_host() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let o = run(dlenv().args(["engine", "info", "--json", "--host", &svc.uri()]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["kind"], "podman", "{v}");
    assert_eq!(v["version"], podman_version().as_str(), "{v}");
    assert_eq!(v["endpoint"]["uri"], svc.uri().as_str());
    assert_eq!(v["endpoint"]["source"]["kind"], "flag");
    assert_eq!(v["rootless"], false);
    assert_eq!(v["data_root"], "/var/lib/containers/storage", "{v}");

    let o = run(svc.dlenv().args(["engine", "info"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("chosen from:    DOCKER_HOST"), "{s}");
    assert!(s.contains("engine:           Podman "), "{s}");
    assert!(s.contains("nvidia runtime:   not used by Podman"), "{s}");
}

#[test]
fn run_passes_exit_codes_and_applies_dlenv_defaults() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let image = podman_busybox();
    let c = PodmanName::new("pm-run");
    let base = |extra: &[&str]| {
        let mut cmd = svc.dlenv();
        cmd.args(["run", "--name", &c.0, "--image", image, "--gpus", "none"])
            .args(extra);
        cmd
    };

    let o = run(&mut base(&["--no-workspace", "--", "echo", "hi"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");
    assert!(!podman_has_container(&c.0), "the container was not removed");

    let o = run(&mut base(&["--no-workspace", "--", "sh", "-c", "exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(!podman_has_container(&c.0));

    // dlenv's stack ulimit is added to the engine's default ones (Podman before 4.5 would
    // otherwise drop the containers.conf defaults and fail on nofile), 8 GiB /dev/shm,
    // a tmpfs HOME owned by the container's user (Podman's `U`, not Docker's uid=/gid=).
    let o = run(&mut base(&[
        "--no-workspace",
        "--user",
        "1000:1000",
        "--",
        "sh",
        "-c",
        "ulimit -s; ulimit -n; df -k /dev/shm | tail -n 1; stat -c '%u:%g %a' $HOME; \
         touch $HOME/x && echo home-writable; ulimit -u",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65536", "stack ulimit in KiB: {out}");
    assert_eq!(lines[1], nofile_limit().to_string(), "nofile: {out}");
    assert!(lines[2].contains(" 8388608 "), "/dev/shm: {out}");
    assert_eq!(lines[3], "1000:1000 700", "HOME: {out}");
    assert_eq!(lines[4], "home-writable", "{out}");
    assert_eq!(lines[5], nproc_limit().to_string(), "nproc: {out}");

    // The project at /workspace, written as the given user: the file is theirs on the
    // host.
    let ws = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        ws.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let o = run(base(&[
        "--user",
        "1234:2345",
        "--",
        "sh",
        "-c",
        "pwd; touch /workspace/made-in-podman",
    ])
    .current_dir(ws.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "/workspace\n");
    let meta = std::fs::metadata(ws.path().join("made-in-podman")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));

    // Through sudo, the caller's uid:gid (dlenv runs as root here).
    let o = run(base(&["--no-workspace", "--", "id", "-u"])
        .env("SUDO_UID", "4321")
        .env("SUDO_GID", "4321"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "4321\n");
}

#[test]
fn detached_containers_show_in_ps_logs_exec_publish_stop_and_rm() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let image = podman_busybox();
    let c = PodmanName::new("pm-bg");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(svc.dlenv().args([
        "run",
        "-d",
        "--name",
        &c.0,
        "--image",
        image,
        "--gpus",
        "none",
        "--no-workspace",
        "-p",
        &format!("{port}:8000"),
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; mkdir -p /tmp/w; echo hello-podman > /tmp/w/index.html; \
         httpd -p 8000 -h /tmp/w; echo started; while true; do sleep 1; done",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(svc.dlenv().args(["ps", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ps = json(&o);
    let line = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == c.0.as_str())
        .unwrap_or_else(|| panic!("{} not in dlenv ps: {ps}", c.0));
    assert_eq!(line["state"], "running", "{line}");
    assert_eq!(line["gpus"], "none", "{line}");
    assert_eq!(
        line["ports"],
        serde_json::json!([format!("127.0.0.1:{port}->8000")]),
        "{line}"
    );

    // The port is published on loopback and answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut a = String::new();
            s.read_to_string(&mut a)?;
            Ok(a)
        });
        match got {
            Ok(a) if a.contains("hello-podman") => break a,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("no page on 127.0.0.1:{port}: {other:?}"),
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");

    let o = run(svc.dlenv().args(["logs", &c.0]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("started"), "{}", stdout(&o));

    let o = run(svc
        .dlenv()
        .args(["exec", &c.0, "--", "sh", "-c", "echo in-exec; exit 3"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "in-exec\n");

    let o = run_timeout(svc.dlenv().args(["stop", &c.0]), 30);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(svc.dlenv().args(["ps", "--json"]));
    let stopped = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == c.0.as_str())
        .cloned()
        .unwrap();
    assert_eq!(stopped["state"], "exited", "{stopped}");

    let o = run(svc.dlenv().args(["rm", &c.0]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!podman_has_container(&c.0));
}

#[test]
fn gpu_and_ulimit_refusals_are_explained() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let image = podman_busybox();
    let version = podman_version();

    // No GPU here: dlenv must refuse (exit 3) rather than start a container without GPUs.
    let c = PodmanName::new("pm-gpu");
    let o = run(svc.dlenv().args([
        "run",
        "--name",
        &c.0,
        "--image",
        image,
        "--gpus",
        "all",
        "--no-workspace",
        "--",
        "true",
    ]));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    if below(&version, 5, 4) {
        assert!(
            e.contains(&format!("Podman {version} cannot give this container GPUs")),
            "{e}"
        );
        assert!(e.contains("5.4") && e.contains("--gpus none"), "{e}");
    } else {
        assert!(e.contains("CDI"), "{e}");
    }
    assert!(!podman_has_container(&c.0));

    // The doctor names the engine, its package, and what its version means for GPUs.
    let o = run(svc.dlenv().args(["doctor", "--json", "--smoke"]));
    let v = json(&o);
    let check = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id}: {v}"))
    };
    let reachable = check("engine.reachable");
    assert_eq!(reachable["status"], "pass", "{reachable}");
    assert!(
        reachable["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Podman {version} ")),
        "{reachable}"
    );
    let dpkg = run(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "podman"]));
    if dpkg.status.success() {
        assert_eq!(
            check("engine.install")["summary"],
            format!("podman {} (package)", stdout(&dpkg))
        );
    }
    if below(&version, 5, 4) {
        assert!(
            check("engine.version")["summary"]
                .as_str()
                .unwrap()
                .contains("before 5.4"),
            "{v}"
        );
        let smoke = check("smoke.gpu");
        assert!(
            smoke["summary"].as_str().unwrap().contains("5.4"),
            "{smoke}"
        );
    }

    // Without the ulimit fix, a host that cannot grant Podman's default nofile gets the
    // reason and the containers.conf setting, not just the runtime's error.
    let Some(plain) = PodmanService::start_with(false) else {
        return;
    };
    let o = run(plain.dlenv().args([
        "run",
        "--name",
        &c.0,
        "--image",
        image,
        "--gpus",
        "none",
        "--no-workspace",
        "--",
        "true",
    ]));
    if o.status.success() {
        eprintln!(
            "note: this host lets Podman raise nofile to its default; the ulimit hint is \
             not exercised"
        );
    } else {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("error setting rlimit type 7"), "{e}");
        assert!(e.contains("default_ulimits"), "{e}");
        assert!(e.contains("/etc/containers/containers.conf"), "{e}");
    }
    assert!(!podman_has_container(&c.0));
}

#[test]
fn images_round_trip_through_export_and_import() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pmexp").replace('-', "");
    let tag = format!("localhost/dlenv-test-pm/{name}:1");
    let _images = PodmanImages {
        refs: vec![tag.clone(), format!("localhost/dlenv-test-pm/{name}:2")],
        env: None,
    };
    let o = run(podman().args(["tag", podman_busybox(), &tag]));
    assert!(o.status.success(), "{}", stderr(&o));

    // A `docker save` archive written from Podman, loaded back after the image is gone.
    let archive = dir.path().join("bb.tar");
    let o = run(svc
        .dlenv()
        .args(["export", &tag, "--format", "docker-archive", "-o"])
        .arg(&archive));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(podman().args(["rmi", &tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(svc.dlenv().arg("import").arg(&archive));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&tag) || stderr(&o).contains(&tag));
    let o = run(svc.dlenv().args([
        "run",
        "--image",
        &tag,
        "--gpus",
        "none",
        "--no-workspace",
        "--",
        "echo",
        "imported",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "imported\n");

    // A dlenv bundle written from Docker imports into Podman (one host to another).
    let docker_tag = format!("dlenv-test-pm/{name}:2");
    let o = run(docker().args(["tag", busybox_image(), &docker_tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle = dir.path().join("bb.dlenv");
    let o = run(dlenv()
        .args(["export", &docker_tag, "--full", "-o"])
        .arg(&bundle));
    let _ = run(docker().args(["rmi", &docker_tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(svc.dlenv().arg("import").arg(&bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run(podman().args(["image", "exists", &docker_tag]))
            .status
            .success()
    );

    // And a dlenv bundle written from Podman (its save names layers `<diff_id>.tar`)
    // imports into Docker.
    let podman_bundle = dir.path().join("from-podman.dlenv");
    let o = run(svc
        .dlenv()
        .args(["export", &tag, "--full", "-o"])
        .arg(&podman_bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dlenv().arg("import").arg(&podman_bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = run(docker().args(["rmi", &tag]));
}

#[test]
fn builds_through_buildah_name_steps_and_failures_and_do_not_hang() {
    let Some(svc) = PodmanService::start() else {
        return;
    };
    let base = podman_debian_base();
    let name = unique("pmb").replace('-', "");
    let _images = PodmanImages {
        refs: vec![],
        env: Some(name.clone()),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dlenv.toml"),
        format!("[env]\nname = \"{name}\"\nframework = \"none\"\nbase = \"{base}\"\n"),
    )
    .unwrap();
    let o = run_timeout(svc.dlenv().args(["build", "--json"]).current_dir(&dir), 240);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let b = json(&o);
    assert_eq!(b["latest"], format!("dlenv/{name}:latest"));
    // Buildah's `STEP n/m:` lines are counted, and its `--> Using cache` too.
    assert!(b["steps"].as_u64().unwrap() >= 10, "{b}");
    assert!(
        b["cached_steps"].as_u64().unwrap() < b["steps"].as_u64().unwrap(),
        "{b}"
    );
    let lock = std::fs::read_to_string(dir.path().join("dlenv.lock")).unwrap();
    assert!(lock.contains("python3 = "), "{lock}");

    // The environment runs, and lists among dlenv's images.
    let o = run(svc
        .dlenv()
        .args(["run", "--", "python3", "-c", "print('from-podman')"])
        .current_dir(&dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-podman\n");
    let o = run(svc.dlenv().args(["images", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        json(&o)
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["labels"]["dlenv.env"] == name.as_str()),
        "{}",
        stdout(&o)
    );

    // A failing apt step, twice through the same service: named with its output each
    // time. Before the apt cache mounts were reordered, Buildah < 1.29 kept a cache lock
    // after the first and the second build hung forever.
    std::fs::write(
        dir.path().join("dlenv.toml"),
        format!(
            "[env]\nname = \"{name}\"\nframework = \"none\"\nbase = \"{base}\"\n\
             apt = [\"dlenv-no-such-package\"]\n"
        ),
    )
    .unwrap();
    for attempt in 1..=2 {
        let o = run_timeout(svc.dlenv().arg("build").current_dir(&dir), 120);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "attempt {attempt}: {e}");
        assert!(e.contains("the build failed at step STEP 3/"), "{e}");
        assert!(e.contains("dlenv-no-such-package"), "{e}");
        assert!(
            e.contains("| E: Unable to locate package dlenv-no-such-package"),
            "{e}"
        );
    }
}
