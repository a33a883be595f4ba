//! `dlenv export`, `import`, `images`, `rmi`: hand an environment to another host.
//!
//! A bundle (see the `dlenv-bundle` crate) is one file: the image's layers compressed with
//! multithreaded zstd, its config, optionally the recipe (spec, lock, Dockerfile), the
//! exporting host's facts and a manifest with a sha256 for every member. Export streams
//! from the engine into a temporary file next to the output and renames it only when
//! complete. Import verifies every member's digest before the engine sees a byte,
//! re-checks the image's CUDA requirement and GPU code against this host, then streams it
//! into the engine, checking each layer's diff id on the way; the archive's `manifest.json`
//! comes last, so a layer that fails its check leaves no image behind.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use serde::Serialize;

use dlenv_bundle::{Compression, ExportOptions, Input, Kind, Manifest};
use dlenv_engine::Engine;

use crate::cli::Globals;
use crate::commands::engine::human_bytes;
use crate::commands::run::Requirement;
use crate::ui::{CliError, Exit};

/// What goes into a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BundleKind {
    /// Spec, lock, Dockerfile and context files only (kilobytes).
    Recipe,
    /// Everything, every layer included.
    Full,
    /// Only the layers above the base image; the receiver has or pulls the base.
    Delta,
}

/// File format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A dlenv bundle (verified on import, with the recipe and host facts).
    Dlenv,
    /// A plain archive that `docker load` accepts.
    DockerArchive,
}

/// Compression of a `--format docker-archive` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compress {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd, multithreaded.
    Zstd,
}

/// Arguments of `dlenv export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// An image reference, or an environment name (default: the environment of
    /// ./dlenv.toml).
    pub what: Option<String>,
    /// The file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// What to include (default: delta when the base image is a public image present
    /// here, else full).
    #[arg(long, value_enum)]
    pub kind: Option<BundleKind>,
    /// Shorthand for --kind full.
    #[arg(long, conflicts_with_all = ["kind", "delta", "recipe"])]
    pub full: bool,
    /// Shorthand for --kind delta.
    #[arg(long, conflicts_with_all = ["kind", "recipe"])]
    pub delta: bool,
    /// Shorthand for --kind recipe.
    #[arg(long, conflicts_with = "kind")]
    pub recipe: bool,
    /// The base image whose layers a delta leaves out (default: the committed image's
    /// parent, or the base the environment was built on).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// File format.
    #[arg(long, value_enum, default_value = "dlenv")]
    pub format: Format,
    /// Compression for --format docker-archive.
    #[arg(long, value_enum, default_value = "none")]
    pub compress: Compress,
    /// zstd level (1-19).
    #[arg(long, default_value_t = 3)]
    pub level: i32,
}

/// Arguments of `dlenv import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A dlenv bundle, or a `docker save` archive (raw, gzip or zstd).
    pub file: PathBuf,
    /// Load even if this host's driver does not meet the image's CUDA requirement.
    #[arg(long)]
    pub force: bool,
    /// Where to restore a recipe bundle's files (default: ./<env name>).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
}

fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The image and (when known) the spec directory for `what`.
pub(crate) async fn resolve_what(
    g: &Globals,
    what: Option<&str>,
) -> Result<(String, Option<PathBuf>), CliError> {
    match what {
        Some(w) if w.contains(':') || w.contains('/') => Ok((w.to_string(), None)),
        Some(name) => Ok((format!("dlenv/{name}:latest"), None)),
        None => {
            let db = crate::commands::compat::load_db(g)?.db;
            let sf = crate::commands::lock::load_spec(None, &db).map_err(|e| {
                e.with_hint("name an image or environment: `dlenv export IMAGE -o FILE`")
            })?;
            Ok((
                format!("dlenv/{}:latest", sf.spec.env.name),
                Some(sf.dir.clone()),
            ))
        }
    }
}

