//! `dlenv lock`, and the spec / lock file plumbing `dockerfile` and `build` share: finding
//! and reading the spec, hashing its input files, resolving it, reading and atomically
//! writing `dlenv.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use dlenv_compat::CompatDb;
use dlenv_spec::{Current, Lock, LockError, ResolveError, Spec, SpecError, Stale, file_hash};

use crate::cli::Globals;
use crate::commands::compat::load_db;
use crate::commands::resolve::{HostArgs, conflict_error, host_facts};
use crate::ui::{CliError, Exit};

/// The lock file's name, next to the spec.
pub const LOCK_FILE: &str = "dlenv.lock";

/// Arguments of `dlenv lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The spec: a dlenv.toml, or a pyproject.toml with [tool.dlenv] (default: dlenv.toml,
    /// then pyproject.toml, in the current directory).
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Do not resolve or write: fail with exit 3 when dlenv.lock is missing or stale.
    #[arg(long)]
    pub locked: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// A spec read from disk.
#[derive(Debug, Clone)]
pub struct SpecFile {
    /// The spec file.
    pub path: PathBuf,
    /// Its directory (input files and the lock are relative to it).
    pub dir: PathBuf,
    /// The parsed spec.
    pub spec: Spec,
}

impl SpecFile {
    /// `dlenv.lock` next to the spec.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
}

/// A spec error as a usage error (exit 2), with its hint.
pub fn spec_error(e: SpecError) -> CliError {
    let hint = e.hint.clone();
    let err = CliError::usage(e.to_string());
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))
}

/// Find, read, parse and check the spec (`--file`, else `dlenv.toml`, else
/// `pyproject.toml` with `[tool.dlenv]`, in the current directory).
pub fn load_spec(file: Option<&Path>, db: &CompatDb) -> Result<SpecFile, CliError> {
    let path = match file {
        Some(f) => {
            if !f.exists() {
                return Err(CliError::usage(format!("no spec at {}", f.display()))
                    .with_hint("run `dlenv init` to write one"));
            }
            f.to_path_buf()
        }
        None => {
            let toml = PathBuf::from("dlenv.toml");
            let py = PathBuf::from("pyproject.toml");
            if toml.exists() {
                toml
            } else if py.exists() {
                py
            } else {
                return Err(CliError::usage(
                    "no dlenv.toml (or pyproject.toml with [tool.dlenv]) in this directory",
                )
                .with_hint("run `dlenv init` to write one, or pass --file PATH"));
            }
        }
    };
    let text = read_text(&path)?;
    let shown = path.display().to_string();
    let spec = if path.file_name().is_some_and(|n| n == "pyproject.toml") {
        Spec::parse_pyproject(&shown, &text)
            .map_err(spec_error)?
            .ok_or_else(|| {
                CliError::usage(format!("{shown} has no [tool.dlenv] table"))
                    .with_hint("add [tool.dlenv.env] with `name = \"…\"`, or use a dlenv.toml")
            })?
    } else {
        Spec::parse(&shown, &text).map_err(spec_error)?
    };
    spec.check_versions(db).map_err(spec_error)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(SpecFile { path, dir, spec })
}

/// `sha256:` hashes of the spec's input files (`-r FILE`), by spec-relative path.
pub fn input_hashes(sf: &SpecFile) -> Result<BTreeMap<String, String>, CliError> {
    let mut out = BTreeMap::new();
    for f in sf.spec.input_files() {
        let p = sf.dir.join(&f);
        let bytes = std::fs::read(&p).map_err(|e| {
            CliError::usage(format!(
                "requirements file {} (named in `pip` of {}) cannot be read: {e}",
                p.display(),
                sf.path.display()
            ))
            .with_hint("create it, or remove the `-r` entry")
        })?;
        out.insert(f, file_hash(&bytes));
    }
    Ok(out)
}

/// The current inputs, to check a lock against.
pub fn current(sf: &SpecFile, db: &CompatDb) -> Result<Current, CliError> {
    Ok(Current {
        spec_hash: sf.spec.hash(),
        inputs: input_hashes(sf)?,
        compat_db_version: db.meta.version.clone(),
    })
}

/// What is on disk at the lock path.
pub enum LockState {
    /// No lock file.
    Missing,
    /// A lock in another format.
    OtherFormat(Stale),
    /// A readable lock.
    Present(Box<Lock>),
}

/// Read `dlenv.lock` next to the spec.
pub fn read_lock(sf: &SpecFile) -> Result<LockState, CliError> {
    let path = sf.lock_path();
    if !path.exists() {
        return Ok(LockState::Missing);
    }
    let text = read_text(&path)?;
    match Lock::from_toml(&path.display().to_string(), &text) {
        Ok(l) => Ok(LockState::Present(Box::new(l))),
        Err(LockError::Format {
            found, expected, ..
        }) => Ok(LockState::OtherFormat(Stale::LockFormatChanged {
            found,
            expected,
        })),
        Err(e @ LockError::Invalid { .. }) => Err(CliError::failure(e.to_string())
            .with_hint("delete it and run `dlenv lock` to write a new one")),
    }
}

