//! `dlenv init`, `lock` and `dockerfile`: the spec → lock → Dockerfile contract (exit codes,
//! staleness, output). These need no engine.

use std::path::Path;
use std::process::Output;

use crate::support::*;

const CPU_SPEC: &str = r#"[env]
name = "cpu-demo"
framework = "pytorch==2.7.0"
flavor = "cpu"
base = "dlenv/base:debian-bookworm"
pip = ["numpy<2", "-r requirements.txt"]
"#;

fn in_dir(dir: &Path, args: &[&str]) -> Output {
    run(dlenv()
        .current_dir(dir)
        .args(args)
        .env("XDG_DATA_HOME", "/nonexistent-dlenv-data")
        .env_remove("DLENV_COMPAT_DB"))
}

fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("dlenv.toml"), CPU_SPEC).unwrap();
    std::fs::write(d.path().join("requirements.txt"), "pandas\n").unwrap();
    d
}

#[test]
fn bad_spec_is_a_usage_error_with_location() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("dlenv.toml"),
        "[env]\nname = \"x\"\nflavour = \"cpu\"\n",
    )
    .unwrap();
    let o = in_dir(d.path(), &["lock"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("dlenv.toml:3:1: unknown key `env.flavour`: did you mean `flavor`?"),
        "{e}"
    );
    assert!(e.contains("hint:"), "{e}");
    assert!(!d.path().join("dlenv.lock").exists());
}

#[test]
fn lock_then_locked_detects_staleness() {
    let d = project();
    let p = d.path();
    // No lock yet: --locked refuses.
    let o = in_dir(p, &["lock", "--locked"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--locked"), "{}", stderr(&o));

    let o = in_dir(p, &["lock"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lock = std::fs::read_to_string(p.join("dlenv.lock")).unwrap();
    assert!(lock.contains("lock_format = 1"), "{lock}");
    assert!(lock.contains("python = \"3.11\""), "{lock}");
    assert!(lock.contains("\"requirements.txt\" = \"sha256:"), "{lock}");
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

    let o = in_dir(p, &["lock", "--locked", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["stack"]["python"], "3.11");

    // A changed requirements file makes it stale, by name.
    std::fs::write(p.join("requirements.txt"), "pandas\npolars\n").unwrap();
    let o = in_dir(p, &["lock", "--locked"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("input file requirements.txt changed"), "{e}");
    assert!(e.contains("--locked"), "{e}");

    // So does a changed spec; a comment alone does not.
    std::fs::write(p.join("requirements.txt"), "pandas\n").unwrap();
    std::fs::write(p.join("dlenv.toml"), format!("# hi\n{CPU_SPEC}")).unwrap();
    assert_eq!(in_dir(p, &["lock", "--locked"]).status.code(), Some(0));
    std::fs::write(p.join("dlenv.toml"), CPU_SPEC.replace("numpy<2", "numpy<3")).unwrap();
    let o = in_dir(p, &["lock", "--locked"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("spec's [env] changed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dockerfile_for_cpu_debian_spec() {
    let d = project();
    let o = in_dir(d.path(), &["dockerfile", "--uid", "1000", "--gid", "1000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let df = stdout(&o);
    assert!(df.contains("FROM dlenv/base:debian-bookworm\n"), "{df}");
    assert!(df.contains("ca-certificates python3 python3-venv"), "{df}");
    assert!(df.contains("Python 3.11"), "{df}");
    assert!(
        df.contains("COPY requirements.txt /opt/dlenv/inputs/requirements.txt"),
        "{df}"
    );
    assert!(
        df.contains("pip install -c /opt/dlenv/constraints.txt 'numpy<2'"),
        "{df}"
    );
    assert!(!df.contains("NVIDIA_VISIBLE_DEVICES"), "{df}");
    // Resolved in memory: no lock written.
    assert!(!d.path().join("dlenv.lock").exists());
}

#[test]
fn init_writes_a_spec_and_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("requirements.txt"),
        "torch==2.7.0+cpu\ntorchvision==0.22.0\ntransformers>=4.44\n",
    )
    .unwrap();
    let args = [
        "init",
        "--name",
        "demo",
        "--from-requirements",
        "requirements.txt",
        "--flavor",
        "cpu",
        "--apt",
        "git",
        "--port",
        "8888",
    ];
    let o = in_dir(d.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let spec = std::fs::read_to_string(d.path().join("dlenv.toml")).unwrap();
    assert!(spec.contains("framework = \"pytorch==2.7.0\""), "{spec}");
    assert!(spec.contains("pip = [\"transformers>=4.44\"]"), "{spec}");
    assert!(spec.contains("ports = [\"8888\"]"), "{spec}");
    // The written spec locks.
    assert_eq!(in_dir(d.path(), &["lock"]).status.code(), Some(0));

    let o = in_dir(d.path(), &args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(in_dir(d.path(), &forced).status.code(), Some(0));

    // A bad flag value is a usage error.
    let o = in_dir(
        d.path(),
        &["init", "--force", "--name", "x", "--shm", "lots"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn dockerfile_pulls_docker_hub_bases_through_a_mirror() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dlenv.toml"),
        "[env]\nname = \"m\"\nframework = \"jax\"\n",
    )
    .unwrap();
    let gpu = ["--gpu", "H100", "--driver", "550.54.15"];
    let o = run(dlenv()
        .arg("dockerfile")
        .args(gpu)
        .args(["--registry-mirror", "mirror.example:5000"])
        .current_dir(dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let from = stdout(&o)
        .lines()
        .find(|l| l.starts_with("FROM "))
        .unwrap()
        .to_string();
    assert!(
        from.starts_with("FROM mirror.example:5000/nvidia/cuda:"),
        "{from}"
    );
    let o = run(dlenv()
        .arg("dockerfile")
        .args(gpu)
        .env("DLENV_REGISTRY_MIRROR", "m.example")
        .current_dir(dir.path()));
    assert!(
        stdout(&o).contains("FROM m.example/nvidia/cuda:"),
        "{}",
        stdout(&o)
    );
}
