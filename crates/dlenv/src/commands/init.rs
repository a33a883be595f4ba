//! `dlenv init`: write a `dlenv.toml`.
//!
//! Every field has a flag. On a terminal, dlenv asks for the name and framework when they
//! are not given; otherwise (scripts, CI) it uses the flags and defaults. The host's GPUs
//! are detected the same way as `dlenv resolve` (flags `--driver`/`--gpu`/… win), and the
//! written spec is resolved before it is written, so `init` never writes a spec that does
//! not resolve on this host.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use dlenv_spec::{Spec, import_requirements};

use crate::cli::Globals;
use crate::commands::compat::load_db;
use crate::commands::lock::spec_error;
use crate::commands::resolve::{HostArgs, host_facts};
use crate::ui::{CliError, Exit};

/// Arguments of `dlenv init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the spec.
    #[arg(long, short = 'f', value_name = "PATH", default_value = "dlenv.toml")]
    pub file: PathBuf,
    /// Overwrite an existing spec.
    #[arg(long)]
    pub force: bool,
    /// Environment name (default: the directory's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Framework with an optional version spec: `pytorch`, `pytorch>=2.4`, `jax`, `none`
    /// (default: pytorch, or the pin found by --from-requirements).
    #[arg(long, value_name = "NAME[SPEC]")]
    pub framework: Option<String>,
    /// Python version, or `auto` for the base image's own Python.
    #[arg(long, value_name = "VER", default_value = "auto")]
    pub python: String,
    /// CUDA version (`12.8`, `cu128`) or `auto`.
    #[arg(long, value_name = "VER", default_value = "auto")]
    pub cuda: String,
    /// Image flavour: auto, cpu, base, runtime or devel.
    #[arg(long, value_name = "FLAVOR", default_value = "auto")]
    pub flavor: String,
    /// Base image, or `auto`.
    #[arg(long, value_name = "IMAGE", default_value = "auto")]
    pub base: String,
    /// An apt package (repeatable).
    #[arg(long = "apt", value_name = "PKG")]
    pub apt: Vec<String>,
    /// A pip requirement or `-r FILE` (repeatable).
    #[arg(long = "pip", value_name = "REQ", allow_hyphen_values = true)]
    pub pip: Vec<String>,
    /// An image environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// An extra build step (repeatable).
    #[arg(long = "run", value_name = "CMD")]
    pub run: Vec<String>,
    /// GPUs for containers: all, none, a count, `"0,1"`, UUIDs (default: all when this host
    /// has a GPU, else none).
    #[arg(long = "gpus", value_name = "GPUS")]
    pub run_gpus: Option<String>,
    /// A port to publish (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<String>,
    /// A bind mount HOST:CONTAINER[:ro] (repeatable; default `.:/workspace`).
    #[arg(long = "mount", value_name = "SRC:DST")]
    pub mounts: Vec<String>,
    /// Shared memory size (`16g`) or `host`.
    #[arg(long, value_name = "SIZE")]
    pub shm: Option<String>,
    /// Enable Jupyter.
    #[arg(long)]
    pub jupyter: bool,
    /// Import a requirements file: framework pins (`torch==2.7.0`) become `framework`, the
    /// rest goes to `pip`.
    #[arg(long, value_name = "FILE")]
    pub from_requirements: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
}

