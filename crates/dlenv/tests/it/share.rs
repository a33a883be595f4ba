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
