//! The host probe: `read_*` functions do the I/O through a [`HostSource`]; `parse_*`
//! functions are pure and turn recorded text into facts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::EngineFacts;
use crate::source::{FileStat, GpuInfo, HostSource, NvmlData, NvmlFailure};

/// Everything the probe found. Stable JSON: fields are only added.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    /// Operating system and environment.
    pub os: OsFacts,
    /// NVIDIA driver and GPUs.
    pub nvidia: NvidiaFacts,
    /// The container engine (filled by the caller).
    pub engine: EngineFacts,
    /// NVIDIA Container Toolkit.
    pub toolkit: ToolkitFacts,
    /// Docker's `daemon.json`.
    pub daemon_config: DaemonConfig,
    /// CDI specs on disk.
    pub cdi: Vec<CdiSpec>,
    /// Socket access and group membership.
    pub access: AccessFacts,
    /// Installed dpkg packages that matter here, name → version.
    pub packages: BTreeMap<String, String>,
}

/// Probe everything. `engine` comes from the caller.
pub fn probe(src: &dyn HostSource, engine: EngineFacts) -> HostFacts {
    let os = read_os(src);
    let packages = read_packages(src);
    let nvidia = read_nvidia(src);
    let toolkit = read_toolkit(src, &packages);
    let rootless_config = engine.rootless;
    let daemon_config = read_daemon_config(src, rootless_config);
    let cdi = read_cdi(src);
    let access = read_access(src, &engine);
    HostFacts {
        os,
        nvidia,
        engine,
        toolkit,
        daemon_config,
        cdi,
        access,
        packages,
    }
}

// ---------------------------------------------------------------- OS

/// The operating system and what kind of machine this is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OsFacts {
    /// os-release `ID` (`ubuntu`, `debian`, `fedora`).
    pub id: Option<String>,
    /// os-release `ID_LIKE`, split.
    pub id_like: Vec<String>,
    /// os-release `VERSION_ID` (`22.04`, `12`).
    pub version_id: Option<String>,
    /// os-release `VERSION_CODENAME` (`jammy`, `bookworm`).
    pub codename: Option<String>,
    /// os-release `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// Kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// CPU architecture (`uname -m`).
    pub arch: String,
    /// `wsl1` or `wsl2` under Windows Subsystem for Linux.
    pub wsl: Option<String>,
    /// The container this process runs in (`docker`, `podman`, `kubernetes`, `lxc`, …).
    pub container: Option<String>,
    /// The hypervisor, when running in a VM (`kvm`, `vmware`, or `yes` when unnamed).
    pub vm: Option<String>,
    /// Whether systemd is PID 1.
    pub systemd: bool,
    /// Whether the snap Docker package is installed.
    pub snap_docker: bool,
    /// Whether Docker Desktop is installed for this user.
    pub docker_desktop: bool,
    /// Whether a `dockerd` binary is installed.
    pub dockerd: bool,
    /// Whether a `podman` binary is installed.
    pub podman: bool,
}

impl OsFacts {
    /// Whether apt-based setup applies (Debian, Ubuntu and derivatives).
    pub fn is_debian_family(&self) -> bool {
        matches!(self.id.as_deref(), Some("ubuntu" | "debian"))
            || self.id_like.iter().any(|l| l == "debian" || l == "ubuntu")
    }

    /// `ubuntu` or `debian` for Docker's repository paths (derivatives map to their base).
    pub fn docker_repo_distro(&self) -> Option<&'static str> {
        match self.id.as_deref() {
            Some("ubuntu") => Some("ubuntu"),
            Some("debian") => Some("debian"),
            _ if self.id_like.iter().any(|l| l == "ubuntu") => Some("ubuntu"),
            _ if self.id_like.iter().any(|l| l == "debian") => Some("debian"),
            _ => None,
        }
    }

    /// dpkg's name of the architecture (`amd64`, `arm64`).
    pub fn dpkg_arch(&self) -> &str {
        match self.arch.as_str() {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "armv7l" => "armhf",
            other => other,
        }
    }

    /// A one-line description: `Ubuntu 22.04.4 LTS, kernel 6.5.0-27-generic, x86_64`.
    pub fn describe(&self) -> String {
        let name = self
            .pretty_name
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| "unknown Linux".into());
        let kernel = self.kernel.as_deref().unwrap_or("unknown");
        format!("{name}, kernel {kernel}, {}", self.arch)
    }
}

