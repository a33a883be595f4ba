//! Writing bundles from a `docker save` stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::error::BundleError;
use crate::tarfmt::{BundleWriter, Pending, tar_like};
use crate::util::{
    CHUNK, HashThread, Progress, is_hex64, is_sha256_digest, read_full, read_limited,
    rel_components, rfc3339, sha256_digest,
};
use crate::{
    Compression, ExportOptions, FORMAT_VERSION, ImageInfo, Kind, LayerEntry, LeftOut,
    MARKER_MEMBER, Manifest, layer_member_name,
};

/// Largest config / metadata file (and non-layer blob) accepted.
pub(crate) const META_LIMIT: u64 = 64 << 20;
pub(crate) const MARKER_CONTENT: &[u8] = b"dlenv-bundle 1\n";
pub(crate) const MANIFEST_PREFIX: &[u8] = b"{\n  \"manifest_sha256\": \"sha256:";

/// Export an image: `save` is the engine's `docker save` tar stream of ONE image (docker-archive
/// or OCI layout). Writes the bundle into `out` from its current position (the caller renames
/// the file when this returns `Ok`); `out` must be open for reading too (a layer the stream
/// holds twice is read back to be removed). `progress` gets the number of bytes read from
/// `save` so far.
pub fn export(
    save: impl Read,
    out: &mut File,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, BundleError> {
    validate(opts, false)?;
    let created = now();
    let mut w = BundleWriter::new(out, created);
    w.add_bytes(MARKER_MEMBER, MARKER_CONTENT)?;
    let mut st = SaveState {
        opts,
        layers: HashMap::new(),
        unnamed: Vec::new(),
        meta: HashMap::new(),
        blobs: BTreeMap::new(),
    };
    // Progress is reported per buffer fill (1 MiB), not per small read of the tar reader.
    let mut input = io::BufReader::with_capacity(
        1 << 20,
        Progress {
            inner: save,
            total: 0,
            f: progress,
        },
    );
    {
        let mut ar = tar::Archive::new(&mut input);
        for entry in ar.entries().map_err(save_io)? {
            let mut entry = entry.map_err(save_io)?;
            let raw = entry.path_bytes().into_owned();
            let comps = rel_components(&raw).map_err(|r| BundleError::UnsafePath {
                member: String::from_utf8_lossy(&raw).into_owned(),
                reason: format!("{r} (in the save stream)"),
            })?;
            let name = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
            let et = entry.header().entry_type();
            if !(et.is_file() || et == tar::EntryType::Continuous) {
                continue; // directories; Engine ≥ 25's `<id>/layer.tar` symlinks into blobs/
            }
            let size = entry.header().size().map_err(save_io)?;
            st.entry(&mut w, &name, size, &mut entry)?;
        }
    }
    // The tar reader stops at the first zero block; read the stream to its end.
    io::copy(&mut input, &mut io::sink()).map_err(save_io)?;

    let (config, repo_tags, sources) = st.find_config()?;
    let image_id = sha256_digest(&config);
    let diff_ids = parse_diff_ids(&config)?;
    st.name_layers(&mut w, &diff_ids, sources.as_deref())?;
    let wanted: HashSet<&String> = diff_ids.iter().collect();
    if let Some(d) = diff_ids.iter().find(|d| !st.layers.contains_key(*d)) {
        return Err(BundleError::SaveStream {
            reason: format!(
                "layer {d} (in the image config's rootfs.diff_ids) is not in the save stream"
            ),
        });
    }
    let mut extra: Vec<&String> = st.layers.keys().filter(|d| !wanted.contains(d)).collect();
    extra.sort();
    if let Some(d) = extra.first() {
        return Err(BundleError::SaveStream {
            reason: format!(
                "the save stream has a layer {d} that the image config does not list (more than one image?)"
            ),
        });
    }

    w.add_bytes("config.json", &config)?;
    let recipe_files = write_recipe(&mut w, opts)?;

    let layers: Vec<LayerEntry> = diff_ids
        .iter()
        .map(|d| {
            let r = &st.layers[d];
            LayerEntry {
                diff_id: d.clone(),
                size: r.size,
                member: r.member.as_ref().map(|m| m.name.clone()),
                compressed_size: r.member.as_ref().map(|m| m.compressed_size),
                sha256: r.member.as_ref().map(|m| m.sha256.clone()),
            }
        })
        .collect();
    let left_out = (opts.kind == Kind::Delta).then(|| {
        let mut seen = HashSet::new();
        LeftOut {
            base_reference: opts.base_reference.clone(),
            base_id: opts.base_id.clone(),
            diff_ids: layers
                .iter()
                .filter(|l| l.member.is_none() && seen.insert(l.diff_id.clone()))
                .map(|l| l.diff_id.clone())
                .collect(),
        }
    });
    let mut m = Manifest {
        manifest_sha256: String::new(),
        format_version: FORMAT_VERSION,
        dlenv_version: opts.dlenv_version.clone(),
        kind: opts.kind,
        created: rfc3339(created),
        image: Some(ImageInfo {
            reference: opts.reference.clone(),
            id: image_id,
            repo_tags,
        }),
        layers,
        left_out,
        members: w.members.clone(),
        host: opts.host.clone(),
        stack: opts.stack.clone(),
        recipe_files,
    };
    let bytes = seal(&mut m)?;
    w.add_bytes("manifest.json", &bytes)?;
    w.finish()?;
    Ok(m)
}

/// A recipe-only bundle: the marker, the recipe files and the manifest (`kind: "recipe"`,
/// whatever `opts.kind` says).
pub fn export_recipe(out: &mut File, opts: &ExportOptions) -> Result<Manifest, BundleError> {
    validate(opts, true)?;
    let created = now();
    let mut w = BundleWriter::new(out, created);
    w.add_bytes(MARKER_MEMBER, MARKER_CONTENT)?;
    let recipe_files = write_recipe(&mut w, opts)?;
    let mut m = Manifest {
        manifest_sha256: String::new(),
        format_version: FORMAT_VERSION,
        dlenv_version: opts.dlenv_version.clone(),
        kind: Kind::Recipe,
        created: rfc3339(created),
        image: None,
        layers: Vec::new(),
        left_out: None,
        members: w.members.clone(),
        host: opts.host.clone(),
        stack: opts.stack.clone(),
        recipe_files,
    };
    let bytes = seal(&mut m)?;
    w.add_bytes("manifest.json", &bytes)?;
    w.finish()?;
    Ok(m)
}

/// Serialises `m` with its self-checksum filled in (see the crate docs).
pub(crate) fn seal(m: &mut Manifest) -> Result<Vec<u8>, BundleError> {
    m.manifest_sha256 = format!("sha256:{}", "0".repeat(64));
    let mut bytes = serde_json::to_vec_pretty(m).map_err(|e| BundleError::InvalidOptions {
        reason: format!("cannot serialise the manifest: {e}"),
    })?;
    assert!(bytes.starts_with(MANIFEST_PREFIX));
    let d = sha256_digest(&bytes);
    let at = MANIFEST_PREFIX.len();
    bytes[at..at + 64].copy_from_slice(&d.as_bytes()[7..]);
    m.manifest_sha256 = d;
    Ok(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn save_io(e: io::Error) -> BundleError {
    BundleError::io("reading the docker save stream", e)
}

fn invalid(reason: String) -> BundleError {
    BundleError::InvalidOptions { reason }
}

fn validate(opts: &ExportOptions, recipe_only: bool) -> Result<(), BundleError> {
    if !recipe_only && opts.kind == Kind::Recipe {
        return Err(invalid(
            "a recipe bundle has no image: use export_recipe".into(),
        ));
    }
    if opts.kind == Kind::Full && !opts.skip_diff_ids.is_empty() {
        return Err(invalid(
            "a full export leaves no layer out, but skip_diff_ids is not empty".into(),
        ));
    }
    if let Some(d) = opts.skip_diff_ids.iter().find(|d| !is_sha256_digest(d)) {
        return Err(invalid(format!(
            "skip_diff_ids entry `{d}` is not sha256:<64 hex digits>"
        )));
    }
    if !zstd::compression_level_range().contains(&opts.level) {
        return Err(invalid(format!(
            "zstd level {} is outside {:?}",
            opts.level,
            zstd::compression_level_range()
        )));
    }
    for (p, _) in &opts.recipe_files {
        recipe_member(p)?;
    }
    Ok(())
}

fn recipe_member(p: &str) -> Result<String, BundleError> {
    let comps =
        rel_components(p.as_bytes()).map_err(|r| invalid(format!("recipe file `{p}`: {r}")))?;
    Ok(format!(
        "recipe/{}",
        String::from_utf8_lossy(&comps.join(&b'/'))
    ))
}

fn write_recipe(
    w: &mut BundleWriter<'_>,
    opts: &ExportOptions,
) -> Result<Vec<String>, BundleError> {
    let mut names = Vec::new();
    for (p, data) in &opts.recipe_files {
        let member = recipe_member(p)?;
        w.add_bytes(&member, data)?;
        names.push(member["recipe/".len()..].to_string());
    }
    names.sort();
    Ok(names)
}

fn parse_diff_ids(config: &[u8]) -> Result<Vec<String>, BundleError> {
    let err = |reason: String| BundleError::SaveStream { reason };
    let v: Value = serde_json::from_slice(config)
        .map_err(|e| err(format!("the image config is not JSON: {e}")))?;
    let arr = v["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| err("the image config has no rootfs.diff_ids".into()))?;
    arr.iter()
        .map(|d| match d.as_str() {
            Some(s) if is_sha256_digest(s) => Ok(s.to_string()),
            _ => Err(err(format!(
                "the image config's rootfs.diff_ids has a bad entry {d}"
            ))),
        })
        .collect()
}

enum Class {
    Meta,
    LegacyLayer,
    Blob(String),
    Other,
}

fn classify(name: &str) -> Class {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [f] if f.ends_with(".json") || *f == "repositories" || *f == "oci-layout" => Class::Meta,
        [_, "layer.tar"] => Class::LegacyLayer,
        // Podman's `save` names each layer `<diff_id hex>.tar` at the top level; its
        // manifest.json lists them by that name, like Docker's `<v1 id>/layer.tar`.
        [f] if f.strip_suffix(".tar").is_some_and(is_hex64) => Class::LegacyLayer,
        ["blobs", "sha256", h] if is_hex64(h) => Class::Blob(h.to_string()),
        _ => Class::Other,
    }
}

pub(crate) fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn read_head(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 512];
    let n = read_full(r, &mut head)?;
    head.truncate(n);
    Ok(head)
}

/// A layer tar reader over `head` + `r` (decompressed when gzip or zstd), or `None` when the
/// (decompressed) content does not begin like a tar.
fn open_layer<'a>(head: Vec<u8>, r: &'a mut dyn Read) -> Option<(Compression, Box<dyn Read + 'a>)> {
    let c = sniff_compression(&head);
    if c == Compression::None {
        if !tar_like(&head) {
            return None;
        }
        return Some((c, Box::new(Cursor::new(head).chain(r))));
    }
    let chained = Cursor::new(head).chain(r);
    let mut dec: Box<dyn Read + 'a> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(chained)),
        _ => Box::new(zstd::stream::read::Decoder::new(chained).ok()?),
    };
    let mut h2 = vec![0u8; 512];
    let n = read_full(&mut dec, &mut h2).ok()?;
    h2.truncate(n);
    if !tar_like(&h2) {
        return None;
    }
    Some((c, Box::new(Cursor::new(h2).chain(dec))))
}

