//! The bundle's own tar layer: a seekable writer that patches headers after streaming, and a
//! strict reader that accepts only what the writer produces (ustar regular files, verified
//! header checksums, zero padding, a zero end-of-archive marker with nothing but zeros after).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::error::BundleError;
use crate::util::{ThreadHashingWriter, link_escapes, read_full, rel_components, sha256_digest};

pub(crate) const BLOCK: u64 = 512;
const ZEROS: [u8; 512] = [0; 512];

fn pad_len(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// A ustar header for a regular file.
pub(crate) fn file_header(name: &str, size: u64, mtime: u64) -> Result<tar::Header, BundleError> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).map_err(|e| BundleError::InvalidOptions {
        reason: format!("member name `{name}` cannot be stored in a ustar header: {e}"),
    })?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Whether a 512-byte block is a tar header with a valid checksum, or all zeros (an empty
/// archive). Used to tell layer tars from other blobs.
pub(crate) fn tar_like(block: &[u8]) -> bool {
    if block.len() != BLOCK as usize {
        return false;
    }
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let h = tar::Header::from_byte_slice(block);
    h.cksum().is_ok_and(|c| c == checksum(block))
}

fn checksum(block: &[u8]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum()
}

/// Writes bundle members into the caller's file.
pub(crate) struct BundleWriter<'f> {
    f: &'f mut File,
    mtime: u64,
    /// member name → sha256 of its bytes
    pub members: BTreeMap<String, String>,
}

/// A member whose data has been written but whose header is still a placeholder.
pub(crate) struct Pending {
    header_pos: u64,
    pub digest: String,
    pub size: u64,
}

impl Pending {
    /// Where the member (header, data, padding) ends.
    fn end(&self) -> u64 {
        self.header_pos + BLOCK + self.size + pad_len(self.size)
    }
}

impl<'f> BundleWriter<'f> {
    pub fn new(f: &'f mut File, mtime: u64) -> Self {
        BundleWriter {
            f,
            mtime,
            members: BTreeMap::new(),
        }
    }

    fn werr(e: io::Error) -> BundleError {
        BundleError::io("writing the bundle", e)
    }

    pub fn add_bytes(&mut self, name: &str, data: &[u8]) -> Result<(), BundleError> {
        let h = file_header(name, data.len() as u64, self.mtime)?;
        (|| {
            self.f.write_all(h.as_bytes())?;
            self.f.write_all(data)?;
            self.f
                .write_all(&ZEROS[..pad_len(data.len() as u64) as usize])
        })()
        .map_err(Self::werr)?;
        self.insert(name, sha256_digest(data))
    }

    fn insert(&mut self, name: &str, digest: String) -> Result<(), BundleError> {
        if self.members.insert(name.to_string(), digest).is_some() {
            return Err(BundleError::InvalidOptions {
                reason: format!("member `{name}` would be written twice"),
            });
        }
        Ok(())
    }

    /// Writes a placeholder header, then whatever `fill` writes, then padding. The member is
    /// not named until [`commit`](Self::commit); [`discard`](Self::discard) removes it. What
    /// `fill` writes is hashed on a thread of its own.
    pub fn add_stream<T>(
        &mut self,
        fill: impl FnOnce(&mut ThreadHashingWriter<&mut File>) -> Result<T, BundleError>,
    ) -> Result<(Pending, T), BundleError> {
        let header_pos = self.f.stream_position().map_err(Self::werr)?;
        self.f.write_all(&ZEROS).map_err(Self::werr)?;
        let mut hw = ThreadHashingWriter::new(&mut *self.f)
            .map_err(|e| BundleError::io("starting a hashing thread", e))?;
        let t = fill(&mut hw)?;
        let (digest, size, f) = hw
            .finish()
            .map_err(|e| BundleError::io("hashing a bundle member", e))?;
        f.write_all(&ZEROS[..pad_len(size) as usize])
            .map_err(Self::werr)?;
        Ok((
            Pending {
                header_pos,
                digest,
                size,
            },
            t,
        ))
    }

    pub fn commit(&mut self, p: Pending, name: &str) -> Result<(), BundleError> {
        let h = file_header(name, p.size, self.mtime)?;
        (|| {
            let end = self.f.stream_position()?;
            self.f.seek(SeekFrom::Start(p.header_pos))?;
            self.f.write_all(h.as_bytes())?;
            self.f.seek(SeekFrom::Start(end))?;
            Ok(())
        })()
        .map_err(Self::werr)?;
        self.insert(name, p.digest)
    }

