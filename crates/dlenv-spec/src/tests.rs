use std::collections::BTreeMap;

use dlenv_compat::{CompatDb, GpuFact, HostFacts, Platform};

use crate::*;

const GOOD: &str = r#"
[env]
name = "vision"
framework = "pytorch>=2.4"        # pytorch | tensorflow | jax | none
python = "3.11"
cuda = "auto"
flavor = "auto"
base = "auto"
apt = ["git", "ffmpeg"]
pip = ["transformers>=4.44", "-r requirements.txt"]
env = { HF_HOME = "/workspace/.cache/hf" }
run = ["python -c 'import torch'"]

[run]
gpus = "all"
ports = ["8888"]
mounts = [".:/workspace"]
shm = "16g"

[jupyter]
enabled = true
"#;

fn gpu_host() -> HostFacts {
    let db = CompatDb::embedded();
    HostFacts {
        driver: Some("570.124.06".parse().unwrap()),
        gpus: vec![GpuFact::from_name(&db, "H100").unwrap()],
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

#[test]
fn parses_the_documented_example() {
    let s = Spec::load("dlenv.toml", GOOD, &CompatDb::embedded()).unwrap();
    assert_eq!(s.env.name, "vision");
    assert_eq!(s.env.apt, ["git", "ffmpeg"]);
    assert_eq!(s.input_files(), ["requirements.txt"]);
    assert_eq!(s.run.gpus, Gpus::All);
    assert_eq!(s.run.shm, Some(Shm::Size("16g".into())));
    assert!(s.jupyter.enabled);
    assert_eq!(s.env.env["HF_HOME"], "/workspace/.cache/hf");
    let r = s.to_request();
    assert_eq!(r.framework.framework, dlenv_compat::Framework::Pytorch);
    assert!(r.python.is_some() && r.cuda.is_none() && !r.cpu_only);
}

/// One bad spec per kind: (body, expected kind, line, col, text in the message).
#[test]
fn bad_specs_are_located_errors() {
    let cases: &[(&str, &str, ErrorKind, usize, usize, &str)] = &[
        (
            "unknown key",
            "[env]\nname = \"v\"\nflavour = \"auto\"\n",
            ErrorKind::UnknownKey,
            3,
            1,
            "unknown key `env.flavour`: did you mean `flavor`?",
        ),
        (
            "unknown table",
            "[env]\nname = \"v\"\n[jupiter]\nenabled = true\n",
            ErrorKind::UnknownKey,
            3,
            2,
            "did you mean `jupyter`?",
        ),
        (
            "wrong type",
            "[env]\nname = \"v\"\napt = \"git\"\n",
            ErrorKind::WrongType,
            3,
            7,
            "`env.apt` must be a list of strings, not a string",
        ),
        (
            "bad framework name",
            "[env]\nname = \"v\"\nframework = \"pytorc\"\n",
            ErrorKind::InvalidValue,
            3,
            13,
            "did you mean \"pytorch\"",
        ),
        (
            "bad version spec",
            "[env]\nname = \"v\"\nframework = \"pytorch>=two\"\n",
            ErrorKind::InvalidValue,
            3,
            13,
            "invalid version specifier",
        ),
        (
            "unknown framework version",
            "[env]\nname = \"v\"\nframework = \"pytorch==9.9\"\n",
            ErrorKind::UnknownVersion,
            3,
            13,
            "no pytorch release in the compat database matches",
        ),
        (
            "bad python",
            "[env]\nname = \"v\"\npython = \"2.7\"\n",
            ErrorKind::InvalidValue,
            3,
            10,
            "only Python 3",
        ),
        (
            "unknown python",
            "[env]\nname = \"v\"\npython = \"3.99\"\n",
            ErrorKind::UnknownVersion,
            3,
            10,
            "no known Python version matches",
        ),
        (
            "bad cuda",
            "[env]\nname = \"v\"\ncuda = \"cu12x\"\n",
            ErrorKind::InvalidValue,
            3,
            8,
            "invalid cuda \"cu12x\"",
        ),
        (
            "unknown cuda",
            "[env]\nname = \"v\"\ncuda = \"12.99\"\n",
            ErrorKind::UnknownVersion,
            3,
            8,
            "CUDA 12.99 is not in the compat database",
        ),
        (
            "bad flavor",
            "[env]\nname = \"v\"\nflavor = \"runtme\"\n",
            ErrorKind::InvalidValue,
            3,
            10,
            "did you mean `runtime`?",
        ),
        (
            "bad gpus",
            "[env]\nname = \"v\"\n[run]\ngpus = \"al\"\n",
            ErrorKind::InvalidValue,
            4,
            8,
            "did you mean `all`?",
        ),
        (
            "bad port",
            "[env]\nname = \"v\"\n[run]\nports = [\"8888\", \"70000\"]\n",
            ErrorKind::InvalidValue,
            4,
            18,
            "70000 is out of range",
        ),
        (
            "bad mount",
            "[env]\nname = \"v\"\n[run]\nmounts = [\".:workspace\"]\n",
            ErrorKind::InvalidValue,
            4,
            11,
            "must be absolute",
        ),
        (
            "bad shm",
            "[env]\nname = \"v\"\n[run]\nshm = \"lots\"\n",
            ErrorKind::InvalidValue,
            4,
            7,
            "invalid shm \"lots\"",
        ),
        (
            "bad apt package",
            "[env]\nname = \"v\"\napt = [\"git\", \"Python3 Dev\"]\n",
            ErrorKind::InvalidValue,
            3,
            15,
            "invalid apt package \"Python3 Dev\"",
        ),
        (
            "empty name",
            "[env]\nname = \"\"\n",
            ErrorKind::InvalidValue,
            2,
            8,
            "it is empty",
        ),
        (
            "invalid name",
            "[env]\nname = \"My Env\"\n",
            ErrorKind::InvalidValue,
            2,
            8,
            "must start with a lower-case letter",
        ),
        (
            "missing name",
            "[env]\nframework = \"jax\"\n",
            ErrorKind::Missing,
            1,
            2,
            "missing `env.name`",
        ),
        (
            "duplicate key",
            "[env]\nname = \"v\"\nname = \"w\"\n",
            ErrorKind::Syntax,
            3,
            1,
            "duplicate key",
        ),
        (
            "toml syntax",
            "[env]\nname = v\n",
            ErrorKind::Syntax,
            2,
            8,
            "invalid TOML",
        ),
        (
            "bad env var name",
            "[env]\nname = \"v\"\nenv = { \"1X\" = \"a\" }\n",
            ErrorKind::InvalidValue,
            3,
            9,
            "invalid environment variable name",
        ),
        (
            "pip option",
            "[env]\nname = \"v\"\npip = [\"--index-url https://x\"]\n",
            ErrorKind::InvalidValue,
            3,
            8,
            "pip options are not allowed",
        ),
        (
            "bad base",
            "[env]\nname = \"v\"\nbase = \"ubuntu:24 04\"\n",
            ErrorKind::InvalidValue,
            3,
            8,
            "invalid base image",
        ),
    ];
    let db = CompatDb::embedded();
    let mut kinds = std::collections::HashSet::new();
    for (what, body, kind, line, col, needle) in cases {
        let e = Spec::load("dlenv.toml", body, &db)
            .map(|_| ())
            .expect_err(what);
        assert_eq!(e.kind, *kind, "{what}: {e}");
        assert_eq!((e.line, e.col), (*line, *col), "{what}: {e}");
        assert!(e.message.contains(needle), "{what}: {e}");
        assert!(e.hint.is_some(), "{what}: no hint");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("dlenv.toml:{line}:{col}: ")),
            "{what}: {shown}"
        );
        assert!(shown.contains('^'), "{what}: no caret in {shown}");
        kinds.insert(*what);
    }
    assert!(kinds.len() >= 10);
}