/// Parse os-release (`KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// WSL from `/proc/version` (`…microsoft-standard-WSL2…` is WSL2, `…Microsoft…` WSL1).
pub fn parse_wsl(proc_version: &str) -> Option<String> {
    if proc_version.contains("WSL2") || proc_version.contains("microsoft-standard") {
        Some("wsl2".into())
    } else if proc_version.to_ascii_lowercase().contains("microsoft") {
        Some("wsl1".into())
    } else {
        None
    }
}

/// The container runtime from `/proc/1/cgroup` (cgroup v1 paths name it).
pub fn parse_container_cgroup(cgroup: &str) -> Option<String> {
    for (needle, name) in [
        ("kubepods", "kubernetes"),
        ("/docker", "docker"),
        ("libpod", "podman"),
        ("/lxc", "lxc"),
        ("containerd", "containerd"),
    ] {
        if cgroup.contains(needle) {
            return Some(name.into());
        }
    }
    None
}

/// Read the OS facts.
pub fn read_os(src: &dyn HostSource) -> OsFacts {
    let rel = src
        .read("/etc/os-release")
        .or_else(|| src.read("/usr/lib/os-release"))
        .map(|t| parse_os_release(&t))
        .unwrap_or_default();
    let get = |k: &str| rel.get(k).cloned().filter(|v| !v.is_empty());
    let proc_version = src.read("/proc/version").unwrap_or_default();
    let wsl = parse_wsl(&proc_version);
    let container = if src.exists("/.dockerenv") {
        Some("docker".into())
    } else if src.exists("/run/.containerenv") {
        Some("podman".into())
    } else {
        src.env("container")
            .filter(|c| !c.is_empty())
            .or_else(|| parse_container_cgroup(&src.read("/proc/1/cgroup").unwrap_or_default()))
    };
    let vm = if wsl.is_some() {
        None
    } else {
        let vendor = src
            .read("/sys/class/dmi/id/sys_vendor")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let product = src
            .read("/sys/class/dmi/id/product_name")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let both = format!("{vendor} {product}");
        let named = [
            ("qemu", "kvm"),
            ("kvm", "kvm"),
            ("vmware", "vmware"),
            ("virtualbox", "virtualbox"),
            ("amazon ec2", "kvm"),
            ("google compute engine", "kvm"),
            ("virtual machine", "hyper-v"),
            ("xen", "xen"),
        ]
        .iter()
        .find(|(n, _)| both.contains(n))
        .map(|(_, v)| v.to_string());
        named.or_else(|| {
            src.read("/proc/cpuinfo")
                .filter(|c| {
                    c.lines()
                        .any(|l| l.starts_with("flags") && l.contains(" hypervisor"))
                })
                .map(|_| "yes".into())
        })
    };
    let pid1 = src.read("/proc/1/comm").unwrap_or_default();
    let systemd =
        pid1.trim() == "systemd" || (pid1.trim() == "init" && src.exists("/run/systemd/system"));
    let home = src.env("HOME").unwrap_or_default();
    OsFacts {
        id: get("ID"),
        id_like: get("ID_LIKE")
            .map(|v| v.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        version_id: get("VERSION_ID"),
        codename: get("UBUNTU_CODENAME").or_else(|| get("VERSION_CODENAME")),
        pretty_name: get("PRETTY_NAME"),
        kernel: src
            .read("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string()),
        arch: src.arch(),
        wsl,
        container,
        vm,
        systemd,
        snap_docker: src.exists("/snap/docker") || src.exists("/var/snap/docker"),
        docker_desktop: src.exists("/opt/docker-desktop")
            || (!home.is_empty() && src.exists(&format!("{home}/.docker/desktop"))),
        dockerd: BIN_DIRS.iter().any(|d| src.exists(&format!("{d}/dockerd"))),
        podman: BIN_DIRS.iter().any(|d| src.exists(&format!("{d}/podman"))),
    }
}

const BIN_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin"];

// ---------------------------------------------------------------- packages

/// Packages whose presence and version the checks and the setup plan look at.
const PACKAGES: &[&str] = &[
    "docker-ce",
    "docker.io",
    "podman",
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container1",
    "nvidia-docker2",
    "nvidia-container-runtime",
    "nvidia-fabricmanager",
];
const PACKAGE_PREFIXES: &[&str] = &[
    "nvidia-driver-",
    "libnvidia-compute-",
    "nvidia-fabricmanager-",
];

/// Installed packages of interest from dpkg's status file, name → version.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut status, mut version) = (None, None, None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                status = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            }
        }
        let (Some(name), Some(status)) = (name, status) else {
            continue;
        };
        let wanted =
            PACKAGES.contains(&name) || PACKAGE_PREFIXES.iter().any(|p| name.starts_with(p));
        if wanted && status.ends_with(" installed") {
            out.insert(name.to_string(), version.unwrap_or("").to_string());
        }
    }
    out
}