/// Spec, lock, rendered Dockerfile and requirement files of the spec in `dir`.
fn recipe_files(g: &Globals, dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let mut files = Vec::new();
    for name in ["dlenv.toml", "pyproject.toml", "dlenv.lock"] {
        if let Ok(data) = std::fs::read(dir.join(name)) {
            files.push((name.to_string(), data));
        }
    }
    let db = crate::commands::compat::load_db(g)?.db;
    let spec_path = ["dlenv.toml", "pyproject.toml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .ok_or_else(|| CliError::failure(format!("no dlenv.toml in {}", dir.display())))?;
    let sf = crate::commands::lock::load_spec(Some(&spec_path), &db)?;
    for f in sf.spec.input_files() {
        let data =
            std::fs::read(dir.join(&f)).map_err(|e| CliError::failure(format!("read {f}: {e}")))?;
        files.push((f, data));
    }
    if let crate::commands::lock::LockState::Present(lock) = crate::commands::lock::read_lock(&sf)?
    {
        let (uid, gid) = crate::commands::run::host_user();
        let opts = dlenv_render::RenderOptions {
            uid,
            gid,
            ..Default::default()
        };
        files.push((
            "Dockerfile".into(),
            dlenv_render::render(&lock, &opts).dockerfile.into_bytes(),
        ));
    }
    Ok(files)
}

fn host_facts_json() -> serde_json::Value {
    let nv = dlenv_probe::facts::read_nvidia(&dlenv_probe::LiveHost::default());
    serde_json::json!({
        "driver": nv.driver_version,
        "cuda": nv.cuda_version,
        "gpus": nv.gpus.iter().map(|g| serde_json::json!({"name": g.name, "cc": g.compute_capability})).collect::<Vec<_>>(),
        "arch": std::env::consts::ARCH,
    })
}

/// Bytes from an async stream, read synchronously on a worker thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Option<Result<Bytes, std::io::Error>>>,
    buf: Bytes,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Some(Ok(b))) => self.buf = b,
                Some(Some(Err(e))) => return Err(e),
                // The sender marks a complete stream; a closed channel without the mark is
                // an interruption, never a clean end of file.
                Some(None) => self.done = true,
                None => return Err(std::io::Error::other("the engine stream was interrupted")),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

#[derive(Serialize)]
struct Exported {
    file: PathBuf,
    kind: &'static str,
    image: String,
    bytes: u64,
    seconds: f64,
    layers_included: usize,
    layers_left_out: usize,
}

