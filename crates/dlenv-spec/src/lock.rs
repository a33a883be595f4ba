//! `dlenv.lock`: the resolved, pinned environment, and when it is stale.
//!
//! The lock is TOML. It records what was resolved (framework build, requirement lines,
//! index URL, Python and where it comes from, CUDA, cuDNN, base image), the inputs it was
//! resolved from (spec hash, a sha256 of every `-r` requirements file, the compat database
//! version, dlenv's version) and, once `dlenv build` has run, the base image digest and the
//! exact installed Python and apt packages. It also carries the image-relevant part of the
//! spec, so the Dockerfile can be rendered from the lock alone.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resolve::{PythonSource, ResolvedSpec};
use crate::spec::Spec;

/// The lock file format this dlenv writes and reads.
pub const LOCK_FORMAT: u32 = 1;

/// A lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Lock file format ([`LOCK_FORMAT`]).
    pub lock_format: u32,
    /// dlenv version that wrote it.
    pub dlenv_version: String,
    /// Compat database version it was resolved with.
    pub compat_db_version: String,
    /// [`Spec::hash`] of the spec it was resolved from.
    pub spec_hash: String,
    /// `sha256:<hex>` of each input file (spec-relative path → hash).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// The image-relevant part of the spec.
    pub env: LockedEnv,
    /// The resolved stack.
    pub stack: LockedStack,
    /// The base image.
    pub base: LockedBase,
    /// What a build installed (filled by `dlenv build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<Installed>,
}

/// The spec's `[env]` build inputs, as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedEnv {
    /// Environment name.
    pub name: String,
    /// Extra apt packages.
    #[serde(default)]
    pub apt: Vec<String>,
    /// Extra pip entries (`-r FILE` included).
    #[serde(default)]
    pub pip: Vec<String>,
    /// Image environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra build steps.
    #[serde(default)]
    pub run: Vec<String>,
}

/// The resolved stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedStack {
    /// `cuda` or `cpu`.
    pub accelerator: String,
    /// `pytorch`, `tensorflow`, `jax`, `none`.
    pub framework: String,
    /// Framework release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Build id (`2.7.0+cu128`).
    pub build: String,
    /// Pinned pip requirement lines for the framework.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// pip index URL for them, when not PyPI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// Python `major.minor`.
    pub python: String,
    /// Where Python comes from.
    pub python_source: PythonSource,
    /// The base's distribution (`ubuntu-24.04`, `debian-12`).
    pub distro: String,
    /// CUDA of the framework build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// cuDNN of the build, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cudnn: Option<String>,
    /// Base image reference.
    pub base_image: String,
    /// nvidia/cuda flavour of the base, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// Minimum driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_floor: Option<String>,
    /// GPU code the framework build carries (`sm_80`, …, `compute_90` for PTX), when known:
    /// checked against the GPUs of the host that runs, imports or pulls the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_archs: Vec<String>,
    /// Resolver caveats.
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl LockedStack {
    /// A GPU stack.
    pub fn is_gpu(&self) -> bool {
        self.accelerator == "cuda"
    }
}

/// The base image reference and, once known, its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedBase {
    /// Reference.
    pub image: String,
    /// `sha256:…` image id or repo digest, filled by `dlenv build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Exact packages in a built image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Python distribution name → version (`pip list` / `importlib.metadata`).
    #[serde(default)]
    pub python: BTreeMap<String, String>,
    /// Debian package → version (`dpkg-query`).
    #[serde(default)]
    pub apt: BTreeMap<String, String>,
}

/// What the current inputs are, to compare a lock against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// [`Spec::hash`] of the spec now.
    pub spec_hash: String,
    /// Input file hashes now (path → `sha256:<hex>`; a missing file is absent).
    pub inputs: BTreeMap<String, String>,
    /// Compat database version in use.
    pub compat_db_version: String,
}

/// Why a lock no longer matches its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Stale {
    /// The spec's `[env]` changed.
    SpecChanged {
        /// Hash in the lock.
        locked: String,
        /// Hash now.
        current: String,
    },
    /// An input file's content changed.
    InputChanged {
        /// Spec-relative path.
        path: String,
    },
    /// The spec now names an input file the lock does not know.
    InputAdded {
        /// Spec-relative path.
        path: String,
    },
    /// A file the lock hashed is no longer an input (or no longer exists).
    InputRemoved {
        /// Spec-relative path.
        path: String,
    },
    /// The compat database changed.
    CompatDbChanged {
        /// Version in the lock.
        locked: String,
        /// Version now.
        current: String,
    },
    /// The lock was written in another lock format.
    LockFormatChanged {
        /// Format in the file.
        found: u32,
        /// Format this dlenv uses.
        expected: u32,
    },
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stale::SpecChanged { locked, current } => write!(
                f,
                "the spec's [env] changed since the lock was written (spec hash {} → {})",
                short(locked),
                short(current)
            ),
            Stale::InputChanged { path } => write!(f, "input file {path} changed"),
            Stale::InputAdded { path } => {
                write!(f, "input file {path} is new (not in the lock)")
            }
            Stale::InputRemoved { path } => {
                write!(
                    f,
                    "input file {path} is locked but no longer used or present"
                )
            }
            Stale::CompatDbChanged { locked, current } => {
                write!(f, "the compat database changed ({locked} → {current})")
            }
            Stale::LockFormatChanged { found, expected } => write!(
                f,
                "the lock is in format {found}, this dlenv writes format {expected}"
            ),
        }
    }
}

fn short(h: &str) -> &str {
    let s = h.strip_prefix("sha256:").unwrap_or(h);
    &s[..s.len().min(12)]
}

