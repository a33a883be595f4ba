//! dlenv's bundle format: one file that carries an image (all of it, or only the layers a base
//! image does not have) or only its recipe, verified in full before anything is loaded.
//!
//! This crate does no engine I/O: [`export`] reads a `docker save` stream from any
//! [`Read`](std::io::Read) and writes into a [`File`](std::fs::File) the caller created;
//! [`write_docker_archive`] writes a `docker load` stream into any [`Write`](std::io::Write).
//!
//! # Bundle format, version 1
//!
//! A bundle is a POSIX **ustar** tar file (`tar -tvf` lists it) whose members are, in this
//! order:
//!
//! | member | content |
//! |---|---|
//! | `dlenv-bundle` | the marker `dlenv-bundle 1\n` (always first; [`detect`] looks for it) |
//! | `layers/<hex>.tar.zst` | one per layer included: the uncompressed layer tar (whose `sha256:<hex>` is its diff_id) compressed with zstd (checksummed frames; level and threads from [`ExportOptions`]) |
//! | `config.json` | the image config, byte for byte as in the save stream (its sha256 is the image id) |
//! | `recipe/<path>` | optional files given by the caller (spec, lock, Dockerfile, context files) |
//! | `manifest.json` | the [`Manifest`], always **last** |
//!
//! followed by the two zero blocks that end a tar and nothing but zeros. Only regular files
//! appear (no directories, no links), every header is ustar with a valid checksum, names are
//! relative and normal (no `.`/`..`, no empty components, ≤ 255 bytes), padding is zeros.
//! A recipe-only bundle (`kind: "recipe"`) has no layers and no `config.json`.
//!
//! `manifest.json` is pretty-printed JSON whose first field is `manifest_sha256`: the manifest
//! begins with exactly `{\n  "manifest_sha256": "sha256:` + 64 hex digits, which are the
//! sha256 of the manifest's own bytes with those 64 digits replaced by `0`s. That makes the
//! last member self-checking; every other member is checked against `members` (path →
//! `sha256:<hex>` of the member's bytes, for every member except `manifest.json`, including the
//! marker), and each included layer also against its `compressed_size` and, once
//! decompressed, its diff_id (sha256 of its decompressed content) and uncompressed `size`.
//! `layers` follows the config's `rootfs.diff_ids` exactly (duplicates included; a duplicated
//! layer's entries share one member). A layer left out by a delta has `member: null` and its
//! diff_id is listed in `left_out.diff_ids`. This is integrity, not authenticity: anyone can write a valid bundle.
//!
//! # Writing
//!
//! [`export`] streams: no full-size temporary copy. Each layer is compressed straight into the
//! output file behind a placeholder header (zstd's worker threads compress while this thread
//! reads; the compressed bytes are hashed for the member's sha256 on a thread of their own);
//! then the header is patched (name `layers/<diff_id hex>.tar.zst`, size, checksum). The
//! diff_id is the blob's name for an uncompressed OCI layer blob. Otherwise a full export
//! does not hash the layer: at the end of the stream, the layer's position in the image
//! manifest (`manifest.json`'s `Layers`, or the OCI manifest's `layers`) gives its diff_id
//! from the config's `rootfs.diff_ids` (the engine checked the layer against it while writing
//! the stream, and import checks it again); a second copy of a layer is then removed from the
//! file, moving what follows it down. A delta export, which must know at once, hashes such a
//! layer (on a thread of its own) as it compresses it. A layer whose diff_id is in
//! [`ExportOptions::skip_diff_ids`] (or already written: duplicates) is cut off again
//! (`set_len`) and recorded as left out. In the OCI layout the blob's name already is its
//! diff_id, so a left-out OCI layer is not even compressed; docker-archive streams from
//! Engine ≤ 24 name layers by v1 ids, so there every layer is compressed once and then cut.
//!
//! # The `docker save` stream
//!
//! Both shapes are read, in any member order:
//!
//! * **docker-archive** (Engine ≤ 24): `<id>/layer.tar`, `<id>/json`, `<id>/VERSION`,
//!   `<config hex>.json`, `manifest.json` (`[{Config, RepoTags, Layers}]`), `repositories`.
//!   Every regular `*/layer.tar` is streamed as a layer and identified by hashing it.
//! * **OCI layout** (Engine ≥ 25): `oci-layout`, `index.json`, `blobs/sha256/<hex>`, and the
//!   legacy `manifest.json` (whose `*/layer.tar` entries are symlinks into `blobs/`, skipped).
//!   Every blob is sniffed: if its first 512 bytes (after gzip/zstd decompression, for
//!   engines that keep compressed layers) are a tar header (valid checksum) or a zero block,
//!   it is a layer and is streamed (configs, manifests and indexes are JSON, never tars); any
//!   other blob is kept in memory (≤ 64 MiB; larger ones are dropped) until the end.
//!
//! At the end the config is found (legacy `manifest.json` `Config`, else `index.json` →
//! manifest → `config.digest`), its sha256 is the image id, and its `rootfs.diff_ids` gives
//! the layers in order. A diff_id that no blob provides, a streamed layer that the config does not
//! list, or a stream with several images is an error.
//!
//! # Reading
//!
//! [`verify`] reads the whole bundle once, strictly (see above), and checks everything but the
//! decompressed layers before returning the manifest: it hashes the members as stored (the
//! compressed layers among them) and checks them against the self-checking manifest, which
//! fixes the bytes every layer decompresses to. [`write_docker_archive`] then writes a legacy
//! docker-archive (`<config hex>.json`, `<diff hex>/layer.tar`, `manifest.json` last) for
//! `docker load`, decompressing each layer once, on the fly, and checking its diff_id and
//! size as it streams (the sha256 runs on a thread of its own); the config and the other small
//! members are hashed again. So a manifest that lies consistently (right member digests,
//! wrong diff_id or size), or a file changed after `verify`, makes the stream fail before
//! `manifest.json` is written (and `docker load` refuses an archive without it; the caller
//! also ends the request body with an error). Layers left out by a delta are referenced in
//! `manifest.json` but not included: the classic loader skips layers it already has by chain
//! id, so the load works when the base image is present. (The containerd image store's
//! importer may insist on every blob; the caller should check for the base first.)

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