/// Read the installed packages of interest.
pub fn read_packages(src: &dyn HostSource) -> BTreeMap<String, String> {
    src.read("/var/lib/dpkg/status")
        .map(|t| parse_dpkg_status(&t))
        .unwrap_or_default()
}

// ---------------------------------------------------------------- NVIDIA

/// The NVIDIA driver, GPUs and related kernel state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NvidiaFacts {
    /// The effective driver version (NVML, else the kernel module, else `nvidia-smi`).
    pub driver_version: Option<String>,
    /// Where `driver_version` came from: `nvml`, `proc`, `nvidia-smi`.
    pub driver_source: Option<String>,
    /// Highest CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// The GPUs.
    pub gpus: Vec<GpuInfo>,
    /// The loaded kernel module's version (`/proc/driver/nvidia/version`).
    pub kernel_module_version: Option<String>,
    /// The user-space library's version (from the `libnvidia-ml.so.<version>` file name).
    pub library_version: Option<String>,
    /// Whether the `nvidia` kernel module is loaded (`/proc/modules`).
    pub module_loaded: bool,
    /// Whether `nouveau` is loaded.
    pub nouveau_loaded: bool,
    /// Why NVML failed, if it did.
    pub nvml_error: Option<NvmlFailure>,
    /// `nvidia-smi`'s error message, if it was run and failed.
    pub smi_error: Option<String>,
    /// NVIDIA display/3D controllers on the PCI bus.
    pub pci_gpus: u32,
    /// NVSwitch bridges on the PCI bus (HGX/DGX boards need the fabric manager).
    pub nvswitches: u32,
    /// `systemctl is-active nvidia-fabricmanager`, when there are NVSwitches.
    pub fabric_manager: Option<String>,
    /// WSL2's driver libraries (`/usr/lib/wsl/lib/libcuda.so.1`) are present.
    pub wsl_libs: bool,
}

impl NvidiaFacts {
    /// Whether any part of an NVIDIA driver is installed.
    pub fn driver_present(&self) -> bool {
        self.driver_version.is_some()
            || self.library_version.is_some()
            || self.kernel_module_version.is_some()
            || self.wsl_libs
            || !matches!(self.nvml_error, None | Some(NvmlFailure::LibraryNotFound))
    }

    /// Whether the driver is present and usable (NVML or `nvidia-smi` answered).
    pub fn driver_usable(&self) -> bool {
        matches!(self.driver_source.as_deref(), Some("nvml" | "nvidia-smi"))
    }
}

/// The first dotted version number in a text (`550.54.15`, `12.4`).
fn first_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .find(|t| {
            t.contains('.')
                && t.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(String::from)
}

/// The kernel module version from `/proc/driver/nvidia/version`
/// (`NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  …`).
pub fn parse_proc_driver_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    first_version(line.split_once("Module").map_or(line, |(_, r)| r))
}

/// The driver version from the user-space library file names in a lib directory.
pub fn parse_library_version(names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix("libnvidia-ml.so."))
        .filter(|v| v.contains('.'))
        .map(String::from)
        .max()
}