/// `blobs/sha256/<hex>` of each `layers[].digest` of an OCI image manifest.
fn oci_layer_sources(m: &Value) -> Option<Vec<String>> {
    m["layers"]
        .as_array()?
        .iter()
        .map(|l| {
            let hex = l["digest"].as_str()?.strip_prefix("sha256:")?;
            is_hex64(hex).then(|| format!("blobs/sha256/{hex}"))
        })
        .collect()
}

/// A save-stream path as [`export`] names entries (normal components joined by `/`).
fn normal_path(p: &str) -> Option<String> {
    let comps = rel_components(p.as_bytes()).ok()?;
    Some(String::from_utf8_lossy(&comps.join(&b'/')).into_owned())
}

/// What [`SaveState::find_config`] finds: config, tags, layer paths.
type FoundConfig = (Vec<u8>, Vec<String>, Option<Vec<String>>);

struct WrittenMember {
    name: String,
    sha256: String,
    compressed_size: u64,
}

struct LayerRec {
    size: u64,
    member: Option<WrittenMember>,
}

/// A compressed layer whose diff_id is not known yet (see [`SaveState::write_layer`]).
struct Unnamed {
    /// Its path in the save stream.
    source: String,
    pending: Pending,
    size: u64,
}

struct SaveState<'o> {
    opts: &'o ExportOptions,
    /// diff_id → what became of it
    layers: HashMap<String, LayerRec>,
    /// Written layers still to be named, in file order.
    unnamed: Vec<Unnamed>,
    /// top-level metadata files by name
    meta: HashMap<String, Vec<u8>>,
    /// non-layer blobs (configs, manifests, indexes) by hex digest
    blobs: BTreeMap<String, Vec<u8>>,
}

