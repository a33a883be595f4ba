//! `dlenv doctor`'s checks: pure functions of [`HostFacts`], in dependency order.
//!
//! Verdicts: `pass`, `warn` (works, but something is off or missing; exit 0), `fail`
//! (something is broken or dangerous; exit 1), `skip` (not applicable, or a check it
//! depends on failed; the summary says which).
//!
//! **A host with no NVIDIA driver is a `warn`, not a `fail`**: it is a valid CPU-only host
//! (the CI machine is one), so `doctor` exits 0 there. The warning names the command that
//! installs a driver. Everything that only matters with a driver is then `skip`ped.
//! A toolkit version with a known container-escape CVE is a `fail`.

use serde::Serialize;

use crate::engine::EngineFailure;
use crate::facts::{HostFacts, version_lt};
use crate::source::NvmlFailure;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Not applicable, or depends on a check that failed.
    Skip,
    /// Works, but something is missing or risky.
    Warn,
    /// Broken or dangerous.
    Fail,
}

impl Status {
    /// `pass`, `warn`, `fail`, `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Skip => "skip",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id, e.g. `nvidia.driver`.
    pub id: String,
    /// The layer: `platform`, `driver`, `engine`, `toolkit`, `cdi`, `smoke`.
    pub group: String,
    /// The verdict.
    pub status: Status,
    /// One line: what was found.
    pub summary: String,
    /// The exact command(s) that fix it (one per line), for `warn` and `fail`.
    pub fix: Option<String>,
    /// Extra lines: evidence and explanations.
    pub details: Vec<String>,
}

impl Check {
    fn new(id: &str, group: &str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            group: group.into(),
            status,
            summary: summary.into(),
            fix: None,
            details: Vec::new(),
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    fn detail(mut self, d: impl Into<String>) -> Self {
        self.details.push(d.into());
        self
    }
}

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failures.
    pub fail: usize,
    /// Skipped.
    pub skip: usize,
}

/// The doctor's report. This is the `--json` document; see the crate docs for the schema.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `dlenv.doctor/v1`.
    pub schema: &'static str,
    /// No check failed (warnings allowed).
    pub healthy: bool,
    /// Counts per verdict.
    pub summary: Summary,
    /// The checks, in dependency order.
    pub checks: Vec<Check>,
    /// Everything the probe found.
    pub facts: HostFacts,
}

/// The JSON schema id of [`Report`].
pub const SCHEMA: &str = "dlenv.doctor/v1";

impl Report {
    /// Build a report from checks and facts.
    pub fn new(checks: Vec<Check>, facts: HostFacts) -> Self {
        let mut r = Self {
            schema: SCHEMA,
            healthy: true,
            summary: Summary::default(),
            checks,
            facts,
        };
        r.recount();
        r
    }

    /// Append a check (e.g. the smoke test) and recount.
    pub fn push(&mut self, c: Check) {
        self.checks.push(c);
        self.recount();
    }

