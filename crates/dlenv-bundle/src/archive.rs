//! Plain archives (`docker save` output, possibly compressed) and writing `docker load` input.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use crate::error::BundleError;
use crate::export::{META_LIMIT, sniff_compression};
use crate::tarfmt::{StrictTar, tar_like};
use crate::util::{
    CHUNK, HashThread, HashingReader, Progress, link_escapes, read_full, rel_components,
    sha256_digest,
};
use crate::verify::{parse_manifest, read_small};
use crate::{Compression, Input, LayerEntry, MARKER_MEMBER, Manifest};

/// What `path` is: a dlenv bundle (its first tar member is `dlenv-bundle`), or a plain
/// `docker save` archive (tar, or gzip / zstd by magic bytes).
pub fn detect(path: &Path) -> Result<Input, BundleError> {
    let mut f =
        File::open(path).map_err(|e| BundleError::io(format!("opening {}", path.display()), e))?;
    let mut head = [0u8; 512];
    let n = read_full(&mut f, &mut head)
        .map_err(|e| BundleError::io(format!("reading {}", path.display()), e))?;
    let unknown = |reason: &str| BundleError::UnknownInput {
        path: path.display().to_string(),
        reason: reason.into(),
    };
    match sniff_compression(&head[..n]) {
        Compression::None => {}
        c => return Ok(Input::DockerArchive(c)),
    }
    if n == 0 {
        return Err(unknown("the file is empty"));
    }
    if n < head.len() {
        return Err(unknown("it is too short to be a tar"));
    }
    if head.iter().all(|&b| b == 0) {
        return Err(unknown("it is an empty tar"));
    }
    if !tar_like(&head) {
        return Err(unknown(
            "there is no tar header, gzip or zstd magic at its start",
        ));
    }
    if tar::Header::from_byte_slice(&head).path_bytes().as_ref() == MARKER_MEMBER.as_bytes() {
        Ok(Input::Bundle)
    } else {
        Ok(Input::DockerArchive(Compression::None))
    }
}

fn decompressing(path: &Path, c: Compression) -> Result<Box<dyn Read + Send>, BundleError> {
    let f =
        File::open(path).map_err(|e| BundleError::io(format!("opening {}", path.display()), e))?;
    let r = BufReader::with_capacity(1 << 20, f);
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| BundleError::io(format!("decompressing {}", path.display()), e))?,
        ),
    })
}

/// A decompressing reader of a plain archive, for the engine's `docker load`. The whole
/// archive is first read once through [`check_archive`] (so this costs two reads of the file);
/// an archive with escaping paths or links is refused before any byte is returned.
pub fn open_archive(path: &Path, c: Compression) -> Result<Box<dyn Read + Send>, BundleError> {
    check_archive(decompressing(path, c)?)?;
    decompressing(path, c)
}

/// Reads a whole (decompressed) tar and refuses absolute paths, `..` components, links that
/// point outside the archive root, and devices / FIFOs; also a tar with no entry.
pub fn check_archive(r: impl Read) -> Result<(), BundleError> {
    let rerr = |e| BundleError::io("reading the archive", e);
    let mut ar = tar::Archive::new(r);
    let mut n = 0u64;
    for entry in ar.entries().map_err(rerr)? {
        let entry = entry.map_err(rerr)?;
        n += 1;
        let raw = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw).into_owned();
        let comps = rel_components(&raw).map_err(|r| BundleError::UnsafePath {
            member: member.clone(),
            reason: r.into(),
        })?;
        let et = entry.header().entry_type();
        if et.is_symlink() || et.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default();
            if let Some(reason) = link_escapes(&comps, &target, et.is_symlink()) {
                return Err(BundleError::UnsafeLink {
                    member,
                    target: String::from_utf8_lossy(&target).into_owned(),
                    reason: reason.into(),
                });
            }
        } else if !(et.is_file() || et.is_dir() || et == tar::EntryType::Continuous) {
            return Err(BundleError::UnsupportedEntry {
                member,
                kind: format!("tar entry of type {:?}", et.as_byte() as char),
            });
        }
    }
    if n == 0 {
        return Err(BundleError::Malformed {
            offset: 0,
            reason: "the archive has no entries".into(),
        });
    }
    Ok(())
}

fn copy(r: &mut dyn Read, w: &mut dyn Write, rctx: &str, wctx: &str) -> Result<u64, BundleError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BundleError::io(rctx, e)),
        };
        w.write_all(&buf[..n])
            .map_err(|e| BundleError::io(wctx, e))?;
        total += n as u64;
    }
}

