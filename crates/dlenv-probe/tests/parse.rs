//! The pure `parse_*` functions on recorded outputs.

use dlenv_probe::facts::*;

fn output(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/outputs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn nvidia_smi_xml_with_mig() {
    let d = parse_nvidia_smi_xml(&output("nvidia-smi-q-x-a100-mig.xml")).unwrap();
    assert_eq!(d.driver_version, "535.161.07");
    assert_eq!(d.cuda_version.as_deref(), Some("12.2"));
    assert_eq!(d.gpus.len(), 2);
    assert_eq!(d.gpus[0].name, "NVIDIA A100-SXM4-80GB");
    assert_eq!(d.gpus[0].uuid, "GPU-4b6f0f2e-86b7-0c3d-5d0c-9f3f1e2a7b11");
    assert_eq!(d.gpus[0].memory_total_mib, Some(81920));
    assert_eq!(d.gpus[0].mig_enabled, Some(true));
    assert_eq!(d.gpus[1].index, 1);
    assert_eq!(d.gpus[1].mig_enabled, Some(false));
}

#[test]
fn nvidia_smi_csv() {
    let d = parse_nvidia_smi_csv(&output("nvidia-smi-query-gpu.csv")).unwrap();
    assert_eq!(d.driver_version, "535.183.01");
    assert_eq!(d.gpus.len(), 2);
    assert_eq!(d.gpus[1].compute_capability.as_deref(), Some("8.6"));
    assert_eq!(d.gpus[1].memory_total_mib, Some(24576));
    assert!(parse_nvidia_smi_csv("Failed to initialize NVML: Unknown Error\n").is_none());
}

/// `nvidia-smi -q -x` on a real H200 (driver 580.159.04, DTD v13), 2026-11-30.
#[test]
fn nvidia_smi_xml_real_h200() {
    let d = parse_nvidia_smi_xml(&output("nvidia-smi-q-x-h200.xml")).unwrap();
    assert_eq!(d.driver_version, "580.159.04");
    assert_eq!(d.cuda_version.as_deref(), Some("13.0"));
    assert_eq!(d.gpus.len(), 1);
    let g = &d.gpus[0];
    assert_eq!(g.index, 0);
    assert_eq!(g.name, "NVIDIA H200");
    assert_eq!(g.uuid, "GPU-b1f96983-9093-4e9c-7fe3-53f1bcc841e1");
    // fb_memory_usage, not bar1_memory_usage (262144 MiB) that follows it.
    assert_eq!(g.memory_total_mib, Some(143771));
    assert_eq!(g.mig_enabled, Some(false));
    // The XML has no compute capability (NVML and the CSV query have it).
    assert_eq!(g.compute_capability, None);
}

/// `nvidia-smi --query-gpu=index,name,uuid,driver_version,compute_cap,memory.total,
/// mig.mode.current,pci.bus_id --format=csv` on a real H200, 2026-11-30: a header line,
/// another column order and units. The parser read it as no GPU at all before.
#[test]
fn nvidia_smi_csv_real_h200_with_header_and_units() {
    let text = output("nvidia-smi-query-gpu-h200.csv");
    assert!(text.starts_with("index, name, uuid, driver_version, compute_cap, memory.total [MiB]"));
    let d = parse_nvidia_smi_csv(&text).unwrap();
    assert_eq!(d.driver_version, "580.159.04");
    assert_eq!(d.gpus.len(), 1);
    let g = &d.gpus[0];
    assert_eq!(g.index, 0);
    assert_eq!(g.name, "NVIDIA H200");
    assert_eq!(g.uuid, "GPU-b1f96983-9093-4e9c-7fe3-53f1bcc841e1");
    assert_eq!(g.compute_capability.as_deref(), Some("9.0"));
    assert_eq!(g.memory_total_mib, Some(143771));
    assert_eq!(g.mig_enabled, Some(false));
    // Same answer as NVML gave on that host (the recorded nvml.json).
    let nvml: dlenv_probe::source::NvmlData = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/hosts/h200-ubuntu-24.04/nvml.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(d.gpus, nvml.gpus);
    // A header without driver_version, or a short row, is not understood.
    assert!(parse_nvidia_smi_csv("index, name\n0, NVIDIA H200\n").is_none());
    assert!(
        parse_nvidia_smi_csv("index, name, driver_version, compute_cap\n0, NVIDIA H200\n")
            .is_none()
    );
    assert_eq!(
        parse_nvidia_smi_csv("name, driver_version, compute_cap\nNVIDIA H200, 580.159.04, [N/A]\n")
            .unwrap()
            .gpus[0]
            .compute_capability,
        None
    );
}

/// `/proc/driver/nvidia/version` of the open module on a real H200 host, 2026-11-30: no
/// build date after `Release Build (nixbld@)`.
#[test]
fn proc_driver_version_real_h200() {
    let text = output("proc-driver-nvidia-version-h200.txt");
    assert!(text.starts_with("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64"));
    assert_eq!(
        parse_proc_driver_version(&text).as_deref(),
        Some("580.159.04")
    );
}

#[test]
fn proc_driver_version_proprietary_and_open() {
    assert_eq!(
        parse_proc_driver_version(
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
        )
        .as_deref(),
        Some("550.54.15")
    );
    assert_eq!(
        parse_proc_driver_version(
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  (dvs-builder@U16-I3-B03-4-3)  Fri Aug 16 21:42:42 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n"
        )
        .as_deref(),
        Some("560.35.03")
    );
}

#[test]
fn versions() {
    assert_eq!(
        parse_ctk_version("NVIDIA Container Toolkit CLI version 1.17.8\ncommit: f202b80a9b9d0db00d9b1d73c0128c8962c55f4d\n").as_deref(),
        Some("1.17.8")
    );
    assert_eq!(
        parse_ctk_version(
            "cli-version: 1.14.3\nlib-version: 1.14.3\nbuild date: 2023-10-19T11:32+00:00\n"
        )
        .as_deref(),
        Some("1.14.3")
    );
    assert_eq!(upstream_version("5:27.3.1-1~ubuntu.22.04~jammy"), "27.3.1");
    assert_eq!(upstream_version("20.10.24+dfsg1-1+deb12u1+b6"), "20.10.24");
    assert_eq!(upstream_version("1.17.8-1"), "1.17.8");
    assert!(version_lt("1.16.1", "1.16.2"));
    assert!(version_lt("1.9.0", "1.16.2"));
    assert!(!version_lt("1.17.8", "1.17.8"));
    assert!(!version_lt("1.18.0", "1.17.8"));
}

#[test]
fn os_release_and_wsl() {
    let m = parse_os_release(
        "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\nVERSION_ID=\"24.04\"\n# comment\n",
    );
    assert_eq!(m["PRETTY_NAME"], "Ubuntu 24.04.1 LTS");
    assert_eq!(m["VERSION_ID"], "24.04");
    assert_eq!(
        parse_wsl("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1) (gcc (GCC) 11.2.0)").as_deref(),
        Some("wsl2")
    );
    assert_eq!(
        parse_wsl("Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) #1237-Microsoft").as_deref(),
        Some("wsl1")
    );
    assert_eq!(
        parse_wsl("Linux version 6.8.0-45-generic (buildd@lcy02-amd64-115)"),
        None
    );
    assert_eq!(
        parse_container_cgroup("12:pids:/kubepods/burstable/pod6f1f/0a1b\n").as_deref(),
        Some("kubernetes")
    );
}

#[test]
fn dpkg_status_only_installed() {
    let m = parse_dpkg_status(
        "Package: nvidia-docker2\nStatus: deinstall ok config-files\nVersion: 2.13.0-1\n\nPackage: nvidia-container-toolkit\nStatus: install ok installed\nVersion: 1.17.8-1\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2\n",
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m["nvidia-container-toolkit"], "1.17.8-1");
}

#[test]
fn runtime_config() {
    assert_eq!(
        parse_runtime_config("[nvidia-container-cli]\n#no-cgroups = false\nload-kmods = true\n[nvidia-container-runtime]\nmode = \"cdi\"\n").unwrap(),
        (None, Some("cdi".to_string()))
    );
    assert_eq!(
        parse_runtime_config("[nvidia-container-cli]\nno-cgroups = true\n").unwrap(),
        (Some(true), None)
    );
    assert!(parse_runtime_config("[nvidia-container-cli\n").is_err());
}

#[test]
fn apt_sources() {
    let new = parse_apt_source("/x/nvidia-container-toolkit.list", "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n").unwrap();
    assert!(new.signed_by && !new.stale);
    let old = parse_apt_source("/x/nvidia-docker.list", "deb https://nvidia.github.io/libnvidia-container/stable/ubuntu18.04/$(ARCH) /\ndeb https://nvidia.github.io/nvidia-docker/ubuntu18.04/$(ARCH) /\n").unwrap();
    assert!(!old.signed_by && old.stale);
    let deb822 = parse_apt_source("/x/nvidia.sources", "Types: deb\nURIs: https://nvidia.github.io/libnvidia-container/stable/deb/amd64\nSuites: /\nSigned-By: /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg\n").unwrap();
    assert!(deb822.signed_by && !deb822.stale);
    assert!(
        parse_apt_source(
            "/x/docker.list",
            "deb [arch=amd64] https://download.docker.com/linux/ubuntu jammy stable\n"
        )
        .is_none()
    );
}

#[test]
fn groups_and_status() {
    let (uid, gids) = parse_proc_status(
        "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 999 1000 \n",
    );
    assert_eq!(uid, Some(1000));
    assert_eq!(gids, [4, 27, 999, 1000]);
    let (gid, members) =
        parse_group("sudo:x:27:alice\ndocker:x:999:alice,bob\n", "docker").unwrap();
    assert_eq!(
        (gid, members),
        (999, vec!["alice".to_string(), "bob".to_string()])
    );
    assert_eq!(
        parse_name_of_id(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
            1000
        )
        .as_deref(),
        Some("alice")
    );
}

#[test]
fn daemon_json_and_cdi() {
    let c = parse_daemon_json(
        "/etc/docker/daemon.json",
        "{\"runtimes\":{\"nvidia\":{\"path\":\"nvidia-container-runtime\",\"args\":[]}},\"default-runtime\":\"nvidia\",\"registry-mirrors\":[\"https://mirror.gcr.io\"]}",
    );
    assert_eq!(c.runtimes, ["nvidia"]);
    assert_eq!(c.default_runtime.as_deref(), Some("nvidia"));
    assert_eq!(c.registry_mirrors, ["https://mirror.gcr.io"]);
    assert!(parse_daemon_json("/d", "{ broken").error.is_some());
    let s = parse_cdi_spec(
        "/etc/cdi/nvidia.yaml",
        "cdiVersion: 0.5.0\ncontainerEdits:\n  hooks:\n  - args:\n    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so\n  mounts:\n  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.161.07\nkind: nvidia.com/gpu\n",
    );
    assert_eq!(s.kind.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(s.driver_version.as_deref(), Some("535.161.07"));
    let j = parse_cdi_spec(
        "/var/run/cdi/nvidia.json",
        "{\"cdiVersion\":\"0.6.0\",\"kind\":\"nvidia.com/gpu\",\"containerEdits\":{\"mounts\":[{\"hostPath\":\"/usr/lib64/libnvidia-ml.so.560.35.03\"}]}}",
    );
    assert_eq!(j.driver_version.as_deref(), Some("560.35.03"));
    assert_eq!(
        parse_library_version(&[
            "libnvidia-ml.so".into(),
            "libnvidia-ml.so.1".into(),
            "libnvidia-ml.so.550.54.15".into()
        ])
        .as_deref(),
        Some("550.54.15")
    );
    assert!(parse_module_loaded(
        "nvidia_uvm 1 0 - Live\nnvidia 5 2 nvidia_uvm, Live\n",
        "nvidia"
    ));
    assert!(!parse_module_loaded("nvidia_uvm 1 0 - Live\n", "nvidia"));
}