    fn recount(&mut self) {
        let mut s = Summary::default();
        for c in &self.checks {
            match c.status {
                Status::Pass => s.pass += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        self.healthy = s.fail == 0;
        self.summary = s;
    }

    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Low free space on the engine's data root: below this it is a failure…
pub const DISK_FAIL_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// …and below this a warning (one CUDA/PyTorch image is 6–20 GB).
pub const DISK_WARN_BYTES: u64 = 25 * 1024 * 1024 * 1024;

/// Toolkit versions with known container escapes: `(fixed in, advisory)`.
pub const TOOLKIT_CVES: &[(&str, &str)] = &[
    (
        "1.16.2",
        "CVE-2024-0132 / CVE-2024-0133 (container escape via crafted image)",
    ),
    ("1.17.4", "CVE-2025-23359 (bypass of the CVE-2024-0132 fix)"),
    (
        "1.17.8",
        "CVE-2025-23266 \"NVIDIAScape\" (container escape via the enable-cuda-compat hook)",
    ),
];

const TOOLKIT_REPO_LIST: &str = "/etc/apt/sources.list.d/nvidia-container-toolkit.list";
const TOOLKIT_KEYRING: &str = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg";

/// The commands that install the toolkit from NVIDIA's repository (one list, signed-by).
pub fn toolkit_install_commands(f: &HostFacts) -> String {
    if f.os.is_debian_family() || f.os.id.is_none() {
        format!(
            "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | sudo gpg --dearmor --yes -o {TOOLKIT_KEYRING}\n\
             echo 'deb [signed-by={TOOLKIT_KEYRING}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /' | sudo tee {TOOLKIT_REPO_LIST}\n\
             sudo apt-get update && sudo apt-get install -y nvidia-container-toolkit"
        )
    } else {
        "curl -fsSL https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo | sudo tee /etc/yum.repos.d/nvidia-container-toolkit.repo\n\
         sudo dnf install -y nvidia-container-toolkit"
            .into()
    }
}

fn driver_install_fix(f: &HostFacts) -> String {
    if f.os.wsl.is_some() {
        return "install the NVIDIA driver on Windows (not inside WSL), then run `wsl --update` in PowerShell".into();
    }
    match f.os.id.as_deref() {
        Some("ubuntu") => "sudo ubuntu-drivers install && sudo reboot".into(),
        Some("debian") => "sudo apt-get install -y nvidia-driver firmware-misc-nonfree && sudo reboot   # needs the contrib non-free non-free-firmware components".into(),
        Some("fedora") => "sudo dnf install -y akmod-nvidia && sudo reboot   # from RPM Fusion".into(),
        _ => "install the NVIDIA driver with your distribution's package manager, then reboot".into(),
    }
}

fn restart_engine(f: &HostFacts) -> &'static str {
    if f.engine.rootless {
        "systemctl --user restart docker"
    } else if f.os.systemd {
        "sudo systemctl restart docker"
    } else {
        "sudo kill -HUP $(cat /var/run/docker.pid)"
    }
}

fn skip_no_engine(id: &str, group: &str) -> Check {
    Check::new(
        id,
        group,
        Status::Skip,
        "skipped: no container engine answered (see engine.reachable)",
    )
}

fn skip_no_driver(id: &str, group: &str) -> Check {
    Check::new(
        id,
        group,
        Status::Skip,
        "skipped: no NVIDIA driver (see nvidia.driver)",
    )
}

/// Run every check, in dependency order.
pub fn run_checks(f: &HostFacts) -> Vec<Check> {
    let mut out = Vec::new();
    platform(f, &mut out);
    driver(f, &mut out);
    engine(f, &mut out);
    toolkit(f, &mut out);
    cdi(f, &mut out);
    out
}

/// Probe-independent convenience: checks plus facts as a [`Report`].
pub fn report(f: HostFacts) -> Report {
    Report::new(run_checks(&f), f)
}

fn platform(f: &HostFacts, out: &mut Vec<Check>) {
    let g = "platform";
    let mut os = Check::new("platform.os", g, Status::Pass, f.os.describe());
    if let Some(c) = &f.os.container {
        os = os.detail(format!(
            "running inside a {c} container: host checks describe the container, not the machine"
        ));
    }
    if let Some(vm) = &f.os.vm {
        os = os.detail(format!(
            "virtual machine (hypervisor: {vm}): GPUs need PCI passthrough"
        ));
    }
    if !f.os.systemd {
        os = os.detail(
            "systemd is not PID 1: engines must be started by hand (`dlenv setup` starts dockerd)",
        );
    }
    out.push(os);
    match f.os.wsl.as_deref() {
        Some("wsl1") => out.push(
            Check::new(
                "platform.wsl",
                g,
                Status::Fail,
                "WSL 1: GPUs and Docker Engine need WSL 2",
            )
            .fix("wsl --set-version <distro> 2   # in PowerShell"),
        ),
        Some(_) => {
            // A Linux driver installed inside WSL shadows the Windows-provided one (A16).
            let c = if f.nvidia.library_version.is_some() {
                Check::new(
                    "platform.wsl",
                    g,
                    Status::Fail,
                    format!(
                        "WSL 2 with a Linux NVIDIA driver ({}) installed inside the distro: it shadows the Windows driver in /usr/lib/wsl/lib",
                        f.nvidia.library_version.as_deref().unwrap_or("?")
                    ),
                )
                .fix("sudo apt-get remove --purge '^nvidia-driver-.*' '^libnvidia-.*' && wsl --shutdown   # then reopen the distro")
            } else if f.nvidia.wsl_libs {
                Check::new(
                    "platform.wsl",
                    g,
                    Status::Pass,
                    "WSL 2 with the Windows NVIDIA driver's libraries in /usr/lib/wsl/lib",
                )
            } else {
                Check::new("platform.wsl", g, Status::Pass, "WSL 2")
            };
            out.push(c);
        }
        _ => {}
    }
}

fn driver(f: &HostFacts, out: &mut Vec<Check>) {
    let g = "driver";
    let n = &f.nvidia;
    // The driver itself.
    let drv = if n.driver_usable() {
        let v = n.driver_version.as_deref().unwrap_or("?");
        let cuda = n
            .cuda_version
            .as_deref()
            .map(|c| format!(", supports CUDA ≤ {c}"))
            .unwrap_or_default();
        Check::new(
            "nvidia.driver",
            g,
            Status::Pass,
            format!(
                "NVIDIA driver {v}{cuda} (read through {})",
                n.driver_source.as_deref().unwrap_or("?")
            ),
        )
    } else if !n.driver_present() {
        let mut c = Check::new(
            "nvidia.driver",
            g,
            Status::Warn,
            "no NVIDIA driver: CPU-only host (GPU containers need a driver)",
        )
        .fix(driver_install_fix(f));
        if n.pci_gpus > 0 {
            c = c.detail(format!("{} NVIDIA GPU(s) on the PCI bus", n.pci_gpus));
        }
        c
    } else {
        match &n.nvml_error {
            Some(NvmlFailure::VersionMismatch) => Check::new(
                "nvidia.driver",
                g,
                Status::Fail,
                "NVIDIA driver installed but unusable: Driver/library version mismatch",
            )
            .fix("sudo reboot")
            .detail("see nvidia.mismatch"),
            Some(NvmlFailure::DriverNotLoaded) | Some(NvmlFailure::LibraryNotFound) | None
                if !n.module_loaded && n.kernel_module_version.is_none() =>
            {
                Check::new(
                    "nvidia.driver",
                    g,
                    Status::Fail,
                    format!(
                        "NVIDIA driver libraries {} are installed but the kernel module is not loaded",
                        n.library_version.as_deref().unwrap_or("")
                    ),
                )
                .fix(
                    "sudo modprobe nvidia   # if that fails: sudo apt-get install -y linux-headers-$(uname -r) dkms && sudo dkms autoinstall && sudo reboot",
                )
                .detail("after a kernel update the module may not be built for the running kernel, or Secure Boot refuses it (`mokutil --sb-state`)")
            }
            Some(NvmlFailure::NoPermission) => Check::new(
                "nvidia.driver",
                g,
                Status::Fail,
                "NVIDIA driver present but this user may not open /dev/nvidia*",
            )
            .fix("ls -l /dev/nvidia*   # the device nodes should be 0666 (NVreg_DeviceFileMode)"),
            other => {
                let why = n
                    .smi_error
                    .clone()
                    .or_else(|| other.as_ref().map(|e| format!("{e:?}")))
                    .unwrap_or_else(|| "unknown error".into());
                Check::new(
                    "nvidia.driver",
                    g,
                    Status::Fail,
                    format!("NVIDIA driver present but NVML does not answer: {}", why.lines().next().unwrap_or("")),
                )
                .fix("sudo reboot")
            }
        }
    };
    let have_driver = n.driver_present();
    out.push(drv);

    if n.nouveau_loaded {
        out.push(if have_driver {
            Check::new("nvidia.nouveau", g, Status::Fail, "the nouveau driver is loaded and holds the GPU")
                .fix("printf 'blacklist nouveau\\noptions nouveau modeset=0\\n' | sudo tee /etc/modprobe.d/blacklist-nouveau.conf && sudo update-initramfs -u && sudo reboot")
        } else {
            Check::new(
                "nvidia.nouveau",
                g,
                Status::Warn,
                "the open-source nouveau driver drives an NVIDIA GPU: CUDA needs NVIDIA's driver",
            )
            .fix(driver_install_fix(f))
        });
    }

    // Kernel module vs user space.
    if !have_driver {
        out.push(skip_no_driver("nvidia.mismatch", g));
    } else {
        let k = n.kernel_module_version.as_deref();
        let u = n
            .library_version
            .as_deref()
            .or(if n.driver_source.as_deref() == Some("nvml") {
                n.driver_version.as_deref()
            } else {
                None
            });
        let mismatch = n.nvml_error == Some(NvmlFailure::VersionMismatch)
            || n.smi_error
                .as_deref()
                .is_some_and(|e| e.contains("version mismatch"))
            || matches!((k, u), (Some(k), Some(u)) if k != u);
        out.push(if mismatch {
            Check::new(
                "nvidia.mismatch",
                g,
                Status::Fail,
                format!(
                    "driver/library version mismatch: kernel module {} but user-space libraries {} (driver upgraded, reboot pending)",
                    k.unwrap_or("?"),
                    u.unwrap_or("?")
                ),
            )
            .fix("sudo reboot")
            .detail("running containers keep the old libraries: recreate them after the reboot")
            .detail("to stop unattended upgrades doing this again: sudo apt-mark hold 'nvidia-*' 'libnvidia-*'")
        } else if f.os.wsl.is_some() && k.is_none() {
            Check::new("nvidia.mismatch", g, Status::Pass, "WSL 2: the driver comes from Windows")
        } else {
            Check::new(
                "nvidia.mismatch",
                g,
                Status::Pass,
                format!("kernel module and user-space libraries agree ({})", k.or(u).unwrap_or("?")),
            )
        });
    }

    // GPUs.
    if !n.driver_usable() {
        if have_driver {
            out.push(Check::new(
                "nvidia.gpus",
                g,
                Status::Skip,
                "skipped: the driver does not answer (see nvidia.driver)",
            ));
        } else {
            out.push(skip_no_driver("nvidia.gpus", g));
        }
    } else if n.gpus.is_empty() {
        out.push(
            Check::new(
                "nvidia.gpus",
                g,
                Status::Warn,
                "the driver answers but reports no GPU",
            )
            .fix("sudo nvidia-smi -r   # or check `dmesg | grep NVRM`"),
        );
    } else {
        let mut c = Check::new(
            "nvidia.gpus",
            g,
            Status::Pass,
            format!("{} GPU(s): {}", n.gpus.len(), {
                let mut names: Vec<&str> = n.gpus.iter().map(|g| g.name.as_str()).collect();
                names.dedup();
                names.join(", ")
            }),
        );
        for gpu in &n.gpus {
            c = c.detail(format!(
                "GPU {}: {} ({}), compute capability {}, {} MiB{}",
                gpu.index,
                gpu.name,
                gpu.uuid,
                gpu.compute_capability.as_deref().unwrap_or("?"),
                gpu.memory_total_mib.map_or("?".into(), |m| m.to_string()),
                if gpu.mig_enabled == Some(true) {
                    ", MIG enabled (request MIG devices by UUID or GPU:MIG index)"
                } else {
                    ""
                }
            ));
        }
        out.push(c);
    }

    if n.nvswitches > 0 {
        let state = n.fabric_manager.as_deref().unwrap_or("not-installed");
        out.push(if state == "active" {
            Check::new("nvidia.fabricmanager", g, Status::Pass, format!("{} NVSwitch(es); nvidia-fabricmanager is active", n.nvswitches))
        } else {
            let branch = n
                .driver_version
                .as_deref()
                .and_then(|v| v.split('.').next())
                .unwrap_or("<driver-branch>");
            Check::new(
                "nvidia.fabricmanager",
                g,
                Status::Fail,
                format!("{} NVSwitch(es) but nvidia-fabricmanager is {state}: CUDA fails with error 802 \"system not yet initialized\"", n.nvswitches),
            )
            .fix(format!("sudo apt-get install -y nvidia-fabricmanager-{branch} && sudo systemctl enable --now nvidia-fabricmanager"))
            .detail("the fabric manager's version must equal the driver's")
        });
    }
}

fn engine(f: &HostFacts, out: &mut Vec<Check>) {
    let g = "engine";
    let e = &f.engine;
    let a = &f.access;

    // Socket mode.
    match a.socket {
        Some(s) if s.mode & 0o006 == 0o006 => out.push(
            Check::new(
                "access.socket",
                g,
                Status::Warn,
                format!("{} is world-writable (mode {:o}): every local user is root on this machine", a.socket_path, s.mode),
            )
            .fix(format!("sudo chmod 0660 {} && sudo chown root:docker {}", a.socket_path, a.socket_path))
            .detail("add users to the docker group instead (`sudo usermod -aG docker USER`), or use rootless mode"),
        ),
        Some(s) => out.push(Check::new(
            "access.socket",
            g,
            Status::Pass,
            format!(
                "{} is owned by {}:{} mode {:o}",
                a.socket_path,
                s.uid,
                a.socket_group.clone().unwrap_or_else(|| s.gid.to_string()),
                s.mode
            ),
        )),
        None => out.push(Check::new(
            "access.socket",
            g,
            Status::Skip,
            format!("no engine socket at {}", a.socket_path),
        )),
    }

    // Group membership.
    let user = a.target_user().unwrap_or("$USER").to_string();
    let group_check = if a.uid == Some(0) && a.sudo_user.is_none() {
        Check::new("access.group", g, Status::Pass, "running as root")
    } else if a.in_docker_group_session() {
        Check::new(
            "access.group",
            g,
            Status::Pass,
            format!("{user} is in the docker group in this session"),
        )
    } else if a.in_docker_group_file() && a.uid != Some(0) {
        Check::new(
            "access.group",
            g,
            if e.reachable {
                Status::Warn
            } else {
                Status::Fail
            },
            format!(
                "{user} was added to the docker group, but this login session started before that"
            ),
        )
        .fix("newgrp docker   # or log out and back in")
    } else if e.failure == Some(EngineFailure::PermissionDenied) {
        Check::new(
            "access.group",
            g,
            Status::Fail,
            format!("permission denied on {}: {user} is not in the docker group", a.socket_path),
        )
        .fix(format!("sudo usermod -aG docker {user} && newgrp docker"))
        .detail("the docker group is root-equivalent; rootless Docker is the alternative. Never `chmod 666` the socket")
    } else if a.uid == Some(0) {
        if a.in_docker_group_file() {
            Check::new(
                "access.group",
                g,
                Status::Pass,
                format!("running as root; {user} is in the docker group"),
            )
        } else {
            Check::new(
                "access.group",
                g,
                Status::Pass,
                format!(
                    "running as root ({user} is not in the docker group: `sudo usermod -aG docker {user}`)"
                ),
            )
        }
    } else if e.reachable {
        Check::new(
            "access.group",
            g,
            Status::Pass,
            "this user may use the engine",
        )
    } else {
        Check::new(
            "access.group",
            g,
            Status::Skip,
            "skipped: no engine socket to access",
        )
    };
    out.push(group_check);

    // Reachability.
    if !e.reachable {
        let fix = match e.failure {
            Some(EngineFailure::PermissionDenied) => {
                format!("sudo usermod -aG docker {user} && newgrp docker")
            }
            _ if e.endpoint_configured => format!(
                "unset DOCKER_HOST DOCKER_CONTEXT   # the endpoint {} comes from {}",
                e.endpoint.as_deref().unwrap_or("?"),
                e.endpoint_source.as_deref().unwrap_or("configuration")
            ),
            Some(EngineFailure::ConnectionRefused) | Some(EngineFailure::NoAnswer) => {
                if f.os.systemd {
                    "sudo systemctl restart docker".into()
                } else {
                    "sudo sh -c 'dockerd > /var/log/dlenv-dockerd.log 2>&1 &'".into()
                }
            }
            _ => "sudo dlenv setup --yes   # installs and starts Docker Engine".into(),
        };
        let mut c = Check::new(
            "engine.reachable",
            g,
            Status::Fail,
            format!(
                "no container engine answered{}",
                e.error
                    .as_deref()
                    .and_then(|m| m.lines().nth(1))
                    .map(|l| format!(": {}", l.trim().trim_start_matches("- ")))
                    .unwrap_or_default()
            ),
        )
        .fix(fix);
        if let Some(h) = &e.hint {
            c = c.detail(h.clone());
        }
        out.push(c);
        for id in ["engine.install", "engine.version", "engine.disk"] {
            out.push(skip_no_engine(id, g));
        }
        return;
    }
    out.push(Check::new(
        "engine.reachable",
        g,
        Status::Pass,
        format!(
            "{} {} (API {}) at {}{}",
            if e.is_podman() {
                "Podman"
            } else {
                "Docker Engine"
            },
            e.version.as_deref().unwrap_or("?"),
            e.api_version.as_deref().unwrap_or("?"),
            e.endpoint.as_deref().unwrap_or("?"),
            if e.rootless { ", rootless" } else { "" }
        ),
    ));

    // How it was installed.
    let has_driver = f.nvidia.driver_present();
    out.push(if e.is_docker_desktop() && f.os.wsl.is_none() {
        Check::new(
            "engine.install",
            g,
            if has_driver {
                Status::Fail
            } else {
                Status::Warn
            },
            "Docker Desktop on Linux: containers run in a VM without the host's GPUs",
        )
        .fix("docker context use default   # and install Docker Engine: sudo dlenv setup --yes")
    } else if f.os.snap_docker && !e.is_podman() {
        Check::new(
            "engine.install",
            g,
            Status::Warn,
            "Docker from snap: its confinement and separate daemon.json break the NVIDIA runtime",
        )
        .fix("sudo snap remove --purge docker && sudo dlenv setup --yes")
    } else {
        Check::new(
            "engine.install",
            g,
            Status::Pass,
            // The package of the engine that answered: a host can have both Docker and
            // Podman installed.
            match (
                e.is_podman(),
                f.packages.get("docker-ce"),
                f.packages.get("docker.io"),
                f.packages.get("podman"),
            ) {
                (true, _, _, Some(v)) => format!("podman {v} (package)"),
                (false, Some(v), _, _) => format!("docker-ce {v} (Docker's repository)"),
                (false, None, Some(v), _) => format!("docker.io {v} (distribution package)"),
                _ => "engine installed outside the package manager".into(),
            },
        )
    });

    // Version.
    let major = e.major_version();
    out.push(match major {
        Some(m) if !e.is_podman() && m < 19 => Check::new(
            "engine.version",
            g,
            Status::Fail,
            format!(
                "Docker {} is older than 19.03: no `--gpus` support",
                e.version.as_deref().unwrap_or("?")
            ),
        )
        .fix("sudo dlenv setup --yes   # installs current Docker Engine"),
        Some(m) if !e.is_podman() && m < 25 => Check::new(
            "engine.version",
            g,
            Status::Pass,
            format!(
                "Docker {}: GPUs through the NVIDIA runtime (CDI needs 25+, zstd images 23+)",
                e.version.as_deref().unwrap_or("?")
            ),
        ),
        _ if e.is_podman() && e.version_below(5, 4) => {
            let summary = format!(
                "Podman {}: its Docker-compatible API ignores GPU (CDI) device requests before \
                 5.4, so `dlenv run --gpus` refuses on it",
                e.version.as_deref().unwrap_or("?")
            );
            if has_driver {
                Check::new("engine.version", g, Status::Warn, summary).fix(
                    "upgrade Podman to 5.4 or later, or use Docker with the NVIDIA Container \
                     Toolkit: sudo dlenv setup --yes",
                )
            } else {
                Check::new("engine.version", g, Status::Pass, summary)
            }
        }
        _ => Check::new(
            "engine.version",
            g,
            Status::Pass,
            format!("version {}", e.version.as_deref().unwrap_or("?")),
        ),
    });

    // Disk.
    let root = e.data_root.as_deref().unwrap_or("/var/lib/docker");
    out.push(match e.data_root_free_bytes {
        Some(b) if b < DISK_FAIL_BYTES => Check::new(
            "engine.disk",
            g,
            Status::Fail,
            format!(
                "only {} free on {root}: pulls and builds of GPU images will fail",
                gib(b)
            ),
        )
        .fix("docker system prune && docker builder prune   # or move data-root to a larger disk")
        .detail("GPU images are 6-20 GB each"),
        Some(b) if b < DISK_WARN_BYTES => Check::new(
            "engine.disk",
            g,
            Status::Warn,
            format!(
                "{} free on {root}: one CUDA/PyTorch image takes 6-20 GB",
                gib(b)
            ),
        )
        .fix("docker system prune && docker builder prune   # or move data-root to a larger disk"),
        Some(b) => Check::new(
            "engine.disk",
            g,
            Status::Pass,
            format!("{} free on {root}", gib(b)),
        ),
        None => Check::new(
            "engine.disk",
            g,
            Status::Skip,
            "free space on the data root is unknown (remote engine)",
        ),
    });
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1024.0 * 1024.0 * 1024.0))
}

