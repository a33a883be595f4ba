//! Where the probe reads the host from: the live machine ([`LiveHost`]) or a directory of
//! recorded files and command outputs ([`FixtureHost`]). Every probe goes through
//! [`HostSource`], so tests feed real recorded outputs of healthy and broken hosts.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit status (`-1` when killed by a signal or the timeout).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CmdOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Owner and mode of a file, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits (`0o660`).
    pub mode: u32,
    /// Whether it is a unix socket.
    pub socket: bool,
}

/// One GPU as NVML (or `nvidia-smi`) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Product name, e.g. `NVIDIA A100-SXM4-80GB`.
    pub name: String,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Compute capability, e.g. `8.0`, when known.
    pub compute_capability: Option<String>,
    /// Total memory in MiB, when known.
    pub memory_total_mib: Option<u64>,
    /// Current MIG mode (`true` = enabled), `None` when the GPU does not support MIG.
    pub mig_enabled: Option<bool>,
}

/// What NVML answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlData {
    /// Driver version, e.g. `550.54.15`.
    pub driver_version: String,
    /// Highest CUDA version the driver supports, e.g. `12.4`.
    pub cuda_version: Option<String>,
    /// The GPUs.
    pub gpus: Vec<GpuInfo>,
}

/// Why NVML could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NvmlFailure {
    /// `libnvidia-ml.so.1` could not be loaded (no driver user space).
    LibraryNotFound,
    /// The library is there but the kernel module is not loaded.
    DriverNotLoaded,
    /// The user-space library and the kernel module are different versions.
    VersionMismatch,
    /// Not allowed to talk to the driver.
    NoPermission,
    /// Anything else, with NVML's message.
    Other(String),
}

/// The interface every probe reads the host through.
pub trait HostSource {
    /// A file's text, `None` when absent or unreadable.
    fn read(&self, path: &str) -> Option<String>;
    /// File names in a directory (not paths), sorted; `None` when it does not exist.
    fn list_dir(&self, path: &str) -> Option<Vec<String>>;
    /// Owner and mode of a path; `None` when it does not exist.
    fn stat(&self, path: &str) -> Option<FileStat>;
    /// Run a program (searched in PATH) with a short timeout; `None` when it cannot run.
    fn run(&self, prog: &str, args: &[&str]) -> Option<CmdOutput>;
    /// An environment variable of this process.
    fn env(&self, key: &str) -> Option<String>;
    /// The CPU architecture as `uname -m` prints it (`x86_64`, `aarch64`).
    fn arch(&self) -> String;
    /// Ask NVML for the driver and GPUs.
    fn nvml(&self) -> Result<NvmlData, NvmlFailure>;
    /// Whether a path exists.
    fn exists(&self, path: &str) -> bool {
        self.stat(path).is_some()
    }
}

/// The machine this process runs on.
#[derive(Debug, Clone)]
pub struct LiveHost {
    /// Timeout for each command.
    pub timeout: Duration,
}

impl Default for LiveHost {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
        }
    }
}

/// Search PATH (plus the sbin directories) for a program.
fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        return Path::new(prog).is_file().then(|| PathBuf::from(prog));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

impl HostSource for LiveHost {
    fn read(&self, path: &str) -> Option<String> {
        let bytes = std::fs::read(path).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    }

    fn stat(&self, path: &str) -> Option<FileStat> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStat {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            socket: m.file_type().is_socket(),
        })
    }

    fn run(&self, prog: &str, args: &[&str]) -> Option<CmdOutput> {
        let exe = which(prog)?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .spawn()
            .ok()?;
        // Read both pipes on threads so a chatty command cannot block on a full pipe.
        let mut out = child.stdout.take()?;
        let mut err = child.stderr.take()?;
        let t_out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st.code().unwrap_or(-1),
                Ok(None) if start.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break -1;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return None,
            }
        };
        let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
        Some(CmdOutput {
            status,
            stdout,
            stderr,
        })
    }

    fn env(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn arch(&self) -> String {
        std::env::consts::ARCH.to_string()
    }

    fn nvml(&self) -> Result<NvmlData, NvmlFailure> {
        live_nvml()
    }
}