/// `dlenv export`.
pub async fn export(a: ExportArgs, g: &Globals) -> Result<Exit, CliError> {
    let started = std::time::Instant::now();
    let (image, spec_dir) = resolve_what(g, a.what.as_deref()).await?;
    let kind_flag = a
        .kind
        .or(a.full.then_some(BundleKind::Full))
        .or(a.delta.then_some(BundleKind::Delta))
        .or(a.recipe.then_some(BundleKind::Recipe));
    let parent = a
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".dlenv-export-")
        .tempfile_in(parent)
        .map_err(|e| {
            CliError::failure(format!("cannot create a file in {}: {e}", parent.display()))
        })?;

    if kind_flag == Some(BundleKind::Recipe) {
        let dir = spec_dir.ok_or_else(|| {
            CliError::usage("--recipe needs the spec: run it in the environment's directory without naming an image")
        })?;
        let opts = ExportOptions {
            kind: Kind::Recipe,
            reference: image.clone(),
            skip_diff_ids: HashSet::new(),
            base_reference: None,
            base_id: None,
            recipe_files: recipe_files(g, &dir)?,
            host: host_facts_json(),
            stack: None,
            level: a.level,
            threads: threads(),
            dlenv_version: env!("CARGO_PKG_VERSION").into(),
        };
        dlenv_bundle::export_recipe(tmp.as_file_mut(), &opts).map_err(bundle_error)?;
        return finish_export(g, tmp, &a.output, "recipe", image, 0, 0, started);
    }

    let engine = super::connect(g).await?;
    let details = engine.image_details(&image).await.map_err(|e| {
        CliError::from(e)
            .with_hint("build it (`dlenv build`) or name an image that exists (`dlenv images`)")
    })?;
    // The base: a committed image's parent, the base a dlenv build recorded, or the
    // environment's lock.
    let base_ref = a
        .base
        .as_ref()
        .or_else(|| details.labels.get("dlenv.commit.parent"))
        .or_else(|| details.labels.get("dlenv.base"))
        .cloned()
        .or_else(|| base_from_lock(spec_dir.as_deref()));
    let base = match &base_ref {
        Some(b) => engine.image_details(b).await.ok(),
        None => None,
    };
    let public_base = base_ref
        .as_deref()
        .is_some_and(|b| !b.starts_with("dlenv/") && !b.starts_with("dlenv-test/"));
    let kind = kind_flag.unwrap_or(if public_base && base.is_some() {
        BundleKind::Delta
    } else {
        BundleKind::Full
    });
    let skip: HashSet<String> = match (kind, &base) {
        (BundleKind::Delta, Some(b)) => {
            // Only a real prefix of this image's layers can be left out.
            if !details.diff_ids.starts_with(&b.diff_ids) {
                return Err(CliError::unsatisfiable(format!(
                    "{image} is not built on {} as it is now (its layers differ)",
                    base_ref.clone().unwrap_or_default()
                ))
                .with_hint("export --full"));
            }
            b.diff_ids.iter().cloned().collect()
        }
        (BundleKind::Delta, None) => {
            return Err(CliError::unsatisfiable(format!(
                "--delta needs the base image of {image} on this host, and it is {}",
                base_ref
                    .map(|b| format!("{b}, which is not here"))
                    .unwrap_or_else(|| "unknown".into())
            ))
            .with_hint("export --full"));
        }
        _ => HashSet::new(),
    };
    let stack = spec_dir
        .as_deref()
        .and_then(|d| std::fs::read_to_string(d.join("dlenv.lock")).ok())
        .map(serde_json::Value::String);
    let opts = ExportOptions {
        kind: if kind == BundleKind::Delta {
            Kind::Delta
        } else {
            Kind::Full
        },
        reference: image.clone(),
        skip_diff_ids: skip,
        base_reference: base_ref.clone().filter(|_| kind == BundleKind::Delta),
        base_id: base
            .as_ref()
            .map(|b| b.id.clone())
            .filter(|_| kind == BundleKind::Delta),
        recipe_files: match &spec_dir {
            Some(d) => recipe_files(g, d).unwrap_or_default(),
            None => Vec::new(),
        },
        host: host_facts_json(),
        stack,
        level: a.level,
        threads: threads(),
        dlenv_version: env!("CARGO_PKG_VERSION").into(),
    };

    // Engine stream → channel → blocking writer thread.
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c2 = counter.clone();
    let format = a.format;
    let compress = a.compress;
    let level = a.level;
    let mut worker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            buf: Bytes::new(),
            done: false,
        };
        let mut progress = |n: u64| c2.store(n, std::sync::atomic::Ordering::Relaxed);
        let result = match format {
            Format::Dlenv => dlenv_bundle::export(reader, tmp.as_file_mut(), &opts, &mut progress)
                .map(|m| {
                    (
                        m.layers.iter().filter(|l| l.member.is_some()).count(),
                        m.layers.iter().filter(|l| l.member.is_none()).count(),
                    )
                }),
            Format::DockerArchive => {
                let c = match compress {
                    Compress::None => Compression::None,
                    Compress::Gzip => Compression::Gzip,
                    Compress::Zstd => Compression::Zstd,
                };
                let out = std::io::BufWriter::new(tmp.as_file_mut());
                dlenv_bundle::write_plain_archive(reader, out, c, level, threads(), &mut progress)
                    .map(|()| (0, 0))
            }
        };
        (result, tmp)
    });
    let bar = g.printer.spinner();
    let mut stream = std::pin::pin!(engine.save_image(&image));
    let pump = async {
        while let Some(chunk) = stream.next().await {
            let failed = chunk.is_err();
            if tx.send(Some(chunk)).await.is_err() || failed {
                return;
            }
            if let Some(b) = &bar {
                let n = counter.load(std::sync::atomic::Ordering::Relaxed);
                b.set_message(format!("exporting {image}: {} read", human_bytes(n)));
            }
        }
        let _ = tx.send(None).await;
    };
    let interrupted = tokio::select! {
        () = pump => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    // On Ctrl-C the channel closes without the end mark: the worker fails and its temporary
    // file is deleted before we return.
    drop(tx);
    let (result, tmp) = (&mut worker)
        .await
        .map_err(|e| CliError::failure(format!("export worker: {e}")))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if interrupted {
        drop(tmp);
        return Err(CliError::interrupted());
    }
    let (included, left_out) = result.map_err(bundle_error)?;
    let kind_name = match (a.format, kind) {
        (Format::DockerArchive, _) => "docker-archive",
        (_, BundleKind::Delta) => "delta",
        _ => "full",
    };
    finish_export(
        g, tmp, &a.output, kind_name, image, included, left_out, started,
    )
}

