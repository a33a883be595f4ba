//! `dlenv base bootstrap` / `base list` against the real engine and Debian's mirror.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

const BASE: &str = "dlenv/base:debian-bookworm";

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    m.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&*dir.to_string_lossy()))
        .map(String::from)
        .collect()
}

/// The Debian base is built once (about 35 s here) and then reused: a second call must
/// find it by its recipe tag within seconds, and the image must run.
#[test]
fn bootstrap_builds_then_reuses_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(dlenv()
        .args(["base", "bootstrap", "--json"])
        .env("TMPDIR", tmp.path()));
    assert!(o.status.success(), "bootstrap failed: {}", stderr(&o));
    let first = json(&o);
    assert_eq!(first["image"], BASE);
    assert!(
        leftovers(tmp.path()).is_empty(),
        "work dir left behind: {:?}",
        leftovers(tmp.path())
    );

    let t = Instant::now();
    let o = run(dlenv()
        .args(["base", "bootstrap", "--json"])
        .env("TMPDIR", tmp.path()));
    let took = t.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    let second = json(&o);
    assert_eq!(second["reused"], true);
    assert_eq!(second["id"], first["id"]);
    // Not a timing assertion on performance: reuse must not rebuild (a rebuild takes
    // tens of seconds); the flag above is the real check, this is a guard against a
    // silent rebuild reporting `reused`.
    assert!(took < Duration::from_secs(20), "reuse took {took:?}");

    let g = ContainerGuard::new();
    let w = run(docker().args([
        "run",
        "--rm",
        "--label",
        &g.label_arg(),
        BASE,
        "cat",
        "/etc/os-release",
    ]));
    assert!(w.status.success(), "{}", stderr(&w));
    assert!(
        stdout(&w).contains("VERSION_CODENAME=bookworm"),
        "{}",
        stdout(&w)
    );

    let l = run(dlenv().args(["base", "list", "--json"]));
    assert!(l.status.success());
    let list = json(&l);
    assert!(
        list.as_array().unwrap().iter().any(|i| i["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == BASE)),
        "{list}"
    );
    let labels = run(docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        BASE,
    ]));
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["dlenv.managed"], "true");
    assert_eq!(labels["dlenv.base.release"], "bookworm");
}

#[test]
fn bad_recipes_are_usage_errors() {
    for (args, needle) in [
        (vec!["--distro", "debian"], "DISTRO:RELEASE"),
        (
            vec!["--distro", "fedora:40"],
            "unknown distribution `fedora`",
        ),
        (
            vec!["--distro", "debian:potato"],
            "unknown debian release `potato`",
        ),
        (vec!["--variant", "tiny"], "unknown debootstrap variant"),
        (
            vec!["--mirror", "deb.debian.org"],
            "not an http(s):// or file:// URL",
        ),
        (
            vec!["--include", "Bad_Pkg"],
            "not a valid Debian package name",
        ),
    ] {
        let o = run(dlenv().args(["base", "bootstrap"]).args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("hint:"), "{args:?}");
    }
}

/// A mirror that does not answer: debootstrap fails, dlenv exits 1 with its output, and
/// the work directory is gone.
#[test]
fn failed_bootstrap_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(dlenv()
        .args([
            "base",
            "bootstrap",
            "--rebuild",
            "--include",
            "less",
            "--mirror",
            "http://127.0.0.1:9/debian",
        ])
        .env("TMPDIR", tmp.path()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("debootstrap failed"), "{}", stderr(&o));
    assert!(
        leftovers(tmp.path()).is_empty(),
        "left behind: {:?}",
        leftovers(tmp.path())
    );
    let img = run(docker().args([
        "images",
        "-q",
        "--filter",
        "label=dlenv.base.mirror=http://127.0.0.1:9/debian",
    ]));
    assert!(stdout(&img).trim().is_empty());
}

/// Ctrl-C in the middle of debootstrap: exit 130, no work directory, no mounts, no
/// image.
#[test]
fn interrupted_bootstrap_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = dlenv()
        .args([
            "base",
            "bootstrap",
            "--rebuild",
            "--distro",
            "debian:trixie",
            "--include",
            "less",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until debootstrap is at work (its work dir exists), then interrupt.
    let t = Instant::now();
    while leftovers(tmp.path()).is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(4));
    let pid = child.id().to_string();
    assert!(
        run(std::process::Command::new("kill").args(["-INT", &pid]))
            .status
            .success()
    );
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        leftovers(tmp.path()).is_empty(),
        "left behind: {:?}",
        leftovers(tmp.path())
    );
    assert!(
        mounts_under(tmp.path()).is_empty(),
        "mounts left: {:?}",
        mounts_under(tmp.path())
    );
    let img = run(docker().args(["images", "-q", "dlenv/base:debian-trixie"]));
    assert!(
        stdout(&img).trim().is_empty(),
        "an image was created despite Ctrl-C"
    );
}