/// Resolve the spec on the host described by `host` into a new lock (not written).
pub fn resolve_lock(
    sf: &SpecFile,
    db: &CompatDb,
    host: &HostArgs,
    g: &Globals,
) -> Result<Lock, CliError> {
    let inputs = input_hashes(sf)?;
    let facts = host_facts(db, host)?;
    if facts.facts.gpus.is_empty()
        && !sf.spec.to_request().cpu_only
        && sf.spec.env.cuda.value().is_none()
    {
        g.printer.info(
            "note: no NVIDIA GPU on this host and no --gpu/--gpu-cc given: locking a CPU-only \
             stack (pass --gpu NAME --driver VER to lock for a GPU host)",
        );
    }
    let resolved = dlenv_spec::resolve_spec(&sf.spec, db, &facts.facts).map_err(|e| match e {
        ResolveError::Spec(e) => spec_error(*e),
        ResolveError::Conflict { conflict, tried } => conflict_error(
            format!(
                "no stack satisfies {} on this host (tried {})",
                sf.path.display(),
                tried.join("; ")
            ),
            &conflict,
        ),
    })?;
    for w in &resolved.notes {
        g.printer.warn(w);
    }
    Ok(Lock::new(
        &sf.spec,
        &resolved,
        inputs,
        &db.meta.version,
        env!("CARGO_PKG_VERSION"),
    ))
}

/// Write the lock next to the spec: a temporary file in the same directory, synced, then
/// renamed over `dlenv.lock`, so readers never see a half-written lock.
pub fn write_lock(sf: &SpecFile, lock: &Lock) -> Result<PathBuf, CliError> {
    let path = sf.lock_path();
    let tmp = sf
        .dir
        .join(format!(".{LOCK_FILE}.{}.tmp", std::process::id()));
    let io = |what: &str, p: &Path, e: std::io::Error| {
        CliError::failure(format!("cannot {what} {}: {e}", p.display()))
    };
    let write = || -> Result<(), CliError> {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        std::io::Write::write_all(&mut f, lock.to_toml().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("replace", &path, e))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(path)
}

fn stale_error(sf: &SpecFile, reasons: &[Stale]) -> CliError {
    let mut msg = format!(
        "{} is out of date with {} (--locked forbids updating it):",
        sf.lock_path().display(),
        sf.path.display()
    );
    for r in reasons {
        msg.push_str(&format!("\n  - {r}"));
    }
    CliError::unsatisfiable(msg).with_hint("run `dlenv lock` (without --locked) to update it")
}

/// Check an existing lock against the current inputs under `--locked`: the lock when fresh,
/// exit 3 naming why otherwise.
pub fn require_fresh(sf: &SpecFile, db: &CompatDb) -> Result<Lock, CliError> {
    match read_lock(sf)? {
        LockState::Missing => Err(CliError::unsatisfiable(format!(
            "no {} next to {} (--locked forbids writing one)",
            LOCK_FILE,
            sf.path.display()
        ))
        .with_hint("run `dlenv lock` (without --locked) to write it")),
        LockState::OtherFormat(r) => Err(stale_error(sf, &[r])),
        LockState::Present(l) => {
            let reasons = l.staleness(&current(sf, db)?);
            if reasons.is_empty() {
                Ok(*l)
            } else {
                Err(stale_error(sf, &reasons))
            }
        }
    }
}

fn summary(l: &Lock) -> String {
    let s = &l.stack;
    let fw = if s.framework == "none" {
        "no framework".to_string()
    } else {
        format!("{} {}", s.framework, s.build)
    };
    format!(
        "{fw}, python {} ({}), {}, {}",
        s.python,
        match s.python_source {
            dlenv_spec::PythonSource::Distro => "distro",
            dlenv_spec::PythonSource::Deadsnakes => "deadsnakes",
        },
        s.cuda
            .as_deref()
            .filter(|_| s.is_gpu())
            .map_or("cpu".to_string(), |c| format!("cuda {c}")),
        s.base_image
    )
}

/// `dlenv lock`.
pub fn run(a: LockArgs, g: &Globals) -> Result<Exit, CliError> {
    let db = load_db(g)?.db;
    let sf = load_spec(a.file.as_deref(), &db)?;
    let p = &g.printer;
    if a.locked {
        let lock = require_fresh(&sf, &db)?;
        if p.json {
            p.json(&lock);
        } else {
            p.out(format!(
                "{} is up to date: {}",
                sf.lock_path().display(),
                summary(&lock)
            ));
        }
        return Ok(Exit::Ok);
    }
    let lock = resolve_lock(&sf, &db, &a.host, g)?;
    let path = write_lock(&sf, &lock)?;
    if p.json {
        p.json(&lock);
    } else {
        p.out(format!("wrote {}: {}", path.display(), summary(&lock)));
        for w in &lock.stack.warnings {
            p.warn(w);
        }
    }
    Ok(Exit::Ok)
}
