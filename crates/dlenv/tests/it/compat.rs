//! `dlenv resolve`, `matrix` and `compat …`: the resolver's command-line contract (exit
//! codes, JSON shape) and the replaceable database. These need no engine.

use std::path::{Path, PathBuf};

use crate::support::*;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dlenv-compat/data")
}

/// A writable copy of the embedded database, with `meta.toml`'s version replaced.
fn db_copy(version: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    let meta = d.path().join("meta.toml");
    let text = std::fs::read_to_string(&meta).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("version"))
        .unwrap()
        .to_string();
    std::fs::write(
        &meta,
        text.replace(&line, &format!("version = \"{version}\"")),
    )
    .unwrap();
    d
}

fn resolve(args: &[&str]) -> std::process::Output {
    run(dlenv()
        .arg("resolve")
        .args(args)
        .env("XDG_DATA_HOME", "/nonexistent-dlenv-data"))
}

#[test]
fn resolve_gpu_host_from_flags() {
    let o = resolve(&[
        "--json",
        "--gpu",
        "H100",
        "--driver",
        "550.54.15",
        "--framework",
        "pytorch==2.4.0",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["status"], "ok");
    let s = &v["stack"];
    assert!(
        s["build"].as_str().unwrap().starts_with("2.4.0+cu12"),
        "{s}"
    );
    assert_eq!(s["accelerator"], "cuda");
    assert!(
        s["base_image"]
            .as_str()
            .unwrap()
            .starts_with("nvidia/cuda:12."),
        "{s}"
    );
    assert!(
        s["index_url"]
            .as_str()
            .unwrap()
            .starts_with("https://download.pytorch.org/whl/cu12")
    );
    assert_eq!(v["host"]["driver_from"], "flag");
    assert_eq!(v["host"]["gpus_from"], "flag");
    assert!(v["conflicts"].as_array().unwrap().is_empty());
}

#[test]
fn conflict_names_rules_and_nearest_fix_with_exit_3() {
    let args = [
        "--gpu",
        "RTX 5090",
        "--driver",
        "535.104.05",
        "--framework",
        "pytorch==2.7.0",
    ];
    let o = resolve(&[&["--json"], &args[..]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["status"], "conflict");
    assert!(v["stack"].is_null());
    let rules: Vec<&str> = v["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"gpu-arch") && rules.contains(&"gpu-driver"),
        "{rules:?}"
    );
    assert!(
        v["nearest"][0]["change"]
            .as_str()
            .unwrap()
            .contains("570.26"),
        "{v}"
    );

    let o = resolve(&args);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(e.contains("no stack satisfies `pytorch==2.7.0`"), "{e}");
    assert!(e.contains("driver 535.104.05"), "{e}");
    assert!(e.contains("hint: upgrade the driver to ≥ 570.26"), "{e}");
}

#[test]
fn gpu_cc_wins_over_the_name_and_name_keeps_the_brand() {
    let o = resolve(&[
        "--json",
        "--gpu",
        "RTX 4090",
        "--gpu-cc",
        "9.0",
        "--driver",
        "570.124.06",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = &json(&o)["host"]["gpus"][0];
    assert_eq!(g["cc"], "9.0");
    assert_eq!(g["brand"], "geforcertx");
}

#[test]
fn gpu_less_host_gets_a_cpu_stack_and_is_told() {
    // This machine has no NVIDIA GPU, so nothing is probed.
    let o = resolve(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["stack"]["accelerator"], "cpu");
    assert_eq!(v["host"]["gpus_from"], "none");
    assert!(v["note"].as_str().unwrap().contains("--gpu"), "{v}");
    let o = resolve(&[]);
    assert!(
        stderr(&o).contains("resolving a CPU-only stack"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn malformed_input_is_exit_2_with_a_suggestion() {
    for (args, needle) in [
        (vec!["--framework", "pytroch"], "did you mean \"pytorch\""),
        (vec!["--driver", "five-three-five"], "--driver"),
        (vec!["--gpu", "RTX 9999 Ultra"], "unknown GPU"),
        (vec!["--gpu-cc", "banana"], "--gpu-cc"),
        (vec!["--cuda", "cu1x"], "--cuda"),
        (vec!["--platform", "windows"], "unknown platform"),
        (
            vec!["--gpu", "H100", "--gpu", "A100", "--gpu-cc", "9.0"],
            "paired in order",
        ),
    ] {
        let o = resolve(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn image_check_applies_brand_exceptions() {
    let img = "nvidia/cuda:12.8.1-base-ubuntu22.04";
    // A datacenter GPU on R535 is admitted by the image's brand exception...
    let o = resolve(&["--image", img, "--gpu", "H100", "--driver", "535.104.05"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // ...a GeForce on the same driver is not.
    let o = resolve(&[
        "--image",
        img,
        "--gpu",
        "RTX 4090",
        "--driver",
        "535.104.05",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let v = json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["rule"], "brand-exception");
    // An unknown tag is reported as such.
    let o = resolve(&[
        "--image",
        "nvidia/cuda:99.0-base-ubuntu22.04",
        "--gpu",
        "H100",
        "--driver",
        "580.65.06",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(json(&o)["known"], false);
}

#[test]
fn matrix_lists_builds_with_reasons() {
    let o = run(dlenv().args([
        "matrix",
        "--json",
        "--gpu",
        "RTX 5090",
        "--driver",
        "570.124.06",
        "--framework",
        "pytorch",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = json(&o)["rows"].as_array().unwrap().clone();
    let find = |b: &str| {
        rows.iter()
            .find(|r| r["build"] == b)
            .unwrap_or_else(|| panic!("{b} missing"))
    };
    assert_eq!(find("2.7.0+cu128")["ok"], true);
    let old = find("2.7.0+cu126");
    assert_eq!(old["ok"], false);
    assert_eq!(old["why_not"][0]["rule"], "gpu-arch");
    let o = run(dlenv().args([
        "matrix",
        "--json",
        "--runnable",
        "--gpu",
        "RTX 5090",
        "--driver",
        "570.124.06",
    ]));
    let rows = json(&o)["rows"].as_array().unwrap().clone();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["ok"] == true));
}

#[test]
fn compat_update_validates_installs_atomically_and_resets() {
    let home = tempfile::tempdir().unwrap();
    let cmd = |args: &[&str]| run(dlenv().args(args).env("XDG_DATA_HOME", home.path()));

    let o = cmd(&["compat", "info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let embedded = json(&o);
    assert_eq!(embedded["origin"]["kind"], "embedded");
    assert!(embedded["rows"]["pytorch.release"].as_u64().unwrap() > 30);

    // A newer, valid database installs.
    let newer = db_copy("2999.1.1");
    let o = cmd(&["compat", "update", "--from", newer.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cmd(&["compat", "info", "--json"]);
    let v = json(&o);
    assert_eq!(v["origin"]["kind"], "installed");
    assert_eq!(v["version"], "2999.1.1");

    // A broken one (an unknown CUDA variant in one row) is refused, naming file and row,
    // and the installed one stays.
    let broken = db_copy("3000.1.1");
    let p = broken.path().join("pytorch.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text.replacen("\"cu118\"", "\"cu999\"", 1);
    std::fs::write(&p, text).unwrap();
    let o = cmd(&[
        "compat",
        "update",
        "--from",
        broken.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("pytorch.toml") && e.contains("cu999") && e.contains('#'),
        "{e}"
    );
    assert!(e.contains("not changed"), "{e}");
    assert_eq!(
        json(&cmd(&["compat", "info", "--json"]))["version"],
        "2999.1.1"
    );

    // Older than what is in use: refused unless asked.
    let older = db_copy("2000.1.1");
    let o = cmd(&["compat", "update", "--from", older.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--allow-downgrade"));

    // Reset goes back to the built-in database.
    assert!(cmd(&["compat", "reset"]).status.success());
    assert_eq!(
        json(&cmd(&["compat", "info", "--json"]))["origin"]["kind"],
        "embedded"
    );
}

#[test]
fn compat_db_flag_with_a_malformed_file_names_it() {
    let d = db_copy("2999.1.1");
    std::fs::write(d.path().join("cuda.toml"), "this is [not toml").unwrap();
    let o = run(dlenv()
        .args(["compat", "info", "--compat-db"])
        .arg(d.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cuda.toml"), "{}", stderr(&o));
    std::fs::remove_file(d.path().join("jax.toml")).unwrap();
    let o = run(dlenv().args(["resolve", "--compat-db"]).arg(d.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("jax.toml"), "{}", stderr(&o));
}

/// `compat update --from URL` fetches the files over HTTP (a server on loopback here).
#[test]
fn compat_update_from_a_url() {
    use std::io::{BufRead, BufReader};
    let newer = db_copy("2999.2.2");
    let mut server = std::process::Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(newer.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is needed for this test");
    let mut first = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let port = first.split_whitespace().nth(5).unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let o = run(dlenv()
        .args([
            "compat",
            "update",
            "--from",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .env("XDG_DATA_HOME", home.path()));
    let missing = run(dlenv()
        .args([
            "compat",
            "update",
            "--from",
            &format!("http://127.0.0.1:{port}/nope/"),
        ])
        .env("XDG_DATA_HOME", home.path()));
    let _ = server.kill();
    let _ = server.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2999.2.2"), "{}", stdout(&o));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/nope/meta.toml"),
        "{}",
        stderr(&missing)
    );
}