fn base_from_lock(dir: Option<&Path>) -> Option<String> {
    let text = std::fs::read_to_string(dir?.join("dlenv.lock")).ok()?;
    let lock = dlenv_spec::Lock::from_toml("dlenv.lock", &text).ok()?;
    Some(lock.base.image)
}

#[allow(clippy::too_many_arguments)]
fn finish_export(
    g: &Globals,
    tmp: tempfile::NamedTempFile,
    output: &Path,
    kind: &'static str,
    image: String,
    layers_included: usize,
    layers_left_out: usize,
    started: std::time::Instant,
) -> Result<Exit, CliError> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| CliError::failure(format!("sync {}: {e}", output.display())))?;
    let bytes = tmp
        .as_file()
        .metadata()
        .map(|m| m.len())
        .unwrap_or_default();
    // Temporary files are created 0600; the result is an ordinary file.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(output)
        .map_err(|e| CliError::failure(format!("write {}: {}", output.display(), e.error)))?;
    let out = Exported {
        file: output.to_path_buf(),
        kind,
        image,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        layers_included,
        layers_left_out,
    };
    if g.printer.json {
        g.printer.json(&out);
    } else {
        g.printer.out(format!(
            "exported {} ({kind}) to {}: {} in {:.1} s",
            out.image,
            out.file.display(),
            human_bytes(bytes),
            out.seconds
        ));
    }
    Ok(Exit::Ok)
}

fn bundle_error(e: dlenv_bundle::BundleError) -> CliError {
    let hint = if has_io_source(&e, |io| io.kind() == std::io::ErrorKind::ConnectionAborted) {
        Some(
            "the engine closed the connection in the middle of the transfer: it stopped, \
             restarted or crashed (see its log, e.g. `journalctl -u docker`). Check it with \
             `dlenv doctor` and retry; nothing was written"
                .to_string(),
        )
    } else {
        e.hint()
    };
    let mut c = CliError::failure(e.to_string());
    if let Some(h) = hint {
        c = c.with_hint(h);
    }
    c
}

#[derive(Serialize)]
struct Imported {
    file: PathBuf,
    loaded: Vec<String>,
    kind: String,
    seconds: f64,
    restored: Option<PathBuf>,
}

