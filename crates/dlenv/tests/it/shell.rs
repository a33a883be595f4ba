//! `dlenv shell` and `dlenv exec` against the real engine, with a real pseudo-terminal
//! where a terminal is the point (driven by python3's `pty` module: no extra crate).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Drives a command under a fresh pty. The child is
/// `sh -c 'stty -g; echo READY; CMD...; echo "rc=$?"; stty -g'`, so the terminal settings
/// before and after dlenv are compared on the same terminal. argv[1] is a JSON object:
/// `cmd` (argv of dlenv), `steps` ([send, expect-regex, optional seconds to wait before
/// sending] lists, sent as raw bytes), `exit` (what ends the session), `resize`
/// (whether to check SIGWINCH). Prints a JSON result, or exits 99 with the transcript.
const DRIVER: &str = r#"
import fcntl, json, os, pty, re, select, struct, sys, termios, time
cfg = json.loads(sys.argv[1])
def setsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sh", ["sh", "-c", 'stty -g; echo READY; "$@"; echo "rc=$?"; stty -g', "sh"] + cfg["cmd"])
setsize(fd, 33, 101)
buf = b""
def fail(why):
    sys.stdout.write(json.dumps({"error": why, "transcript": buf.decode(errors="replace")}))
    try: os.kill(pid, 9)
    except OSError: pass
    sys.exit(99)
def until(pat, timeout=30, start=0):
    global buf
    end = time.time() + timeout
    while True:
        m = re.compile(pat.encode(), re.S).search(buf, start)
        if m: return m
        if time.time() > end: fail("timed out waiting for %r" % pat)
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try: d = os.read(fd, 4096)
            except OSError: d = b""
            if not d: fail("the terminal closed while waiting for %r" % pat)
            buf += d
ready = until(r"READY\r?\n").end()
until(r"[#$] ", 60, ready)
for step in cfg["steps"]:
    send, expect = step[0], step[1]
    if len(step) > 2: time.sleep(step[2])
    mark = len(buf)
    os.write(fd, send.encode())
    until(expect, 30, mark)
if cfg.get("resize"):
    mark = len(buf)
    setsize(fd, 40, 120)
    time.sleep(0.5)
    os.write(fd, b"stty size\r")
    until(r"40 120\r\n", 30, mark)
mark = len(buf)
t0 = time.time()
os.write(fd, cfg["exit"].encode())
m = until(r"rc=(\d+)\r?\n([^\r\n]+)\r?\n", 30, mark)
elapsed = time.time() - t0
os.waitpid(pid, 0)
before = re.compile(rb"^([^\r\n]+)\r?\nREADY").search(buf).group(1)
print(json.dumps({"rc": int(m.group(1)), "before": before.decode(), "after": m.group(2).decode(),
                  "elapsed": elapsed, "transcript": buf.decode(errors="replace")}))
"#;

/// Run the pty driver and return its JSON result.
fn drive(cfg: serde_json::Value) -> serde_json::Value {
    let o = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(cfg.to_string())
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null())
        .output()
        .expect("python3 is needed to drive a pseudo-terminal");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output is not JSON ({e}): {}\n{}",
            stdout(&o),
            stderr(&o)
        )
    });
    assert!(
        o.status.success(),
        "{}\ntranscript:\n{}",
        v["error"],
        v["transcript"]
    );
    v
}

fn gone(name: &str) -> bool {
    let left = run(docker().args(["ps", "-aq", "--filter", &format!("name=^{name}$")]));
    stdout(&left).trim().is_empty()
}

#[test]
fn shell_on_a_terminal_is_interactive_and_restores_the_terminal() {
    let img = busybox_image();
    let name = NameGuard::new("shell-tty");
    let v = drive(serde_json::json!({
        "cmd": [env!("CARGO_BIN_EXE_dlenv"), "shell", "--image", img, "--no-workspace",
                "--gpus", "none", "--name", &name.0],
        "steps": [
            // Typed keys reach the shell, and its output comes back.
            ["echo dlenv-$((40+2))\r", r"dlenv-42\r\n"],
            // The container's terminal has this terminal's size from the start.
            ["stty size\r", r"33 101\r\n"],
            // Ctrl-C is a byte for the container's terminal: it interrupts `sleep`, not dlenv.
            ["echo sl''eeping; sleep 300\r", r"sleeping\r\n"],
            ["\u{3}", r"[#$] ", 0.5],
            ["echo after-int-$((1+1))\r", r"after-int-2\r\n"],
        ],
        "resize": true,
        "exit": "exit 3\r",
    }));
    assert_eq!(v["rc"], 3, "{}", v["transcript"]);
    assert_eq!(
        v["before"], v["after"],
        "terminal settings not restored:\n{}",
        v["transcript"]
    );
    assert!(
        v["elapsed"].as_f64().unwrap() < 10.0,
        "dlenv took {}s to exit after the shell did",
        v["elapsed"]
    );
    assert!(gone(&name.0), "container left behind");
}

