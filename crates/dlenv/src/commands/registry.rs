//! `dlenv push` and `dlenv pull`: registries, through the engine, with the credentials the
//! docker CLI would use (docker config, credential helpers) and per-layer progress. A pull
//! is re-checked against this host's driver like an import.

use std::collections::HashMap;

use clap::Args;
use serde::Serialize;

use dlenv_engine::auth::{config_path, credentials_for, registry_host, split_reference};
use dlenv_engine::{RegistryAuth, TransferEvent, TransferOutcome};

use crate::cli::Globals;
use crate::commands::engine::human_bytes;
use crate::commands::run::Requirement;
use crate::ui::{CliError, Exit};

/// Arguments of `push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Environment name or image to push (default: the environment of ./dlenv.toml).
    #[arg(value_name = "ENV|IMAGE")]
    pub what: Option<String>,
    /// Where to push it: `REGISTRY/NAME[:TAG]` (e.g. `registry.example.com/team/env:1`).
    /// The image is tagged with it first. Default: the image's own name (required for an
    /// environment, whose `dlenv/NAME` image name names no registry).
    #[arg(value_name = "DEST")]
    pub dest: Option<String>,
}

/// Arguments of `pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull: `REGISTRY/NAME[:TAG]` or `NAME@sha256:…`.
    #[arg(value_name = "IMAGE")]
    pub reference: String,
    /// Also tag it as environment NAME (`dlenv/NAME:latest`), so `dlenv run NAME` finds it.
    #[arg(long = "as", value_name = "NAME")]
    pub as_env: Option<String>,
    /// Keep going when its CUDA requirement does not fit this host's driver (it will not
    /// run with GPUs here).
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize)]
struct Pushed {
    image: String,
    pushed: String,
    digest: Option<String>,
    layers: Vec<dlenv_engine::LayerOutcome>,
    credentials: Option<String>,
    seconds: f64,
}

#[derive(Serialize)]
struct Pulled {
    image: String,
    digest: Option<String>,
    layers: Vec<dlenv_engine::LayerOutcome>,
    credentials: Option<String>,
    tagged: Option<String>,
    seconds: f64,
}

/// The credentials for the registry `reference` lives in, if the docker config has any.
pub(crate) fn credentials(g: &Globals, reference: &str) -> Result<Option<RegistryAuth>, CliError> {
    let host = registry_host(reference);
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let auth = credentials_for(&path, &host).map_err(|e| {
        CliError::failure(e.to_string())
            .with_hint("fix the docker config, or log in again with `docker login`")
    })?;
    if let Some(a) = &auth {
        g.printer
            .info(format!("using credentials for {host} from {}", a.source));
    }
    Ok(auth)
}

/// Draws per-layer progress: one bar per layer on a terminal, a line per finished layer
/// otherwise (with `-v`).
struct LayerProgress {
    multi: Option<indicatif::MultiProgress>,
    bars: HashMap<String, indicatif::ProgressBar>,
    verbose: bool,
    quiet: bool,
}

impl LayerProgress {
    fn new(g: &Globals) -> Self {
        Self {
            multi: g
                .printer
                .live_progress()
                .then(indicatif::MultiProgress::new),
            bars: HashMap::new(),
            verbose: g.printer.verbose > 0,
            quiet: g.printer.quiet || g.printer.json,
        }
    }

    fn event(&mut self, ev: &TransferEvent) {
        let Some(multi) = &self.multi else {
            if self.verbose && !self.quiet {
                match ev {
                    TransferEvent::Layer {
                        id,
                        status,
                        current: None,
                        ..
                    } => eprintln!("  {id}  {status}"),
                    TransferEvent::Message(m) => eprintln!("{m}"),
                    _ => {}
                }
            }
            return;
        };
        let TransferEvent::Layer {
            id,
            status,
            current,
            total,
        } = ev
        else {
            return;
        };
        let bar = self.bars.entry(id.clone()).or_insert_with(|| {
            let b = multi.add(indicatif::ProgressBar::new(0));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{prefix} {wide_msg} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(id.clone());
            b
        });
        if let Some(t) = total {
            bar.set_length(*t);
        }
        if let Some(c) = current {
            bar.set_position(*c);
        }
        bar.set_message(status.clone());
    }

    fn finish(self) {
        for b in self.bars.values() {
            b.finish_and_clear();
        }
        if let Some(m) = self.multi {
            let _ = m.clear();
        }
    }
}

fn layer_summary(o: &TransferOutcome) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in &o.layers {
        let s = l.status.to_lowercase();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let bytes: u64 = o.layers.iter().filter_map(|l| l.bytes).sum();
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!(
        "{} layer(s): {}{}",
        o.layers.len(),
        parts.join(", "),
        if bytes > 0 {
            format!("; {} transferred", human_bytes(bytes))
        } else {
            String::new()
        }
    )
}