fn map_nvml_error(e: nvml_wrapper::error::NvmlError) -> NvmlFailure {
    use nvml_wrapper::error::NvmlError as E;
    match e {
        E::LibloadingError(_) => NvmlFailure::LibraryNotFound,
        E::DriverNotLoaded => NvmlFailure::DriverNotLoaded,
        E::LibRmVersionMismatch => NvmlFailure::VersionMismatch,
        E::NoPermission => NvmlFailure::NoPermission,
        other => NvmlFailure::Other(other.to_string()),
    }
}

fn live_nvml() -> Result<NvmlData, NvmlFailure> {
    let nvml = nvml_wrapper::Nvml::init().map_err(map_nvml_error)?;
    let driver_version = nvml.sys_driver_version().map_err(map_nvml_error)?;
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let count = nvml.device_count().map_err(map_nvml_error)?;
    let mut gpus = Vec::new();
    for index in 0..count {
        let Ok(d) = nvml.device_by_index(index) else {
            continue;
        };
        gpus.push(GpuInfo {
            index,
            name: d.name().unwrap_or_default(),
            uuid: d.uuid().unwrap_or_default(),
            compute_capability: d
                .cuda_compute_capability()
                .ok()
                .map(|c| format!("{}.{}", c.major, c.minor)),
            memory_total_mib: d.memory_info().ok().map(|m| m.total / (1024 * 1024)),
            mig_enabled: d.mig_mode().ok().map(|m| m.current == 1),
        });
    }
    Ok(NvmlData {
        driver_version,
        cuda_version,
        gpus,
    })
}

/// A recorded host: a directory laid out as
///
/// - `root/…`: files at their absolute paths (`root/etc/os-release`,
///   `root/proc/driver/nvidia/version`); directories listed from here too;
/// - `commands/<prog> <args…>`: a command's stdout (the name is the command line with
///   spaces, `/` written as `%`); `<name>.stderr` and `<name>.status` (exit code, default 0)
///   beside it. A command with no file "is not installed";
/// - `env`: `KEY=VALUE` lines;
/// - `stat`: `PATH UID GID MODE(octal) [socket]` lines, for paths whose owner or mode
///   matters (files under `root/` exist with `0:0 644` otherwise);
/// - `nvml.json`: an [`NvmlData`] value, or `{"error": "<failure>"}`; absent = no library;
/// - `arch`: `uname -m` (default `x86_64`).
#[derive(Debug, Clone)]
pub struct FixtureHost {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    stats: BTreeMap<String, FileStat>,
}

impl FixtureHost {
    /// Open a recorded host directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
            .collect();
        let stats = std::fs::read_to_string(dir.join("stat"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() < 4 {
                    return None;
                }
                Some((
                    f[0].to_string(),
                    FileStat {
                        uid: f[1].parse().ok()?,
                        gid: f[2].parse().ok()?,
                        mode: u32::from_str_radix(f[3], 8).ok()?,
                        socket: f.get(4) == Some(&"socket"),
                    },
                ))
            })
            .collect();
        Self { dir, env, stats }
    }

    fn root_path(&self, path: &str) -> PathBuf {
        self.dir.join("root").join(path.trim_start_matches('/'))
    }

    /// The file name a command's recorded output is stored under.
    pub fn command_file_name(prog: &str, args: &[&str]) -> String {
        std::iter::once(prog)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ")
            .replace('/', "%")
    }
}