#[test]
fn shell_with_piped_stdin_runs_it_as_a_script() {
    let img = busybox_image();
    let name = NameGuard::new("shell-pipe");
    let mut child = dlenv()
        .args(["shell", "--image", img, "--no-workspace", "--gpus", "none"])
        .args(["--name", &name.0])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo piped-ok\necho to-stderr >&2\n")
            .unwrap();
        // Dropping stdin is EOF: the shell must see it and exit.
    }
    let o = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "piped-ok\n");
    assert!(stderr(&o).contains("to-stderr"), "{}", stderr(&o));
    assert!(gone(&name.0), "container left behind");

    // The container's exit code is dlenv's, and an explicit command replaces the shell.
    let o = run(dlenv()
        .args(["shell", "--image", img, "--no-workspace", "--gpus", "none"])
        .args(["--", "sh", "-c", "read x; echo got-$x; exit 6"])
        .stdin(Stdio::null()));
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got-\n");
}

#[test]
fn interrupted_shell_exits_130_and_removes_its_container() {
    let img = busybox_image();
    let name = NameGuard::new("shell-int");
    let child = dlenv()
        .args(["shell", "--image", img, "--no-workspace", "--gpus", "none"])
        .args(["--name", &name.0, "--", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = || {
        let o = run(docker().args([
            "ps",
            "-q",
            "--filter",
            &format!("name=^{}$", name.0),
            "--filter",
            "status=running",
        ]));
        !stdout(&o).trim().is_empty()
    };
    let mut waited = 0;
    while !running() {
        waited += 1;
        assert!(waited < 300, "the shell's container never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(gone(&name.0), "container left behind after Ctrl-C");
}

fn wait_with_timeout(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("dlenv did not exit within {limit:?}");
        }
    }
}

#[test]
fn shell_gpu_errors_are_explained_and_nothing_is_left() {
    let img = busybox_image();
    let name = NameGuard::new("shell-gpu");
    let o = run(dlenv()
        .args(["shell", "--gpus", "all", "--image", img, "--no-workspace"])
        .args(["--name", &name.0])
        .stdin(Stdio::null()));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("this engine has no NVIDIA runtime"),
        "{}",
        stderr(&o)
    );
    assert!(gone(&name.0), "container left behind after a failed start");
}

#[test]
fn exec_runs_in_dlenv_containers_only() {
    let img = busybox_image();
    let name = NameGuard::new("exec");
    let o = run(dlenv().args([
        "run",
        "-d",
        "--image",
        img,
        "--no-workspace",
        "--gpus",
        "none",
        "--name",
        &name.0,
        "--",
        "sleep",
        "60",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(dlenv().args(["exec", &name.0, "--", "sh", "-c", "exit 5"]));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let o = run(dlenv().args(["exec", &name.0, "--", "echo", "hi"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");

    // -i streams stdin and closes it at EOF.
    let mut child = dlenv()
        .args([
            "exec",
            "-i",
            &name.0,
            "--",
            "sh",
            "-c",
            "cat; echo done >&2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"via-stdin\n")
            .unwrap();
    }
    let o = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "via-stdin\n");
    assert!(stderr(&o).contains("done"), "{}", stderr(&o));

    // On a terminal, -it is interactive.
    let v = drive(serde_json::json!({
        "cmd": [env!("CARGO_BIN_EXE_dlenv"), "exec", "-it", &name.0, "--", "sh"],
        "steps": [["echo exec-$((6*7))\r", r"exec-42\r\n"], ["stty size\r", r"33 101\r\n"]],
        "exit": "exit 4\r",
    }));
    assert_eq!(v["rc"], 4, "{}", v["transcript"]);
    assert_eq!(v["before"], v["after"], "terminal settings not restored");

    // A container dlenv did not create is refused, and so is one that is not running.
    let (foreign, _g) = foreign_container("exec-foreign");
    let o = run(dlenv().args(["exec", &foreign.0, "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no dlenv container named"),
        "{}",
        stderr(&o)
    );
    assert!(run(docker().args(["kill", &name.0])).status.success());
    let o = run(dlenv().args(["exec", &name.0, "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
}
