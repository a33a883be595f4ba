//! `dlenv build`: spec → lock → Dockerfile → image, through the engine's BuildKit.
//!
//! The build context is made here, not taken from the project directory: the rendered
//! Dockerfile (at `.dlenv/Dockerfile`, so a project's own Dockerfile is never touched), the
//! files the Dockerfile copies (requirements files), and the host's CA trust store at
//! `.dlenv/ca-bundle.pem`. Downloading steps bind-mount that bundle only while they run, so
//! builds work behind a TLS-intercepting proxy and no CA ends up in a layer or in the
//! image history. After the build, the exact Python and Debian package versions in the
//! image are recorded in `dlenv.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use dlenv_engine::{BuildEvent, BuildSpec, ContainerSpec, Engine, EngineError};
use dlenv_render::{CA_BUNDLE_PATH, RenderOptions, render};
use dlenv_spec::Lock;

use crate::cli::{Globals, interruptible};
use crate::commands::compat::load_db;
use crate::commands::lock::{
    LockState, SpecFile, current, load_spec, read_lock, require_fresh, resolve_lock, write_lock,
};
use crate::commands::resolve::HostArgs;
use crate::commands::run::host_user;
use crate::ui::{CliError, Exit};

/// The host trust store put into the build context.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Arguments of `dlenv build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The spec (default: ./dlenv.toml, else [tool.dlenv] in ./pyproject.toml).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Fail (exit 3) instead of re-resolving when dlenv.lock is missing or stale.
    #[arg(long)]
    pub locked: bool,
    /// Ignore the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Trust this CA bundle during the build's downloads instead of the host's
    /// (`/etc/ssl/certs/ca-certificates.crt`); `none` to use only the image's own.
    #[arg(long, value_name = "PATH|none")]
    pub ca_bundle: Option<String>,
    /// Pull Docker Hub base images through this mirror (host[:port]); the lock keeps the
    /// canonical reference.
    #[arg(long, value_name = "HOST", env = "DLENV_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// The result of a build.
#[derive(Debug, Serialize)]
pub struct Built {
    /// `dlenv/<name>:<lock hash>`.
    pub image: String,
    /// `dlenv/<name>:latest`.
    pub latest: String,
    /// Image id.
    pub id: String,
    /// Build steps.
    pub steps: usize,
    /// Steps reused from the cache.
    pub cached_steps: usize,
    /// Wall time.
    pub seconds: f64,
    /// Where the lock was written.
    pub lock: PathBuf,
}

/// `dlenv/<name>`.
pub fn image_repo(lock: &Lock) -> String {
    format!("dlenv/{}", lock.env.name)
}

/// The lock to build: the existing one when fresh, else a new resolution (or, with
/// `--locked`, an error).
fn lock_for_build(
    sf: &SpecFile,
    db: &dlenv_compat::CompatDb,
    a: &BuildArgs,
    g: &Globals,
) -> Result<Lock, CliError> {
    if a.locked {
        return require_fresh(sf, db);
    }
    if let LockState::Present(l) = read_lock(sf)?
        && l.staleness(&current(sf, db)?).is_empty()
    {
        return Ok(*l);
    }
    g.printer.info(format!(
        "resolving {} (the lock is missing or stale)",
        sf.path.display()
    ));
    resolve_lock(sf, db, &a.host, g)
}

fn tar_context(
    sf: &SpecFile,
    dockerfile: &str,
    files: &[String],
    ca: Option<&Path>,
) -> Result<Vec<u8>, CliError> {
    let io = |what: String| move |e: std::io::Error| CliError::failure(format!("{what}: {e}"));
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> Result<(), CliError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data)
            .map_err(io(format!("add {name} to the build context")))
    };
    add(".dlenv/Dockerfile", dockerfile.as_bytes())?;
    for f in files {
        if f == CA_BUNDLE_PATH {
            continue;
        }
        let path = sf.dir.join(f);
        let data = std::fs::read(&path).map_err(io(format!("read {}", path.display())))?;
        add(f, &data)?;
    }
    if let Some(ca) = ca {
        let data = std::fs::read(ca).map_err(io(format!("read CA bundle {}", ca.display())))?;
        add(CA_BUNDLE_PATH, &data)?;
    }
    b.into_inner()
        .map_err(io("finish the build context".into()))
}

/// Parse `pip list --format=json` and `dpkg-query` output into the lock's record.
fn parse_installed(
    pip_json: &str,
    dpkg: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    #[derive(serde::Deserialize)]
    struct Pkg {
        name: String,
        version: String,
    }
    let python = serde_json::from_str::<Vec<Pkg>>(pip_json.trim())
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name.to_ascii_lowercase(), p.version))
        .collect();
    let apt = dpkg
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, v)| (p.trim().to_string(), v.trim().to_string()))
        .filter(|(p, _)| !p.is_empty())
        .collect();
    (python, apt)
}