/// Whether a module is loaded, from `/proc/modules`.
pub fn parse_module_loaded(proc_modules: &str, module: &str) -> bool {
    proc_modules
        .lines()
        .any(|l| l.split_whitespace().next() == Some(module))
}

fn xml_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].trim())
}

/// Parse `nvidia-smi -q -x` (XML). The compute capability is read when a tag carries it;
/// real outputs have none (driver 580.159.04's, DTD v13, has none), so it is usually
/// `None` and the resolver takes it from the GPU's name in the compat database.
pub fn parse_nvidia_smi_xml(text: &str) -> Option<NvmlData> {
    let driver_version = xml_tag(text, "driver_version")?.to_string();
    let cuda_version = xml_tag(text, "cuda_version").map(String::from);
    let mut gpus = Vec::new();
    for (i, chunk) in text.split("<gpu id=").skip(1).enumerate() {
        let chunk = chunk.split("</gpu>").next().unwrap_or(chunk);
        let mem = xml_tag(chunk, "fb_memory_usage")
            .and_then(|m| xml_tag(m, "total"))
            .and_then(|t| t.split_whitespace().next()?.parse().ok());
        let mig = xml_tag(chunk, "mig_mode")
            .and_then(|m| xml_tag(m, "current_mig"))
            .and_then(|m| match m {
                "Enabled" => Some(true),
                "Disabled" => Some(false),
                _ => None,
            });
        let cc = xml_tag(chunk, "cuda_compute_capability")
            .map(String::from)
            .or_else(|| {
                let major = xml_tag(chunk, "compute_cap_major")?;
                let minor = xml_tag(chunk, "compute_cap_minor")?;
                Some(format!("{major}.{minor}"))
            });
        gpus.push(GpuInfo {
            index: xml_tag(chunk, "minor_number")
                .and_then(|m| m.parse().ok())
                .unwrap_or(i as u32),
            name: xml_tag(chunk, "product_name").unwrap_or("").to_string(),
            uuid: xml_tag(chunk, "uuid").unwrap_or("").to_string(),
            compute_capability: cc,
            memory_total_mib: mem,
            mig_enabled: mig,
        });
    }
    Some(NvmlData {
        driver_version,
        cuda_version,
        gpus,
    })
}

/// Parse `nvidia-smi --query-gpu=… --format=csv…`.
///
/// With a header line (`--format=csv` without `noheader`), columns are found by name, in
/// any order, and values with units (`143771 MiB`) are read up to the unit; `index`,
/// `name`, `uuid`, `driver_version`, `compute_cap`, `memory.total` and `mig.mode.current`
/// are used, others ignored, and `driver_version` is required. Without a header
/// (`--format=csv,noheader,nounits`) the columns must be
/// `index,name,uuid,compute_cap,memory.total,driver_version`.
pub fn parse_nvidia_smi_csv(text: &str) -> Option<NvmlData> {
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::trim).collect::<Vec<&str>>())
        .peekable();
    // A header names `driver_version`; a data row has the version itself there.
    let header: Option<Vec<String>> = lines.next_if(|f| f.contains(&"driver_version")).map(|f| {
        f.iter()
            // `memory.total [MiB]` → `memory.total`.
            .map(|c| c.split(" [").next().unwrap_or(c).to_string())
            .collect()
    });
    let col = |name: &str, default: usize| match &header {
        Some(h) => h.iter().position(|c| c == name),
        None => Some(default),
    };
    let (index, name, uuid) = (col("index", 0), col("name", 1), col("uuid", 2));
    let (cc, mem, driver_col) = (
        col("compute_cap", 3),
        col("memory.total", 4),
        col("driver_version", 5)?,
    );
    let mig = header
        .as_ref()
        .and_then(|h| h.iter().position(|c| c == "mig.mode.current"));
    let width = header.as_ref().map_or(6, Vec::len);
    let mut driver = None;
    let mut gpus = Vec::new();
    for (i, f) in lines.enumerate() {
        if f.len() < width {
            return None;
        }
        let get = |c: Option<usize>| {
            c.and_then(|c| f.get(c).copied())
                .filter(|v| !v.starts_with("[N/A]") && !v.starts_with("[Not Supported]"))
        };
        let number = |c: Option<usize>| get(c).and_then(|v| v.split_whitespace().next());
        driver = Some(f[driver_col].to_string());
        gpus.push(GpuInfo {
            index: match index {
                Some(_) => number(index)?.parse().ok()?,
                None => i as u32,
            },
            name: get(name).unwrap_or("").to_string(),
            uuid: get(uuid).unwrap_or("").to_string(),
            compute_capability: get(cc).map(String::from),
            memory_total_mib: number(mem).and_then(|m| m.parse().ok()),
            mig_enabled: get(mig).and_then(|m| match m {
                "Enabled" => Some(true),
                "Disabled" => Some(false),
                _ => None,
            }),
        });
    }
    Some(NvmlData {
        driver_version: driver?,
        cuda_version: None,
        gpus,
    })
}