/// `--format docker-archive`: copies a save stream to `out`, compressed or not (gzip levels
/// are clamped to 0–9; zstd uses `threads` workers when > 1).
pub fn write_plain_archive(
    save: impl Read,
    out: impl Write,
    c: Compression,
    level: i32,
    threads: u32,
    progress: &mut dyn FnMut(u64),
) -> Result<(), BundleError> {
    let mut input = Progress {
        inner: save,
        total: 0,
        f: progress,
    };
    let (rctx, wctx) = ("reading the docker save stream", "writing the archive");
    let werr = |e| BundleError::io(wctx, e);
    match c {
        Compression::None => {
            let mut out = out;
            copy(&mut input, &mut out, rctx, wctx)?;
            out.flush().map_err(werr)
        }
        Compression::Gzip => {
            let lvl = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(out, lvl);
            copy(&mut input, &mut enc, rctx, wctx)?;
            enc.finish().map_err(werr)?.flush().map_err(werr)
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, level).map_err(werr)?;
            if threads > 1 {
                enc.multithread(threads).map_err(werr)?;
            }
            enc.include_checksum(true).map_err(werr)?;
            copy(&mut input, &mut enc, rctx, wctx)?;
            enc.finish().map_err(werr)?.flush().map_err(werr)
        }
    }
}

fn header(path: &str, size: u64, dir: bool) -> Result<tar::Header, BundleError> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)
        .map_err(|e| BundleError::io(format!("naming `{path}`"), e))?;
    h.set_size(size);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_mtime(0);
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_cksum();
    Ok(h)
}

fn bare(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

/// A layer streamed into the docker archive whose diff_id is still being hashed.
struct Pending<'m> {
    hasher: HashThread,
    layer: &'m LayerEntry,
    member: String,
}

impl Pending<'_> {
    fn check(self) -> Result<(), BundleError> {
        let (d, n) = self
            .hasher
            .finish()
            .map_err(|e| BundleError::io(format!("hashing layer `{}`", self.member), e))?;
        if n != self.layer.size {
            return Err(BundleError::SizeMismatch {
                member: self.member,
                what: "uncompressed size".into(),
                expected: self.layer.size,
                actual: n,
            });
        }
        if d != self.layer.diff_id {
            return Err(BundleError::DiffIdMismatch {
                member: self.member,
                expected: self.layer.diff_id.clone(),
                actual: d,
            });
        }
        Ok(())
    }
}

