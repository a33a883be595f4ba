//! `dlenv commit`, `export`, `import`: the tutorial's sharing round trip, made safe.

use crate::support::*;

/// Starts a dlenv container that writes `script`'s files and then sleeps.
fn container_with(script: &str) -> NameGuard {
    let name = NameGuard::new("share");
    let o = run(dlenv()
        .args([
            "run",
            "-d",
            "--no-workspace",
            "--gpus",
            "none",
            "--image",
            busybox_image(),
            "--name",
            &name.0,
        ])
        .args(["--", "sh", "-c", &format!("{script} && sleep 120")]));
    assert!(o.status.success(), "{}", stderr(&o));
    // Wait until the script has run.
    for _ in 0..50 {
        let d = run(docker().args(["diff", &name.0]));
        if !stdout(&d).trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    name
}

#[test]
fn commit_refuses_planted_driver_libraries_and_history() {
    let c = container_with(
        "mkdir -p /usr/lib/x86_64-linux-gnu && touch /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05 \
         && echo 'ssh prod' > /root/.bash_history && echo ok > /root/result.txt",
    );
    let tag = format!("dlenv-test/commit:{}", unique("t"));
    let _images = RepoGuard("dlenv-test/commit".into());
    let o = run(dlenv().args(["commit", &c.0, "-t", &tag]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05"),
        "{e}"
    );
    assert!(e.contains("/root/.bash_history"), "{e}");
    assert!(!e.contains("result.txt"), "{e}");
    assert!(
        !run(docker().args(["image", "inspect", &tag]))
            .status
            .success(),
        "committed anyway"
    );

    let o = run(dlenv().args([
        "commit",
        &c.0,
        "-t",
        &tag,
        "--force",
        "-m",
        "with leftovers",
        "-a",
        "Tester",
        "--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["findings"].as_array().unwrap().len(), 2);
    let labels = run(docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &tag,
    ]));
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["dlenv.commit.message"], "with leftovers");
    assert_eq!(labels["dlenv.commit.author"], "Tester");
    assert_eq!(labels["dlenv.commit.parent"], BUSYBOX_IMAGE);
}

fn dlenv_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    run(dlenv().args(args).current_dir(dir))
}

/// The tutorial's round trip: run, write a file, commit, export, remove, import, run.
#[test]
fn commit_export_import_round_trip_full_delta_and_docker_archive() {
    let c = container_with("echo round-trip > /root/result.txt");
    let tag = format!("dlenv-test/roundtrip:{}", unique("t"));
    let _images = RepoGuard("dlenv-test/roundtrip".into());
    let o = run(dlenv().args(["commit", &c.0, "-t", &tag]));
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&run(
        docker().args(["image", "inspect", "--format", "{{.Id}}", &tag])
    ))
    .trim()
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let o = dlenv_in(d, &["export", &tag, "-o", "full.dlenv", "--full", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["kind"], "full");
    let o = dlenv_in(
        d,
        &["export", &tag, "-o", "delta.dlenv", "--delta", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let delta = json(&o);
    assert!(delta["layers_left_out"].as_u64().unwrap() >= 1, "{delta}");
    let o = dlenv_in(
        d,
        &[
            "export",
            &tag,
            "-o",
            "plain.tar.gz",
            "--format",
            "docker-archive",
            "--compress",
            "gzip",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let size = |f: &str| std::fs::metadata(d.join(f)).unwrap().len();
    assert!(
        size("delta.dlenv") < size("full.dlenv"),
        "the delta leaves the base layer out"
    );
    // No temporary files are left next to the output.
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".dlenv-export")),
        "{names:?}"
    );

    for bundle in ["full.dlenv", "delta.dlenv"] {
        assert!(run(docker().args(["rmi", "-f", &tag])).status.success());
        let o = dlenv_in(d, &["import", bundle, "--json"]);
        assert!(o.status.success(), "import {bundle}: {}", stderr(&o));
        let o = run(docker().args(["run", "--rm", &tag, "cat", "/root/result.txt"]));
        assert_eq!(stdout(&o).trim(), "round-trip", "{bundle}: {}", stderr(&o));
        let again = stdout(&run(
            docker().args(["image", "inspect", "--format", "{{.Id}}", &tag])
        ))
        .trim()
        .to_string();
        assert_eq!(again, id, "{bundle} must restore the same image");
    }
    // The plain archive is what `docker load` takes (gzip included), and dlenv imports it too.
    assert!(run(docker().args(["rmi", "-f", &tag])).status.success());
    let o = run(docker().arg("load").arg("-i").arg(d.join("plain.tar.gz")));
    assert!(o.status.success(), "docker load: {}", stderr(&o));
    assert!(run(docker().args(["rmi", "-f", &tag])).status.success());
    let o = dlenv_in(d, &["import", "plain.tar.gz"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run(docker().args(["image", "inspect", &tag]))
            .status
            .success()
    );
}

#[test]
fn damaged_bundles_are_refused_before_loading() {
    let c = container_with("echo damaged > /root/x");
    let tag = format!("dlenv-test/damaged:{}", unique("t"));
    let _images = RepoGuard("dlenv-test/damaged".into());
    assert!(
        run(dlenv().args(["commit", &c.0, "-t", &tag]))
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        dlenv_in(d, &["export", &tag, "-o", "ok.dlenv", "--full"])
            .status
            .success()
    );
    assert!(run(docker().args(["rmi", "-f", &tag])).status.success());
    let bytes = std::fs::read(d.join("ok.dlenv")).unwrap();

    // Truncated.
    std::fs::write(d.join("cut.dlenv"), &bytes[..bytes.len() / 2]).unwrap();
    let o = dlenv_in(d, &["import", "cut.dlenv"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("truncat"),
        "{}",
        stderr(&o)
    );

    // A flipped byte in the middle of the biggest layer member's data (offsets from
    // Python's tarfile, an independent reader).
    let o = run(std::process::Command::new("python3").current_dir(d).args([
        "-c",
        "import tarfile\n\
         m = max((m for m in tarfile.open('ok.dlenv') if m.name.startswith('layers/')), key=lambda m: m.size)\n\
         print(m.offset_data + m.size // 2)",
    ]));
    let at: usize = stdout(&o).trim().parse().expect("an offset");
    let mut flipped = bytes.clone();
    flipped[at] ^= 0x40;
    std::fs::write(d.join("flip.dlenv"), &flipped).unwrap();
    let o = dlenv_in(d, &["import", "flip.dlenv"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("layers/"),
        "names the damaged member: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing was loaded"), "{}", stderr(&o));

    // Nothing was loaded.
    assert!(
        !run(docker().args(["image", "inspect", &tag]))
            .status
            .success(),
        "a damaged bundle was loaded"
    );
    // Not an archive at all.
    std::fs::write(d.join("junk.dlenv"), b"hello, not a bundle").unwrap();
    let o = dlenv_in(d, &["import", "junk.dlenv"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn archives_with_escaping_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A tar whose entry climbs out of its root (GNU tar would strip the `../`, so the
    // archive is written with Python's tarfile).
    let o = run(std::process::Command::new("python3").current_dir(d).args([
        "-c",
        "import io, tarfile\n\
         t = tarfile.open('evil.tar', 'w')\n\
         i = tarfile.TarInfo('../../evil'); data = b'x'; i.size = len(data)\n\
         t.addfile(i, io.BytesIO(data)); t.close()",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dlenv_in(d, &["import", "evil.tar"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(".."), "{}", stderr(&o));
}

#[test]
fn a_delta_whose_base_is_missing_says_what_is_missing() {
    // A private base, tagged from the busybox image, that the receiver will not have.
    let base = format!("dlenv-test/deltabase:{}", unique("b"));
    let _b = RepoGuard("dlenv-test/deltabase".into());
    assert!(
        run(docker().args(["tag", busybox_image(), &base]))
            .status
            .success()
    );
    let name = NameGuard::new("delta");
    let o = run(dlenv()
        .args([
            "run",
            "-d",
            "--no-workspace",
            "--gpus",
            "none",
            "--image",
            &base,
            "--name",
            &name.0,
        ])
        .args(["--", "sh", "-c", "echo d > /root/d && sleep 60"]));
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let tag = format!("dlenv-test/deltachild:{}", unique("c"));
    let _c = RepoGuard("dlenv-test/deltachild".into());
    assert!(
        run(dlenv().args(["commit", &name.0, "-t", &tag]))
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let o = dlenv_in(dir.path(), &["export", &tag, "-o", "d.dlenv", "--delta"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(docker().args(["rmi", "-f", &tag])).status.success());
    assert!(run(docker().args(["rmi", &base])).status.success());
    let o = dlenv_in(dir.path(), &["import", "d.dlenv"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&base),
        "names the missing base: {}",
        stderr(&o)
    );
    assert!(
        !run(docker().args(["image", "inspect", &tag]))
            .status
            .success()
    );
}

#[test]
fn interrupted_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("base.dlenv");
    let mut child = dlenv()
        .args(["export", debian_base(), "--full", "--level", "19", "-o"])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the temporary file exists and has grown, then interrupt.
    let t = std::time::Instant::now();
    loop {
        let growing = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false));
        if growing || t.elapsed() > std::time::Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(
        run(std::process::Command::new("kill").args(["-INT", &pid]))
            .status
            .success()
    );
    let status = child.wait().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(status.code(), Some(130));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Disk full while exporting: a clear error, exit 1, and nothing left on the full disk.
#[test]
fn export_to_a_full_disk_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let o = run(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt));
    if !o.status.success() {
        eprintln!(
            "SKIPPED: export_to_a_full_disk_fails_cleanly: cannot mount a tmpfs: {}",
            stderr(&o)
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let o = run(dlenv()
        .args(["export", busybox_image(), "--full", "-o"])
        .arg(mnt.join("b.dlenv")));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}

/// A recipe bundle carries spec, lock and Dockerfile, and restores them elsewhere.
#[test]
fn recipe_bundles_restore_the_spec_and_lock() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("dlenv.toml"),
        "[env]\nname = \"recipe\"\nframework = \"none\"\nbase = \"dlenv/base:debian-bookworm\"\npip = [\"-r requirements.txt\"]\n",
    )
    .unwrap();
    std::fs::write(src.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    assert!(dlenv_in(src.path(), &["lock"]).status.success());
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("r.dlenv");
    let o = run(dlenv()
        .args(["export", "--recipe", "-o"])
        .arg(&bundle)
        .current_dir(src.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let to = out.path().join("restored");
    let o = run(dlenv().arg("import").arg(&bundle).arg("--to").arg(&to));
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["dlenv.toml", "dlenv.lock", "requirements.txt", "Dockerfile"] {
        assert_eq!(
            std::fs::read(to.join(f)).ok().map(|_| ()),
            Some(()),
            "{f} not restored"
        );
    }
    assert_eq!(
        std::fs::read(to.join("dlenv.toml")).unwrap(),
        std::fs::read(src.path().join("dlenv.toml")).unwrap()
    );
    // The restored lock is fresh for the restored spec.
    assert!(dlenv_in(&to, &["lock", "--locked"]).status.success());
    // A non-empty target is refused.
    let o = run(dlenv().arg("import").arg(&bundle).arg("--to").arg(&to));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