    /// Names the members in `keep` and removes those in `drop` (all written by
    /// [`add_stream`](Self::add_stream), neither committed nor discarded), moving whatever
    /// follows a removed member down over it: the file must be open for reading too when
    /// `drop` is not empty.
    pub fn settle(
        &mut self,
        keep: Vec<(Pending, String)>,
        mut drop: Vec<Pending>,
    ) -> Result<(), BundleError> {
        drop.sort_by_key(|p| p.header_pos);
        let end = self.f.stream_position().map_err(Self::werr)?;
        // (old position from which on data moved, by how much)
        let mut shifts: Vec<(u64, u64)> = Vec::new();
        let mut shift = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        for (i, d) in drop.iter().enumerate() {
            let from = d.end();
            let to = drop.get(i + 1).map_or(end, |n| n.header_pos);
            shift += from - d.header_pos;
            let mut pos = from;
            while pos < to {
                let n = (to - pos).min(buf.len() as u64) as usize;
                (|| {
                    self.f.seek(SeekFrom::Start(pos))?;
                    self.f.read_exact(&mut buf[..n])?;
                    self.f.seek(SeekFrom::Start(pos - shift))?;
                    self.f.write_all(&buf[..n])
                })()
                .map_err(|e| BundleError::io("moving a layer within the bundle", e))?;
                pos += n as u64;
            }
            shifts.push((from, shift));
        }
        (|| {
            self.f.set_len(end - shift)?;
            self.f.seek(SeekFrom::Start(end - shift)).map(|_| ())
        })()
        .map_err(Self::werr)?;
        for (mut p, name) in keep {
            let moved = shifts
                .iter()
                .rev()
                .find(|(from, _)| *from <= p.header_pos)
                .map_or(0, |(_, s)| *s);
            p.header_pos -= moved;
            self.commit(p, &name)?;
        }
        Ok(())
    }

    pub fn discard(&mut self, p: Pending) -> Result<(), BundleError> {
        (|| {
            self.f.set_len(p.header_pos)?;
            self.f.seek(SeekFrom::Start(p.header_pos))?;
            Ok(())
        })()
        .map_err(Self::werr)
    }

    /// Writes the end-of-archive marker and cuts the file there.
    pub fn finish(self) -> Result<(), BundleError> {
        (|| {
            self.f.write_all(&ZEROS)?;
            self.f.write_all(&ZEROS)?;
            let end = self.f.stream_position()?;
            self.f.set_len(end)?;
            self.f.flush()
        })()
        .map_err(Self::werr)
    }
}

/// One member as seen by [`StrictTar`].
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub name: String,
    pub size: u64,
    /// Byte offset of its header.
    pub offset: u64,
}

/// Reads exactly `remaining` bytes of a member; running out early sets `hit_eof`.
pub(crate) struct Exact<'a, R> {
    inner: &'a mut R,
    remaining: u64,
    hit_eof: bool,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.hit_eof = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bundle member ends early",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A strict, streaming reader of bundle tars.
pub(crate) struct StrictTar<R> {
    r: R,
    pos: u64,
}

impl<R: Read> StrictTar<R> {
    pub fn new(r: R) -> Self {
        StrictTar { r, pos: 0 }
    }

    fn rerr(&self, e: io::Error) -> BundleError {
        BundleError::io(format!("reading the bundle at byte {}", self.pos), e)
    }