impl HostSource for FixtureHost {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root_path(path)).ok()
    }

    fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        LiveHost::default().list_dir(self.root_path(path).to_str()?)
    }

    fn stat(&self, path: &str) -> Option<FileStat> {
        if let Some(s) = self.stats.get(path) {
            return Some(*s);
        }
        self.root_path(path).exists().then_some(FileStat {
            uid: 0,
            gid: 0,
            mode: 0o644,
            socket: false,
        })
    }

    fn run(&self, prog: &str, args: &[&str]) -> Option<CmdOutput> {
        let base = self
            .dir
            .join("commands")
            .join(Self::command_file_name(prog, args));
        let stdout = std::fs::read_to_string(&base).ok()?;
        let side = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", base.display())).ok();
        Some(CmdOutput {
            status: side("status")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            stdout,
            stderr: side("stderr").unwrap_or_default(),
        })
    }

    fn env(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }

    fn arch(&self) -> String {
        std::fs::read_to_string(self.dir.join("arch"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "x86_64".into())
    }

    fn nvml(&self) -> Result<NvmlData, NvmlFailure> {
        let Ok(text) = std::fs::read_to_string(self.dir.join("nvml.json")) else {
            return Err(NvmlFailure::LibraryNotFound);
        };
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Recorded {
            Err { error: NvmlFailure },
            Ok(NvmlData),
        }
        match serde_json::from_str::<Recorded>(&text) {
            Ok(Recorded::Ok(d)) => Ok(d),
            Ok(Recorded::Err { error }) => Err(error),
            Err(e) => Err(NvmlFailure::Other(format!("bad fixture nvml.json: {e}"))),
        }
    }
}

/// What one [`RecordingHost`] call saw, kept until [`RecordingHost::save`].
#[derive(Debug, Default)]
struct Recorded {
    files: BTreeMap<String, String>,
    dirs: BTreeMap<String, Vec<(String, bool)>>,
    stats: BTreeMap<String, FileStat>,
    commands: BTreeMap<String, CmdOutput>,
    env: BTreeMap<String, String>,
    nvml: Option<Result<NvmlData, NvmlFailure>>,
    arch: Option<String>,
}

/// A [`HostSource`] that answers from another one (normally [`LiveHost`]) and remembers
/// every answer, so that [`RecordingHost::save`] can write them as a [`FixtureHost`]
/// directory. `dlenv doctor --record DIR` uses it: the directory is exactly what the probe
/// read, replayable in tests and attachable to a bug report.
#[derive(Debug)]
pub struct RecordingHost<H> {
    inner: H,
    seen: std::cell::RefCell<Recorded>,
}

impl<H: HostSource> RecordingHost<H> {
    /// Record everything `inner` answers.
    pub fn new(inner: H) -> Self {
        Self {
            inner,
            seen: Default::default(),
        }
    }

    /// Write what was recorded as a [`FixtureHost`] directory at `dir` (created; it must
    /// not exist yet, so that nothing is mixed into an older recording). Entries of listed
    /// directories that were never read become empty files (or empty directories).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir(dir)?;
        let seen = self.seen.borrow();
        let root = dir.join("root");
        std::fs::create_dir_all(&root)?;
        let under_root = |p: &str| root.join(p.trim_start_matches('/'));
        for (path, names) in &seen.dirs {
            let d = under_root(path);
            std::fs::create_dir_all(&d)?;
            for (name, is_dir) in names {
                let p = d.join(name);
                if *is_dir {
                    std::fs::create_dir_all(&p)?;
                } else if !p.exists() {
                    std::fs::File::create(&p)?;
                }
            }
        }
        for (path, text) in &seen.files {
            let p = under_root(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            if p.is_dir() {
                continue;
            }
            std::fs::write(&p, text)?;
        }
        let commands = dir.join("commands");
        std::fs::create_dir_all(&commands)?;
        for (name, out) in &seen.commands {
            let base = commands.join(name);
            std::fs::write(&base, &out.stdout)?;
            if !out.stderr.is_empty() {
                std::fs::write(format!("{}.stderr", base.display()), &out.stderr)?;
            }
            if out.status != 0 {
                std::fs::write(format!("{}.status", base.display()), out.status.to_string())?;
            }
        }
        let mut env = std::fs::File::create(dir.join("env"))?;
        for (k, v) in &seen.env {
            if !v.contains('\n') {
                writeln!(env, "{k}={v}")?;
            }
        }
        let mut stat = std::fs::File::create(dir.join("stat"))?;
        for (path, s) in &seen.stats {
            let socket = if s.socket { " socket" } else { "" };
            writeln!(stat, "{path} {} {} {:o}{socket}", s.uid, s.gid, s.mode)?;
        }
        match &seen.nvml {
            Some(Ok(data)) => std::fs::write(
                dir.join("nvml.json"),
                serde_json::to_string_pretty(data).map_err(std::io::Error::other)?,
            )?,
            Some(Err(NvmlFailure::LibraryNotFound)) | None => {}
            Some(Err(e)) => std::fs::write(
                dir.join("nvml.json"),
                serde_json::json!({ "error": e }).to_string(),
            )?,
        }
        if let Some(a) = &seen.arch {
            std::fs::write(dir.join("arch"), format!("{a}\n"))?;
        }
        Ok(())
    }
}

