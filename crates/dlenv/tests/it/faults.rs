//! Faults in the middle of a transfer: Ctrl-C during an import, and the engine going away
//! (its connection dropping) while dlenv streams an image in or out.
//!
//! The engine is the real one. To make "the engine goes away" happen at a chosen byte
//! without killing the shared test engine, dlenv is pointed (`--host`) at a small unix
//! socket relay in front of the real engine socket that forwards bytes unchanged and, when
//! told, throttles the upload or closes both sides after N bytes: what a client sees when
//! dockerd dies mid-request.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

#[derive(Clone, Copy, Default)]
struct Faults {
    /// Close a connection once the client has sent this many bytes on it.
    cut_upload_after: Option<u64>,
    /// Close a connection once the engine has sent this many bytes on it.
    cut_download_after: Option<u64>,
    /// Forward the client's bytes at most this fast.
    throttle_upload_bps: Option<u64>,
}

/// The relay in front of the engine socket.
struct Relay {
    _dir: tempfile::TempDir,
    path: PathBuf,
    uploaded: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
}

impl Relay {
    fn start(faults: Faults) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let uploaded = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let (up, c) = (uploaded.clone(), cut.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect(ENGINE_SOCKET) else {
                    break;
                };
                let (c1, e1) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (up, c2) = (up.clone(), c.clone());
                std::thread::spawn(move || {
                    pump(
                        c1,
                        e1,
                        faults.cut_upload_after,
                        faults.throttle_upload_bps,
                        Some(&up),
                        &c2,
                    )
                });
                let c3 = c.clone();
                std::thread::spawn(move || {
                    pump(engine, client, faults.cut_download_after, None, None, &c3)
                });
            }
        });
        Self {
            _dir: dir,
            path,
            uploaded,
            cut,
        }
    }

    fn uri(&self) -> String {
        format!("unix://{}", self.path.display())
    }
}

/// Copy `from` → `to`; with a limit, shut both down (both directions) once it is passed.
fn pump(
    mut from: UnixStream,
    mut to: UnixStream,
    cut_after: Option<u64>,
    throttle_bps: Option<u64>,
    total: Option<&AtomicU64>,
    cut: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(limit) = cut_after
            && sent + n as u64 > limit
        {
            cut.store(true, Ordering::SeqCst);
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(t) = total {
            t.fetch_add(n as u64, Ordering::SeqCst);
        }
        if let Some(bps) = throttle_bps {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / bps as f64));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// An image with 24 MiB of incompressible data in its own layer, exported as a full bundle
/// into `dir`; the image is then removed. Returns (tag, image id, bundle path). Each test
/// uses its own repository (tests run in parallel and a [`RepoGuard`] removes all its tags).
fn exported_image(repo: &str, dir: &Path) -> (String, String, PathBuf) {
    let name = NameGuard::new("fault");
    let o = run(docker().args([
        "run",
        "--name",
        &name.0,
        busybox_image(),
        "sh",
        "-c",
        "dd if=/dev/urandom of=/blob bs=1048576 count=24 2>/dev/null",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let tag = format!("{repo}:{}", unique("img"));
    let o = run(docker().args(["commit", &name.0, &tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&run(
        docker().args(["image", "inspect", "--format", "{{.Id}}", &tag])
    ))
    .trim()
    .to_string();
    let bundle = dir.join("img.dlenv");
    let o = run(dlenv().args(["export", &tag, "--full", "-o"]).arg(&bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(docker().args(["rmi", &tag])).status.success());
    (tag, id, bundle)
}

/// The image is not in the engine, by tag or by id.
fn assert_not_loaded(tag: &str, id: &str) {
    for r in [tag, id] {
        assert!(
            !run(docker().args(["image", "inspect", r])).status.success(),
            "{r} is in the engine: a half-finished load left an image behind"
        );
    }
}

#[test]
fn ctrl_c_during_import_leaves_no_image() {
    let images = RepoGuard(format!("dlenv-test/{}", unique("faults")));
    let dir = tempfile::tempdir().unwrap();
    let (tag, id, bundle) = exported_image(&images.0, dir.path());
    // 4 MiB/s: the 24 MiB upload takes about 6 s, so the interrupt lands mid-stream.
    let relay = Relay::start(Faults {
        throttle_upload_bps: Some(4 << 20),
        ..Default::default()
    });
    let child = dlenv()
        .args(["--host", &relay.uri(), "import"])
        .arg(&bundle)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while relay.uploaded.load(Ordering::SeqCst) < 4 << 20 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the import never streamed 4 MiB"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        run(std::process::Command::new("kill").args(["-INT", &pid]))
            .status
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        relay.uploaded.load(Ordering::SeqCst) < 24 << 20,
        "the interrupt came after the whole upload"
    );
    // The engine may take a moment to notice the closed request.
    std::thread::sleep(Duration::from_millis(500));
    assert_not_loaded(&tag, &id);
    // A later import of the same bundle works: nothing is stuck.
    let o = run(dlenv().arg("import").arg(&bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run(docker().args(["image", "inspect", &tag]))
            .status
            .success()
    );
}

#[test]
fn engine_going_away_during_import_fails_cleanly() {
    let images = RepoGuard(format!("dlenv-test/{}", unique("faults")));
    let dir = tempfile::tempdir().unwrap();
    let (tag, id, bundle) = exported_image(&images.0, dir.path());
    let relay = Relay::start(Faults {
        cut_upload_after: Some(8 << 20),
        ..Default::default()
    });
    let o = run(dlenv()
        .args(["--host", &relay.uri(), "import"])
        .arg(&bundle));
    assert!(relay.cut.load(Ordering::SeqCst), "the relay never cut");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let error_line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error_line.contains("load the image archive"),
        "says what failed: {err}"
    );
    assert!(
        err.contains("hint: the engine closed the connection in the middle of the request"),
        "says the engine connection broke: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert_not_loaded(&tag, &id);
}

#[test]
fn engine_going_away_during_export_leaves_no_file() {
    let images = RepoGuard(format!("dlenv-test/{}", unique("faults")));
    let dir = tempfile::tempdir().unwrap();
    let (tag, _id, bundle) = exported_image(&images.0, dir.path());
    let o = run(dlenv().arg("import").arg(&bundle));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&bundle).unwrap();

    let relay = Relay::start(Faults {
        cut_download_after: Some(6 << 20),
        ..Default::default()
    });
    let out = dir.path().join("again.dlenv");
    let o = run(dlenv()
        .args(["--host", &relay.uri(), "export", &tag, "--full", "-o"])
        .arg(&out));
    assert!(relay.cut.load(Ordering::SeqCst), "the relay never cut");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("error: ") && !err.contains("panicked"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