/// `dlenv import`.
pub async fn import(a: ImportArgs, g: &Globals) -> Result<Exit, CliError> {
    let started = std::time::Instant::now();
    let path = a.file.clone();
    let input = dlenv_bundle::detect(&path).map_err(bundle_error)?;
    let p = &g.printer;
    let (kind, manifest) = match input {
        Input::Bundle => {
            p.info(format!("verifying {}", path.display()));
            let m = tokio::task::spawn_blocking({
                let path = path.clone();
                move || dlenv_bundle::verify(&path)
            })
            .await
            .map_err(|e| CliError::failure(format!("verify: {e}")))?
            .map_err(bundle_error)?;
            (kind_name(&m), Some(m))
        }
        // `open_archive` checks the whole archive (no escaping paths or links) before it
        // returns a reader, so nothing reaches the engine unchecked.
        Input::DockerArchive(_) => ("docker-archive".to_string(), None),
    };
    if let Some(m) = &manifest
        && kind == "recipe"
    {
        let name = m
            .image
            .as_ref()
            .map(|i| {
                i.reference
                    .trim_start_matches("dlenv/")
                    .split(':')
                    .next()
                    .unwrap_or("env")
                    .to_string()
            })
            .unwrap_or_else(|| "env".into());
        let dir = a.to.clone().unwrap_or_else(|| PathBuf::from(name));
        let restored = restore_recipe(&path, &dir)?;
        let out = Imported {
            file: path,
            loaded: vec![],
            kind,
            seconds: started.elapsed().as_secs_f64(),
            restored: Some(restored.clone()),
        };
        if p.json {
            p.json(&out);
        } else {
            p.out(format!(
                "restored the recipe into {}: run `dlenv build` there",
                restored.display()
            ));
        }
        return Ok(Exit::Ok);
    }
    let engine = super::connect(g).await?;
    if let Some(m) = &manifest {
        let (env, labels) = bundle_config_env(&path)?;
        let image = m
            .image
            .as_ref()
            .map(|i| i.reference.clone())
            .unwrap_or_default();
        match crate::commands::run::host_requirement(g, &image, &env, &labels)? {
            Requirement::NoDriver(floor) => p.warn(format!(
                "this host has no NVIDIA driver: {image} ({floor}) will run without GPUs only"
            )),
            Requirement::NotMet(e) if a.force => {
                p.warn(format!("{} (loading anyway: --force)", e.message))
            }
            Requirement::NotMet(e) => {
                return Err(e.with_hint(
                    "upgrade the NVIDIA driver, re-build from the recipe on this host \
                     (`dlenv export --recipe` on the source), or load anyway with --force",
                ));
            }
            Requirement::None | Requirement::Met => {}
        }
        ensure_base(&engine, g, m).await?;
    }
    let loaded = load(&engine, g, &path, manifest.clone()).await?;
    let out = Imported {
        file: path,
        loaded,
        kind,
        seconds: started.elapsed().as_secs_f64(),
        restored: None,
    };
    if p.json {
        p.json(&out);
    } else {
        p.out(format!(
            "imported {} in {:.1} s",
            out.loaded.join(", "),
            out.seconds
        ));
    }
    Ok(Exit::Ok)
}

fn kind_name(m: &Manifest) -> String {
    match m.kind {
        Kind::Full => "full",
        Kind::Delta => "delta",
        Kind::Recipe => "recipe",
    }
    .to_string()
}

