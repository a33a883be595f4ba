//! Reading and checking bundles.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use serde_json::Value;

use crate::error::BundleError;
use crate::export::{MANIFEST_PREFIX, MARKER_CONTENT, META_LIMIT};

/// The first four bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
use crate::tarfmt::{BLOCK, StrictTar};
use crate::util::{
    HashingReader, Sha256, is_hex64, is_sha256_digest, read_full, read_limited, sha256_digest,
};
use crate::{FORMAT_VERSION, Kind, MARKER_MEMBER, Manifest, layer_member_name};

/// What was found in one member.
struct Fact {
    sha256: String,
    size: u64,
    /// For `layers/…` members: whether the member begins with the zstd frame magic.
    zstd: Option<bool>,
}

/// Full verification of a bundle file before anything is loaded (see the crate docs for the
/// list of checks). Returns its manifest.
///
/// Layers are not decompressed here: their members' sha256 (which the self-checking manifest
/// records) fixes their content, and [`write_docker_archive`](crate::write_docker_archive)
/// checks each layer's diff_id and size while it decompresses it for the engine. The layer
/// members are hashed on as many threads as there are CPUs, each reading its members from the
/// file by offset, while this thread checks the tar structure and everything else.
pub fn verify(path: &Path) -> Result<Manifest, BundleError> {
    let open =
        || File::open(path).map_err(|e| BundleError::io(format!("opening {}", path.display()), e));
    let f = open()?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if !cfg!(unix) || workers < 2 {
        return verify_reader(BufReader::with_capacity(1 << 20, f));
    }
    let shared = open()?;
    let cancel = AtomicBool::new(false);
    let (jobs, rx) = mpsc::channel::<Job>();
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let (done, results) = mpsc::channel();
        for _ in 0..workers {
            let (rx, done, shared, cancel) = (&rx, done.clone(), &shared, &cancel);
            s.spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let r = hash_range(shared, &job, cancel);
                    if done.send((job.name, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done);
        let scanned = scan(BufReader::with_capacity(1 << 20, f), Some(&jobs));
        drop(jobs);
        let mut scanned = match scanned {
            Ok(sc) => sc,
            Err(e) => {
                cancel.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        for (name, r) in results {
            let r = r.inspect_err(|_| cancel.store(true, Ordering::Relaxed))?;
            if let Some(f) = scanned.facts.get_mut(&name) {
                f.sha256 = r;
            }
        }
        finish(scanned)
    })
}

/// [`verify`] over any reader (a file, a pipe, bytes: the fuzzing entry point). Reads the
/// whole input once, on this thread; memory use is bounded (config and manifest at most
/// 64 MiB each).
pub fn verify_reader(r: impl Read) -> Result<Manifest, BundleError> {
    finish(scan(r, None)?)
}

/// A layer member for a hashing thread of [`verify`].
struct Job {
    name: String,
    /// Offset of its data in the file.
    offset: u64,
    size: u64,
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, offset)
}

#[cfg(not(unix))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> io::Result<usize> {
    Err(io::Error::other("not supported"))
}

/// `sha256:<hex>` of a member's data, read by offset.
fn hash_range(f: &File, job: &Job, cancel: &AtomicBool) -> Result<String, BundleError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; (1 << 20).min(job.size.max(1) as usize)];
    let mut done = 0u64;
    while done < job.size {
        if cancel.load(Ordering::Relaxed) {
            return Err(BundleError::io(
                format!("reading member `{}`", job.name),
                io::Error::other("cancelled"),
            ));
        }
        let want = (job.size - done).min(buf.len() as u64) as usize;
        let n = match read_at(f, &mut buf[..want], job.offset + done) {
            Ok(0) => {
                return Err(BundleError::Truncated {
                    what: format!("member `{}`", job.name),
                    offset: job.offset - BLOCK,
                });
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BundleError::io(format!("reading member `{}`", job.name), e));
            }
        };
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finish())
}

/// What one pass over the bundle found.
struct Scanned {
    facts: BTreeMap<String, Fact>,
    config: Option<Vec<u8>>,
    manifest: Option<Vec<u8>>,
    last: Option<String>,
}