fn toolkit(f: &HostFacts, out: &mut Vec<Check>) {
    let g = "toolkit";
    let t = &f.toolkit;
    let e = &f.engine;
    let has_driver = f.nvidia.driver_present();

    // Installed.
    out.push(match (&t.version, has_driver) {
        (Some(v), _) => Check::new("toolkit.installed", g, Status::Pass, format!("NVIDIA Container Toolkit {v}")),
        (None, true) if e.is_docker_desktop() => Check::new("toolkit.installed", g, Status::Skip, "skipped: Docker Desktop cannot use it (see engine.install)"),
        (None, true) => Check::new(
            "toolkit.installed",
            g,
            Status::Fail,
            "NVIDIA Container Toolkit is not installed: `--gpus` fails with `could not select device driver \"\" with capabilities: [[gpu]]`",
        )
        .fix(format!(
            "{}\nsudo nvidia-ctk runtime configure --runtime=docker && {}",
            toolkit_install_commands(f),
            restart_engine(f)
        ))
        .detail("`sudo dlenv setup --yes` does all of this"),
        (None, false) => skip_no_driver("toolkit.installed", g),
    });

    // Known CVEs.
    if let Some(v) = &t.version {
        let open: Vec<&str> = TOOLKIT_CVES
            .iter()
            .filter(|(fixed, _)| version_lt(v, fixed))
            .map(|(_, cve)| *cve)
            .collect();
        out.push(if open.is_empty() {
            Check::new("toolkit.version", g, Status::Pass, format!("{v} has no known container-escape CVE (needs ≥ 1.17.8)"))
        } else {
            let mut c = Check::new(
                "toolkit.version",
                g,
                Status::Fail,
                format!("toolkit {v} has known container-escape vulnerabilities: upgrade to 1.17.8 or newer"),
            )
            .fix(if f.os.is_debian_family() {
                "sudo apt-get update && sudo apt-get install -y --only-upgrade nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1"
            } else {
                "sudo dnf upgrade -y nvidia-container-toolkit"
            });
            for cve in open {
                c = c.detail(cve);
            }
            c
        });
    } else {
        out.push(Check::new(
            "toolkit.version",
            g,
            Status::Skip,
            "skipped: toolkit not installed",
        ));
    }

    // Apt sources.
    let srcs = &t.apt_sources;
    let stale: Vec<&str> = srcs
        .iter()
        .filter(|s| s.stale || !s.signed_by)
        .map(|s| s.file.as_str())
        .collect();
    if srcs.len() > 1 || !stale.is_empty() {
        let keep = srcs
            .iter()
            .find(|s| !s.stale && s.signed_by)
            .map(|s| s.file.as_str());
        let remove: Vec<&str> = srcs
            .iter()
            .map(|s| s.file.as_str())
            .filter(|f| Some(*f) != keep)
            .collect();
        let mut fix = format!("sudo rm -f {}", remove.join(" "));
        if keep.is_none() {
            fix.push_str(&format!(
                "\necho 'deb [signed-by={TOOLKIT_KEYRING}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /' | sudo tee {TOOLKIT_REPO_LIST}"
            ));
        }
        fix.push_str("\nsudo apt-get update");
        let mut c = Check::new(
            "toolkit.apt",
            g,
            if srcs.len() > 1 { Status::Fail } else { Status::Warn },
            if srcs.len() > 1 {
                format!("{} apt lists point at nvidia.github.io: `apt-get update` fails with \"Conflicting values set for option Signed-By\"", srcs.len())
            } else {
                "a stale NVIDIA apt list (old per-distro or nvidia-docker repository, or no signed-by)".into()
            },
        )
        .fix(fix);
        for s in srcs {
            c = c.detail(format!(
                "{}{}{}",
                s.file,
                if s.stale { " (old repository)" } else { "" },
                if s.signed_by {
                    ""
                } else {
                    " (no signed-by: apt-key)"
                }
            ));
        }
        out.push(c);
    } else if let Some(s) = srcs.first() {
        out.push(Check::new(
            "toolkit.apt",
            g,
            Status::Pass,
            format!("one NVIDIA apt list: {}", s.file),
        ));
    }

    // Deprecated packages.
    if !t.legacy_packages.is_empty() {
        out.push(
            Check::new(
                "toolkit.legacy",
                g,
                Status::Warn,
                format!("deprecated {} still installed (last released with toolkit 1.14.0)", t.legacy_packages.join(", ")),
            )
            .fix(format!(
                "sudo apt-get remove -y {} && sudo nvidia-ctk runtime configure --runtime=docker && {}",
                t.legacy_packages.join(" "),
                restart_engine(f)
            )),
        );
    }

    // Runtime registered with the engine.
    if !has_driver {
        out.push(skip_no_driver("toolkit.runtime", g));
    } else if !e.reachable {
        out.push(skip_no_engine("toolkit.runtime", g));
    } else if e.is_podman() {
        out.push(Check::new(
            "toolkit.runtime",
            g,
            Status::Pass,
            "Podman uses CDI, not a registered runtime (see cdi.specs)",
        ));
    } else if t.version.is_none() || e.is_docker_desktop() {
        out.push(Check::new(
            "toolkit.runtime",
            g,
            Status::Skip,
            "skipped: toolkit not installed",
        ));
    } else if e.runtimes.iter().any(|r| r == "nvidia") {
        out.push(Check::new(
            "toolkit.runtime",
            g,
            Status::Pass,
            format!(
                "the nvidia runtime is registered (runtimes: {})",
                e.runtimes.join(", ")
            ),
        ));
    } else {
        let configured = f.daemon_config.runtimes.iter().any(|r| r == "nvidia");
        let rootless_cfg = if e.rootless {
            " --config=$HOME/.config/docker/daemon.json"
        } else {
            ""
        };
        let sudo = if e.rootless { "" } else { "sudo " };
        let mut c = Check::new(
            "toolkit.runtime",
            g,
            Status::Fail,
            if configured {
                format!(
                    "{} registers the nvidia runtime but the engine has not loaded it (not restarted)",
                    f.daemon_config.path
                )
            } else {
                "the nvidia runtime is not registered with Docker: `--runtime=nvidia` fails and `--gpus` may too".into()
            },
        );
        c = if configured {
            c.fix(restart_engine(f))
        } else {
            c.fix(format!(
                "{sudo}nvidia-ctk runtime configure --runtime=docker{rootless_cfg} && {}",
                restart_engine(f)
            ))
        };
        out.push(c.detail(format!("engine runtimes: {}", e.runtimes.join(", "))));
    }

    // no-cgroups vs rootless/rootful.
    if !has_driver || t.version.is_none() {
        out.push(Check::new(
            "toolkit.cgroups",
            g,
            Status::Skip,
            "skipped: no toolkit",
        ));
    } else if !e.reachable {
        out.push(skip_no_engine("toolkit.cgroups", g));
    } else {
        let nc = t.no_cgroups.unwrap_or(false);
        out.push(match (e.rootless, nc) {
            (true, false) => Check::new(
                "toolkit.cgroups",
                g,
                Status::Fail,
                "rootless engine but no-cgroups = false: GPU containers fail with `devices.allow: permission denied`",
            )
            .fix("sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups --in-place")
            .detail("a rootful Docker on the same host shares this file: use CDI for one of them"),
            (false, true) => Check::new(
                "toolkit.cgroups",
                g,
                Status::Fail,
                "rootful engine but no-cgroups = true: GPU containers fail with `Failed to initialize NVML: Unknown Error`",
            )
            .fix("sudo nvidia-ctk config --set nvidia-container-cli.no-cgroups=false --in-place"),
            (_, nc) => Check::new(
                "toolkit.cgroups",
                g,
                Status::Pass,
                format!("no-cgroups = {nc} suits a {} engine; runtime mode {}", if e.rootless { "rootless" } else { "rootful" }, t.mode.as_deref().unwrap_or("auto")),
            ),
        });
    }
}