/// For a delta bundle, the base must be here (or pullable) with exactly the layers the
/// bundle left out.
async fn ensure_base(engine: &Engine, g: &Globals, m: &Manifest) -> Result<(), CliError> {
    let Some(left) = &m.left_out else {
        return Ok(());
    };
    if left.diff_ids.is_empty() {
        return Ok(());
    }
    let base = left.base_reference.clone().unwrap_or_default();
    let have = match engine.image_details(&base).await {
        Ok(d) => Some(d),
        Err(_) => {
            // With the docker config's credentials, like `dlenv pull`.
            let auth = crate::commands::registry::credentials(g, &base)
                .ok()
                .flatten();
            engine.pull_image(&base, auth.as_ref(), |_| {}).await.ok();
            engine.image_details(&base).await.ok()
        }
    };
    match have {
        Some(d) if d.diff_ids.starts_with(&left.diff_ids) || left.diff_ids.iter().all(|x| d.diff_ids.contains(x)) => Ok(()),
        Some(d) => Err(CliError::unsatisfiable(format!(
            "this delta bundle was made on base {base} ({}), but {base} here has other layers ({})",
            left.base_id.as_deref().unwrap_or("?"),
            d.id
        ))
        .with_hint("get the same base image (by digest) or ask for a --full export")),
        None => Err(CliError::unsatisfiable(format!(
            "this delta bundle needs its base image {base} ({}), which is not here and could not be pulled",
            left.base_id.as_deref().unwrap_or("?")
        ))
        .with_hint(format!("load or pull {base} first (`docker pull {base}`, or import a full bundle), or ask for a --full export"))),
    }
}

/// Stream a bundle (as a docker archive) or a plain archive into the engine.
async fn load(
    engine: &Engine,
    g: &Globals,
    path: &Path,
    manifest: Option<Manifest>,
) -> Result<Vec<String>, CliError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let path = path.to_path_buf();
    let err_tx = tx.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(), dlenv_bundle::BundleError> {
        let out = ChannelWriter { tx };
        match &manifest {
            Some(m) => dlenv_bundle::write_docker_archive(
                &path,
                m,
                std::io::BufWriter::with_capacity(1 << 20, out),
            ),
            None => {
                let c = match dlenv_bundle::detect(&path)? {
                    Input::DockerArchive(c) => c,
                    Input::Bundle => Compression::None,
                };
                let mut r = dlenv_bundle::open_archive(&path, c)?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
                let io = |source| dlenv_bundle::BundleError::Io {
                    context: "stream the archive to the engine".into(),
                    source,
                };
                std::io::copy(&mut r, &mut w).map_err(io)?;
                std::io::Write::flush(&mut w).map_err(io)?;
                Ok(())
            }
        }
        .inspect_err(|e| {
            // End the request body with an error, so the engine aborts instead of loading
            // whatever arrived.
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        })
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let bar = g.printer.spinner();
    if let Some(b) = &bar {
        b.set_message("loading into the engine");
    }
    let loaded = crate::cli::interruptible(async { Ok(engine.load_images(body).await?) }).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let written = writer
        .await
        .map_err(|e| CliError::failure(format!("import worker: {e}")))?;
    match (loaded, written) {
        // Ctrl-C: the request was dropped, so the worker saw the engine stop reading.
        (Err(e), _) if matches!(e.exit, Exit::Interrupted) => Err(e),
        // The worker's own failure (a bad layer, an unreadable file) is the cause...
        (_, Err(w)) if !engine_stopped_reading(&w) => Err(bundle_error(w)),
        // ...unless it only saw the request die: then the engine's side says why.
        (Err(e), _) => Err(e),
        (Ok(_), Err(w)) => Err(bundle_error(w)),
        (Ok(loaded), Ok(())) => Ok(loaded),
    }
}

/// Whether the worker failed only because the engine request went away.
fn engine_stopped_reading(e: &dlenv_bundle::BundleError) -> bool {
    has_io_source(e, |io| io.to_string() == ENGINE_STOPPED_READING)
}

