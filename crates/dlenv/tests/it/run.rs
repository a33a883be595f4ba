//! `dlenv run`, `ps`, `stop`, `rm`, `logs` against the real engine.

use crate::support::*;

fn inspect(name: &str) -> serde_json::Value {
    let o = run(docker().args(["inspect", name]));
    assert!(o.status.success(), "{}", stderr(&o));
    json(&o)[0].clone()
}

#[test]
fn exit_codes_propagate_and_the_container_is_removed() {
    let img = busybox_image();
    let name = NameGuard::new("exit");
    let o = run(dlenv().args([
        "run",
        "--image",
        img,
        "--name",
        &name.0,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"), "{}", stderr(&o));
    let left = run(docker().args(["ps", "-aq", "--filter", &format!("name=^{}$", name.0)]));
    assert!(stdout(&left).trim().is_empty(), "container left behind");
    let o = run(dlenv().args(["run", "--image", img, "--", "true"]));
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn gpu_request_on_a_gpu_less_engine_is_explained_with_exit_3() {
    let img = busybox_image();
    let name = NameGuard::new("gpu");
    let o = run(dlenv().args([
        "run", "--gpus", "all", "--image", img, "--name", &name.0, "--", "true",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("this engine has no NVIDIA runtime"), "{e}");
    assert!(e.contains("could not select device driver"), "{e}");
    assert!(e.contains("dlenv setup"), "{e}");
    let left = run(docker().args(["ps", "-aq", "--filter", &format!("name=^{}$", name.0)]));
    assert!(
        stdout(&left).trim().is_empty(),
        "container left behind after a failed start"
    );
}

#[test]
fn created_container_has_dlenv_defaults() {
    let img = busybox_image();
    let name = NameGuard::new("defaults");
    let extra = tempfile::tempdir().unwrap();
    let o = run(dlenv()
        .args([
            "run",
            "-d",
            "--image",
            img,
            "--name",
            &name.0,
            "-p",
            "18888:8888",
            "--shm-size",
            "1g",
        ])
        .arg("--volume")
        .arg(format!("{}:/data:ro", extra.path().display()))
        .args(["-e", "FOO=bar", "--gpus", "none", "--", "sleep", "60"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let c = inspect(&name.0);
    let h = &c["HostConfig"];
    assert_eq!(h["PortBindings"]["8888/tcp"][0]["HostIp"], "127.0.0.1");
    assert_eq!(h["PortBindings"]["8888/tcp"][0]["HostPort"], "18888");
    assert_eq!(h["ShmSize"], 1u64 << 30);
    assert!(
        h["DeviceRequests"].is_null(),
        "no GPU request with --gpus none: {}",
        h["DeviceRequests"]
    );
    let ulimits = h["Ulimits"].as_array().unwrap();
    assert!(
        ulimits
            .iter()
            .any(|u| u["Name"] == "stack" && u["Soft"] == 67108864)
    );
    assert_eq!(c["Config"]["Labels"]["dlenv.managed"], "true");
    assert_eq!(c["Config"]["WorkingDir"], "/workspace");
    assert_eq!(c["Config"]["User"], "0:0");
    assert!(
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "FOO=bar")
    );
    let mounts = c["Mounts"].as_array().unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["Destination"] == "/workspace" && m["Source"] == cwd.to_str().unwrap())
    );
    assert!(
        mounts
            .iter()
            .any(|m| m["Destination"] == "/data" && m["RW"] == false)
    );

    // ps lists it; stop and rm act on it.
    let o = run(dlenv().args(["ps", "--json"]));
    let ps = json(&o);
    let line = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name.0.as_str())
        .expect("in ps");
    assert_eq!(line["state"], "running");
    assert_eq!(line["ports"][0], "127.0.0.1:18888->8888");
    assert!(run(dlenv().args(["stop", &name.0])).status.success());
    assert_eq!(inspect(&name.0)["State"]["Running"], false);
    assert!(run(dlenv().args(["rm", &name.0])).status.success());
    assert!(!run(docker().args(["inspect", &name.0])).status.success());
}

#[test]
fn public_ports_need_the_flag_and_warn() {
    let img = busybox_image();
    let name = NameGuard::new("public");
    let o = run(dlenv().args([
        "run",
        "-d",
        "--image",
        img,
        "--name",
        &name.0,
        "-p",
        "18889:8888",
        "--public",
        "--",
        "sleep",
        "30",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reachable from every network"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        inspect(&name.0)["HostConfig"]["PortBindings"]["8888/tcp"][0]["HostIp"],
        "0.0.0.0"
    );
}

#[test]
fn files_written_to_the_workspace_belong_to_the_user() {
    // Run dlenv as an unprivileged user in the docker group: the container runs with that
    // uid, so what it writes to /workspace is the user's.
    let img = busybox_image();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let docker_gid = group
        .lines()
        .find(|l| l.starts_with("docker:"))
        .and_then(|l| l.split(':').nth(2))
        .expect("a docker group");
    let o = run(std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            &format!("--groups={docker_gid}"),
            env!("CARGO_BIN_EXE_dlenv"),
        ])
        .args([
            "run",
            "--image",
            img,
            "--",
            "sh",
            "-c",
            "touch /workspace/made-here && id -u",
        ])
        .current_dir(dir.path())
        .env_remove("DOCKER_HOST")
        .env("HOME", dir.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "65534");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.path().join("made-here")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

#[test]
fn logs_and_refusing_foreign_containers() {
    let img = busybox_image();
    let name = NameGuard::new("logs");
    let o = run(dlenv().args([
        "run",
        "-d",
        "--image",
        img,
        "--name",
        &name.0,
        "--",
        "sh",
        "-c",
        "echo hello-from-logs; sleep 30",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut text = String::new();
    for _ in 0..50 {
        text = stdout(&run(dlenv().args(["logs", &name.0])));
        if text.contains("hello-from-logs") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(text.contains("hello-from-logs"), "{text}");

    // A container dlenv did not create is not dlenv's to stop or remove.
    let (foreign, _g) = foreign_container("foreign");
    let o = run(dlenv().args(["rm", &foreign.0]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no dlenv container named"),
        "{}",
        stderr(&o)
    );
    assert!(run(docker().args(["inspect", &foreign.0])).status.success());
}

#[test]
fn bad_run_flags_are_usage_errors() {
    let img = busybox_image();
    for (args, needle) in [
        (vec!["--gpus", "some"], "--gpus"),
        (vec!["-p", "http"], "--publish"),
        (vec!["--shm-size", "lots"], "--shm-size"),
        (vec!["--volume", "/tmp"], "--volume"),
        (vec!["-e", "NOEQUALS"], "--env"),
    ] {
        let o = run(dlenv()
            .args(["run", "--image", img])
            .args(&args)
            .args(["--", "true"]));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let o = run(dlenv().args([
        "run",
        "--image",
        "dlenv-test/does-not-exist:1",
        "--",
        "true",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not in the engine"),
        "{}",
        stderr(&o)
    );
}
