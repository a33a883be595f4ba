//! `dlenv commit`: the tutorial's `docker commit`, made safe. Before committing, the
//! container's changes are scanned for host NVIDIA driver files (which the GPU runtime
//! mounts in and which would break the image on a host with another driver) and for likely
//! secrets (SSH keys, shell history, cloud and registry credentials); either refuses the
//! commit unless `--force`.

use std::collections::HashMap;

use clap::Args;
use serde::Serialize;

use dlenv_engine::{Change, ChangeKind};

use crate::cli::Globals;
use crate::ui::{CliError, Exit};

/// Arguments of `dlenv commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The container (name or id).
    pub container: String,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author, e.g. "Ada <ada@example.org>".
    #[arg(short, long)]
    pub author: Option<String>,
    /// Image name and tag (default: dlenv/<env>-committed:<time>).
    #[arg(short, long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Commit even if driver files or likely secrets are in the changes.
    #[arg(long)]
    pub force: bool,
}

/// A changed path that should not go into an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The path.
    pub path: String,
    /// Why.
    pub why: &'static str,
}

const DRIVER: &str =
    "host NVIDIA driver file (mounted in by the GPU runtime; another host needs its own driver's)";
const SECRET: &str = "likely secret or personal history";

/// Scan a container's changes for driver files and likely secrets. Pure.
pub fn scan_changes(changes: &[Change]) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Deleted) {
        let path = c.path.as_str();
        let name = path.rsplit('/').next().unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        let driver = [
            "libcuda.so",
            "libnvidia-",
            "libnvcuvid.so",
            "libnvoptix.so",
            "libcudadebugger.so",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || (path.starts_with("/dev/nvidia"))
            || (["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced"].contains(&name)
                && path.starts_with("/usr/bin/"))
            || name.starts_with("nvidia-cuda-mps-");
        let secret = parts
            .iter()
            .any(|p| matches!(*p, ".ssh" | ".gnupg" | ".aws" | ".azure"))
            || path.contains("/.config/gcloud/")
            || path.ends_with("/.docker/config.json")
            || path.ends_with("/.kube/config")
            || matches!(
                name,
                ".netrc"
                    | ".bash_history"
                    | ".zsh_history"
                    | ".python_history"
                    | ".psql_history"
                    | ".mysql_history"
                    | ".lesshst"
                    | ".git-credentials"
                    | ".pypirc"
                    | ".npmrc"
                    | "id_rsa"
                    | "id_ed25519"
                    | "id_ecdsa"
                    | ".env"
            );
        if driver {
            out.push(Finding {
                path: path.to_string(),
                why: DRIVER,
            });
        } else if secret {
            out.push(Finding {
                path: path.to_string(),
                why: SECRET,
            });
        }
    }
    // A directory and its contents are reported once: keep the shortest paths.
    out.sort_by(|a, b| a.path.cmp(&b.path));
    let mut kept: Vec<Finding> = Vec::new();
    for f in out {
        if !kept
            .iter()
            .any(|k| k.why == f.why && f.path.starts_with(&format!("{}/", k.path)))
        {
            kept.push(f);
        }
    }
    kept
}

#[derive(Serialize)]
struct Committed {
    image: String,
    id: String,
    parent: String,
    findings: Vec<Finding>,
}

/// `dlenv commit`.
pub async fn run(a: CommitArgs, g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let c = crate::commands::run::find_any(&engine, &a.container).await?;
    let changes = engine.container_changes(&c.id).await?;
    let findings = scan_changes(&changes);
    if !findings.is_empty() && !a.force {
        let mut msg = format!("refusing to commit `{}`: its changes include", a.container);
        for f in &findings {
            msg.push_str(&format!("\n  - {} ({})", f.path, f.why));
        }
        return Err(CliError::unsatisfiable(msg).with_hint(format!(
            "remove them first (`dlenv exec {} -- rm -rf PATH…`), or commit anyway with --force",
            a.container
        )));
    }
    let env = c.labels.get("dlenv.env").cloned();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let reference = a.tag.clone().unwrap_or_else(|| {
        format!(
            "dlenv/{}-committed:{stamp}",
            env.as_deref().unwrap_or("container")
        )
    });
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (reference.clone(), "latest".to_string()),
    };
    let mut labels = HashMap::new();
    labels.insert("dlenv.managed".to_string(), "true".to_string());
    labels.insert("dlenv.commit.parent".to_string(), c.image.clone());
    labels.insert(
        "dlenv.commit.container".to_string(),
        c.names.first().cloned().unwrap_or_else(|| c.id.clone()),
    );
    if let Some(m) = &a.message {
        labels.insert("dlenv.commit.message".to_string(), m.clone());
    }
    if let Some(au) = &a.author {
        labels.insert("dlenv.commit.author".to_string(), au.clone());
    }
    if let Some(e) = &env {
        labels.insert("dlenv.env".to_string(), e.clone());
    }
    let id = engine
        .commit(
            &c.id,
            &repo,
            &tag,
            a.message.as_deref(),
            a.author.as_deref(),
            labels,
        )
        .await?;
    let out = Committed {
        image: format!("{repo}:{tag}"),
        id,
        parent: c.image.clone(),
        findings,
    };
    if g.printer.json {
        g.printer.json(&out);
    } else {
        g.printer
            .out(format!("committed {} as {}", a.container, out.image));
    }
    if !out.findings.is_empty() {
        g.printer.warn(format!(
            "committed {} flagged path(s) because of --force",
            out.findings.len()
        ));
    }
    g.printer.warn(
        "a commit is not reproducible: to hand the environment on, prefer the spec and lock \
         (`dlenv dockerfile`, `dlenv export --recipe`)",
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(kind: ChangeKind, path: &str) -> Change {
        Change {
            kind,
            path: path.into(),
        }
    }

    #[test]
    fn driver_files_and_secrets_are_found_once() {
        let f = scan_changes(&[
            ch(
                ChangeKind::Added,
                "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",
            ),
            ch(
                ChangeKind::Added,
                "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            ),
            ch(ChangeKind::Added, "/dev/nvidia0"),
            ch(ChangeKind::Added, "/usr/bin/nvidia-smi"),
            ch(ChangeKind::Added, "/root/.bash_history"),
            ch(ChangeKind::Added, "/home/u/.ssh"),
            ch(ChangeKind::Added, "/home/u/.ssh/id_ed25519"),
            ch(ChangeKind::Added, "/home/u/.aws/credentials"),
            ch(ChangeKind::Modified, "/etc/hosts"),
            ch(ChangeKind::Added, "/opt/app/model.bin"),
            ch(ChangeKind::Deleted, "/root/.netrc"),
        ]);
        let paths: Vec<&str> = f.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia0",
                "/home/u/.aws/credentials",
                "/home/u/.ssh",
                "/root/.bash_history",
                "/usr/bin/nvidia-smi",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",
                "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            ]
        );
        assert_eq!(f[5].why, DRIVER);
        assert_eq!(f[3].why, SECRET);
    }

    #[test]
    fn ordinary_changes_pass() {
        assert!(
            scan_changes(&[
                ch(ChangeKind::Added, "/workspace/out.csv"),
                ch(
                    ChangeKind::Modified,
                    "/opt/dlenv/venv/lib/python3.11/site-packages/x.py"
                ),
                ch(ChangeKind::Added, "/usr/lib/libcudart.so.12"),
            ])
            .is_empty()
        );
    }
}