/// Whether `e` or one of its sources is an I/O error that `pred` accepts.
fn has_io_source(
    e: &(dyn std::error::Error + 'static),
    pred: impl Fn(&std::io::Error) -> bool,
) -> bool {
    std::iter::successors(Some(e), |s| s.source())
        .any(|s| s.downcast_ref::<std::io::Error>().is_some_and(&pred))
}

const ENGINE_STOPPED_READING: &str = "the engine stopped reading";

/// A `Write` that sends chunks to the engine request.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other(ENGINE_STOPPED_READING))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Members of a verified bundle, by name.
fn bundle_members(
    path: &Path,
    mut want: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>, CliError> {
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::failure(format!("open {}: {e}", path.display())))?;
    let mut ar = tar::Archive::new(f);
    let mut out = Vec::new();
    let entries = ar
        .entries()
        .map_err(|e| CliError::failure(format!("read {}: {e}", path.display())))?;
    for e in entries {
        let mut e = e.map_err(|e| CliError::failure(format!("read {}: {e}", path.display())))?;
        let name = e
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if want(&name) {
            let mut data = Vec::new();
            e.read_to_end(&mut data)
                .map_err(|e| CliError::failure(format!("read {name}: {e}")))?;
            out.push((name, data));
        }
    }
    Ok(out)
}

/// The image config's `Env` from a verified bundle.
/// The image config's `Env` and `Labels` from a verified bundle.
fn bundle_config_env(
    path: &Path,
) -> Result<(Vec<String>, std::collections::HashMap<String, String>), CliError> {
    let config = bundle_members(path, |n| n == "config.json")?;
    let v: serde_json::Value = config
        .first()
        .and_then(|(_, d)| serde_json::from_slice(d).ok())
        .unwrap_or_default();
    let env = v
        .pointer("/config/Env")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let labels = v
        .pointer("/config/Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    Ok((env, labels))
}

/// Write a verified recipe bundle's files into `dir` (new or empty).
fn restore_recipe(path: &Path, dir: &Path) -> Result<PathBuf, CliError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(
            CliError::failure(format!("{} exists and is not empty", dir.display()))
                .with_hint("choose another directory with --to DIR"),
        );
    }
    for (name, data) in bundle_members(path, |n| n.starts_with("recipe/"))? {
        let rel = Path::new(name.trim_start_matches("recipe/"));
        // verify() already refused absolute and `..` paths; check again where it matters.
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(CliError::failure(format!(
                "unsafe path {name} in the bundle"
            )));
        }
        let target = dir.join(rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| CliError::failure(format!("create {}: {e}", p.display())))?;
        }
        std::fs::write(&target, data)
            .map_err(|e| CliError::failure(format!("write {}: {e}", target.display())))?;
    }
    Ok(dir.to_path_buf())
}

/// `dlenv images`.
pub async fn images(g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let mut list = engine
        .images_with_label(dlenv_engine::MANAGED_LABEL)
        .await?;
    list.sort_by(|a, b| a.tags.cmp(&b.tags));
    if g.printer.json {
        g.printer.json(&list);
        return Ok(Exit::Ok);
    }
    g.printer
        .out(format!("{:<48} {:<14} {:>10}  env", "image", "id", "size"));
    for i in list {
        let id: String =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
        let env = i
            .labels
            .get("dlenv.env")
            .cloned()
            .unwrap_or_else(|| "-".into());
        let tags = if i.tags.is_empty() {
            vec!["<none>".to_string()]
        } else {
            i.tags.clone()
        };
        for t in tags {
            g.printer.out(format!(
                "{t:<48} {id:<14} {:>10}  {env}",
                human_bytes(i.size.max(0) as u64)
            ));
        }
    }
    Ok(Exit::Ok)
}

/// Arguments of `dlenv rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references (only images dlenv made).
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `dlenv rmi`.
pub async fn rmi(a: RmiArgs, g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    for r in &a.images {
        let labels = engine.image_labels(r).await?;
        if labels.get(dlenv_engine::MANAGED_LABEL).map(String::as_str) != Some("true") {
            return Err(CliError::failure(format!("{r} was not made by dlenv"))
                .with_hint("dlenv removes only its own images (`dlenv images`); use `docker rmi` for others"));
        }
        engine.remove_image(r, false).await?;
        g.printer.info(format!("removed {r}"));
    }
    Ok(Exit::Ok)
}