/// Reads the bundle once, strictly; hashes every member, except the layer members when
/// `jobs` is given: those are only read past (and their first bytes checked), and sent there.
fn scan(r: impl Read, jobs: Option<&mpsc::Sender<Job>>) -> Result<Scanned, BundleError> {
    let mut t = StrictTar::new(r);
    let mut facts: BTreeMap<String, Fact> = BTreeMap::new();
    let mut config: Option<Vec<u8>> = None;
    let mut manifest: Option<Vec<u8>> = None;
    let mut last = None;
    while let Some(m) = t.next_member()? {
        if manifest.is_some() {
            return Err(BundleError::ManifestMissing {
                detail: format!(" (member `{}` follows manifest.json)", m.name),
            });
        }
        if last.is_none() && m.name != MARKER_MEMBER {
            return Err(BundleError::NotABundle {
                reason: format!("its first member is `{}`, not `{MARKER_MEMBER}`", m.name),
            });
        }
        if facts.contains_key(&m.name) {
            return Err(BundleError::DuplicateMember { member: m.name });
        }
        last = Some(m.name.clone());
        let name = m.name.as_str();
        if name == "manifest.json" {
            manifest = Some(t.read_data(&m, |r| read_small(r, META_LIMIT, name))?);
            continue;
        }
        let fact = if name == MARKER_MEMBER {
            let data = t.read_data(&m, |r| read_small(r, 4096, name))?;
            check_marker(&data)?;
            fact_of(&data)
        } else if name == "config.json" {
            let data = t.read_data(&m, |r| read_small(r, META_LIMIT, name))?;
            let f = fact_of(&data);
            config = Some(data);
            f
        } else if name.starts_with("layers/") {
            let hash = jobs.is_none();
            let fact = t.read_data(&m, |r| layer_fact(r, name, hash))?;
            if let Some(jobs) = jobs {
                let _ = jobs.send(Job {
                    name: name.to_string(),
                    offset: m.offset + BLOCK,
                    size: m.size,
                });
            }
            fact
        } else {
            t.read_data(&m, |r| {
                let mut hr = HashingReader::new(r);
                io::copy(&mut hr, &mut io::sink())
                    .map_err(|e| BundleError::io(format!("reading member `{name}`"), e))?;
                let (sha256, size) = hr.finish();
                Ok(Fact {
                    sha256,
                    size,
                    zstd: None,
                })
            })?
        };
        facts.insert(m.name.clone(), fact);
    }
    Ok(Scanned {
        facts,
        config,
        manifest,
        last,
    })
}

/// The checks on what [`scan`] found.
fn finish(sc: Scanned) -> Result<Manifest, BundleError> {
    let Some(bytes) = sc.manifest else {
        return Err(match sc.last {
            None => BundleError::NotABundle {
                reason: "it has no members".into(),
            },
            Some(l) => BundleError::ManifestMissing {
                detail: format!(" (the last member is `{l}`)"),
            },
        });
    };
    let m = parse_manifest(&bytes)?;
    check(&m, &sc.facts, sc.config.as_deref())?;
    Ok(m)
}

fn fact_of(data: &[u8]) -> Fact {
    Fact {
        sha256: sha256_digest(data),
        size: data.len() as u64,
        zstd: None,
    }
}

pub(crate) fn read_small(r: &mut dyn Read, limit: u64, name: &str) -> Result<Vec<u8>, BundleError> {
    read_limited(r, limit)
        .map_err(|e| BundleError::io(format!("reading member `{name}`"), e))?
        .ok_or_else(|| BundleError::Malformed {
            offset: 0,
            reason: format!("member `{name}` is larger than {limit} bytes"),
        })
}

fn check_marker(data: &[u8]) -> Result<(), BundleError> {
    if data == MARKER_CONTENT {
        return Ok(());
    }
    match data.strip_prefix(b"dlenv-bundle ") {
        Some(v) => Err(BundleError::UnsupportedVersion {
            found: String::from_utf8_lossy(v).trim().to_string(),
        }),
        None => Err(BundleError::NotABundle {
            reason: format!("its `{MARKER_MEMBER}` member has unexpected content"),
        }),
    }
}