mod archive;
mod error;
mod export;
mod tarfmt;
mod util;
mod verify;

#[cfg(test)]
mod tests;

pub use archive::{
    check_archive, detect, open_archive, write_docker_archive, write_docker_archive_reader,
    write_plain_archive,
};
pub use error::BundleError;
pub use export::{export, export_recipe};
pub use util::{HashingReader, HashingWriter, hex, is_sha256_digest, sha256_digest};
pub use verify::{verify, verify_reader};

/// The bundle format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The name of the first member of every bundle.
pub const MARKER_MEMBER: &str = "dlenv-bundle";

/// What a bundle carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every layer.
    #[default]
    Full,
    /// Every layer except those of a base image the importer already has.
    Delta,
    /// No image: only the recipe files.
    Recipe,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub kind: Kind,
    /// What the user named (`dlenv/x:latest`), recorded in the manifest.
    pub reference: String,
    /// Delta: diff_ids (`sha256:…`) to leave out — the base image's `RootFS.Layers`. Must be
    /// empty for [`Kind::Full`].
    pub skip_diff_ids: HashSet<String>,
    pub base_reference: Option<String>,
    pub base_id: Option<String>,
    /// `(relative path, content)`, stored as `recipe/<path>`.
    pub recipe_files: Vec<(String, Vec<u8>)>,
    /// Opaque facts about the exporting host.
    pub host: serde_json::Value,
    /// Opaque resolved stack.
    pub stack: Option<serde_json::Value>,
    /// zstd level (1–22; 3 is zstd's default, 19 is small and slow).
    pub level: i32,
    /// zstd worker threads; 0 or 1 compresses on the calling thread.
    pub threads: u32,
    pub dlenv_version: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            kind: Kind::Full,
            reference: String::new(),
            skip_diff_ids: HashSet::new(),
            base_reference: None,
            base_id: None,
            recipe_files: Vec::new(),
            host: serde_json::Value::Null,
            stack: None,
            level: 3,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            dlenv_version: String::new(),
        }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `sha256:<hex>` of this manifest's bytes with these hex digits zeroed (see crate docs).
    pub manifest_sha256: String,
    pub format_version: u32,
    pub dlenv_version: String,
    pub kind: Kind,
    /// RFC 3339, UTC.
    pub created: String,
    /// `None` for a recipe bundle.
    pub image: Option<ImageInfo>,
    /// In the config's `rootfs.diff_ids` order.
    pub layers: Vec<LayerEntry>,
    /// Delta only.
    pub left_out: Option<LeftOut>,
    /// member path → `sha256:<hex>` of its bytes, for every member but `manifest.json`.
    pub members: BTreeMap<String, String>,
    pub host: serde_json::Value,
    pub stack: Option<serde_json::Value>,
    /// Paths relative to `recipe/`, sorted.
    pub recipe_files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub reference: String,
    /// `sha256:<hex>` of `config.json`.
    pub id: String,
    pub repo_tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    pub diff_id: String,
    /// Uncompressed size of the layer tar.
    pub size: u64,
    /// `layers/<hex>.tar.zst`, or `None` when left out.
    pub member: Option<String>,
    pub compressed_size: Option<u64>,
    /// `sha256:<hex>` of the member's bytes.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub base_reference: Option<String>,
    pub base_id: Option<String>,
    /// In layer order, without duplicates.
    pub diff_ids: Vec<String>,
}

impl Manifest {
    /// The included layer members, in layer order, without duplicates.
    pub fn layer_members(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.layers
            .iter()
            .filter_map(|l| l.member.as_deref())
            .filter(|m| seen.insert(*m))
            .collect()
    }
}

/// The member name of a layer: `layers/<hex>.tar.zst`.
pub fn layer_member_name(diff_id: &str) -> String {
    format!(
        "layers/{}.tar.zst",
        diff_id.strip_prefix("sha256:").unwrap_or(diff_id)
    )
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A dlenv bundle (see the crate docs).
    Bundle,
    /// A plain `docker save` archive, possibly compressed.
    DockerArchive(Compression),
}

/// Compression of a plain archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}
