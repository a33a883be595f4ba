//! Base images without a registry: a root filesystem built by `debootstrap` from a
//! distribution mirror, streamed as a tar for the engine to import.
//!
//! [`Recipe`] is the pure part (what to build, its tags and hash). [`Workdir`],
//! [`run_debootstrap`] and [`rootfs_tar_stream`] do the host I/O; the caller glues the
//! stream to the engine. Temporary directories are removed when the [`Workdir`] is
//! dropped, after unmounting anything debootstrap left mounted inside, so an error or a
//! Ctrl-C leaves nothing behind.

mod bootstrap;
mod recipe;

pub use bootstrap::{Workdir, check_preconditions, rootfs_tar_stream, run_debootstrap};
pub use recipe::{BASE_REPO, Distro, Recipe, VARIANTS, debian_arch};

/// Errors of base bootstrapping, each with a hint.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// Bad user input.
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// debootstrap needs root.
    #[error(
        "`dlenv base bootstrap` must run as root: debootstrap creates device nodes and chroots"
    )]
    NotRoot,
    /// A required program is missing.
    #[error("`{tool}` is not installed")]
    MissingTool {
        /// Program name.
        tool: String,
        /// How to install it.
        hint: String,
    },
    /// debootstrap failed.
    #[error("debootstrap failed ({status}); last lines:\n{tail}")]
    Debootstrap {
        /// Exit status.
        status: String,
        /// The end of its output and log.
        tail: String,
    },
    /// Local I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl BaseError {
    /// A suggestion for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Input { hint, .. } | Self::MissingTool { hint, .. } => Some(hint.clone()),
            Self::NotRoot => Some("run it with sudo (`sudo dlenv base bootstrap …`)".into()),
            Self::Debootstrap { .. } => Some(
                "check that the mirror is reachable from this host (`--mirror URL`), and that \
                 the release exists there"
                    .into(),
            ),
            Self::Io { .. } => None,
        }
    }
}