    /// The next member's header, or `None` at a valid end-of-archive marker.
    pub fn next_member(&mut self) -> Result<Option<Member>, BundleError> {
        let mut block = [0u8; 512];
        let n = read_full(&mut self.r, &mut block).map_err(|e| self.rerr(e))?;
        let offset = self.pos;
        if n < block.len() {
            return Err(BundleError::Truncated {
                what: if n == 0 {
                    "the tar (no end-of-archive marker)".into()
                } else {
                    "a tar header".into()
                },
                offset: offset + n as u64,
            });
        }
        self.pos += BLOCK;
        if block.iter().all(|&b| b == 0) {
            return self.end_marker().map(|()| None);
        }
        let malformed = |reason: String| BundleError::Malformed { offset, reason };
        let h = tar::Header::from_byte_slice(&block);
        let stored = h
            .cksum()
            .map_err(|e| malformed(format!("unreadable header checksum: {e}")))?;
        let actual = checksum(&block);
        if stored != actual {
            return Err(malformed(format!(
                "header checksum mismatch (stored {stored}, computed {actual})"
            )));
        }
        let Some(u) = h.as_ustar() else {
            return Err(malformed("not a POSIX ustar header".into()));
        };
        if &u.version != b"00" {
            return Err(malformed("unexpected ustar version".into()));
        }
        let raw = h.path_bytes().into_owned();
        let name = String::from_utf8(raw.clone())
            .map_err(|_| malformed("member name is not UTF-8".into()))?;
        let comps = rel_components(&raw).map_err(|r| BundleError::UnsafePath {
            member: name.clone(),
            reason: r.into(),
        })?;
        let et = h.entry_type();
        if et.is_symlink() || et.is_hard_link() {
            let target = h.link_name_bytes().unwrap_or_default().into_owned();
            let t = String::from_utf8_lossy(&target).into_owned();
            if let Some(reason) = link_escapes(&comps, &target, et.is_symlink()) {
                return Err(BundleError::UnsafeLink {
                    member: name,
                    target: t,
                    reason: reason.into(),
                });
            }
            return Err(BundleError::UnsupportedEntry {
                member: name,
                kind: if et.is_symlink() {
                    "symbolic link"
                } else {
                    "hard link"
                }
                .into(),
            });
        }
        if !et.is_file() || et.as_byte() != b'0' {
            return Err(BundleError::UnsupportedEntry {
                member: name,
                kind: format!("tar entry of type {:?}", et.as_byte() as char),
            });
        }
        if comps.join(&b'/').as_slice() != raw.as_slice() {
            return Err(BundleError::UnsafePath {
                member: name,
                reason: "path is not in normal form".into(),
            });
        }
        let size = h
            .entry_size()
            .map_err(|e| malformed(format!("unreadable size: {e}")))?;
        Ok(Some(Member { name, size, offset }))
    }

    fn end_marker(&mut self) -> Result<(), BundleError> {
        let offset = self.pos;
        let mut buf = [0u8; 8192];
        let mut seen = 0u64;
        loop {
            let n = match self.r.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.rerr(e)),
            };
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(BundleError::Malformed {
                    offset: offset + seen + i as u64,
                    reason: "data after the end-of-archive marker".into(),
                });
            }
            seen += n as u64;
        }
        if seen < BLOCK {
            return Err(BundleError::Truncated {
                what: "the end-of-archive marker".into(),
                offset: offset + seen,
            });
        }
        self.pos += seen;
        Ok(())
    }

    /// Runs `f` on the member's data, then reads whatever `f` left and the padding. Running out
    /// of input anywhere gives [`BundleError::Truncated`].
    pub fn read_data<T>(
        &mut self,
        m: &Member,
        f: impl FnOnce(&mut Exact<'_, R>) -> Result<T, BundleError>,
    ) -> Result<T, BundleError> {
        let truncated = || BundleError::Truncated {
            what: format!("member `{}`", m.name),
            offset: m.offset,
        };
        let mut ex = Exact {
            inner: &mut self.r,
            remaining: m.size,
            hit_eof: false,
        };
        let res = f(&mut ex);
        if ex.hit_eof {
            return Err(truncated());
        }
        let t = res?;
        let rest = io::copy(&mut ex, &mut io::sink());
        if ex.hit_eof {
            return Err(truncated());
        }
        rest.map_err(|e| BundleError::io(format!("reading member `{}`", m.name), e))?;
        let pad = pad_len(m.size) as usize;
        let mut p = [0u8; 512];
        let n = read_full(&mut self.r, &mut p[..pad])
            .map_err(|e| BundleError::io(format!("reading member `{}`", m.name), e))?;
        if n < pad {
            return Err(truncated());
        }
        if p[..pad].iter().any(|&b| b != 0) {
            return Err(BundleError::Malformed {
                offset: m.offset + BLOCK + m.size,
                reason: format!("non-zero padding after member `{}`", m.name),
            });
        }
        self.pos = m.offset + BLOCK + m.size + pad as u64;
        Ok(t)
    }
}
