//! # dlenv-spec
//!
//! The environment spec (`dlenv.toml`, or `[tool.dlenv]` in `pyproject.toml`) and the lock
//! file (`dlenv.lock`). Pure: functions take `(path_for_messages, text)` and return values;
//! reading and writing files is the CLI's job.
//!
//! ```
//! let spec = dlenv_spec::Spec::parse(
//!     "dlenv.toml",
//!     "[env]\nname = \"vision\"\nframework = \"pytorch>=2.4\"\n",
//! )
//! .unwrap();
//! assert_eq!(spec.env.name, "vision");
//! let err = dlenv_spec::Spec::parse("dlenv.toml", "[env]\nname = \"v\"\nflavour = \"auto\"\n")
//!     .unwrap_err();
//! assert_eq!((err.line, err.col), (3, 1));
//! assert!(err.message.contains("did you mean `flavor`?"));
//! ```
//!
//! * [`Spec::parse`] / [`Spec::load`] validate every key and value; problems are
//!   [`SpecError`]s with `file:line:col`, a suggestion and a snippet with a caret.
//! * [`Spec::hash`] is a sha256 of a canonical form of `[env]` (what goes into the image).
//! * [`resolve_spec`] picks the stack, using the base distribution's own Python
//!   ([`distro`]).
//! * [`Lock`] is the lock file model; [`Lock::staleness`] says why a lock no longer matches.

pub mod distro;
pub mod error;
pub mod lock;
pub mod requirements;
pub mod resolve;
pub mod spec;

pub use distro::{DISTROS, Distro, Family, distro_of};
pub use error::{ErrorKind, Source, SpecError};
pub use lock::{
    Current, Installed, LOCK_FORMAT, Lock, LockError, LockedBase, LockedEnv, LockedStack, Stale,
};
pub use requirements::{Imported, import_requirements};
pub use resolve::{PythonSource, ResolveError, ResolvedSpec, resolve_spec};
pub use spec::{
    Choice, EnvSpec, FlavorChoice, Gpus, JupyterSpec, RunSpec, Shm, Spec, requirement_file,
};

/// Lower-case hex sha256 of `bytes` (sha2 0.11 digests have no `{:x}`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `sha256:<hex>` of a file's content (for [`Lock::inputs`]).
pub fn file_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// `s` as a TOML basic string, quoted and escaped (for writing specs).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests;
