//! The one error type of this crate.

use crate::FORMAT_VERSION;

/// Everything that can go wrong while exporting, verifying or importing. Each variant names the
/// member (or the place) and, for digests, what was expected and what was found; [`hint`]
/// says what to do about it.
///
/// [`hint`]: BundleError::hint
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing a file or stream failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The file ends in the middle of something.
    #[error("bundle is truncated: {what} ends early (at byte {offset})")]
    Truncated { what: String, offset: u64 },
    /// The tar structure itself is broken (bad header checksum, non-zero padding, …).
    #[error("not a well-formed bundle tar at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    /// An entry's name is absolute, contains `..`, or is otherwise unsafe.
    #[error("unsafe path `{member}`: {reason}")]
    UnsafePath { member: String, reason: String },
    /// A hard or symbolic link points outside the archive's root.
    #[error("link `{member}` -> `{target}` {reason}")]
    UnsafeLink {
        member: String,
        target: String,
        reason: String,
    },
    /// An entry of a kind that the archive never legitimately contains (links in a bundle,
    /// devices, …).
    #[error("entry `{member}` is a {kind}, which this archive must not contain")]
    UnsupportedEntry { member: String, kind: String },
    /// The file is a tar, but not a dlenv bundle.
    #[error("not a dlenv bundle: {reason}")]
    NotABundle { reason: String },
    /// `manifest.json` is not the last member (or is absent).
    #[error("bundle has no manifest.json as its last member{detail}")]
    ManifestMissing { detail: String },
    /// `manifest.json` does not parse or lacks a required field.
    #[error("manifest.json is invalid: {reason}")]
    ManifestInvalid { reason: String },
    /// `manifest.json` was changed after it was written.
    #[error(
        "manifest.json was modified: its manifest_sha256 says {expected} but its content hashes to {actual}"
    )]
    ManifestChecksum { expected: String, actual: String },
    /// The bundle was written by a newer (or unknown) format.
    #[error(
        "bundle format version {found} is not supported (this dlenv reads format version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: String },
    /// A member's bytes do not hash to what the manifest records.
    #[error("member `{member}`: sha256 mismatch: manifest says {expected}, content is {actual}")]
    DigestMismatch {
        member: String,
        expected: String,
        actual: String,
    },
    /// A layer decompresses to content whose sha256 is not its diff_id.
    #[error(
        "layer `{member}`: decompressed content is {actual}, but the manifest says diff_id {expected}"
    )]
    DiffIdMismatch {
        member: String,
        expected: String,
        actual: String,
    },
    /// A size recorded in the manifest does not match.
    #[error("member `{member}`: {what} mismatch: manifest says {expected}, found {actual}")]
    SizeMismatch {
        member: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    /// `config.json` does not hash to the image id.
    #[error("config.json hashes to {actual}, but the manifest's image id is {expected}")]
    ConfigMismatch { expected: String, actual: String },
    /// A layer member is not valid zstd.
    #[error("layer `{member}` cannot be decompressed: {reason}")]
    CorruptLayer { member: String, reason: String },
    /// The manifest lists a member that the bundle lacks.
    #[error("member `{member}` is listed in manifest.json but missing from the bundle")]
    MissingMember { member: String },
    /// The bundle has a member that the manifest does not list.
    #[error("member `{member}` is in the bundle but not listed in manifest.json")]
    ExtraMember { member: String },
    /// The same member name appears twice.
    #[error("member `{member}` appears more than once")]
    DuplicateMember { member: String },
    /// The manifest contradicts itself (or the config).
    #[error("manifest.json is inconsistent: {reason}")]
    Inconsistent { reason: String },
    /// The `docker save` stream is not what was expected.
    #[error("docker save stream: {reason}")]
    SaveStream { reason: String },
    /// The caller's options cannot be used.
    #[error("invalid export options: {reason}")]
    InvalidOptions { reason: String },
    /// `detect` could not recognise the file.
    #[error(
        "{path}: neither a dlenv bundle nor a docker archive (tar, tar.gz or tar.zst): {reason}"
    )]
    UnknownInput { path: String, reason: String },
}

impl BundleError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BundleError::Io {
            context: context.into(),
            source,
        }
    }

    /// What the user can do about it, when there is something.
    pub fn hint(&self) -> Option<String> {
        use BundleError::*;
        let h = match self {
            Io { .. } => "check the path, the free disk space and the permissions",
            Truncated { .. } => {
                "the file is incomplete (an interrupted copy or download?): copy it again and compare its size with the original"
            }
            Malformed { .. }
            | DigestMismatch { .. }
            | DiffIdMismatch { .. }
            | SizeMismatch { .. }
            | CorruptLayer { .. }
            | ManifestChecksum { .. }
            | MissingMember { .. }
            | ExtraMember { .. }
            | DuplicateMember { .. }
            | ConfigMismatch { .. } => {
                "the bundle is corrupted or was modified after export: copy it again from the original, or export it again; nothing was loaded"
            }
            UnsafePath { .. } | UnsafeLink { .. } | UnsupportedEntry { .. } => {
                "the archive tries to write outside its directory; do not load it, and find out where it came from"
            }
            NotABundle { .. } => {
                "a plain `docker save` archive is imported as such; a dlenv bundle begins with the member `dlenv-bundle`"
            }
            ManifestMissing { .. } => {
                "the bundle is incomplete (manifest.json is written last): copy or export it again"
            }
            ManifestInvalid { .. } | Inconsistent { .. } => {
                "the bundle was not written by a compatible dlenv, or was modified: export it again"
            }
            UnsupportedVersion { .. } => {
                "the bundle was written by a newer dlenv: upgrade dlenv to import it, or export it again with this dlenv's version"
            }
            SaveStream { .. } => {
                "the engine's `docker save` output was not a single image; export one image at a time"
            }
            InvalidOptions { .. } => return None,
            UnknownInput { .. } => {
                "give a file made by `dlenv export` or by `docker save` (optionally gzip- or zstd-compressed)"
            }
        };
        Some(h.to_string())
    }
}
