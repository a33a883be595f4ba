//! Recorded host situations (tests/fixtures/hosts, written by build_hosts.py, and real hosts
//! recorded with `dlenv doctor --record`) → the doctor's verdicts and fixes.

use std::path::PathBuf;

use dlenv_probe::checks::Status::{self, *};
use dlenv_probe::{EngineFacts, FixtureHost, HostFacts, Report};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/hosts/{name}"))
}

fn facts(name: &str) -> HostFacts {
    let dir = fixture(name);
    let engine: EngineFacts = serde_json::from_str(
        &std::fs::read_to_string(dir.join("engine.json")).expect("engine.json"),
    )
    .expect("engine.json parses");
    dlenv_probe::probe(&FixtureHost::new(dir), engine)
}

fn doctor(name: &str) -> Report {
    dlenv_probe::report(facts(name))
}

/// Assert a check's status and that its fix (or summary, for `pass`) contains `text`.
#[track_caller]
fn expect(r: &Report, id: &str, status: Status, text: &str) {
    let c = r
        .get(id)
        .unwrap_or_else(|| panic!("no check {id}; checks: {:#?}", r.checks));
    assert_eq!(c.status, status, "{id}: {c:#?}");
    if !text.is_empty() {
        let hay = format!(
            "{}\n{}\n{}",
            c.summary,
            c.fix.clone().unwrap_or_default(),
            c.details.join("\n")
        );
        assert!(hay.contains(text), "{id}: expected {text:?} in:\n{hay}");
    }
    if matches!(status, Fail | Warn) {
        assert!(c.fix.is_some(), "{id} is {status:?} without a fix");
    }
}

fn failed(r: &Report) -> Vec<&str> {
    r.checks
        .iter()
        .filter(|c| c.status == Fail)
        .map(|c| c.id.as_str())
        .collect()
}

#[test]
fn healthy_gpu_host_passes_everything() {
    let r = doctor("healthy-gpu");
    assert!(r.healthy, "{:#?}", r.checks);
    assert_eq!(r.summary.warn, 0, "{:#?}", r.checks);
    expect(
        &r,
        "nvidia.driver",
        Pass,
        "NVIDIA driver 550.54.15, supports CUDA ≤ 12.4",
    );
    expect(&r, "nvidia.gpus", Pass, "NVIDIA GeForce RTX 4090");
    expect(&r, "nvidia.mismatch", Pass, "agree (550.54.15)");
    expect(&r, "toolkit.installed", Pass, "1.17.8");
    expect(&r, "toolkit.version", Pass, "");
    expect(&r, "toolkit.runtime", Pass, "registered");
    expect(
        &r,
        "toolkit.cgroups",
        Pass,
        "no-cgroups = false suits a rootful",
    );
    expect(&r, "toolkit.apt", Pass, "nvidia-container-toolkit.list");
    expect(&r, "cdi.specs", Pass, "/etc/cdi/nvidia.yaml matches");
    expect(&r, "engine.install", Pass, "docker-ce 5:27.3.1");
    assert_eq!(r.facts.os.codename.as_deref(), Some("jammy"));
    assert_eq!(r.facts.os.kernel.as_deref(), Some("6.5.0-27-generic"));
    assert_eq!(r.facts.toolkit.mode.as_deref(), Some("auto"));
    assert_eq!(r.facts.toolkit.no_cgroups, None);
    assert!(r.facts.nvidia.module_loaded);
    assert_eq!(r.facts.nvidia.pci_gpus, 1);
    // The leftover config of a removed nvidia-docker2 is not "installed".
    assert!(r.facts.toolkit.legacy_packages.is_empty());
}

#[test]
fn no_driver_is_a_warning_with_the_install_command() {
    let r = doctor("no-driver");
    assert!(r.healthy, "a CPU-only host exits 0: {:#?}", r.checks);
    expect(
        &r,
        "nvidia.driver",
        Warn,
        "sudo ubuntu-drivers install && sudo reboot",
    );
    expect(&r, "nvidia.gpus", Skip, "no NVIDIA driver");
    expect(&r, "toolkit.installed", Skip, "");
    expect(&r, "toolkit.runtime", Skip, "");
    expect(&r, "engine.reachable", Pass, "Docker Engine 27.3.1");
}

