//! `dlenv setup --dry-run` plans for recorded hosts, compared with the expected text in
//! tests/fixtures/setup/. Set `DLENV_UPDATE_SNAPSHOTS=1` to rewrite them, then review the
//! diff.

use std::path::PathBuf;

use dlenv_probe::setup::{
    EngineChoice, EngineSource, SetupOptions, StepState, merge_registry_mirror, plan, render_plan,
};
use dlenv_probe::{EngineFacts, FixtureHost, HostFacts};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn facts(name: &str) -> HostFacts {
    let d = dir().join("hosts").join(name);
    let engine: EngineFacts =
        serde_json::from_str(&std::fs::read_to_string(d.join("engine.json")).unwrap()).unwrap();
    dlenv_probe::probe(&FixtureHost::new(d), engine)
}

#[track_caller]
fn snapshot(name: &str, actual: &str) {
    let path = dir().join("setup").join(format!("{name}.txt"));
    if std::env::var_os("DLENV_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (DLENV_UPDATE_SNAPSHOTS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "plan differs from {}; DLENV_UPDATE_SNAPSHOTS=1 rewrites it",
        path.display()
    );
}

#[test]
fn dry_run_ubuntu_22_04() {
    let f = facts("bare-ubuntu-22.04");
    snapshot(
        "ubuntu-22.04",
        &render_plan(&plan(&f, &SetupOptions::default())),
    );
}

#[test]
fn dry_run_ubuntu_24_04() {
    let f = facts("bare-ubuntu-24.04");
    snapshot(
        "ubuntu-24.04",
        &render_plan(&plan(&f, &SetupOptions::default())),
    );
}

#[test]
fn dry_run_debian_12_with_stale_list() {
    let f = facts("bare-debian-12");
    snapshot(
        "debian-12",
        &render_plan(&plan(&f, &SetupOptions::default())),
    );
}

#[test]
fn dry_run_debian_12_distro_package_and_mirror() {
    let f = facts("bare-debian-12");
    let o = SetupOptions {
        engine_source: EngineSource::Distro,
        registry_mirror: Some("https://mirror.gcr.io".into()),
        ..Default::default()
    };
    snapshot("debian-12-distro-mirror", &render_plan(&plan(&f, &o)));
}

#[test]
fn dry_run_podman_ubuntu_24_04() {
    let f = facts("bare-ubuntu-24.04");
    let o = SetupOptions {
        engine: EngineChoice::Podman,
        ..Default::default()
    };
    snapshot("ubuntu-24.04-podman", &render_plan(&plan(&f, &o)));
}

#[test]
fn ci_container_mirror_keeps_other_keys_and_reloads_without_systemd() {
    let f = facts("ci-container");
    let o = SetupOptions {
        engine_source: EngineSource::Distro,
        registry_mirror: Some("https://mirror.gcr.io".into()),
        ..Default::default()
    };
    snapshot("ci-container-mirror", &render_plan(&plan(&f, &o)));
}

#[test]
fn healthy_hosts_have_nothing_to_do() {
    for (host, o) in [
        ("healthy-gpu", SetupOptions::default()),
        (
            "ci-container",
            SetupOptions {
                engine_source: EngineSource::Distro,
                ..Default::default()
            },
        ),
    ] {
        let p = plan(&facts(host), &o);
        assert!(!p.has_work(), "{host}: {}", render_plan(&p));
        assert!(render_plan(&p).ends_with("nothing to do: everything is already set up\n"));
    }
    // No driver: the toolkit steps are skipped with a note, not attempted.
    let p = plan(&facts("ci-container"), &SetupOptions::default());
    let tk = p.steps.iter().find(|s| s.id == "toolkit.install").unwrap();
    assert!(matches!(&tk.state, StepState::Skipped(w) if w.contains("no NVIDIA driver")));
}

#[test]
fn toolkit_missing_host_plans_install_configure_restart() {
    let p = plan(&facts("toolkit-missing"), &SetupOptions::default());
    let todo: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.is_todo())
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        todo,
        ["toolkit.install", "toolkit.configure", "engine.start"]
    );
    let text = render_plan(&p);
    assert!(text.contains("$ systemctl restart docker"), "{text}");
}

#[test]
fn never_chmods_the_socket() {
    for host in [
        "bare-ubuntu-22.04",
        "socket-permission-denied",
        "group-not-relogged",
    ] {
        let p = plan(&facts(host), &SetupOptions::default());
        let text = render_plan(&p);
        assert!(
            !text.contains("chmod 666") && !text.contains("chmod a+rw"),
            "{text}"
        );
    }
}

#[test]
fn unsupported_distribution() {
    let mut f = facts("bare-ubuntu-22.04");
    f.os.id = Some("fedora".into());
    f.os.id_like = vec![];
    let p = plan(&f, &SetupOptions::default());
    assert!(
        p.unsupported
            .as_deref()
            .unwrap()
            .contains("Ubuntu and Debian")
    );
    assert!(p.steps.is_empty());
}

#[test]
fn merge_mirror_keeps_keys() {
    let out = merge_registry_mirror(
        Some(r#"{"runtimes":{"nvidia":{"path":"nvidia-container-runtime","args":[]}},"registry-mirrors":["https://a.example"]}"#),
        "https://b.example",
    )
    .unwrap()
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runtimes"]["nvidia"]["path"], "nvidia-container-runtime");
    assert_eq!(
        v["registry-mirrors"],
        serde_json::json!(["https://a.example", "https://b.example"])
    );
    // Already there (modulo a trailing slash): nothing to do.
    assert_eq!(
        merge_registry_mirror(Some(&out), "https://b.example/").unwrap(),
        None
    );
    assert!(merge_registry_mirror(None, "https://m").unwrap().is_some());
    assert!(merge_registry_mirror(Some("{not json"), "https://m").is_err());
    assert!(merge_registry_mirror(Some("[]"), "https://m").is_err());
}
