//! `dlenv jupyter`: JupyterLab in the environment, safe by default.
//!
//! The tutorial's `--ip=0.0.0.0 --allow-root --NotebookApp.token=` hands anyone on the
//! network a shell. dlenv instead generates a random token (never disabled), publishes the
//! port on 127.0.0.1 only (reach it from elsewhere with `ssh -L`, or pass `--public`, which
//! warns), runs as your uid rather than root, waits until the server answers, and prints
//! the URL with its token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::cli::{Globals, interruptible};
use crate::commands::run::{ContainerArgs, create, plan, target, translate_start_error};
use crate::ui::{CliError, Exit};

/// Arguments of `dlenv jupyter`.
#[derive(Debug, Args)]
pub struct JupyterArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Host port (default: 8888, or the next free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Start it in the background, print the URL and return.
    #[arg(short, long)]
    pub detach: bool,
    /// Classic Notebook instead of JupyterLab.
    #[arg(long)]
    pub notebook: bool,
    /// Do not open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Seconds to wait for the server to answer.
    #[arg(long, default_value_t = 90)]
    pub timeout: u64,
}

/// A random token: 24 bytes from the kernel, hex-encoded.
fn token() -> Result<String, CliError> {
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| CliError::failure(format!("cannot read /dev/urandom for a token: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn free_port(start: u16) -> Option<u16> {
    (start..start.saturating_add(100)).find(|p| {
        TcpListener::bind(("127.0.0.1", *p)).is_ok() && TcpListener::bind(("0.0.0.0", *p)).is_ok()
    })
}

/// `GET path` on 127.0.0.1:port; the HTTP status code.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Serialize)]
struct Started {
    url: String,
    container: String,
    port: u16,
    public: bool,
}

/// Start Jupyter in a container of `t`, wait until it answers, return its container id
/// and URL. On failure nothing is left running.
pub async fn start(
    a: &JupyterArgs,
    t: &crate::commands::run::Target,
    engine: &dlenv_engine::Engine,
    g: &Globals,
) -> Result<(String, String, u16), CliError> {
    let port = match a.port {
        Some(p) => p,
        None => {
            free_port(8888).ok_or_else(|| CliError::failure("no free port from 8888 to 8987"))?
        }
    };
    let token = token()?;
    let app = if a.notebook { "notebook" } else { "lab" };
    let cmd = vec![
        "sh".into(),
        "-c".into(),
        "command -v jupyter >/dev/null || { echo 'jupyter is not installed in this image' >&2; exit 127; }; \
         exec jupyter \"$0\" --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir=/workspace \"$1\""
            .into(),
        app.to_string(),
        // Jupyter refuses to run as root; when the invoking user is root, the container
        // runs as root too, so say so explicitly (the token and loopback binding remain).
        if crate::commands::run::host_user().0 == 0 && a.container.user.is_none() {
            "--allow-root".into()
        } else {
            "--ServerApp.allow_root=False".into()
        },
    ];
    let mut args = a.container.clone();
    args.ports.push(format!("{port}:8888"));
    let mut planned = plan(&args, t, Some(cmd))?;
    // The token travels in the environment, not on the command line (`ps` shows argv).
    planned.spec.env.push(format!("JUPYTER_TOKEN={token}"));
    // Ephemeral: `dlenv stop` removes it (not auto-remove, so a failed start keeps its log).
    planned
        .spec
        .labels
        .insert("dlenv.ephemeral".into(), "true".into());
    let url = format!("http://127.0.0.1:{port}/{app}?token={token}");
    planned
        .spec
        .labels
        .insert("dlenv.jupyter".into(), url.clone());
    let id = create(engine, g, planned).await?;
    if let Err(e) = engine.start_container(&id).await {
        let _ = engine.remove_container(&id).await;
        return Err(translate_start_error(e));
    }

    // Wait until it answers /api/status with the token.
    let waited = interruptible(async {
        let started = Instant::now();
        loop {
            if http_status(port, &format!("/api/status?token={token}")) == Some(200) {
                return Ok(true);
            }
            if started.elapsed() > Duration::from_secs(a.timeout) {
                return Ok(false);
            }
            if !engine.is_running(&id).await? {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    if !matches!(waited, Ok(true)) {
        let tail = engine.logs_tail(&id, 30).await.unwrap_or_default();
        let _ = engine.remove_container(&id).await;
        waited?;
        return Err(CliError::failure(format!(
            "Jupyter did not answer on port {port} within {} s; last log lines:\n{}",
            a.timeout,
            tail.trim_end()
        ))
        .with_hint(
            "the environment needs JupyterLab: set `[jupyter] enabled = true` (or add jupyterlab \
             to [env].pip) in dlenv.toml, then `dlenv lock && dlenv build`",
        ));
    }
    Ok((id, url, port))
}

/// `dlenv jupyter`.
pub async fn run(a: JupyterArgs, g: &Globals) -> Result<Exit, CliError> {
    let t = target(&a.container, g).await?;
    let engine = super::connect(g).await?;
    let (id, url, port) = start(&a, &t, &engine, g).await?;
    let public = a.container.public;
    if g.printer.json {
        g.printer.json(&Started {
            url: url.clone(),
            container: id.chars().take(12).collect(),
            port,
            public,
        });
    } else {
        g.printer.out(format!("Jupyter is ready: {url}"));
        if !public {
            g.printer.info(format!(
                "(listening on 127.0.0.1 only; from another machine: ssh -L {port}:127.0.0.1:{port} THIS_HOST)"
            ));
        }
    }
    if !a.no_browser && std::env::var_os("DISPLAY").is_some() {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    if a.detach {
        g.printer.info(format!(
            "stop it with: dlenv stop {}",
            &id[..12.min(id.len())]
        ));
        return Ok(Exit::Ok);
    }
    g.printer.info("Ctrl-C stops it");
    let _ = interruptible(async { engine.wait_container(&id).await.map_err(CliError::from) }).await;
    let _ = engine.remove_container(&id).await;
    Ok(Exit::Ok)
}