const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
];

/// Read the NVIDIA facts.
pub fn read_nvidia(src: &dyn HostSource) -> NvidiaFacts {
    let mut f = NvidiaFacts {
        kernel_module_version: src
            .read("/proc/driver/nvidia/version")
            .and_then(|t| parse_proc_driver_version(&t)),
        library_version: LIB_DIRS
            .iter()
            .filter_map(|d| src.list_dir(d))
            .find_map(|names| parse_library_version(&names)),
        wsl_libs: src.exists("/usr/lib/wsl/lib/libcuda.so.1")
            || src.exists("/usr/lib/wsl/lib/libnvidia-ml.so.1"),
        ..Default::default()
    };
    let modules = src.read("/proc/modules").unwrap_or_default();
    f.module_loaded = parse_module_loaded(&modules, "nvidia");
    f.nouveau_loaded = parse_module_loaded(&modules, "nouveau");

    match src.nvml() {
        Ok(d) => {
            f.driver_version = Some(d.driver_version);
            f.driver_source = Some("nvml".into());
            f.cuda_version = d.cuda_version;
            f.gpus = d.gpus;
        }
        Err(e) => {
            let worth_smi = e != NvmlFailure::LibraryNotFound
                || f.kernel_module_version.is_some()
                || f.library_version.is_some();
            f.nvml_error = Some(e);
            if worth_smi {
                match src.run("nvidia-smi", &["-q", "-x"]) {
                    Some(o) if o.success() => {
                        if let Some(d) = parse_nvidia_smi_xml(&o.stdout) {
                            f.driver_version = Some(d.driver_version);
                            f.driver_source = Some("nvidia-smi".into());
                            f.cuda_version = d.cuda_version;
                            f.gpus = d.gpus;
                        }
                    }
                    Some(o) => {
                        let msg = format!("{}\n{}", o.stdout.trim(), o.stderr.trim());
                        f.smi_error = Some(msg.trim().to_string());
                    }
                    None => {}
                }
            }
            if f.driver_version.is_none() && f.kernel_module_version.is_some() {
                f.driver_version = f.kernel_module_version.clone();
                f.driver_source = Some("proc".into());
            }
        }
    }

    // PCI scan: NVIDIA (0x10de) display controllers (class 0x03xxxx) and NVSwitches (0x0680xx).
    for dev in src.list_dir("/sys/bus/pci/devices").unwrap_or_default() {
        let base = format!("/sys/bus/pci/devices/{dev}");
        if src
            .read(&format!("{base}/vendor"))
            .as_deref()
            .map(str::trim)
            != Some("0x10de")
        {
            continue;
        }
        let class = src.read(&format!("{base}/class")).unwrap_or_default();
        let class = class.trim();
        if class.starts_with("0x03") {
            f.pci_gpus += 1;
        } else if class.starts_with("0x0680") {
            f.nvswitches += 1;
        }
    }
    if f.nvswitches > 0 {
        f.fabric_manager = src
            .run("systemctl", &["is-active", "nvidia-fabricmanager"])
            .map(|o| o.stdout.trim().to_string())
            .filter(|s| !s.is_empty())
            .or(Some("not-installed".into()));
    }
    f
}

// ---------------------------------------------------------------- toolkit