/// A lock file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Not a lock (bad TOML, missing fields).
    #[error("{path}: not a valid dlenv lock: {message}")]
    Invalid {
        /// File name for messages.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another lock format.
    #[error("{path}: lock format {found}, this dlenv reads format {expected}")]
    Format {
        /// File name for messages.
        path: String,
        /// Format in the file.
        found: u32,
        /// Format this dlenv reads.
        expected: u32,
    },
}

impl Lock {
    /// Build a lock from a resolution.
    pub fn new(
        spec: &Spec,
        resolved: &ResolvedSpec,
        inputs: BTreeMap<String, String>,
        compat_db_version: &str,
        dlenv_version: &str,
    ) -> Lock {
        let s = &resolved.stack;
        let e = &spec.env;
        Lock {
            lock_format: LOCK_FORMAT,
            dlenv_version: dlenv_version.into(),
            compat_db_version: compat_db_version.into(),
            spec_hash: spec.hash(),
            inputs,
            env: LockedEnv {
                name: e.name.clone(),
                apt: e.apt.clone(),
                pip: crate::spec::pip_with_jupyter(&e.pip, spec.jupyter.enabled),
                env: e.env.clone(),
                run: e.run.clone(),
            },
            stack: LockedStack {
                accelerator: match s.accelerator {
                    dlenv_compat::Accelerator::Cuda => "cuda".into(),
                    dlenv_compat::Accelerator::Cpu => "cpu".into(),
                },
                framework: s.framework.as_str().into(),
                version: s.version.as_ref().map(ToString::to_string),
                build: s.build.clone(),
                requirements: s.requirements.clone(),
                index_url: s.index_url.clone(),
                python: s.python.to_string(),
                python_source: resolved.python_source,
                distro: resolved.distro.id(),
                cuda: s.cuda.as_ref().map(ToString::to_string),
                cudnn: s.cudnn.as_ref().map(ToString::to_string),
                base_image: s.base_image.clone(),
                flavor: resolved.flavor.map(|f| f.to_string()),
                driver_floor: s.driver_floor.as_ref().map(ToString::to_string),
                gpu_archs: s.gpu_archs.clone(),
                warnings: s.warnings.iter().chain(&resolved.notes).cloned().collect(),
            },
            base: LockedBase {
                image: s.base_image.clone(),
                digest: None,
            },
            installed: None,
        }
    }

    /// Parse a lock file. A lock in another format is [`LockError::Format`] (which callers
    /// report as [`Stale::LockFormatChanged`]).
    pub fn from_toml(path: &str, text: &str) -> Result<Lock, LockError> {
        let invalid = |message: String| LockError::Invalid {
            path: path.into(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| invalid(e.message().into()))?;
        let found = table
            .get("lock_format")
            .and_then(toml::Value::as_integer)
            .ok_or_else(|| invalid("no `lock_format`".into()))?;
        if found != i64::from(LOCK_FORMAT) {
            return Err(LockError::Format {
                path: path.into(),
                found: u32::try_from(found).unwrap_or(0),
                expected: LOCK_FORMAT,
            });
        }
        toml::from_str(text).map_err(|e| invalid(e.message().into()))
    }

    /// The lock as TOML, with a header comment.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("a lock serializes to TOML");
        format!(
            "# dlenv.lock: written by `dlenv lock` / `dlenv build`; do not edit.\n\
             # It pins the stack resolved from dlenv.toml; commit it next to the spec.\n\n{body}"
        )
    }

    /// Record the base image digest (by `dlenv build`).
    pub fn set_base_digest(&mut self, digest: impl Into<String>) {
        self.base.digest = Some(digest.into());
    }

    /// Record what a build installed (by `dlenv build`).
    pub fn set_installed(
        &mut self,
        python: BTreeMap<String, String>,
        apt: BTreeMap<String, String>,
    ) {
        self.installed = Some(Installed { python, apt });
    }

    /// `sha256:<hex>` of what the image is built from: the lock without the fields a build
    /// fills in (base digest, installed packages), so the label a build writes matches the
    /// lock before and after the build.
    pub fn lock_hash(&self) -> String {
        let mut l = self.clone();
        l.base.digest = None;
        l.installed = None;
        let text = toml::to_string(&l).expect("a lock serializes to TOML");
        format!("sha256:{}", crate::sha256_hex(text.as_bytes()))
    }

    /// Why this lock no longer matches `current` (empty: fresh).
    pub fn staleness(&self, current: &Current) -> Vec<Stale> {
        let mut out = Vec::new();
        if self.lock_format != LOCK_FORMAT {
            out.push(Stale::LockFormatChanged {
                found: self.lock_format,
                expected: LOCK_FORMAT,
            });
        }
        if self.spec_hash != current.spec_hash {
            out.push(Stale::SpecChanged {
                locked: self.spec_hash.clone(),
                current: current.spec_hash.clone(),
            });
        }
        for (path, hash) in &current.inputs {
            match self.inputs.get(path) {
                None => out.push(Stale::InputAdded { path: path.clone() }),
                Some(h) if h != hash => out.push(Stale::InputChanged { path: path.clone() }),
                Some(_) => {}
            }
        }
        for path in self.inputs.keys() {
            if !current.inputs.contains_key(path) {
                out.push(Stale::InputRemoved { path: path.clone() });
            }
        }
        if self.compat_db_version != current.compat_db_version {
            out.push(Stale::CompatDbChanged {
                locked: self.compat_db_version.clone(),
                current: current.compat_db_version.clone(),
            });
        }
        out
    }
}