#[test]
fn driver_library_mismatch_says_reboot() {
    let r = doctor("driver-mismatch");
    assert_eq!(failed(&r), ["nvidia.driver", "nvidia.mismatch"]);
    expect(
        &r,
        "nvidia.mismatch",
        Fail,
        "kernel module 550.54.15 but user-space libraries 550.90.07",
    );
    expect(&r, "nvidia.mismatch", Fail, "sudo reboot");
    expect(&r, "nvidia.gpus", Skip, "does not answer");
    assert!(
        r.facts
            .nvidia
            .smi_error
            .as_deref()
            .unwrap()
            .contains("Driver/library version mismatch")
    );
}

#[test]
fn toolkit_missing_names_the_repository_and_configure() {
    let r = doctor("toolkit-missing");
    assert_eq!(failed(&r), ["toolkit.installed"]);
    expect(
        &r,
        "toolkit.installed",
        Fail,
        "could not select device driver",
    );
    let fix = r.get("toolkit.installed").unwrap().fix.clone().unwrap();
    assert!(fix.contains("signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"));
    assert!(fix.contains("https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"));
    assert!(fix.contains("sudo apt-get install -y nvidia-container-toolkit"));
    assert!(fix.contains(
        "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
    ));
}

#[test]
fn runtime_not_registered() {
    let r = doctor("runtime-not-registered");
    assert_eq!(failed(&r), ["toolkit.runtime"]);
    expect(
        &r,
        "toolkit.runtime",
        Fail,
        "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker",
    );
}

#[test]
fn rootless_needs_no_cgroups() {
    let r = doctor("rootless-no-cgroups");
    assert_eq!(failed(&r), ["toolkit.cgroups"]);
    expect(
        &r,
        "toolkit.cgroups",
        Fail,
        "sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place",
    );
    // The rootless daemon.json is the one read.
    assert_eq!(
        r.facts.daemon_config.path,
        "/home/alice/.config/docker/daemon.json"
    );
    assert_eq!(r.facts.daemon_config.runtimes, ["nvidia"]);
    expect(&r, "access.socket", Pass, "/run/user/1000/docker.sock");
}

#[test]
fn rootful_with_no_cgroups_true() {
    let r = doctor("rootful-no-cgroups-true");
    assert_eq!(failed(&r), ["toolkit.cgroups"]);
    expect(
        &r,
        "toolkit.cgroups",
        Fail,
        "nvidia-container-cli.no-cgroups=false --in-place",
    );
}

#[test]
fn docker_desktop_on_linux_cannot_do_gpus() {
    let r = doctor("docker-desktop");
    assert_eq!(failed(&r), ["engine.install"]);
    expect(&r, "engine.install", Fail, "docker context use default");
    expect(&r, "toolkit.installed", Skip, "Docker Desktop");
    assert!(r.facts.os.docker_desktop);
}

#[test]
fn wsl2_with_windows_driver() {
    let r = doctor("wsl2");
    assert!(r.healthy, "{:#?}", r.checks);
    assert_eq!(r.facts.os.wsl.as_deref(), Some("wsl2"));
    expect(&r, "platform.wsl", Pass, "/usr/lib/wsl/lib");
    expect(
        &r,
        "nvidia.driver",
        Pass,
        "NVIDIA driver 560.94, supports CUDA ≤ 12.6",
    );
    expect(&r, "nvidia.mismatch", Pass, "WSL 2");
    expect(&r, "nvidia.gpus", Pass, "RTX 4070 Laptop GPU");
}

#[test]
fn socket_permission_denied() {
    let r = doctor("socket-permission-denied");
    assert_eq!(failed(&r), ["access.group", "engine.reachable"]);
    expect(
        &r,
        "access.group",
        Fail,
        "sudo usermod -aG docker alice && newgrp docker",
    );
    expect(&r, "access.group", Fail, "not in the docker group");
    expect(&r, "engine.reachable", Fail, "permission denied");
    for id in [
        "engine.install",
        "engine.version",
        "engine.disk",
        "toolkit.runtime",
        "toolkit.cgroups",
    ] {
        expect(&r, id, Skip, "no container engine answered");
    }
}

