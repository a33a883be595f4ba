//! `dlenv up`, `check`, `jupyter` and `run` on a spec environment, end to end on this
//! machine (no GPU, no registry): the quickstart spec on the bootstrapped Debian base.

use std::path::Path;

use crate::support::*;

fn jupyter_port(url: &str) -> u16 {
    url.split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn http_status(url: &str) -> String {
    let o = run(std::process::Command::new("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]));
    stdout(&o)
}

#[test]
fn up_builds_checks_and_serves_jupyter_safely() {
    debian_base();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("q").replace('-', "");
    let _images = RepoGuard(format!("dlenv/{name}"));
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/dlenv.toml");
    let spec = std::fs::read_to_string(example)
        .unwrap()
        .replace("name = \"quickstart\"", &format!("name = \"{name}\""));
    std::fs::write(dir.path().join("dlenv.toml"), spec).unwrap();

    let o = run(dlenv()
        .args(["up", "--base", "bootstrap", "--json"])
        .current_dir(dir.path()));
    assert!(o.status.success(), "dlenv up failed: {}", stderr(&o));
    let up = json(&o);
    assert_eq!(up["check_ok"], true);
    assert_eq!(up["gpu"], false);
    assert!(
        stderr(&o).contains("CPU-only"),
        "the CPU fallback must be said: {}",
        stderr(&o)
    );

    // Jupyter: token required, loopback only.
    let url = up["jupyter"]
        .as_str()
        .expect("the quickstart enables Jupyter")
        .to_string();
    let port = jupyter_port(&url);
    let token = url.split("token=").nth(1).unwrap();
    assert_eq!(
        http_status(&format!("http://127.0.0.1:{port}/api/status?token={token}")),
        "200"
    );
    assert_eq!(
        http_status(&format!("http://127.0.0.1:{port}/api/status")),
        "403"
    );
    assert_eq!(
        http_status(&format!("http://127.0.0.1:{port}/api/contents")),
        "403"
    );
    let ps = json(&run(dlenv().args(["ps", "--json"])));
    let line = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["jupyter"].as_str() == Some(url.as_str()))
        .expect("ps shows the Jupyter container with its URL")
        .clone();
    let container = line["name"].as_str().unwrap().to_string();
    let _jupyter = NameGuard(container.clone());
    let bindings = run(docker().args([
        "inspect",
        "--format",
        "{{json .HostConfig.PortBindings}}",
        &container,
    ]));
    let bindings: serde_json::Value = serde_json::from_slice(&bindings.stdout).unwrap();
    for b in bindings["8888/tcp"].as_array().unwrap() {
        assert_eq!(
            b["HostIp"], "127.0.0.1",
            "published beyond loopback: {bindings}"
        );
    }

    // check: JAX on the CPU, reported honestly.
    let o = run(dlenv().args(["check", "--json"]).current_dir(dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = json(&o);
    let fw = &c["observed"]["frameworks"][0];
    assert_eq!(fw["name"], "jax");
    assert_eq!(fw["cuda_available"], false);
    assert_eq!(fw["cpu"]["ok"], true);
    let o = run(dlenv().arg("check").current_dir(dir.path()));
    assert!(
        stdout(&o).contains("not available: CPU only"),
        "{}",
        stdout(&o)
    );

    // run in the environment: the spec's directory is /workspace.
    let o = run(dlenv()
        .args([
            "run",
            "--",
            "python",
            "-c",
            "import jax, os; print(jax.__version__, os.path.exists('dlenv.toml'))",
        ])
        .current_dir(dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().ends_with("True"), "{}", stdout(&o));

    // stop removes the Jupyter container.
    assert!(run(dlenv().args(["stop", &container])).status.success());
    assert!(
        !run(docker().args(["inspect", &container])).status.success(),
        "jupyter container left behind"
    );
}

#[test]
fn jupyter_without_jupyter_installed_fails_cleanly() {
    let img = busybox_image();
    let name = NameGuard::new("nojup");
    let o = run(dlenv().args([
        "jupyter",
        "--image",
        img,
        "--name",
        &name.0,
        "--no-browser",
        "--timeout",
        "20",
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("Jupyter did not answer"), "{e}");
    assert!(
        e.contains("jupyter is not installed in this image"),
        "the log tail is shown: {e}"
    );
    assert!(
        !run(docker().args(["inspect", &name.0])).status.success(),
        "container left behind"
    );
}

#[test]
fn run_without_a_built_environment_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dlenv.toml"),
        "[env]\nname = \"notbuilt\"\nframework = \"none\"\n",
    )
    .unwrap();
    let o = run(dlenv().args(["run", "--", "true"]).current_dir(dir.path()));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("dlenv build"), "{}", stderr(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = run(dlenv()
        .args(["run", "--", "true"])
        .current_dir(empty.path()));
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("--image"), "{}", stderr(&o));
}