async fn record_installed(engine: &Engine, image: &str, lock: &mut Lock) -> Result<(), CliError> {
    let root = Some("0:0");
    let (code, pip, err) = engine
        .run_capture(&ContainerSpec::simple(
            image,
            &[
                "python",
                "-m",
                "pip",
                "list",
                "--format=json",
                "--disable-pip-version-check",
            ],
            root,
        ))
        .await?;
    if code != 0 {
        return Err(CliError::failure(format!(
            "cannot list the image's Python packages: {}",
            err.trim()
        )));
    }
    let (_, dpkg, _) = engine
        .run_capture(&ContainerSpec::simple(
            image,
            &["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
            root,
        ))
        .await?;
    let (python, apt) = parse_installed(&pip, &dpkg);
    lock.set_installed(python, apt);
    Ok(())
}

fn build_error(e: EngineError) -> CliError {
    match e {
        EngineError::Build(f) => {
            let mut msg = match &f.step {
                Some(s) => format!("the build failed at step {s}"),
                None => "the build failed".to_string(),
            };
            msg.push_str(&format!("\n  engine: {}", f.message));
            if !f.tail.is_empty() {
                msg.push_str("\n  last lines of its output:");
                for l in &f.tail {
                    msg.push_str(&format!("\n    | {l}"));
                }
            }
            CliError::failure(msg).with_hint(
                "fix the spec entry that step comes from (see `dlenv dockerfile`), then build again",
            )
        }
        other => other.into(),
    }
}

/// Build the environment of `sf`; shared by `build` and `up`.
pub async fn build_env(sf: &SpecFile, a: &BuildArgs, g: &Globals) -> Result<Built, CliError> {
    let started = Instant::now();
    let db = load_db(g)?.db;
    let mut lock = lock_for_build(sf, &db, a, g)?;
    let engine = super::connect(g).await?;
    if engine.image_id(&lock.base.image).await?.is_none() {
        g.printer.info(format!(
            "note: base image {} is not in the engine; the build will pull it",
            lock.base.image
        ));
    }
    let ca = match a.ca_bundle.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Path::new(HOST_CA_BUNDLE)
            .exists()
            .then(|| PathBuf::from(HOST_CA_BUNDLE)),
    };
    let (uid, gid) = host_user();
    let opts = RenderOptions {
        uid,
        gid,
        ca_bundle: ca.is_some(),
        ..RenderOptions::default()
    };
    let rendered = render(&lock, &opts);
    let context = tar_context(
        sf,
        &rendered.dockerfile,
        &rendered.context_files,
        ca.as_deref(),
    )?;
    let repo = image_repo(&lock);
    let tag = lock
        .lock_hash()
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect::<String>();
    let spec = BuildSpec {
        context: context.into(),
        dockerfile: ".dlenv/Dockerfile".into(),
        tags: vec![format!("{repo}:{tag}"), format!("{repo}:latest")],
        no_cache: a.no_cache,
        ..Default::default()
    };
    g.printer
        .info(format!("building {repo}:{tag} on {}", lock.base.image));
    let bar = g.printer.spinner();
    let p = g.printer;
    let outcome = interruptible(async {
        engine
            .build_image(&spec, |ev| match ev {
                BuildEvent::Step { name, cached } => match &bar {
                    Some(b) => b.set_message(name),
                    None if !p.quiet => {
                        eprintln!("{}{name}", if cached { "cached  " } else { "" })
                    }
                    None => {}
                },
                BuildEvent::Log { line, .. } => match &bar {
                    Some(b) if p.verbose > 0 => b.println(format!("  | {line}")),
                    None if p.verbose > 0 => eprintln!("  | {line}"),
                    _ => {}
                },
            })
            .await
            .map_err(build_error)
    })
    .await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = outcome?;
    let base_id = engine.image_id(&lock.base.image).await?;
    if let Some(d) = base_id {
        lock.set_base_digest(d);
    }
    record_installed(&engine, &outcome.image_id, &mut lock).await?;
    let lock_path = write_lock(sf, &lock)?;
    Ok(Built {
        image: format!("{repo}:{tag}"),
        latest: format!("{repo}:latest"),
        id: outcome.image_id,
        steps: outcome.steps,
        cached_steps: outcome.cached_steps,
        seconds: started.elapsed().as_secs_f64(),
        lock: lock_path,
    })
}

/// `dlenv build`.
pub async fn run(a: BuildArgs, g: &Globals) -> Result<Exit, CliError> {
    let db = load_db(g)?.db;
    let sf = load_spec(a.file.as_deref(), &db)?;
    let built = build_env(&sf, &a, g).await?;
    if g.printer.json {
        g.printer.json(&built);
    } else {
        g.printer.out(format!(
            "built {} (= {}) in {:.1} s: {} steps, {} from cache; lock: {}",
            built.image,
            built.latest,
            built.seconds,
            built.steps,
            built.cached_steps,
            built.lock.display()
        ));
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_parse() {
        let (py, apt) = parse_installed(
            r#"[{"name": "Six", "version": "1.16.0"}, {"name": "pip", "version": "23.0.1"}]"#,
            "bash\t5.2.15-2+b7\npython3\t3.11.2-1+b1\n",
        );
        assert_eq!(py["six"], "1.16.0");
        assert_eq!(apt["python3"], "3.11.2-1+b1");
        assert_eq!(apt.len(), 2);
    }
}