/// One apt source that points at NVIDIA's container repositories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AptSource {
    /// File under `/etc/apt/sources.list.d`.
    pub file: String,
    /// Whether it pins a key with `signed-by` (else it relies on the deprecated apt-key).
    pub signed_by: bool,
    /// Whether it is an old per-distro or nvidia-docker list (not `…/stable/…`).
    pub stale: bool,
}

/// The NVIDIA Container Toolkit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ToolkitFacts {
    /// Effective version (`nvidia-ctk --version`, else the package).
    pub version: Option<String>,
    /// `nvidia-ctk --version` said this.
    pub ctk_version: Option<String>,
    /// The `nvidia-container-toolkit` package version.
    pub package_version: Option<String>,
    /// Whether `/etc/nvidia-container-runtime/config.toml` exists.
    pub config_present: bool,
    /// `nvidia-container-cli.no-cgroups` (default `false`).
    pub no_cgroups: Option<bool>,
    /// `nvidia-container-runtime.mode` (`auto`, `legacy`, `cdi`, `jit-cdi`).
    pub mode: Option<String>,
    /// The config file did not parse: the error.
    pub config_error: Option<String>,
    /// Deprecated packages still installed (`nvidia-docker2`, `nvidia-container-runtime`).
    pub legacy_packages: Vec<String>,
    /// Apt sources for NVIDIA's repositories.
    pub apt_sources: Vec<AptSource>,
}

/// `nvidia-ctk --version` (`NVIDIA Container Toolkit CLI version 1.17.8`) or
/// `nvidia-container-cli --version` (`cli-version: 1.17.8`).
pub fn parse_ctk_version(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.contains("version") && !l.starts_with("commit"))?;
    first_version(line)
}

/// The upstream part of a Debian version (`1.17.8-1` → `1.17.8`, `1:20.10.24+dfsg1-1` →
/// `20.10.24`).
pub fn upstream_version(v: &str) -> String {
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    let v = v.split('-').next().unwrap_or(v);
    v.split(['+', '~']).next().unwrap_or(v).to_string()
}

/// Compare dotted versions numerically (missing parts are 0).
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split('.')
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    };
    let (a, b) = (parse(a), parse(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x < y;
        }
    }
    false
}

/// `(no-cgroups, mode)` from the runtime's `config.toml`.
pub fn parse_runtime_config(text: &str) -> Result<(Option<bool>, Option<String>), String> {
    let v: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let no_cgroups = v
        .get("nvidia-container-cli")
        .and_then(|t| t.get("no-cgroups"))
        .and_then(|b| b.as_bool());
    let mode = v
        .get("nvidia-container-runtime")
        .and_then(|t| t.get("mode"))
        .and_then(|m| m.as_str())
        .map(String::from);
    Ok((no_cgroups, mode))
}

/// The NVIDIA apt sources in one sources.list.d file (`.list` or deb822 `.sources`).
pub fn parse_apt_source(file: &str, text: &str) -> Option<AptSource> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let nvidia: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("nvidia.github.io"))
        .collect();
    if nvidia.is_empty() {
        return None;
    }
    let signed_by = lines
        .iter()
        .any(|l| l.contains("signed-by") || l.starts_with("Signed-By:"));
    let stale = nvidia.iter().any(|l| {
        l.contains("/nvidia-docker/")
            || l.contains("/nvidia-container-runtime/")
            || !(l.contains("/stable/") || l.contains("/experimental/"))
    });
    Some(AptSource {
        file: file.to_string(),
        signed_by,
        stale,
    })
}