fn cdi(f: &HostFacts, out: &mut Vec<Check>) {
    let g = "cdi";
    let nv: Vec<_> = f
        .cdi
        .iter()
        .filter(|s| {
            s.kind
                .as_deref()
                .is_none_or(|k| k.starts_with("nvidia.com/"))
        })
        .collect();
    let driver = f.nvidia.driver_version.as_deref();
    if !f.nvidia.driver_present() {
        if nv.is_empty() {
            out.push(skip_no_driver("cdi.specs", g));
        } else {
            out.push(
                Check::new(
                    "cdi.specs",
                    g,
                    Status::Warn,
                    "NVIDIA CDI specs exist but no driver is installed",
                )
                .fix(format!(
                    "sudo rm -f {}",
                    nv.iter()
                        .map(|s| s.path.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            );
        }
        return;
    }
    let stale: Vec<_> = nv
        .iter()
        .filter(|s| matches!((s.driver_version.as_deref(), driver), (Some(a), Some(b)) if a != b))
        .collect();
    if !stale.is_empty() {
        let mut c = Check::new(
            "cdi.specs",
            g,
            Status::Fail,
            format!(
                "stale CDI spec: {} pins driver {} but the driver is {}",
                stale[0].path,
                stale[0].driver_version.as_deref().unwrap_or("?"),
                driver.unwrap_or("?")
            ),
        );
        let fix = if stale.iter().any(|s| s.path.starts_with("/var/run/cdi")) {
            "sudo systemctl restart nvidia-cdi-refresh.service".to_string()
        } else {
            format!(
                "sudo nvidia-ctk cdi generate --output={} && sudo chmod 644 {}",
                stale[0].path, stale[0].path
            )
        };
        c = c.fix(fix).detail("containers started with `--device nvidia.com/gpu=…` fail with `failed to stat CDI host device`");
        out.push(c);
    } else if nv.len() > 1 {
        out.push(
            Check::new(
                "cdi.specs",
                g,
                Status::Warn,
                format!("{} NVIDIA CDI specs: {} (a stale one can shadow the fresh one)", nv.len(), nv.iter().map(|s| s.path.as_str()).collect::<Vec<_>>().join(", ")),
            )
            .fix("sudo rm -f /etc/cdi/nvidia.yaml   # when nvidia-cdi-refresh manages /var/run/cdi/nvidia.yaml"),
        );
    } else if let Some(s) = nv.first() {
        out.push(Check::new(
            "cdi.specs",
            g,
            Status::Pass,
            format!("CDI spec {} matches the driver", s.path),
        ));
    } else if f.engine.is_podman() {
        out.push(
            Check::new("cdi.specs", g, Status::Fail, "Podman needs a CDI spec for GPUs and there is none")
                .fix("sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml && sudo chmod 644 /etc/cdi/nvidia.yaml"),
        );
    } else {
        out.push(Check::new("cdi.specs", g, Status::Pass, "no CDI spec (not needed with the nvidia runtime; `nvidia-ctk cdi generate` enables `--device nvidia.com/gpu=all`)"));
    }
}