#[test]
fn snippet_points_at_the_value() {
    let e = Spec::parse("x/dlenv.toml", "[env]\nname = \"v\"\nflavor = \"gpu\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "x/dlenv.toml:3:10: unknown flavor \"gpu\": did you mean `cpu`?\n3 | flavor = \"gpu\"\n  |          ^^^^^"
    );
}

#[test]
fn pyproject_tool_table() {
    let text = "[project]\nname = \"p\"\n\n[tool.dlenv.env]\nname = \"p\"\nframework = \"jax\"\n\n[tool.dlenv.run]\ngpus = 2\n";
    let s = Spec::parse_pyproject("pyproject.toml", text)
        .unwrap()
        .unwrap();
    assert_eq!(s.env.name, "p");
    assert_eq!(s.run.gpus, Gpus::Count(2));
    assert!(
        Spec::parse_pyproject("pyproject.toml", "[project]\nname = \"p\"\n")
            .unwrap()
            .is_none()
    );
    let e = Spec::parse_pyproject(
        "pyproject.toml",
        "[tool.dlenv.env]\nname = \"p\"\nbse = \"x\"\n",
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("`tool.dlenv.env.bse`: did you mean `base`?"),
        "{e}"
    );
    assert_eq!(e.line, 3);
}

#[test]
fn hash_is_stable_across_formatting() {
    let a = Spec::parse(
        "a",
        "[env]\nname = \"v\"\nframework = \"torch >= 2.4\"\napt = [\"git\"]\n",
    )
    .unwrap();
    let b = Spec::parse(
        "b",
        "# comment\n[run]\nports = [\"1\"]\n[env]\napt = [ \"git\" ]\nframework = \"pytorch>=2.4\"\nname = \"v\"\n",
    )
    .unwrap();
    assert_eq!(a.hash(), b.hash());
    assert!(a.hash().starts_with("sha256:") && a.hash().len() == 71);
    let c = Spec::parse(
        "c",
        "[env]\nname = \"v\"\nframework = \"pytorch>=2.4\"\napt = [\"vim\"]\n",
    )
    .unwrap();
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn gpus_forms() {
    let g = |v: &str| {
        Spec::parse("d", &format!("[env]\nname = \"v\"\n[run]\ngpus = {v}\n")).map(|s| s.run.gpus)
    };
    assert_eq!(g("\"none\"").unwrap(), Gpus::None);
    assert_eq!(g("1").unwrap(), Gpus::Count(1));
    assert_eq!(
        g("\"0,1\"").unwrap(),
        Gpus::Devices(vec!["0".into(), "1".into()])
    );
    assert!(g("\"GPU-8f2a1c3e-1111-2222-3333-444455556666\"").is_ok());
    assert!(g("\"MIG-5c0b3c2e-aaaa-bbbb-cccc-ddddeeeeffff\"").is_ok());
    assert!(g("\"0:1\"").is_ok());
    assert!(g("true").is_err());
}

fn resolve_text(text: &str, host: &HostFacts) -> Result<ResolvedSpec, ResolveError> {
    let db = CompatDb::embedded();
    let s = Spec::load("dlenv.toml", text, &db).unwrap();
    resolve_spec(&s, &db, host)
}

#[test]
fn auto_python_is_the_base_distros() {
    let r = resolve_text(
        "[env]\nname = \"v\"\nframework = \"pytorch\"\n",
        &gpu_host(),
    )
    .unwrap();
    assert_eq!(r.python_source, PythonSource::Distro);
    assert_eq!(r.stack.python.to_string(), r.distro.python);
    assert!(r.stack.base_image.starts_with("nvidia/cuda:"));
    assert!(
        r.stack.base_image.contains("runtime"),
        "{}",
        r.stack.base_image
    );

    let r = resolve_text(
        "[env]\nname = \"v\"\nframework = \"pytorch\"\nbase = \"dlenv/base:debian-bookworm\"\n",
        &cpu_host(),
    )
    .unwrap();
    assert_eq!(r.stack.python.to_string(), "3.11");
    assert_eq!(r.stack.base_image, "dlenv/base:debian-bookworm");
    assert_eq!(r.distro.id(), "debian-12");
    assert!(r.stack.build.ends_with("+cpu"), "{}", r.stack.build);
}

#[test]
fn explicit_python_prefers_the_matching_ubuntu() {
    let r = resolve_text(
        "[env]\nname = \"v\"\nframework = \"pytorch\"\npython = \"3.10\"\n",
        &gpu_host(),
    )
    .unwrap();
    assert_eq!(r.python_source, PythonSource::Distro);
    assert!(
        r.stack.base_image.ends_with("ubuntu22.04"),
        "{}",
        r.stack.base_image
    );

    let r = resolve_text(
        "[env]\nname = \"v\"\nframework = \"pytorch\"\npython = \"3.11\"\nbase = \"ubuntu:24.04\"\n",
        &cpu_host(),
    )
    .unwrap();
    assert_eq!(r.python_source, PythonSource::Deadsnakes);
    assert!(r.notes[0].contains("deadsnakes"));
}

#[test]
fn other_python_on_debian_is_a_located_error() {
    let text = "[env]\nname = \"v\"\npython = \"3.12\"\nbase = \"dlenv/base:debian-bookworm\"\n";
    match resolve_text(text, &cpu_host()) {
        Err(ResolveError::Spec(e)) => {
            assert_eq!((e.line, e.col), (3, 10));
            assert!(
                e.message.contains("Debian 12 (bookworm) ships Python 3.11"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = "[env]\nname = \"v\"\nbase = \"python:3.12\"\n";
    assert!(matches!(
        resolve_text(text, &cpu_host()),
        Err(ResolveError::Spec(_))
    ));
}

#[test]
fn impossible_stack_is_a_conflict() {
    let mut host = gpu_host();
    host.driver = Some("450.51.05".parse().unwrap());
    let r = resolve_text(
        "[env]\nname = \"v\"\nframework = \"pytorch==2.7.0\"\ncuda = \"12.8\"\n",
        &host,
    );
    match r {
        Err(ResolveError::Conflict { tried, .. }) => assert_eq!(tried.len(), 3),
        other => panic!("{other:?}"),
    }
}

fn lock_for(text: &str) -> (Spec, Lock) {
    let db = CompatDb::embedded();
    let s = Spec::load("dlenv.toml", text, &db).unwrap();
    let r = resolve_spec(&s, &db, &gpu_host()).unwrap();
    let mut inputs = BTreeMap::new();
    for f in s.input_files() {
        inputs.insert(f, file_hash(b"numpy\n"));
    }
    let l = Lock::new(&s, &r, inputs, &db.meta.version, "0.1.0");
    (s, l)
}

#[test]
fn lock_round_trips_and_hashes_ignore_build_results() {
    let (_, mut l) = lock_for(GOOD);
    let text = l.to_toml();
    let back = Lock::from_toml("dlenv.lock", &text).unwrap();
    assert_eq!(back, l);
    let h = l.lock_hash();
    l.set_base_digest("sha256:abc");
    l.set_installed(
        [("torch".to_string(), "2.7.0+cu128".to_string())].into(),
        [("git".to_string(), "1:2.39.5-0+deb12u2".to_string())].into(),
    );
    assert_eq!(l.lock_hash(), h);
    let back = Lock::from_toml("dlenv.lock", &l.to_toml()).unwrap();
    assert_eq!(back, l);
    assert!(serde_json::to_string(&l).unwrap().contains("\"installed\""));
}

#[test]
fn lock_format_and_garbage_are_errors() {
    let (_, l) = lock_for(GOOD);
    let text = l.to_toml().replace("lock_format = 1", "lock_format = 99");
    assert!(matches!(
        Lock::from_toml("dlenv.lock", &text),
        Err(LockError::Format { found: 99, .. })
    ));
    assert!(matches!(
        Lock::from_toml("dlenv.lock", "hello"),
        Err(LockError::Invalid { .. })
    ));
}

#[test]
fn staleness_names_what_changed() {
    let (s, l) = lock_for(GOOD);
    let fresh = Current {
        spec_hash: s.hash(),
        inputs: l.inputs.clone(),
        compat_db_version: l.compat_db_version.clone(),
    };
    assert!(l.staleness(&fresh).is_empty());

    let mut c = fresh.clone();
    c.spec_hash = "sha256:0000".into();
    let r = l.staleness(&c);
    assert!(matches!(r[..], [Stale::SpecChanged { .. }]));
    assert!(r[0].to_string().contains("spec's [env] changed"));

    let mut c = fresh.clone();
    c.inputs
        .insert("requirements.txt".into(), file_hash(b"pandas\n"));
    c.inputs.insert("extra.txt".into(), file_hash(b"x"));
    let r = l.staleness(&c);
    assert_eq!(
        r,
        vec![
            Stale::InputAdded {
                path: "extra.txt".into()
            },
            Stale::InputChanged {
                path: "requirements.txt".into()
            }
        ]
    );
    assert_eq!(r[1].to_string(), "input file requirements.txt changed");

    let mut c = fresh.clone();
    c.inputs.clear();
    assert!(matches!(l.staleness(&c)[..], [Stale::InputRemoved { .. }]));

    let mut c = fresh;
    c.compat_db_version = "2099.1.1".into();
    let r = l.staleness(&c);
    assert!(
        r[0].to_string().contains("compat database changed"),
        "{}",
        r[0]
    );

    let mut old = l.clone();
    old.lock_format = 0;
    assert!(matches!(
        old.staleness(&Current {
            spec_hash: s.hash(),
            inputs: l.inputs.clone(),
            compat_db_version: l.compat_db_version.clone(),
        })[..],
        [Stale::LockFormatChanged { .. }]
    ));
}

#[test]
fn jupyter_enabled_adds_jupyterlab_unless_the_spec_names_it() {
    use crate::spec::pip_with_jupyter;
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        pip_with_jupyter(&v(&["numpy"]), true),
        v(&["numpy", "jupyterlab"])
    );
    assert_eq!(pip_with_jupyter(&v(&["numpy"]), false), v(&["numpy"]));
    for named in [
        "jupyterlab==4.2.5",
        "JupyterLab>=4",
        "notebook",
        "jupyter_lab",
    ] {
        let got = pip_with_jupyter(&v(&[named]), true);
        if named == "jupyter_lab" {
            // Not a JupyterLab spelling pip knows (`jupyter-lab` is not the project).
            assert_eq!(got.len(), 2, "{named}");
        } else {
            assert_eq!(got, v(&[named]), "{named}");
        }
    }
}

#[test]
fn enabling_jupyter_changes_the_spec_hash_and_disabled_specs_keep_theirs() {
    let db = CompatDb::embedded();
    let without = GOOD.replace("[jupyter]\nenabled = true\n", "");
    let off = GOOD.replace("enabled = true", "enabled = false");
    let a = Spec::load("dlenv.toml", &without, &db).unwrap();
    let b = Spec::load("dlenv.toml", &off, &db).unwrap();
    let c = Spec::load("dlenv.toml", GOOD, &db).unwrap();
    assert!(!a.canonical().contains("jupyter"), "{}", a.canonical());
    assert_eq!(a.hash(), b.hash(), "a disabled [jupyter] is the same build");
    assert_ne!(
        a.hash(),
        c.hash(),
        "enabling Jupyter adds JupyterLab to the image"
    );
}