/// The compressed member's sha256 (unless `!hash`: then it is left empty) and size, and
/// whether it begins like zstd (no decompression: see [`verify`]).
fn layer_fact(r: &mut dyn Read, name: &str, hash: bool) -> Result<Fact, BundleError> {
    let rerr = |e| BundleError::io(format!("reading member `{name}`"), e);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    let mut head = [0u8; 4];
    loop {
        let n = read_full(r, &mut buf).map_err(rerr)?;
        if size == 0 {
            let k = n.min(4);
            head[..k].copy_from_slice(&buf[..k]);
        }
        if hash {
            h.update(&buf[..n]);
        }
        size += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(Fact {
        sha256: if hash { h.finish() } else { String::new() },
        size,
        zstd: Some(head == ZSTD_MAGIC),
    })
}

/// Parses `manifest.json`: the format version first (so a newer bundle says so), then its
/// self-checksum, then the structure.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let invalid = |reason: String| BundleError::ManifestInvalid { reason };
    let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    match v.get("format_version") {
        None => return Err(invalid("it has no format_version".into())),
        Some(fv) if fv.as_u64() != Some(u64::from(FORMAT_VERSION)) => {
            return Err(BundleError::UnsupportedVersion {
                found: fv.to_string(),
            });
        }
        Some(_) => {}
    }
    let p = MANIFEST_PREFIX.len();
    if bytes.len() < p + 65 || !bytes.starts_with(MANIFEST_PREFIX) || bytes[p + 64] != b'"' {
        return Err(invalid(
            "it does not begin with its manifest_sha256 field".into(),
        ));
    }
    let hex = std::str::from_utf8(&bytes[p..p + 64])
        .ok()
        .filter(|h| is_hex64(h))
        .ok_or_else(|| invalid("its manifest_sha256 is not a sha256 digest".into()))?;
    let expected = format!("sha256:{hex}");
    let mut copy = bytes.to_vec();
    copy[p..p + 64].fill(b'0');
    let actual = sha256_digest(&copy);
    if actual != expected {
        return Err(BundleError::ManifestChecksum { expected, actual });
    }
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if m.manifest_sha256 != expected {
        return Err(invalid("manifest_sha256 appears twice".into()));
    }
    Ok(m)
}

fn is_layer_member(name: &str) -> bool {
    name.strip_prefix("layers/")
        .and_then(|n| n.strip_suffix(".tar.zst"))
        .is_some_and(is_hex64)
}

