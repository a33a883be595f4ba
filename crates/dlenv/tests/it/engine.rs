//! `dlenv engine info` against the real engine, and endpoint discovery.

use crate::support::*;

#[test]
fn info_json_reports_the_real_engine() {
    let o = run(dlenv().args(["engine", "info", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    // Compare with the docker CLI as an independent witness.
    let w = run(docker().args([
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]));
    let witness = stdout(&w);
    let mut it = witness.split_whitespace();
    assert_eq!(v["version"], it.next().unwrap());
    assert_eq!(v["api_version"], it.next().unwrap());
    assert_eq!(v["kind"], "docker");
    assert!(
        v["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "runc"),
        "{v}"
    );
    assert_eq!(v["nvidia_runtime"], false);
    assert!(v["data_root_free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["endpoint"]["source"]["kind"], "well-known");
}

#[test]
fn human_output_names_endpoint_and_runtimes() {
    let o = run(dlenv().args(["engine", "info"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("unix:///var/run/docker.sock"), "{s}");
    assert!(s.contains("nvidia runtime:   not registered"), "{s}");
}

#[test]
fn missing_socket_exits_1_naming_it() {
    let o = run(dlenv()
        .args(["engine", "info"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock"));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("unix:///nonexistent.sock (DOCKER_HOST): socket does not exist"),
        "{e}"
    );
    assert!(e.contains("hint:"), "{e}");
    assert!(o.stdout.is_empty());
}

#[test]
fn host_flag_beats_docker_host() {
    let o = run(dlenv()
        .args([
            "engine",
            "info",
            "--json",
            "--host",
            "unix:///var/run/docker.sock",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent.sock"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["endpoint"]["source"]["kind"], "flag");
}

fn write_context(config: &std::path::Path, name: &str, host: &str) {
    std::fs::write(
        config.join("config.json"),
        format!(r#"{{"currentContext":"{name}"}}"#),
    )
    .unwrap();
    let dir = config.join("contexts/meta").join(sha256_hex(name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
    )
    .unwrap();
}

/// sha256 hex via coreutils, so the test does not reuse dlenv's own hashing code.
fn sha256_hex(name: &str) -> String {
    let o =
        run(std::process::Command::new("sh")
            .args(["-c", &format!("printf %s '{name}' | sha256sum")]));
    stdout(&o).split_whitespace().next().unwrap().to_string()
}

#[test]
fn docker_context_from_config_is_honoured() {
    let cfg = tempfile::tempdir().unwrap();
    write_context(cfg.path(), "dlenv-test", "unix:///var/run/docker.sock");
    // The docker CLI itself agrees the context is valid.
    let w = run(docker()
        .args(["context", "inspect", "dlenv-test"])
        .env("DOCKER_CONFIG", cfg.path()));
    assert!(
        w.status.success(),
        "docker CLI rejects the test context: {}",
        stderr(&w)
    );

    let o = run(dlenv()
        .args(["engine", "info", "--json"])
        .env("DOCKER_CONFIG", cfg.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    let src = &json(&o)["endpoint"]["source"];
    assert_eq!(src["kind"], "context");
    assert_eq!(src["name"], "dlenv-test");

    // A context pointing nowhere is not silently replaced by the default socket.
    write_context(cfg.path(), "broken", "unix:///nonexistent-ctx.sock");
    let o = run(dlenv()
        .args(["engine", "info"])
        .env("DOCKER_CONFIG", cfg.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("docker context `broken`"),
        "{}",
        stderr(&o)
    );

    // DOCKER_CONTEXT selects a context too, and an unknown one is an error naming it.
    let o = run(dlenv()
        .args(["engine", "info"])
        .env("DOCKER_CONFIG", cfg.path())
        .env("DOCKER_CONTEXT", "nope"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("docker context `nope`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn permission_denied_explains_the_docker_group() {
    // An unprivileged user cannot open the root-owned socket: the error must say why and
    // must not suggest chmod 666.
    let o = run(std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_dlenv"),
        ])
        .args(["engine", "info"])
        .env_remove("DOCKER_HOST")
        .env("HOME", "/nonexistent"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("permission denied"), "{e}");
    assert!(e.contains("usermod -aG docker"), "{e}");
    assert!(e.contains("Do not `chmod 666`"), "{e}");
}