impl<H: HostSource> HostSource for RecordingHost<H> {
    fn read(&self, path: &str) -> Option<String> {
        let r = self.inner.read(path);
        if let Some(text) = &r {
            self.seen
                .borrow_mut()
                .files
                .insert(path.to_string(), text.clone());
        }
        r
    }

    fn list_dir(&self, path: &str) -> Option<Vec<String>> {
        let r = self.inner.list_dir(path);
        if let Some(names) = &r {
            let entries = names
                .iter()
                .map(|n| {
                    let full = format!("{}/{n}", path.trim_end_matches('/'));
                    (n.clone(), self.inner.list_dir(&full).is_some())
                })
                .collect();
            self.seen
                .borrow_mut()
                .dirs
                .insert(path.to_string(), entries);
        }
        r
    }

    fn stat(&self, path: &str) -> Option<FileStat> {
        let r = self.inner.stat(path);
        if let Some(s) = r {
            self.seen.borrow_mut().stats.insert(path.to_string(), s);
        }
        r
    }

    fn run(&self, prog: &str, args: &[&str]) -> Option<CmdOutput> {
        let r = self.inner.run(prog, args);
        if let Some(out) = &r {
            self.seen
                .borrow_mut()
                .commands
                .insert(FixtureHost::command_file_name(prog, args), out.clone());
        }
        r
    }

    fn env(&self, key: &str) -> Option<String> {
        let r = self.inner.env(key);
        if let Some(v) = &r {
            self.seen
                .borrow_mut()
                .env
                .insert(key.to_string(), v.clone());
        }
        r
    }

    fn arch(&self) -> String {
        let a = self.inner.arch();
        self.seen.borrow_mut().arch = Some(a.clone());
        a
    }

    fn nvml(&self) -> Result<NvmlData, NvmlFailure> {
        let r = self.inner.nvml();
        self.seen.borrow_mut().nvml = Some(r.clone());
        r
    }
}

#[cfg(test)]
mod recording_tests {
    use super::*;

    /// Recording a fixture host and replaying the recording gives the same facts.
    #[test]
    fn a_recording_replays_to_the_same_facts() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
        for host in [
            "healthy-gpu",
            "wsl2",
            "socket-permission-denied",
            "no-driver",
        ] {
            let rec = RecordingHost::new(FixtureHost::new(src.join(host)));
            let engine = crate::EngineFacts::default();
            let original = crate::probe(&rec, engine.clone());
            let out =
                std::env::temp_dir().join(format!("dlenv-record-{}-{host}", std::process::id()));
            let _ = std::fs::remove_dir_all(&out);
            rec.save(&out).unwrap();
            let replayed = crate::probe(&FixtureHost::new(&out), engine);
            std::fs::remove_dir_all(&out).unwrap();
            assert_eq!(
                serde_json::to_value(&original).unwrap(),
                serde_json::to_value(&replayed).unwrap(),
                "{host}"
            );
        }
    }

    #[test]
    fn save_refuses_an_existing_directory() {
        let rec = RecordingHost::new(LiveHost::default());
        let _ = rec.arch();
        let err = rec.save(&std::env::temp_dir()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }
}
