//! `dlenv base …`: base images built from a distribution mirror with debootstrap, for
//! air-gapped sites, slow or blocked registries, and dlenv's own tests.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde::Serialize;

use dlenv_base::{BASE_REPO, Recipe, Workdir};

use crate::cli::Globals;
use crate::commands::engine::human_bytes;
use crate::ui::{CliError, Exit};

/// Base image commands.
#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Build a base image with debootstrap and import it into the engine as
    /// `dlenv/base:<distro>-<release>` (needs root; no registry involved). A repeated
    /// call with the same recipe reuses the image.
    Bootstrap(BootstrapArgs),
    /// List the base images in the engine.
    List,
}

/// Arguments of `base bootstrap`.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Distribution and release: `debian:bookworm`, `debian:12`, `ubuntu:noble`,
    /// `ubuntu:24.04`.
    #[arg(long, default_value = "debian:bookworm")]
    pub distro: String,
    /// Package mirror (default: deb.debian.org, or archive/ports.ubuntu.com).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Extra packages to install, comma-separated (repeatable).
    #[arg(long, value_name = "PKG,…")]
    pub include: Vec<String>,
    /// debootstrap variant: minbase, buildd, fakechroot, standard.
    #[arg(long, default_value = "minbase")]
    pub variant: String,
    /// Target architecture (default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Build again even when an image for this recipe exists.
    #[arg(long)]
    pub rebuild: bool,
}

/// What `base bootstrap` did.
#[derive(Serialize)]
pub struct BootstrapOutcome {
    /// `dlenv/base:<distro>-<release>`.
    pub image: String,
    /// The recipe tag.
    pub recipe_image: String,
    /// Image id.
    pub id: String,
    /// Reused an existing image.
    pub reused: bool,
    /// The recipe.
    pub recipe: Recipe,
    /// Wall time.
    pub seconds: f64,
}

/// Run a base command.
pub async fn run(cmd: BaseCommand, g: &Globals) -> Result<Exit, CliError> {
    match cmd {
        BaseCommand::Bootstrap(a) => crate::cli::interruptible(bootstrap(a, g)).await,
        BaseCommand::List => list(g).await,
    }
}

async fn bootstrap(a: BootstrapArgs, g: &Globals) -> Result<Exit, CliError> {
    let out = bootstrap_image(&a, g).await?;
    report(g, &out);
    Ok(Exit::Ok)
}

impl Default for BootstrapArgs {
    fn default() -> Self {
        Self {
            distro: "debian:bookworm".into(),
            mirror: None,
            include: Vec::new(),
            variant: "minbase".into(),
            arch: None,
            rebuild: false,
        }
    }
}

/// Build (or reuse) the base image of `a`; shared by `base bootstrap` and `up`.
pub async fn bootstrap_image(a: &BootstrapArgs, g: &Globals) -> Result<BootstrapOutcome, CliError> {
    let p = &g.printer;
    let started = Instant::now();
    let arch = a
        .arch
        .clone()
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let recipe = Recipe::new(
        &a.distro,
        &arch,
        &a.variant,
        a.mirror.as_deref(),
        &a.include,
    )?;
    let engine = super::connect(g).await?;
    let image = format!("{BASE_REPO}:{}", recipe.release_tag());
    let recipe_image = format!("{BASE_REPO}:{}", recipe.recipe_tag());

    if !a.rebuild
        && let Some(id) = engine.image_id(&recipe_image).await?
    {
        engine
            .tag_image(&id, BASE_REPO, &recipe.release_tag())
            .await?;
        return Ok(BootstrapOutcome {
            image,
            recipe_image,
            id,
            reused: true,
            recipe,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    dlenv_base::check_preconditions(&recipe)?;
    let work = Workdir::new()?;
    let rootfs = work.rootfs();
    p.info(format!(
        "bootstrapping {} {} ({}, {}) from {}",
        recipe.distro, recipe.release, recipe.arch, recipe.variant, recipe.mirror
    ));
    let bar = g.printer.spinner();
    let verbose = p.verbose > 0 && !p.live_progress();
    dlenv_base::run_debootstrap(&recipe, &rootfs, |line| {
        if let Some(b) = &bar {
            b.set_message(line.trim().to_string());
        } else if verbose {
            p.info(line);
        }
    })
    .await?;

    p.info("importing the root filesystem into the engine");
    let (stream, counter) = dlenv_base::rootfs_tar_stream(&rootfs)?;
    let recipe_tag = recipe.recipe_tag();
    let import = engine.import_rootfs(
        stream,
        BASE_REPO,
        &recipe_tag,
        recipe.image_changes(env!("CARGO_PKG_VERSION")),
    );
    tokio::pin!(import);
    let id = loop {
        tokio::select! {
            r = &mut import => break r?,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(b) = &bar {
                    b.set_message(format!("imported {}", human_bytes(counter.load(Ordering::Relaxed))));
                }
            }
        }
    };
    engine
        .tag_image(&id, BASE_REPO, &recipe.release_tag())
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(work);
    Ok(BootstrapOutcome {
        image,
        recipe_image,
        id,
        reused: false,
        recipe,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn report(g: &Globals, o: &BootstrapOutcome) {
    if g.printer.json {
        g.printer.json(o);
        return;
    }
    let verb = if o.reused { "reused" } else { "built" };
    g.printer.out(format!(
        "{verb} {} (= {}, {}) in {:.1} s",
        o.image,
        o.recipe_image,
        short_id(&o.id),
        o.seconds
    ));
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[derive(Serialize)]
struct BaseImage {
    tags: Vec<String>,
    id: String,
    size: i64,
    recipe: Option<String>,
}

async fn list(g: &Globals) -> Result<Exit, CliError> {
    let engine = super::connect(g).await?;
    let mut images: Vec<BaseImage> = engine
        .images_with_label("dlenv.base.recipe")
        .await?
        .into_iter()
        .map(|i| BaseImage {
            recipe: i.labels.get("dlenv.base.recipe").cloned(),
            tags: i.tags,
            id: i.id,
            size: i.size,
        })
        .collect();
    images.sort_by(|a, b| a.tags.cmp(&b.tags));
    if g.printer.json {
        g.printer.json(&images);
        return Ok(Exit::Ok);
    }
    if images.is_empty() {
        g.printer
            .info("no base images yet: run `sudo dlenv base bootstrap`");
    }
    for i in images {
        g.printer.out(format!(
            "{:<50} {}  {}",
            i.tags.join(", "),
            short_id(&i.id),
            human_bytes(i.size.max(0) as u64)
        ));
    }
    Ok(Exit::Ok)
}