impl SaveState<'_> {
    fn entry(
        &mut self,
        w: &mut BundleWriter<'_>,
        name: &str,
        size: u64,
        entry: &mut dyn Read,
    ) -> Result<(), BundleError> {
        let too_big = || BundleError::SaveStream {
            reason: format!("`{name}` is larger than {} MiB", META_LIMIT >> 20),
        };
        match classify(name) {
            Class::Meta => {
                let v = read_limited(entry, META_LIMIT)
                    .map_err(save_io)?
                    .ok_or_else(too_big)?;
                self.meta.insert(name.to_string(), v);
            }
            Class::LegacyLayer => {
                let head = read_head(entry).map_err(save_io)?;
                match open_layer(head, entry) {
                    Some((_, r)) => self.write_layer(w, name, None, r)?,
                    None => {
                        return Err(BundleError::SaveStream {
                            reason: format!("`{name}` is not a tar"),
                        });
                    }
                }
            }
            Class::Blob(hex) => {
                let d = format!("sha256:{hex}");
                if self.layers.contains_key(&d) {
                    return Ok(());
                }
                let head = read_head(entry).map_err(save_io)?;
                if sniff_compression(&head) == Compression::None && !tar_like(&head) {
                    if size <= META_LIMIT {
                        let v = read_limited(&mut Cursor::new(head).chain(entry), META_LIMIT)
                            .map_err(save_io)?
                            .ok_or_else(too_big)?;
                        self.blobs.insert(hex, v);
                    }
                    return Ok(());
                }
                match open_layer(head, entry) {
                    Some((Compression::None, _)) if self.opts.skip_diff_ids.contains(&d) => {
                        // An uncompressed OCI layer blob's name is its diff_id: leave it out
                        // without compressing it.
                        self.layers.insert(d, LayerRec { size, member: None });
                    }
                    // An uncompressed blob's name is its diff_id.
                    Some((Compression::None, r)) => self.write_layer(w, name, Some(d), r)?,
                    Some((_, r)) => self.write_layer(w, name, None, r)?,
                    None => {}
                }
            }
            Class::Other => {}
        }
        Ok(())
    }

    /// Compresses one layer into the bundle, then keeps, or cuts it off again when it is to be
    /// left out or was already written.
    ///
    /// The layer's diff_id names its member. It is known up front for an uncompressed OCI blob
    /// (its name); otherwise a full export finds it at the end, from the layer's position in
    /// the image manifest and the config's `rootfs.diff_ids` ([`name_layers`]), without hashing
    /// the layer, and a delta export, which must decide now whether to keep the layer, hashes
    /// it on a [`HashThread`]. Reading, compressing (zstd's worker threads) and hashing the
    /// compressed output (a thread of [`BundleWriter::add_stream`]) overlap.
    ///
    /// [`name_layers`]: Self::name_layers
    fn write_layer(
        &mut self,
        w: &mut BundleWriter<'_>,
        source: &str,
        known: Option<String>,
        mut reader: Box<dyn Read + '_>,
    ) -> Result<(), BundleError> {
        let opts = self.opts;
        let hash = known.is_none() && !opts.skip_diff_ids.is_empty();
        let (p, (hashed, size)) = w.add_stream(|hw| {
            let zerr = |e| BundleError::io("compressing a layer into the bundle", e);
            let mut enc = zstd::stream::write::Encoder::new(hw, opts.level).map_err(zerr)?;
            if opts.threads > 1 {
                enc.multithread(opts.threads).map_err(zerr)?;
            }
            enc.include_checksum(true).map_err(zerr)?;
            let mut hasher = if hash {
                Some(
                    HashThread::spawn()
                        .map_err(|e| BundleError::io("starting a hashing thread", e))?,
                )
            } else {
                None
            };
            let mut buf = vec![0u8; CHUNK];
            let mut size = 0u64;
            loop {
                if let Some(h) = hasher.as_mut() {
                    buf = h.buffer();
                }
                let n = read_full(&mut reader, &mut buf).map_err(|e| {
                    BundleError::io("streaming a layer from the save stream into the bundle", e)
                })?;
                enc.write_all(&buf[..n]).map_err(zerr)?;
                size += n as u64;
                if let Some(h) = hasher.as_mut() {
                    buf.truncate(n);
                    h.send(std::mem::take(&mut buf));
                }
                if n < CHUNK {
                    break;
                }
            }
            enc.finish().map_err(zerr)?;
            let hashed = match hasher {
                Some(h) => Some(
                    h.finish()
                        .map_err(|e| BundleError::io("hashing a layer", e))?
                        .0,
                ),
                None => None,
            };
            Ok((hashed, size))
        })?;
        let Some(diff_id) = known.or(hashed) else {
            self.unnamed.push(Unnamed {
                source: source.to_string(),
                pending: p,
                size,
            });
            return Ok(());
        };
        let std::collections::hash_map::Entry::Vacant(slot) = self.layers.entry(diff_id) else {
            return w.discard(p); // the same layer twice
        };
        if opts.skip_diff_ids.contains(slot.key()) {
            w.discard(p)?;
            slot.insert(LayerRec { size, member: None });
        } else {
            let name = layer_member_name(slot.key());
            let member = WrittenMember {
                name: name.clone(),
                sha256: p.digest.clone(),
                compressed_size: p.size,
            };
            w.commit(p, &name)?;
            slot.insert(LayerRec {
                size,
                member: Some(member),
            });
        }
        Ok(())
    }

    /// Names the layers written without a diff_id: the one at position `i` of `sources` (the
    /// image manifest's layer list) is `diff_ids[i]`. A second copy of a layer (the same
    /// diff_id under another path) is removed from the file again.
    fn name_layers(
        &mut self,
        w: &mut BundleWriter<'_>,
        diff_ids: &[String],
        sources: Option<&[String]>,
    ) -> Result<(), BundleError> {
        if self.unnamed.is_empty() {
            return Ok(());
        }
        let err = |reason: String| BundleError::SaveStream { reason };
        let sources = sources
            .filter(|s| s.len() == diff_ids.len())
            .ok_or_else(|| {
                err("its image manifest does not list the image's layers in order, so they cannot be told apart".into())
            })?;
        let mut by_source: HashMap<&str, &String> = HashMap::new();
        for (src, d) in sources.iter().zip(diff_ids) {
            if *by_source.entry(src.as_str()).or_insert(d) != d {
                return Err(err(format!("`{src}` is listed as two different layers")));
            }
        }
        let mut keep = Vec::new();
        let mut drop = Vec::new();
        for u in std::mem::take(&mut self.unnamed) {
            let d = by_source.get(u.source.as_str()).ok_or_else(|| {
                err(format!(
                    "the save stream has a layer `{}` that the image manifest does not list (more than one image?)",
                    u.source
                ))
            })?;
            match self.layers.entry((*d).clone()) {
                std::collections::hash_map::Entry::Occupied(_) => drop.push(u.pending),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let name = layer_member_name(slot.key());
                    slot.insert(LayerRec {
                        size: u.size,
                        member: Some(WrittenMember {
                            name: name.clone(),
                            sha256: u.pending.digest.clone(),
                            compressed_size: u.pending.size,
                        }),
                    });
                    keep.push((u.pending, name));
                }
            }
        }
        w.settle(keep, drop)
    }

    fn lookup(&self, path: &str) -> Option<&Vec<u8>> {
        let comps = rel_components(path.as_bytes()).ok()?;
        let name = String::from_utf8_lossy(&comps.join(&b'/')).into_owned();
        match classify(&name) {
            Class::Blob(hex) => self.blobs.get(&hex),
            _ => self.meta.get(&name),
        }
    }

    fn blob(&self, digest: &str) -> Option<&Vec<u8>> {
        self.blobs.get(digest.strip_prefix("sha256:")?)
    }

    /// The image config, its tags, and the paths of its layers in the save stream in the
    /// config's `rootfs.diff_ids` order (`None` where the stream does not say).
    fn find_config(&self) -> Result<FoundConfig, BundleError> {
        let err = |reason: String| BundleError::SaveStream { reason };
        if let Some(m) = self.meta.get("manifest.json") {
            let v: Value = serde_json::from_slice(m)
                .map_err(|e| err(format!("manifest.json is not JSON: {e}")))?;
            let arr = v
                .as_array()
                .ok_or_else(|| err("manifest.json is not a list".into()))?;
            match arr.len() {
                0 => return Err(err("manifest.json lists no image".into())),
                1 => {}
                n => {
                    return Err(err(format!(
                        "the save stream holds {n} images; export one image at a time"
                    )));
                }
            }
            let cfg = arr[0]["Config"]
                .as_str()
                .ok_or_else(|| err("manifest.json has no Config".into()))?;
            let tags = arr[0]["RepoTags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let bytes = self.lookup(cfg).ok_or_else(|| {
                err(format!(
                    "the config `{cfg}` named by manifest.json is not in the save stream"
                ))
            })?;
            // Engine ≥ 25 also writes index.json, whose manifest lists compressed blobs as
            // they are; its legacy `Layers` may not.
            let oci = self.meta.get("index.json").and_then(|ix| {
                let v: Value = serde_json::from_slice(ix).ok()?;
                self.oci_manifest(&v, 0, &mut Vec::new())
            });
            let sources = match oci {
                Some(m) => oci_layer_sources(&m),
                None => arr[0]["Layers"]
                    .as_array()
                    .and_then(|a| a.iter().map(|p| p.as_str().and_then(normal_path)).collect()),
            };
            return Ok((bytes.clone(), tags, sources));
        }
        if let Some(ix) = self.meta.get("index.json") {
            let v: Value = serde_json::from_slice(ix)
                .map_err(|e| err(format!("index.json is not JSON: {e}")))?;
            let n = v["manifests"].as_array().map_or(0, Vec::len);
            if n > 1 {
                return Err(err(format!(
                    "the save stream holds {n} images; export one image at a time"
                )));
            }
            let mut tags = Vec::new();
            let m = self.oci_manifest(&v, 0, &mut tags);
            let cfg = m
                .as_ref()
                .and_then(|m| self.blob(m["config"]["digest"].as_str()?))
                .ok_or_else(|| err("index.json leads to no image config".into()))?;
            return Ok((cfg.clone(), tags, m.as_ref().and_then(oci_layer_sources)));
        }
        Err(err(
            "it has neither manifest.json nor index.json: not a docker save stream".into(),
        ))
    }

    /// The image manifest (the one with a `config`, present in the stream) that an index leads
    /// to.
    fn oci_manifest(&self, v: &Value, depth: u32, tags: &mut Vec<String>) -> Option<Value> {
        if depth > 4 {
            return None;
        }
        if let Some(d) = v["config"]["digest"].as_str() {
            return self.blob(d).map(|_| v.clone());
        }
        for m in v["manifests"].as_array()? {
            if let Some(t) = m["annotations"]["io.containerd.image.name"].as_str()
                && !tags.iter().any(|x| x == t)
            {
                tags.push(t.to_string());
            }
            let Some(child) = m["digest"]
                .as_str()
                .and_then(|d| self.blob(d))
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            else {
                continue;
            };
            if let Some(c) = self.oci_manifest(&child, depth + 1, tags) {
                return Some(c);
            }
        }
        None
    }
}
