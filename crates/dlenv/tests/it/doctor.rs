//! `dlenv doctor` and `dlenv setup` on this machine: a real engine, no GPU, no driver.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dlenv() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlenv"));
    c.env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        // `setup` adds SUDO_USER to the docker group: never let a test do that.
        .env_remove("SUDO_USER")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(o)))
}

fn check<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v:#}"))
}

#[test]
fn doctor_json_healthy_engine_and_no_driver() {
    let start = Instant::now();
    let o = run(dlenv().args(["doctor", "--json"]));
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["schema"], "dlenv.doctor/v1");
    assert_eq!(v["healthy"], true);
    assert_eq!(check(&v, "engine.reachable")["status"], "pass", "{v:#}");
    assert_eq!(check(&v, "engine.disk")["status"], "pass", "{v:#}");
    let drv = check(&v, "nvidia.driver");
    assert_eq!(drv["status"], "warn", "{v:#}");
    assert!(
        drv["summary"]
            .as_str()
            .unwrap()
            .contains("no NVIDIA driver"),
        "{drv:#}"
    );
    assert!(!drv["fix"].as_str().unwrap().is_empty());
    assert_eq!(check(&v, "toolkit.installed")["status"], "skip");
    assert_eq!(v["facts"]["engine"]["reachable"], true);
    // No network, no pulls: fast. (Generous bound for a loaded CI machine.)
    assert!(took < Duration::from_secs(5), "doctor took {took:?}");
}

#[test]
fn doctor_without_engine_fails_with_fix() {
    let o = run(dlenv()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .args(["doctor", "--json"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["healthy"], false);
    let e = check(&v, "engine.reachable");
    assert_eq!(e["status"], "fail", "{v:#}");
    assert!(e["fix"].as_str().unwrap().contains("DOCKER_HOST"), "{e:#}");
    for id in ["engine.install", "engine.version", "engine.disk"] {
        let c = check(&v, id);
        assert_eq!(c["status"], "skip", "{c:#}");
        assert!(
            c["summary"]
                .as_str()
                .unwrap()
                .contains("no container engine answered")
        );
    }
}

#[test]
fn doctor_human_output_names_fixes() {
    let o = run(dlenv().arg("doctor"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("[WARN] nvidia.driver"), "{s}");
    assert!(s.contains("fix:"), "{s}");
    assert!(s.contains("[pass] engine.reachable"), "{s}");
    assert!(s.contains("healthy:"), "{s}");

    let o = run(dlenv()
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .arg("doctor"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("[FAIL] engine.reachable"), "{s}");
    assert!(s.contains("problems found"), "{s}");
}

#[test]
fn doctor_smoke_reports_the_engines_answer_and_cleans_up() {
    let o = run(dlenv().args(["doctor", "--smoke", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let s = check(&v, "smoke.gpu");
    let summary = s["summary"].as_str().unwrap();
    if s["status"] == "skip" {
        assert!(summary.contains("no local image"), "{s:#}");
    } else {
        // This engine has no GPU device driver: the real error, explained.
        assert_eq!(s["status"], "warn", "{s:#}");
        assert!(
            summary.contains(r#"could not select device driver "" with capabilities: [[gpu]]"#),
            "{s:#}"
        );
        assert!(
            s["details"][0]
                .as_str()
                .unwrap()
                .contains("NVIDIA Container Toolkit")
        );
    }
    // The throw-away container is gone.
    let left = Command::new("docker")
        .env_remove("DOCKER_HOST")
        .args(["ps", "-aq", "--filter", "label=dlenv.purpose=doctor-smoke"])
        .output();
    if let Ok(left) = left {
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "smoke container left behind"
        );
    }
}

#[test]
fn setup_dry_run_and_noop_apply() {
    let o = run(dlenv().args(["setup", "--dry-run", "--engine-source", "distro"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(s.contains("Install Docker Engine  [already done:"), "{s}");
    assert!(s.contains("Start Docker Engine  [already done:"), "{s}");
    assert!(
        s.contains("Install the NVIDIA Container Toolkit from NVIDIA's repository  [skipped: no NVIDIA driver"),
        "{s}"
    );
    if !s.contains("nothing to do") {
        // Only apply on a machine where that changes nothing.
        eprintln!("skipping `setup --yes`: this machine is not set up already:\n{s}");
        return;
    }
    for _ in 0..2 {
        let o = run(dlenv().args(["setup", "--yes", "--engine-source", "distro"]));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("nothing to do: everything is already set up"),
            "{out}"
        );
    }
    // The engine still answers.
    let o = run(dlenv().args(["doctor", "--json"]));
    assert_eq!(check(&json(&o), "engine.reachable")["status"], "pass");
}

#[test]
fn setup_refuses_without_consent_when_stdin_is_not_a_tty() {
    // A mirror the engine does not have yet: there is work to do, so consent is needed.
    let o = run(dlenv().args([
        "setup",
        "--engine-source",
        "distro",
        "--registry-mirror",
        "https://mirror.invalid",
    ]));
    let code = o.status.code();
    // 2 (no TTY to ask) as root; 3 (needs root) otherwise. Either way nothing changed.
    assert!(matches!(code, Some(2) | Some(3)), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("hint:"), "{err}");
    if code == Some(2) {
        assert!(err.contains("--dry-run") && err.contains("--yes"), "{err}");
    }

    let o = run(dlenv().args(["setup", "--registry-mirror", "mirror.example"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