#[test]
fn group_added_but_not_relogged() {
    let r = doctor("group-not-relogged");
    expect(
        &r,
        "access.group",
        Fail,
        "newgrp docker   # or log out and back in",
    );
    expect(
        &r,
        "access.group",
        Fail,
        "this login session started before that",
    );
    assert!(r.facts.access.in_docker_group_file());
    assert!(!r.facts.access.in_docker_group_session());
}

#[test]
fn low_disk() {
    let r = doctor("low-disk");
    assert_eq!(failed(&r), ["engine.disk"]);
    expect(
        &r,
        "engine.disk",
        Fail,
        "only 3.1 GiB free on /var/lib/docker",
    );
    expect(&r, "engine.disk", Fail, "docker builder prune");
}

#[test]
fn stale_apt_lists_conflict() {
    let r = doctor("stale-apt-lists");
    assert_eq!(failed(&r), ["toolkit.apt"]);
    expect(
        &r,
        "toolkit.apt",
        Fail,
        "Conflicting values set for option Signed-By",
    );
    let fix = r.get("toolkit.apt").unwrap().fix.clone().unwrap();
    assert_eq!(
        fix,
        "sudo rm -f /etc/apt/sources.list.d/nvidia-docker.list\nsudo apt-get update"
    );
}

#[test]
fn vulnerable_toolkit_is_a_failure_with_the_cves() {
    let r = doctor("vulnerable-toolkit");
    assert_eq!(failed(&r), ["toolkit.version"]);
    expect(&r, "toolkit.version", Fail, "CVE-2024-0132");
    expect(&r, "toolkit.version", Fail, "CVE-2025-23359");
    expect(&r, "toolkit.version", Fail, "CVE-2025-23266");
    expect(
        &r,
        "toolkit.version",
        Fail,
        "sudo apt-get install -y --only-upgrade nvidia-container-toolkit",
    );
}

#[test]
fn cdi_spec_stale_after_driver_upgrade() {
    let r = doctor("cdi-stale");
    assert_eq!(failed(&r), ["cdi.specs"]);
    expect(
        &r,
        "cdi.specs",
        Fail,
        "/etc/cdi/nvidia.yaml pins driver 535.161.07 but the driver is 550.54.15",
    );
    expect(
        &r,
        "cdi.specs",
        Fail,
        "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
    );
}

#[test]
fn no_engine_skips_engine_checks_and_says_so() {
    let r = doctor("no-engine");
    expect(
        &r,
        "engine.reachable",
        Fail,
        "sudo dlenv setup --yes   # installs and starts Docker Engine",
    );
    expect(
        &r,
        "access.socket",
        Skip,
        "no engine socket at /var/run/docker.sock",
    );
    for id in ["engine.install", "engine.version", "engine.disk"] {
        expect(&r, id, Skip, "skipped: no container engine answered");
    }
    // The toolkit is missing too, and that is reported independently of the engine.
    expect(&r, "toolkit.installed", Fail, "");
    // Dependency order: platform, driver, engine, toolkit, cdi.
    let groups: Vec<&str> = r.checks.iter().map(|c| c.group.as_str()).collect();
    let mut sorted = groups.clone();
    let rank = |g: &str| {
        ["platform", "driver", "engine", "toolkit", "cdi", "smoke"]
            .iter()
            .position(|x| *x == g)
    };
    sorted.sort_by_key(|g| rank(g));
    assert_eq!(groups, sorted);
}

#[test]
fn nouveau_without_driver() {
    let r = doctor("nouveau");
    assert!(r.healthy);
    expect(&r, "nvidia.nouveau", Warn, "ubuntu-drivers install");
    expect(&r, "nvidia.driver", Warn, "1 NVIDIA GPU(s) on the PCI bus");
}

#[test]
fn nvswitch_without_fabric_manager() {
    let r = doctor("nvswitch-no-fabricmanager");
    assert_eq!(failed(&r), ["nvidia.fabricmanager"]);
    expect(
        &r,
        "nvidia.fabricmanager",
        Fail,
        "sudo apt-get install -y nvidia-fabricmanager-550 && sudo systemctl enable --now nvidia-fabricmanager",
    );
    expect(&r, "nvidia.fabricmanager", Fail, "4 NVSwitch(es)");
    expect(&r, "nvidia.gpus", Pass, "8 GPU(s): NVIDIA H100 80GB HBM3");
}

