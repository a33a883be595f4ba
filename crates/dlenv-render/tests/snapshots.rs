//! Snapshot tests of generated Dockerfiles. Expected files live in `tests/snapshots/`;
//! `DLENV_UPDATE_SNAPSHOTS=1 cargo test -p dlenv-render` rewrites them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dlenv_compat::{CompatDb, GpuFact, HostFacts, Platform, check_image};
use dlenv_render::{RenderOptions, render};
use dlenv_spec::{Lock, Spec, file_hash, resolve_spec};

fn gpu_host(db: &CompatDb) -> HostFacts {
    HostFacts {
        driver: Some("570.124.06".parse().unwrap()),
        gpus: vec![GpuFact::from_name(db, "H100").unwrap()],
        platform: Platform::LinuxX86_64,
    }
}

fn cpu_host() -> HostFacts {
    HostFacts {
        driver: None,
        gpus: vec![],
        platform: Platform::LinuxX86_64,
    }
}

/// A lock with version fields fixed, so snapshots only move when the stack does.
fn lock(spec: &str, host: &HostFacts) -> Lock {
    let db = CompatDb::embedded();
    let s = Spec::load("dlenv.toml", spec, &db).unwrap_or_else(|e| panic!("{e}"));
    let r = resolve_spec(&s, &db, host).unwrap_or_else(|e| panic!("{e}"));
    let inputs: BTreeMap<String, String> = s
        .input_files()
        .into_iter()
        .map(|f| (f, file_hash(b"numpy\n")))
        .collect();
    Lock::new(&s, &r, inputs, "test", "0.0.0-test")
}

fn check_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.Dockerfile"));
    if std::env::var_os("DLENV_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with DLENV_UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name}: Dockerfile differs from {}; if intended, rerun with DLENV_UPDATE_SNAPSHOTS=1\n\
         --- actual ---\n{actual}",
        path.display()
    );
}

/// Structural checks every rendered Dockerfile must pass.
fn sane(d: &str, gpu: bool) {
    assert!(
        !d.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("# syntax")),
        "no syntax directive"
    );
    let from: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 1);
    assert_eq!(d.contains("NVIDIA_VISIBLE_DEVICES=all"), gpu);
    assert!(d.contains("--no-install-recommends"));
    assert!(d.contains("python3 -m venv /opt/dlenv/venv") || d.contains("-m venv /opt/dlenv/venv"));
    assert!(d.contains("ARG DLENV_UID=") && d.contains("USER ${DLENV_UID}:${DLENV_GID}"));
    for l in [
        "dlenv.managed=\"true\"",
        "dlenv.spec-hash=",
        "dlenv.lock-hash=",
        "dlenv.version=",
    ] {
        assert!(d.contains(l), "missing label {l}");
    }
    // Every instruction line is a known instruction (continuations are indented).
    for l in d.lines() {
        if l.is_empty() || l.starts_with('#') || l.starts_with(' ') {
            continue;
        }
        let word = l.split_whitespace().next().unwrap();
        assert!(
            [
                "FROM", "ENV", "ARG", "RUN", "COPY", "LABEL", "USER", "WORKDIR", "CMD"
            ]
            .contains(&word),
            "unexpected line {l:?}"
        );
    }
    // Layer order: apt → venv → framework → pip → labels.
    let pos = |s: &str| d.find(s).unwrap_or_else(|| panic!("missing {s}"));
    assert!(pos("apt-get") < pos("-m venv"));
    assert!(pos("-m venv") < pos("LABEL"));
}

fn base_known(l: &Lock, db: &CompatDb, host: &HostFacts) {
    let v = check_image(db, &l.stack.base_image, host);
    assert!(
        v.known,
        "{} is not in the compat database",
        l.stack.base_image
    );
    assert!(v.ok, "{:?}", v.problems);
}

#[test]
fn pytorch_gpu() {
    let db = CompatDb::embedded();
    let host = gpu_host(&db);
    let l = lock(
        r#"[env]
name = "vision"
framework = "pytorch==2.7.0"
apt = ["git", "ffmpeg"]
pip = ["-r requirements.txt", "transformers>=4.44", "datasets==3.0.1"]
env = { HF_HOME = "/workspace/.cache/hf" }
run = ["python -c 'import torch; print(torch.__version__)'"]
"#,
        &host,
    );
    assert!(
        l.stack.base_image.starts_with("nvidia/cuda:") && l.stack.base_image.contains("-runtime-")
    );
    base_known(&l, &db, &host);
    let r = render(&l, &RenderOptions::default());
    sane(&r.dockerfile, true);
    assert_eq!(r.context_files, ["requirements.txt"]);
    assert!(
        r.dockerfile
            .contains("--index-url https://download.pytorch.org/whl/cu")
    );
    // The framework layer comes before the user packages.
    assert!(
        r.dockerfile.find("> /opt/dlenv/constraints.txt").unwrap()
            < r.dockerfile.find("transformers").unwrap()
    );
    check_snapshot("pytorch-gpu", &r.dockerfile);
}

