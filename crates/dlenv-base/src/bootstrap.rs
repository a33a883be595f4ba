//! Host side of bootstrapping: preconditions, the work directory, debootstrap and tar.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{BaseError, Distro, Recipe};

/// Check what debootstrap needs before creating anything.
pub fn check_preconditions(recipe: &Recipe) -> Result<(), BaseError> {
    if !rustix::process::geteuid().is_root() {
        return Err(BaseError::NotRoot);
    }
    for (tool, pkg) in [("debootstrap", "debootstrap"), ("tar", "tar")] {
        if which(tool).is_none() {
            return Err(BaseError::MissingTool {
                tool: tool.into(),
                hint: format!("install it: `sudo apt-get install {pkg}`"),
            });
        }
    }
    if recipe.distro == Distro::Ubuntu
        && !Path::new("/usr/share/keyrings/ubuntu-archive-keyring.gpg").exists()
    {
        return Err(BaseError::MissingTool {
            tool: "ubuntu-archive-keyring".into(),
            hint: "debootstrap verifies Ubuntu's archive signature: \
                   `sudo apt-get install ubuntu-keyring`"
                .into(),
        });
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A temporary directory for one bootstrap. Dropping it unmounts anything left mounted
/// below it (debootstrap mounts /proc and /sys in the target while it works) and then
/// removes it, so failures and Ctrl-C leave nothing behind.
#[derive(Debug)]
pub struct Workdir {
    dir: Option<tempfile::TempDir>,
}

impl Workdir {
    /// Create it under `$TMPDIR`, else `/var/tmp` (on disk: a root filesystem does not
    /// belong in a small tmpfs).
    pub fn new() -> Result<Self, BaseError> {
        let parent = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        let dir = tempfile::Builder::new()
            .prefix("dlenv-base-")
            .tempdir_in(&parent)
            .map_err(|source| BaseError::Io {
                what: format!("create a work directory in {}", parent.display()),
                source,
            })?;
        Ok(Self { dir: Some(dir) })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }

    /// Where the root filesystem is built.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            unmount_below(dir.path());
            // Errors here cannot be reported usefully; TempDir's own drop would ignore
            // them too.
            let _ = dir.close();
        }
    }
}

/// Lazily unmount every mount point at or below `root`, deepest first.
fn unmount_below(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Kills a whole process group when dropped (debootstrap runs dpkg and chroot children
/// that a plain kill would orphan).
struct GroupKiller(Option<u32>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Run debootstrap for `recipe` into `rootfs`, calling `on_line` with each line it
/// prints. Cancelling the future (dropping it) kills debootstrap and its children.
pub async fn run_debootstrap(
    recipe: &Recipe,
    rootfs: &Path,
    mut on_line: impl FnMut(&str),
) -> Result<(), BaseError> {
    let mut child = Command::new("debootstrap")
        .args(recipe.debootstrap_args(&rootfs.to_string_lossy()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BaseError::Io {
            what: "start debootstrap".into(),
            source,
        })?;
    let mut killer = GroupKiller(child.id());
    let mut tail: VecDeque<String> = VecDeque::new();
    let push = |line: String, tail: &mut VecDeque<String>| {
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (mut out_done, mut err_done) = (false, false);
    while !(out_done && err_done) {
        tokio::select! {
            l = out.next_line(), if !out_done => match l {
                Ok(Some(l)) => { on_line(&l); push(l, &mut tail); }
                _ => out_done = true,
            },
            l = err.next_line(), if !err_done => match l {
                Ok(Some(l)) => { on_line(&l); push(l, &mut tail); }
                _ => err_done = true,
            },
        }
    }
    let status = child.wait().await.map_err(|source| BaseError::Io {
        what: "wait for debootstrap".into(),
        source,
    })?;
    killer.0 = None;
    if status.success() {
        return Ok(());
    }
    let log =
        std::fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).unwrap_or_default();
    let mut lines: Vec<String> = tail.into_iter().collect();
    lines.extend(
        log.lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(String::from),
    );
    Err(BaseError::Debootstrap {
        status: status.to_string(),
        tail: lines.join("\n"),
    })
}

/// Stream `rootfs` as an uncompressed tar (GNU tar, numeric owners, file capabilities
/// kept; /proc, /sys, /dev contents, apt lists and .deb caches left out). The returned
/// counter tracks bytes produced. If tar fails, the stream ends with an error, so a
/// consumer never mistakes a truncated archive for a complete one.
pub fn rootfs_tar_stream(
    rootfs: &Path,
) -> Result<
    (
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        Arc<AtomicU64>,
    ),
    BaseError,
> {
    let mut child = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=security.capability",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./dev/*",
            "--exclude=./var/cache/apt/archives/*.deb",
            "--exclude=./var/lib/apt/lists/*",
            "-C",
        ])
        .arg(rootfs)
        .args(["-cf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BaseError::Io {
            what: "start tar".into(),
            source,
        })?;
    let stdout = child.stdout.take().expect("piped");
    let counter = Arc::new(AtomicU64::new(0));
    let state = TarState {
        child: Some(child),
        stdout,
        counter: counter.clone(),
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        let child = st.child.as_mut()?;
        let mut buf = vec![0u8; 256 * 1024];
        match st.stdout.read(&mut buf).await {
            Ok(0) => {
                let mut child = st.child.take()?;
                let result = finish_tar(&mut child).await;
                result.err().map(|e| (Err(e), st))
            }
            Ok(n) => {
                buf.truncate(n);
                st.counter.fetch_add(n as u64, Ordering::Relaxed);
                let _ = child;
                Some((Ok(Bytes::from(buf)), st))
            }
            Err(e) => {
                st.child = None;
                Some((Err(e), st))
            }
        }
    });
    Ok((stream, counter))
}

struct TarState<R: AsyncRead + Unpin> {
    child: Option<Child>,
    stdout: R,
    counter: Arc<AtomicU64>,
}

async fn finish_tar(child: &mut Child) -> Result<(), std::io::Error> {
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    let status = child.wait().await?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "tar failed ({status}): {}",
            stderr.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo(r"/var/tmp/a\040b/proc"),
            "/var/tmp/a b/proc"
        );
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/données\\011x"), "/données\tx");
    }

    #[test]
    fn workdir_is_removed_on_drop() {
        let w = Workdir::new().unwrap();
        let p = w.path().to_path_buf();
        std::fs::create_dir_all(w.rootfs().join("etc")).unwrap();
        std::fs::write(w.rootfs().join("etc/x"), "y").unwrap();
        drop(w);
        assert!(!p.exists());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tar_stream_reports_failure_at_the_end() {
        use futures_util::StreamExt;
        let (s, _) = rootfs_tar_stream(Path::new("/nonexistent/dlenv-test")).unwrap();
        let items: Vec<_> = s.collect().await;
        assert!(
            items.last().unwrap().is_err(),
            "a failing tar must end the stream with an error"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tar_stream_produces_an_archive() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), "world").unwrap();
        let (s, counter) = rootfs_tar_stream(dir.path()).unwrap();
        let chunks: Vec<_> = s.collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(bytes.len() as u64, counter.load(Ordering::Relaxed));
        assert!(bytes.windows(7).any(|w| w == b"./hello"));
    }
}