#[test]
fn world_writable_socket() {
    let r = doctor("socket-world-writable");
    assert!(r.healthy);
    expect(
        &r,
        "access.socket",
        Warn,
        "sudo chmod 0660 /var/run/docker.sock && sudo chown root:docker /var/run/docker.sock",
    );
}

#[test]
fn leftover_nvidia_docker2() {
    let r = doctor("legacy-nvidia-docker2");
    expect(
        &r,
        "toolkit.legacy",
        Warn,
        "sudo apt-get remove -y nvidia-docker2",
    );
}

#[test]
fn snap_docker() {
    let r = doctor("snap-docker");
    expect(
        &r,
        "engine.install",
        Warn,
        "sudo snap remove --purge docker",
    );
}

#[test]
fn module_not_loaded() {
    let r = doctor("module-not-loaded");
    expect(&r, "nvidia.driver", Fail, "kernel module is not loaded");
    expect(&r, "nvidia.driver", Fail, "sudo modprobe nvidia");
}

#[test]
fn ci_container_is_healthy() {
    let r = doctor("ci-container");
    assert!(r.healthy, "{:#?}", r.checks);
    assert_eq!(r.facts.os.container.as_deref(), Some("docker"));
    assert!(!r.facts.os.systemd);
    expect(
        &r,
        "nvidia.driver",
        Warn,
        "sudo apt-get install -y nvidia-driver firmware-misc-nonfree",
    );
    expect(&r, "engine.install", Pass, "docker.io 20.10.24");
}

#[test]
fn json_schema_is_stable() {
    let r = doctor("no-driver");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["schema"], "dlenv.doctor/v1");
    assert_eq!(v["healthy"], true);
    for k in ["pass", "warn", "fail", "skip"] {
        assert!(v["summary"][k].is_u64(), "{k}");
    }
    let c = &v["checks"][1];
    let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["details", "fix", "group", "id", "status", "summary"]);
    assert_eq!(c["id"], "nvidia.driver");
    assert_eq!(c["status"], "warn");
    for k in [
        "os",
        "nvidia",
        "engine",
        "toolkit",
        "daemon_config",
        "cdi",
        "access",
        "packages",
    ] {
        assert!(v["facts"].get(k).is_some(), "facts.{k}");
    }
}