fn check(
    m: &Manifest,
    facts: &BTreeMap<String, Fact>,
    config: Option<&[u8]>,
) -> Result<(), BundleError> {
    let inc = |reason: String| BundleError::Inconsistent { reason };
    for (name, sha) in &m.members {
        let f = facts.get(name).ok_or_else(|| BundleError::MissingMember {
            member: name.clone(),
        })?;
        if &f.sha256 != sha {
            return Err(BundleError::DigestMismatch {
                member: name.clone(),
                expected: sha.clone(),
                actual: f.sha256.clone(),
            });
        }
    }
    if let Some(name) = facts.keys().find(|n| !m.members.contains_key(*n)) {
        return Err(BundleError::ExtraMember {
            member: name.clone(),
        });
    }
    if let Some(name) = m.members.keys().find(|n| {
        !(n.as_str() == MARKER_MEMBER
            || n.as_str() == "config.json"
            || is_layer_member(n)
            || n.starts_with("recipe/"))
    }) {
        return Err(inc(format!("unknown member `{name}`")));
    }

    match m.kind {
        Kind::Recipe => {
            if m.image.is_some() || !m.layers.is_empty() || m.left_out.is_some() || config.is_some()
            {
                return Err(inc(
                    "a recipe bundle must have no image, layers or config.json".into(),
                ));
            }
        }
        Kind::Full | Kind::Delta => {
            let img = m
                .image
                .as_ref()
                .ok_or_else(|| inc(format!("a {:?} bundle without an image", m.kind)))?;
            let cfg = config.ok_or_else(|| BundleError::MissingMember {
                member: "config.json".into(),
            })?;
            let actual = sha256_digest(cfg);
            if actual != img.id {
                return Err(BundleError::ConfigMismatch {
                    expected: img.id.clone(),
                    actual,
                });
            }
        }
    }
    match (m.kind, &m.left_out) {
        (Kind::Delta, None) => return Err(inc("a delta bundle without left_out".into())),
        (Kind::Full | Kind::Recipe, Some(_)) => {
            return Err(inc(format!("a {:?} bundle with left_out", m.kind)));
        }
        _ => {}
    }

    let mut referenced = HashSet::new();
    for l in &m.layers {
        if !is_sha256_digest(&l.diff_id) {
            return Err(inc(format!(
                "layer diff_id `{}` is not a sha256 digest",
                l.diff_id
            )));
        }
        let Some(name) = &l.member else {
            if !m
                .left_out
                .as_ref()
                .is_some_and(|lo| lo.diff_ids.contains(&l.diff_id))
            {
                return Err(inc(format!(
                    "layer {} has no member but is not in left_out",
                    l.diff_id
                )));
            }
            if l.sha256.is_some() || l.compressed_size.is_some() {
                return Err(inc(format!(
                    "left-out layer {} has a digest or compressed size",
                    l.diff_id
                )));
            }
            continue;
        };
        let f = facts.get(name).ok_or_else(|| BundleError::MissingMember {
            member: name.clone(),
        })?;
        referenced.insert(name.as_str());
        if l.sha256.as_deref() != Some(f.sha256.as_str()) {
            return Err(BundleError::DigestMismatch {
                member: name.clone(),
                expected: l.sha256.clone().unwrap_or_else(|| "(none)".into()),
                actual: f.sha256.clone(),
            });
        }
        if l.compressed_size != Some(f.size) {
            return Err(BundleError::SizeMismatch {
                member: name.clone(),
                what: "compressed size".into(),
                expected: l.compressed_size.unwrap_or(0),
                actual: f.size,
            });
        }
        match f.zstd {
            Some(true) => {}
            Some(false) => {
                return Err(BundleError::CorruptLayer {
                    member: name.clone(),
                    reason: "it does not begin with a zstd frame".into(),
                });
            }
            None => return Err(inc(format!("`{name}` is not a layer member"))),
        }
        if *name != layer_member_name(&l.diff_id) {
            return Err(inc(format!(
                "layer {} is stored as `{name}`, expected `{}`",
                l.diff_id,
                layer_member_name(&l.diff_id)
            )));
        }
    }
    if let Some(name) = facts
        .keys()
        .find(|n| n.starts_with("layers/") && !referenced.contains(n.as_str()))
    {
        return Err(inc(format!("member `{name}` belongs to no layer")));
    }
    if let Some(lo) = &m.left_out {
        let mut seen = HashSet::new();
        for d in &lo.diff_ids {
            if !seen.insert(d) {
                return Err(inc(format!("left_out lists {d} twice")));
            }
            if !m
                .layers
                .iter()
                .any(|l| &l.diff_id == d && l.member.is_none())
            {
                return Err(inc(format!(
                    "left_out lists {d}, which is not a left-out layer"
                )));
            }
        }
    }
    if let Some(cfg) = config {
        let v: Value = serde_json::from_slice(cfg)
            .map_err(|e| inc(format!("config.json is not JSON: {e}")))?;
        let ids: Option<Vec<&str>> = v["rootfs"]["diff_ids"]
            .as_array()
            .and_then(|a| a.iter().map(Value::as_str).collect());
        let ids = ids.ok_or_else(|| inc("config.json has no rootfs.diff_ids".into()))?;
        let listed: Vec<&str> = m.layers.iter().map(|l| l.diff_id.as_str()).collect();
        if ids != listed {
            return Err(inc(
                "its layers do not follow config.json's rootfs.diff_ids".into(),
            ));
        }
    }
    let mut recipe: Vec<&str> = m
        .members
        .keys()
        .filter_map(|n| n.strip_prefix("recipe/"))
        .collect();
    recipe.sort_unstable();
    let mut listed: Vec<&str> = m.recipe_files.iter().map(String::as_str).collect();
    listed.sort_unstable();
    if recipe != listed {
        return Err(inc("recipe_files does not match the recipe/ members".into()));
    }
    Ok(())
}