#[test]
fn tensorflow_gpu_with_proxy_ca() {
    let db = CompatDb::embedded();
    let host = gpu_host(&db);
    let l = lock(
        "[env]\nname = \"tf\"\nframework = \"tensorflow==2.17.*\"\npip = [\"pandas\"]\n",
        &host,
    );
    base_known(&l, &db, &host);
    let r = render(
        &l,
        &RenderOptions {
            ca_bundle: true,
            uid: 1234,
            gid: 1234,
            user: "alice".into(),
            ..RenderOptions::default()
        },
    );
    let d = &r.dockerfile;
    sane(d, true);
    assert!(
        d.contains("pip install 'tensorflow[and-cuda]==2.17.0'"),
        "{d}"
    );
    assert!(
        d.contains("printf '%s\\n' tensorflow==2.17.0 > /opt/dlenv/constraints.txt"),
        "{d}"
    );
    assert_eq!(r.context_files, [".dlenv/ca-bundle.pem"]);
    // Every downloading RUN gets the CA mount; the CA is never ENV nor COPYed.
    for run in d.split("\nRUN ").skip(1) {
        let body = run.split("\n\n").next().unwrap();
        if body.contains("apt-get") || body.contains("pip install") {
            assert!(body.contains("source=.dlenv/ca-bundle.pem"), "{body}");
        }
    }
    assert!(
        !d.lines()
            .any(|l| l.starts_with("ENV") && l.contains("SSL_CERT_FILE"))
    );
    assert!(!d.contains("COPY .dlenv"));
    assert!(d.contains("ARG DLENV_UID=1234"));
    check_snapshot("tensorflow-gpu", d);
}

#[test]
fn jax_gpu() {
    let db = CompatDb::embedded();
    let host = gpu_host(&db);
    let l = lock("[env]\nname = \"jx\"\nframework = \"jax==0.6.*\"\n", &host);
    base_known(&l, &db, &host);
    let r = render(&l, &RenderOptions::default());
    sane(&r.dockerfile, true);
    assert!(r.dockerfile.contains("jax[cuda12]=="), "{}", r.dockerfile);
    check_snapshot("jax-gpu", &r.dockerfile);
}

#[test]
fn cpu_on_debian_base() {
    let l = lock(
        r#"[env]
name = "cpu-demo"
framework = "pytorch==2.7.0"
flavor = "cpu"
base = "dlenv/base:debian-bookworm"
pip = ["numpy<2", "scikit-learn"]
"#,
        &cpu_host(),
    );
    assert_eq!(l.stack.python, "3.11");
    let r = render(&l, &RenderOptions::default());
    let d = &r.dockerfile;
    sane(d, false);
    assert!(d.contains("FROM dlenv/base:debian-bookworm\n"));
    assert!(d.contains("ca-certificates python3 python3-venv"));
    assert!(d.contains("whl/cpu"));
    assert!(r.context_files.is_empty());
    check_snapshot("cpu-debian", d);
}

#[test]
fn devel_flavor() {
    let db = CompatDb::embedded();
    let host = gpu_host(&db);
    let l = lock(
        "[env]\nname = \"dev\"\nframework = \"pytorch==2.7.0\"\nflavor = \"devel\"\napt = [\"build-essential\"]\n",
        &host,
    );
    assert!(
        l.stack.base_image.contains("-devel-"),
        "{}",
        l.stack.base_image
    );
    base_known(&l, &db, &host);
    let r = render(&l, &RenderOptions::default());
    sane(&r.dockerfile, true);
    assert!(r.dockerfile.contains("several GB bigger"));
    check_snapshot("devel", &r.dockerfile);
}

#[test]
fn deadsnakes_python_on_ubuntu() {
    let l = lock(
        "[env]\nname = \"snake\"\nframework = \"none\"\npython = \"3.11\"\nbase = \"ubuntu:24.04\"\n",
        &cpu_host(),
    );
    let r = render(&l, &RenderOptions::default());
    assert!(
        r.dockerfile
            .contains("add-apt-repository -y ppa:deadsnakes/ppa")
    );
    assert!(r.dockerfile.contains("python3.11 -m venv /opt/dlenv/venv"));
    assert!(!r.dockerfile.contains("python3 python3-venv"));
}