/// Checks (and removes) the pending layers whose hash is done; with `all`, waits for the rest.
fn check_pending(pending: &mut Vec<Pending<'_>>, all: bool) -> Result<(), BundleError> {
    let mut i = 0;
    while i < pending.len() {
        if all || pending[i].hasher.is_finished() {
            pending.remove(i).check()?;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decompresses one layer member into `out` as the tar entry `h` (header, data, padding),
/// handing every decompressed buffer to `hasher` after writing it. Checks the size as it goes;
/// the diff_id is checked when `hasher` is done.
fn stream_layer(
    r: &mut dyn Read,
    h: &tar::Header,
    l: &LayerEntry,
    name: &str,
    out: &mut dyn Write,
    hasher: &mut HashThread,
) -> Result<(), BundleError> {
    let corrupt = |e: io::Error| BundleError::CorruptLayer {
        member: name.into(),
        reason: e.to_string(),
    };
    let werr = |e| {
        BundleError::io(
            format!("streaming layer `{name}` into the docker archive"),
            e,
        )
    };
    let mut dec = zstd::stream::read::Decoder::new(r).map_err(corrupt)?;
    out.write_all(h.as_bytes()).map_err(werr)?;
    let mut count = 0u64;
    loop {
        let mut buf = hasher.buffer();
        let n = read_full(&mut dec, &mut buf).map_err(corrupt)?;
        count += n as u64;
        if count > l.size {
            return Err(BundleError::SizeMismatch {
                member: name.into(),
                what: "uncompressed size".into(),
                expected: l.size,
                actual: count,
            });
        }
        out.write_all(&buf[..n]).map_err(werr)?;
        buf.truncate(n);
        hasher.send(buf);
        if n < CHUNK {
            break;
        }
    }
    if count != l.size {
        return Err(BundleError::SizeMismatch {
            member: name.into(),
            what: "uncompressed size".into(),
            expected: l.size,
            actual: count,
        });
    }
    let pad = (512 - count % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize]).map_err(werr)?;
    hasher.close();
    Ok(())
}

/// Writes a legacy docker-archive (`<config hex>.json`, `<diff hex>/layer.tar`, and
/// `manifest.json` last) for `docker load` from a bundle already checked with
/// [`verify`](crate::verify) (pass its manifest). Layers are decompressed on the fly, once,
/// and each one's diff_id and size are checked as it streams (hashing on threads of their
/// own); the config, the marker and the recipe files are hashed again. On any mismatch, or a
/// bundle changed since `verify`, this fails before `manifest.json` is written, so the engine
/// refuses the partial archive. Layers left out by a delta are listed in `manifest.json` but
/// not included.
pub fn write_docker_archive(
    bundle: &Path,
    m: &Manifest,
    out: impl Write,
) -> Result<(), BundleError> {
    let f = File::open(bundle)
        .map_err(|e| BundleError::io(format!("opening {}", bundle.display()), e))?;
    write_docker_archive_reader(BufReader::with_capacity(1 << 20, f), m, out)
}

/// [`write_docker_archive`] from any reader of the bundle (bytes: the fuzzing entry point).
pub fn write_docker_archive_reader(
    bundle: impl Read,
    m: &Manifest,
    out: impl Write,
) -> Result<(), BundleError> {
    let img = m
        .image
        .as_ref()
        .ok_or_else(|| BundleError::InvalidOptions {
            reason: "a recipe bundle holds no image to load".into(),
        })?;
    if !crate::is_sha256_digest(&img.id) {
        return Err(BundleError::ManifestInvalid {
            reason: format!("image id `{}` is not a sha256 digest", img.id),
        });
    }
    let mut t = StrictTar::new(bundle);
    // On an error the tar must stay unfinished: `tar::Builder` would otherwise end it (two
    // zero blocks) when dropped, and the engine would read a well-formed archive.
    let mut b = tar::Builder::new(Gate {
        inner: out,
        open: true,
    });
    let werr = |e| BundleError::io("writing the docker archive", e);
    let res = (|| {
        let mut by_member: HashMap<&str, &LayerEntry> = HashMap::new();
        for l in &m.layers {
            if let Some(name) = &l.member {
                by_member.entry(name.as_str()).or_insert(l);
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut saw_manifest = false;
        let mut pending: Vec<Pending<'_>> = Vec::new();
        while let Some(mem) = t.next_member()? {
            check_pending(&mut pending, false)?;
            let name = mem.name.as_str();
            if name == "manifest.json" {
                let bytes = t.read_data(&mem, |r| read_small(r, META_LIMIT, name))?;
                if parse_manifest(&bytes)?.manifest_sha256 != m.manifest_sha256 {
                    return Err(BundleError::Inconsistent {
                        reason: "the bundle's manifest.json is not the verified one (was the file replaced?)".into(),
                    });
                }
                saw_manifest = true;
                continue;
            }
            let expected = m
                .members
                .get(name)
                .ok_or_else(|| BundleError::ExtraMember {
                    member: name.into(),
                })?;
            if !seen.insert(name.to_string()) {
                return Err(BundleError::DuplicateMember {
                    member: name.into(),
                });
            }
            if let Some(l) = by_member.get(name) {
                // Not hashed again: the decompressed content is what the engine gets, and its
                // diff_id and size are checked.
                if l.compressed_size != Some(mem.size) {
                    return Err(BundleError::SizeMismatch {
                        member: name.into(),
                        what: "compressed size".into(),
                        expected: l.compressed_size.unwrap_or(0),
                        actual: mem.size,
                    });
                }
                let dir = bare(&l.diff_id).to_string();
                b.append(&header(&format!("{dir}/"), 0, true)?, io::empty())
                    .map_err(werr)?;
                let h = header(&format!("{dir}/layer.tar"), l.size, false)?;
                let mut hasher = HashThread::spawn()
                    .map_err(|e| BundleError::io("starting a hashing thread", e))?;
                t.read_data(&mem, |r| {
                    stream_layer(r, &h, l, name, b.get_mut(), &mut hasher)
                })?;
                pending.push(Pending {
                    hasher,
                    layer: l,
                    member: name.to_string(),
                });
                continue;
            }
            let actual = if name == "config.json" {
                let data = t.read_data(&mem, |r| read_small(r, META_LIMIT, name))?;
                let d = sha256_digest(&data);
                if d != img.id {
                    return Err(BundleError::ConfigMismatch {
                        expected: img.id.clone(),
                        actual: d,
                    });
                }
                let h = header(&format!("{}.json", bare(&img.id)), data.len() as u64, false)?;
                b.append(&h, &data[..]).map_err(werr)?;
                d
            } else {
                t.read_data(&mem, |r| {
                    let mut hr = HashingReader::new(r);
                    io::copy(&mut hr, &mut io::sink())
                        .map_err(|e| BundleError::io(format!("reading member `{name}`"), e))?;
                    Ok(hr.finish().0)
                })?
            };
            if &actual != expected {
                return Err(BundleError::DigestMismatch {
                    member: name.into(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if !saw_manifest {
            return Err(BundleError::ManifestMissing {
                detail: String::new(),
            });
        }
        if let Some(name) = m.members.keys().find(|n| !seen.contains(*n)) {
            return Err(BundleError::MissingMember {
                member: name.clone(),
            });
        }
        // Every layer's diff_id, before the one member that makes the archive loadable.
        check_pending(&mut pending, true)?;
        let manifest = serde_json::json!([{
            "Config": format!("{}.json", bare(&img.id)),
            "RepoTags": img.repo_tags,
            "Layers": m.layers.iter().map(|l| format!("{}/layer.tar", bare(&l.diff_id))).collect::<Vec<_>>(),
        }]);
        let bytes = serde_json::to_vec(&manifest).map_err(|e| BundleError::ManifestInvalid {
            reason: e.to_string(),
        })?;
        b.append(
            &header("manifest.json", bytes.len() as u64, false)?,
            &bytes[..],
        )
        .map_err(werr)
    })();
    if let Err(e) = res {
        b.get_mut().open = false;
        return Err(e);
    }
    b.into_inner().map_err(werr)?.inner.flush().map_err(werr)
}

/// A writer that refuses everything once closed (so that nothing more reaches the engine).
struct Gate<W> {
    inner: W,
    open: bool,
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.open {
            return Err(io::Error::other("the docker archive was abandoned"));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        self.inner.flush()
    }
}