/// `dlenv push`.
pub async fn push(a: PushArgs, g: &Globals) -> Result<Exit, CliError> {
    let started = std::time::Instant::now();
    let (image, _) = crate::commands::share::resolve_what(g, a.what.as_deref()).await?;
    if a.dest.is_none() && image.starts_with("dlenv/") {
        // `dlenv/NAME` would go to Docker Hub's `dlenv` namespace, which is nobody's here.
        return Err(CliError::usage(format!(
            "say where to push {image}: `dlenv push {} REGISTRY/NAME[:TAG]`",
            a.what.as_deref().unwrap_or("")
        ))
        .with_hint("e.g. `dlenv push myenv registry.example.com/team/myenv:1`"));
    }
    let engine = super::connect(g).await?;
    if engine.image_id(&image).await?.is_none() {
        return Err(CliError::failure(format!("no image {image} here"))
            .with_hint("build it first (`dlenv build`), or name an image from `dlenv images`"));
    }
    let dest = a.dest.clone().unwrap_or_else(|| image.clone());
    if dest != image {
        let (repo, tag) = split_reference(&dest);
        if tag.starts_with("sha256:") {
            return Err(CliError::usage(format!(
                "{dest}: push to a tag, not a digest"
            )));
        }
        engine.tag_image(&image, &repo, &tag).await?;
    }
    let auth = credentials(g, &dest)?;
    g.printer.info(format!("pushing {image} to {dest}"));
    let mut progress = LayerProgress::new(g);
    let result = crate::cli::interruptible(async {
        Ok(engine
            .push_image(&dest, auth.as_ref(), |e| progress.event(e))
            .await?)
    })
    .await;
    progress.finish();
    let outcome = result?;
    let out = Pushed {
        image,
        pushed: dest,
        digest: outcome.digest.clone(),
        layers: outcome.layers.clone(),
        credentials: auth.map(|a| a.source),
        seconds: started.elapsed().as_secs_f64(),
    };
    let p = &g.printer;
    if p.json {
        p.json(&out);
    } else {
        p.info(layer_summary(&outcome));
        p.out(format!(
            "pushed {}{} in {:.1} s",
            out.pushed,
            out.digest
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            out.seconds
        ));
    }
    Ok(Exit::Ok)
}

/// `dlenv pull`.
pub async fn pull(a: PullArgs, g: &Globals) -> Result<Exit, CliError> {
    let started = std::time::Instant::now();
    let reference = a.reference.clone();
    if let Some(n) = &a.as_env
        && let Err(why) = dlenv_spec::spec::check_name(n)
    {
        return Err(CliError::usage(format!(
            "--as {n}: not an environment name: {why}"
        )));
    }
    let engine = super::connect(g).await?;
    let auth = credentials(g, &reference)?;
    g.printer.info(format!("pulling {reference}"));
    let mut progress = LayerProgress::new(g);
    let result = crate::cli::interruptible(async {
        Ok(engine
            .pull_image(&reference, auth.as_ref(), |e| progress.event(e))
            .await?)
    })
    .await;
    progress.finish();
    let outcome = result?;
    let p = &g.printer;
    // The same re-check as an import: can this host's driver run it?
    let env = engine.image_env(&reference).await?;
    let labels = engine.image_labels(&reference).await?;
    match crate::commands::run::host_requirement(g, &reference, &env, &labels)? {
        Requirement::NoDriver(floor) => p.warn(format!(
            "this host has no NVIDIA driver: {reference} ({floor}) will run without GPUs only"
        )),
        Requirement::NotMet(e) if a.force => {
            p.warn(format!("{} (keeping it anyway: --force)", e.message))
        }
        Requirement::NotMet(e) => {
            return Err(e.with_hint(format!(
                "the image is in the engine now but will not start with GPUs here: upgrade the \
                 NVIDIA driver, rebuild from its recipe on this host, or pass --force to tag \
                 it anyway (`dlenv rmi {reference}` removes it)"
            )));
        }
        Requirement::None | Requirement::Met => {}
    }
    let tagged = match &a.as_env {
        Some(n) => {
            engine
                .tag_image(&reference, &format!("dlenv/{n}"), "latest")
                .await?;
            Some(format!("dlenv/{n}:latest"))
        }
        None => None,
    };
    let out = Pulled {
        image: reference,
        digest: outcome.digest.clone(),
        layers: outcome.layers.clone(),
        credentials: auth.map(|a| a.source),
        tagged,
        seconds: started.elapsed().as_secs_f64(),
    };
    if p.json {
        p.json(&out);
    } else {
        p.info(layer_summary(&outcome));
        p.out(format!(
            "pulled {}{}{} in {:.1} s",
            out.image,
            out.digest
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            out.tagged
                .as_deref()
                .map(|t| format!(", tagged {t}"))
                .unwrap_or_default(),
            out.seconds
        ));
    }
    Ok(Exit::Ok)
}