/// Read the toolkit facts.
pub fn read_toolkit(src: &dyn HostSource, packages: &BTreeMap<String, String>) -> ToolkitFacts {
    let mut t = ToolkitFacts {
        ctk_version: src
            .run("nvidia-ctk", &["--version"])
            .filter(|o| o.success())
            .and_then(|o| parse_ctk_version(&o.stdout)),
        package_version: packages
            .get("nvidia-container-toolkit")
            .map(|v| upstream_version(v)),
        legacy_packages: ["nvidia-docker2", "nvidia-container-runtime"]
            .iter()
            .filter(|p| packages.contains_key(**p))
            .map(|p| p.to_string())
            .collect(),
        ..Default::default()
    };
    t.version = t.ctk_version.clone().or_else(|| t.package_version.clone());
    if let Some(text) = src.read("/etc/nvidia-container-runtime/config.toml") {
        t.config_present = true;
        match parse_runtime_config(&text) {
            Ok((nc, mode)) => {
                t.no_cgroups = nc;
                t.mode = mode;
            }
            Err(e) => t.config_error = Some(e),
        }
    }
    let dir = "/etc/apt/sources.list.d";
    for name in src.list_dir(dir).unwrap_or_default() {
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let path = format!("{dir}/{name}");
        if let Some(s) = src
            .read(&path)
            .and_then(|text| parse_apt_source(&path, &text))
        {
            t.apt_sources.push(s);
        }
    }
    t
}

// ---------------------------------------------------------------- daemon.json

/// Docker's `daemon.json` as dlenv reads it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonConfig {
    /// The file read (rootful `/etc/docker/daemon.json`, rootless `~/.config/docker/…`).
    pub path: String,
    /// Whether it exists.
    pub present: bool,
    /// It exists but is not valid JSON: the error.
    pub error: Option<String>,
    /// `runtimes` keys.
    pub runtimes: Vec<String>,
    /// `default-runtime`.
    pub default_runtime: Option<String>,
    /// `registry-mirrors`.
    pub registry_mirrors: Vec<String>,
    /// The raw text (for merging edits).
    #[serde(skip)]
    pub text: Option<String>,
}

/// Parse `daemon.json`.
pub fn parse_daemon_json(path: &str, text: &str) -> DaemonConfig {
    let mut c = DaemonConfig {
        path: path.to_string(),
        present: true,
        text: Some(text.to_string()),
        ..Default::default()
    };
    if text.trim().is_empty() {
        return c;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            c.runtimes = v
                .get("runtimes")
                .and_then(|r| r.as_object())
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            c.default_runtime = v
                .get("default-runtime")
                .and_then(|d| d.as_str())
                .map(String::from);
            c.registry_mirrors = v
                .get("registry-mirrors")
                .and_then(|m| m.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
        }
        Err(e) => c.error = Some(e.to_string()),
    }
    c
}

/// Read the `daemon.json` the daemon actually uses.
pub fn read_daemon_config(src: &dyn HostSource, rootless: bool) -> DaemonConfig {
    let path = if rootless {
        let cfg = src.env("XDG_CONFIG_HOME").unwrap_or_else(|| {
            format!("{}/.config", src.env("HOME").unwrap_or_else(|| "~".into()))
        });
        format!("{cfg}/docker/daemon.json")
    } else {
        "/etc/docker/daemon.json".to_string()
    };
    match src.read(&path) {
        Some(text) => parse_daemon_json(&path, &text),
        None => DaemonConfig {
            path,
            ..Default::default()
        },
    }
}

// ---------------------------------------------------------------- CDI

/// A CDI spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdiSpec {
    /// Its path.
    pub path: String,
    /// `kind:` (`nvidia.com/gpu`).
    pub kind: Option<String>,
    /// The driver version its library paths pin (`libcuda.so.550.54.15` → `550.54.15`).
    pub driver_version: Option<String>,
}

/// Parse a CDI spec (YAML or JSON) for its kind and the driver version it pins.
pub fn parse_cdi_spec(path: &str, text: &str) -> CdiSpec {
    let kind = text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches('"');
        let rest = l.strip_prefix("kind")?;
        let v = rest
            .trim_start_matches('"')
            .trim_start()
            .strip_prefix(':')?;
        Some(v.trim().trim_matches(['"', ',']).to_string())
    });
    let driver_version = ["libcuda.so.", "libnvidia-ml.so."].iter().find_map(|lib| {
        text.match_indices(lib).find_map(|(i, _)| {
            let rest = &text[i + lib.len()..];
            let v: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let v = v.trim_end_matches('.');
            (v.contains('.')).then(|| v.to_string())
        })
    });
    CdiSpec {
        path: path.to_string(),
        kind,
        driver_version,
    }
}