fn q(s: &str) -> String {
    dlenv_spec::toml_string(s)
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

fn dir_name() -> String {
    let raw = std::env::current_dir()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s
        .trim_start_matches(['-', '_', '.'])
        .chars()
        .take(63)
        .collect();
    if dlenv_spec::spec::check_name(&s).is_ok() {
        s
    } else {
        "env".into()
    }
}

fn prompt(question: &str, default: &str) -> Result<String, CliError> {
    eprint!("{question} [{default}]: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failure(format!("cannot read the answer: {e}")))?;
    let t = line.trim();
    Ok(if t.is_empty() {
        default.into()
    } else {
        t.into()
    })
}

/// `dlenv init`.
pub fn run(a: InitArgs, g: &Globals) -> Result<Exit, CliError> {
    let p = &g.printer;
    if a.file.exists() && !a.force {
        return Err(
            CliError::failure(format!("{} already exists", a.file.display()))
                .with_hint("pass --force to overwrite it"),
        );
    }
    let db = load_db(g)?.db;
    let host = host_facts(&db, &a.host)?;
    let has_gpu = !host.facts.gpus.is_empty();

    let mut framework = a.framework.clone();
    let mut cuda = a.cuda.clone();
    let mut pip = Vec::new();
    if let Some(req) = &a.from_requirements {
        let text = std::fs::read_to_string(req)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", req.display())))?;
        let imp = import_requirements(&text);
        if framework.is_none() {
            framework = imp.framework.clone();
        }
        if cuda == "auto"
            && let Some(c) = &imp.cuda
        {
            cuda = c.clone();
        }
        for (line, why) in &imp.skipped {
            p.info(format!(
                "note: left out `{line}` from {}: {why}",
                req.display()
            ));
        }
        pip.extend(imp.pip);
    }
    pip.extend(a.pip.iter().cloned());

    let interactive = std::io::stdin().is_terminal() && !p.json;
    let mut name = a.name.clone().unwrap_or_else(dir_name);
    if interactive && a.name.is_none() {
        name = prompt("environment name", &name)?;
    }
    let mut framework = framework.unwrap_or_else(|| "pytorch".into());
    if interactive && a.framework.is_none() && a.from_requirements.is_none() {
        framework = prompt(
            "framework (pytorch, tensorflow, jax, none; optional version spec)",
            &framework,
        )?;
    }

    let mut env_lines = Vec::new();
    for kv in &a.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CliError::usage(format!("--env {kv:?}: expected KEY=VALUE"))
                .with_hint("write e.g. --env HF_HOME=/workspace/.cache/hf")
        })?;
        env_lines.push(format!("{} = {}", q(k), q(v)));
    }
    let gpus = a
        .run_gpus
        .clone()
        .unwrap_or_else(|| if has_gpu { "all" } else { "none" }.into());
    let gpus_value = if gpus.parse::<u32>().is_ok() {
        gpus.clone()
    } else {
        q(&gpus)
    };
    let mounts = if a.mounts.is_empty() {
        vec![".:/workspace".to_string()]
    } else {
        a.mounts.clone()
    };

    let mut t = String::new();
    t.push_str(
        "# dlenv environment spec. Reference: `dlenv init --help`; check it with `dlenv lock`.\n\n",
    );
    t.push_str("[env]\n");
    t.push_str(&format!("name = {}\n", q(&name)));
    t.push_str(&format!(
        "framework = {}{}\n",
        q(&framework),
        " ".repeat(12usize.saturating_sub(q(&framework).len()))
            + "  # pytorch | tensorflow | jax | none, optional version spec"
    ));
    t.push_str(&format!(
        "python = {}  # `auto`: the base distribution's own python3\n",
        q(&a.python)
    ));
    t.push_str(&format!("cuda = {}  # auto | 12.8 | cu128\n", q(&cuda)));
    t.push_str(&format!(
        "flavor = {}  # auto | cpu | base | runtime | devel\n",
        q(&a.flavor)
    ));
    t.push_str(&format!("base = {}  # auto, or an image\n", q(&a.base)));
    t.push_str(&format!("apt = {}\n", list(&a.apt)));
    t.push_str(&format!("pip = {}\n", list(&pip)));
    t.push_str(&format!("env = {{ {} }}\n", env_lines.join(", ")));
    t.push_str(&format!("run = {}\n", list(&a.run)));
    t.push_str("\n[run]\n");
    t.push_str(&format!(
        "gpus = {gpus_value}  # all | N | \"0,1\" | GPU UUIDs | MIG ids | none\n"
    ));
    t.push_str(&format!("ports = {}\n", list(&a.ports)));
    t.push_str(&format!("mounts = {}\n", list(&mounts)));
    if let Some(shm) = &a.shm {
        t.push_str(&format!("shm = {}  # or \"host\" for --ipc=host\n", q(shm)));
    }
    t.push_str(&format!("\n[jupyter]\nenabled = {}\n", a.jupyter));

    let shown = a.file.display().to_string();
    let spec = Spec::load(&shown, &t, &db).map_err(|e| {
        let mut err = spec_error(e);
        err.message = format!("the flags make an invalid spec:\n{}", err.message);
        err
    })?;
    // Only write a spec that resolves here.
    let resolved = dlenv_spec::resolve_spec(&spec, &db, &host.facts).map_err(|e| match e {
        dlenv_spec::ResolveError::Spec(e) => spec_error(*e),
        dlenv_spec::ResolveError::Conflict { conflict, .. } => CliError::unsatisfiable(format!(
            "no stack satisfies these settings on this host: {conflict}"
        ))
        .with_hint("relax --framework / --python / --cuda, or see `dlenv matrix`"),
    })?;

    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if a.force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(&a.file)
        .map_err(|e| CliError::failure(format!("cannot write {shown}: {e}")))?;
    f.write_all(t.as_bytes())
        .map_err(|e| CliError::failure(format!("cannot write {shown}: {e}")))?;

    if p.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            path: &'a str,
            spec_hash: String,
            stack: &'a dlenv_compat::Stack,
        }
        p.json(&Out {
            path: &shown,
            spec_hash: spec.hash(),
            stack: &resolved.stack,
        });
    } else {
        p.out(format!(
            "wrote {shown}: resolves to {}",
            resolved.stack.summary()
        ));
        if !has_gpu {
            p.info(
                "note: no NVIDIA GPU detected here; the spec stays portable (`cuda = \"auto\"`)",
            );
        }
        p.info("next: `dlenv lock` to pin it, `dlenv dockerfile` to see the image recipe");
    }
    Ok(Exit::Ok)
}