/// Every field of `recorded` has the same value in `replayed` (which may have more fields:
/// the facts' JSON only ever gains fields).
#[track_caller]
fn assert_json_within(recorded: &serde_json::Value, replayed: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (recorded, replayed) {
        (Value::Object(r), Value::Object(p)) => {
            for (k, v) in r {
                let got = p
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k}: missing in the replay"));
                assert_json_within(v, got, &format!("{at}.{k}"));
            }
        }
        (Value::Array(r), Value::Array(p)) => {
            assert_eq!(r.len(), p.len(), "{at}: {recorded} vs {replayed}");
            for (i, (a, b)) in r.iter().zip(p).enumerate() {
                assert_json_within(a, b, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(recorded, replayed, "{at}"),
    }
}

/// A real H200 host (recorded with `dlenv doctor --record` on 2026-11-30, see the fixture's
/// README.md): an Ubuntu 24.04 container in a VM, driver 580.159.04, no engine, no toolkit.
#[test]
fn real_h200_container_in_a_vm() {
    let r = doctor("h200-ubuntu-24.04");
    assert!(!r.healthy);
    assert_eq!(failed(&r), ["engine.reachable", "toolkit.installed"]);
    assert_eq!(
        (
            r.summary.pass,
            r.summary.warn,
            r.summary.fail,
            r.summary.skip
        ),
        (6, 0, 2, 7)
    );
    expect(
        &r,
        "platform.os",
        Pass,
        "Ubuntu 24.04.3 LTS, kernel 6.18.44-fc-v657-gpu, x86_64",
    );
    expect(&r, "platform.os", Pass, "running inside a docker container");
    expect(&r, "platform.os", Pass, "virtual machine (hypervisor: yes)");
    expect(&r, "platform.os", Pass, "systemd is not PID 1");
    expect(
        &r,
        "nvidia.driver",
        Pass,
        "NVIDIA driver 580.159.04, supports CUDA ≤ 13.0 (read through nvml)",
    );
    expect(
        &r,
        "nvidia.mismatch",
        Pass,
        "kernel module and user-space libraries agree (580.159.04)",
    );
    expect(&r, "nvidia.gpus", Pass, "1 GPU(s): NVIDIA H200");
    expect(
        &r,
        "nvidia.gpus",
        Pass,
        "GPU 0: NVIDIA H200 (GPU-b1f96983-9093-4e9c-7fe3-53f1bcc841e1), compute capability 9.0, 143771 MiB",
    );
    expect(
        &r,
        "engine.reachable",
        Fail,
        "sudo dlenv setup --yes   # installs and starts Docker Engine",
    );
    expect(&r, "engine.reachable", Fail, "socket does not exist");
    expect(&r, "access.socket", Skip, "/var/run/docker.sock");
    expect(&r, "access.group", Pass, "running as root");
    for id in ["engine.install", "engine.version", "engine.disk"] {
        expect(&r, id, Skip, "no container engine answered");
    }
    expect(
        &r,
        "toolkit.installed",
        Fail,
        "sudo apt-get install -y nvidia-container-toolkit",
    );
    // No systemd: the fix reloads dockerd by signal, not with systemctl.
    expect(
        &r,
        "toolkit.installed",
        Fail,
        "sudo kill -HUP $(cat /var/run/docker.pid)",
    );
    expect(&r, "cdi.specs", Pass, "no CDI spec");
    assert!(
        r.get("nvidia.nouveau").is_none() && r.get("nvidia.fabricmanager").is_none(),
        "{:#?}",
        r.checks
    );

    let f = &r.facts;
    assert_eq!(f.os.id.as_deref(), Some("ubuntu"));
    assert_eq!(f.os.version_id.as_deref(), Some("24.04"));
    assert_eq!(f.os.codename.as_deref(), Some("noble"));
    assert_eq!(f.os.container.as_deref(), Some("docker"));
    assert_eq!(f.os.vm.as_deref(), Some("yes"));
    assert!(!f.os.systemd && !f.os.dockerd && !f.os.podman);
    let n = &f.nvidia;
    assert_eq!(n.driver_version.as_deref(), Some("580.159.04"));
    assert_eq!(n.driver_source.as_deref(), Some("nvml"));
    assert_eq!(n.cuda_version.as_deref(), Some("13.0"));
    assert_eq!(n.kernel_module_version.as_deref(), Some("580.159.04"));
    // The libraries in /usr/lib are only the unversioned links (libnvidia-ml.so.1): the
    // version comes from NVML, as on the host.
    assert_eq!(n.library_version, None);
    assert!(n.module_loaded && !n.nouveau_loaded);
    assert_eq!((n.pci_gpus, n.nvswitches), (1, 0));
    assert_eq!(n.gpus.len(), 1);
    assert_eq!(n.gpus[0].name, "NVIDIA H200");
    assert_eq!(n.gpus[0].compute_capability.as_deref(), Some("9.0"));
    assert_eq!(n.gpus[0].memory_total_mib, Some(143771));
    assert_eq!(n.gpus[0].mig_enabled, Some(false));
    assert!(!f.engine.reachable);
    assert_eq!(f.toolkit.version, None);
    // The CUDA, cuDNN and NCCL packages are not ones the probe reports.
    assert!(f.packages.is_empty(), "{:?}", f.packages);
    assert_eq!(f.access.user.as_deref(), Some("root"));

    // The pruned fixture still replays to the facts the recording run printed.
    let printed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("h200-ubuntu-24.04").join("doctor.json")).unwrap(),
    )
    .unwrap();
    assert_json_within(
        &printed["facts"],
        &serde_json::to_value(f).unwrap(),
        "facts",
    );
    // Same checks, in the same order, with the same verdicts (wording may change).
    let verdicts = |checks: &serde_json::Value| -> Vec<(String, String)> {
        checks
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].to_string(), c["status"].to_string()))
            .collect()
    };
    assert_eq!(
        verdicts(&serde_json::to_value(&r.checks).unwrap()),
        verdicts(&printed["checks"])
    );
}