/// Read the CDI specs in `/etc/cdi` and `/var/run/cdi`.
pub fn read_cdi(src: &dyn HostSource) -> Vec<CdiSpec> {
    let mut out = Vec::new();
    for dir in ["/etc/cdi", "/var/run/cdi"] {
        for name in src.list_dir(dir).unwrap_or_default() {
            if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
                continue;
            }
            let path = format!("{dir}/{name}");
            if let Some(text) = src.read(&path) {
                out.push(parse_cdi_spec(&path, &text));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- access

/// Who this process is and whether it may use the engine socket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccessFacts {
    /// The engine socket looked at.
    pub socket_path: String,
    /// Its owner and mode, when it exists.
    pub socket: Option<FileStat>,
    /// The socket's group name.
    pub socket_group: Option<String>,
    /// This process's real uid.
    pub uid: Option<u32>,
    /// The user name of `uid`.
    pub user: Option<String>,
    /// `SUDO_USER`: the user who ran sudo (the one to add to the docker group).
    pub sudo_user: Option<String>,
    /// This process's supplementary groups (`/proc/self/status` `Groups:`).
    pub process_gids: Vec<u32>,
    /// The `docker` group's gid, when it exists.
    pub docker_gid: Option<u32>,
    /// The `docker` group's members in `/etc/group`.
    pub docker_members: Vec<String>,
}

impl AccessFacts {
    /// The user that should be in the docker group (the sudo caller, else this user).
    pub fn target_user(&self) -> Option<&str> {
        self.sudo_user
            .as_deref()
            .filter(|u| *u != "root")
            .or(self.user.as_deref())
    }

    /// Whether the target user is listed in the docker group in `/etc/group`.
    pub fn in_docker_group_file(&self) -> bool {
        self.target_user()
            .is_some_and(|u| self.docker_members.iter().any(|m| m == u))
    }

    /// Whether this process already has the docker group (the session has it).
    pub fn in_docker_group_session(&self) -> bool {
        self.docker_gid
            .is_some_and(|g| self.process_gids.contains(&g))
    }
}

/// `(uid, supplementary gids)` from `/proc/self/status`.
pub fn parse_proc_status(text: &str) -> (Option<u32>, Vec<u32>) {
    let mut uid = None;
    let mut gids = Vec::new();
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("Uid:") {
            uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(v) = l.strip_prefix("Groups:") {
            gids = v
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
        }
    }
    (uid, gids)
}

/// One `/etc/group` entry: `(gid, members)`.
pub fn parse_group(etc_group: &str, name: &str) -> Option<(u32, Vec<String>)> {
    etc_group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0] != name {
            return None;
        }
        let members = f[3]
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        Some((f[2].parse().ok()?, members))
    })
}

/// The name of a uid or gid in `/etc/passwd` or `/etc/group`.
pub fn parse_name_of_id(file: &str, id: u32) -> Option<String> {
    file.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(id)).then(|| f[0].to_string())
    })
}

/// Read the access facts for the engine's socket.
pub fn read_access(src: &dyn HostSource, engine: &EngineFacts) -> AccessFacts {
    let socket_path = engine
        .socket_path()
        .map(String::from)
        .or_else(|| {
            src.env("DOCKER_HOST")
                .and_then(|h| h.strip_prefix("unix://").map(String::from))
        })
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let socket = src.stat(&socket_path);
    let groups = src.read("/etc/group").unwrap_or_default();
    let passwd = src.read("/etc/passwd").unwrap_or_default();
    let (uid, process_gids) = parse_proc_status(&src.read("/proc/self/status").unwrap_or_default());
    let docker = parse_group(&groups, "docker");
    AccessFacts {
        socket_group: socket.and_then(|s| parse_name_of_id(&groups, s.gid)),
        socket,
        socket_path,
        user: uid.and_then(|u| parse_name_of_id(&passwd, u)),
        uid,
        sudo_user: src.env("SUDO_USER").filter(|u| !u.is_empty()),
        process_gids,
        docker_gid: docker.as_ref().map(|d| d.0),
        docker_members: docker.map(|d| d.1).unwrap_or_default(),
    }
}
