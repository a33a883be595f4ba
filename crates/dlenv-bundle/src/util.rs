//! SHA-256 (ring's), hashing adapters and a hashing thread, digest helpers, time formatting and
//! path checks.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::thread;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 from `ring`, whose assembly picks the CPU's SHA extensions or its AVX / SSSE3 code
/// at run time: 1.75x the portable code of `sha2` 0.11 on a CPU without SHA extensions (see
/// BENCHMARKS.md).
pub(crate) struct Sha256(ring::digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// `sha256:<hex>`.
    pub fn finish(self) -> String {
        format!("sha256:{}", hex(self.0.finish().as_ref()))
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// Whether `s` is `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Size of the buffers handed to a [`HashThread`].
pub(crate) const CHUNK: usize = 1 << 20;
/// How many full buffers may wait for a [`HashThread`] (bounds memory, and how far the feeding
/// thread can run ahead: 8 MiB).
const QUEUE: usize = 8;

/// SHA-256 and byte count of a stream, computed on a thread of its own, so that hashing
/// overlaps with whatever the feeding thread does (reading, compressing, writing). Buffers go
/// to the thread and come back for reuse; [`finish`](Self::finish) waits for the result. A
/// `HashThread` dropped without `finish` lets its thread run out and end on its own.
pub(crate) struct HashThread {
    /// Partly filled buffer of [`update`](Self::update).
    pending: Vec<u8>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    spent: mpsc::Receiver<Vec<u8>>,
    handle: Option<thread::JoinHandle<(String, u64)>>,
}

impl HashThread {
    pub fn spawn() -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let (back, spent) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("dlenv-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                let mut n = 0u64;
                for buf in rx {
                    h.update(&buf);
                    n += buf.len() as u64;
                    let _ = back.send(buf);
                }
                (h.finish(), n)
            })?;
        Ok(HashThread {
            pending: Vec::new(),
            tx: Some(tx),
            spent,
            handle: Some(handle),
        })
    }

    /// A buffer of [`CHUNK`] bytes (a returned one when there is one) to fill and [`send`].
    ///
    /// [`send`]: Self::send
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        b.resize(CHUNK, 0);
        b
    }

    /// Hands `buf` (all of it: truncate it first) to the thread; blocks while the queue is full.
    pub fn send(&mut self, buf: Vec<u8>) {
        if !self.pending.is_empty() {
            let p = std::mem::take(&mut self.pending);
            self.push(p);
        }
        self.push(buf);
    }

    fn push(&mut self, buf: Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // A send fails only when the thread is gone (it panicked): `finish` says so.
            let _ = tx.send(buf);
        }
    }

    /// Hashes a copy of `data` (gathered into [`CHUNK`]-sized buffers).
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.pending.capacity() == 0 {
                self.pending = self.buffer();
                self.pending.clear();
            }
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() >= CHUNK {
                let p = std::mem::take(&mut self.pending);
                self.push(p);
            }
        }
    }

    /// Ends the stream: after this, [`is_finished`](Self::is_finished) says whether
    /// [`finish`](Self::finish) would wait.
    pub fn close(&mut self) {
        let p = std::mem::take(&mut self.pending);
        self.push(p);
        self.tx = None;
    }

    /// Whether the thread is done (it never is before [`close`](Self::close)).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Closes the stream and waits: `(sha256:<hex>, bytes hashed)`.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        self.close();
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .ok_or_else(|| io::Error::other("the hashing thread failed"))
    }
}

/// A writer that forwards to `inner` and has a [`HashThread`] hash (a copy of) what it
/// forwarded.
pub(crate) struct ThreadHashingWriter<W> {
    inner: W,
    hasher: HashThread,
}

impl<W> ThreadHashingWriter<W> {
    pub fn new(inner: W) -> io::Result<Self> {
        Ok(ThreadHashingWriter {
            inner,
            hasher: HashThread::spawn()?,
        })
    }
    /// `(sha256:<hex>, bytes written)` and the inner writer.
    pub fn finish(self) -> io::Result<(String, u64, W)> {
        let (d, n) = self.hasher.finish()?;
        Ok((d, n, self.inner))
    }
}

impl<W: Write> Write for ThreadHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A writer that forwards to `inner` and hashes (sha256) and counts what it forwarded.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `(sha256:<hex>, bytes written)` and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `(sha256:<hex>, bytes read)`.
    pub fn finish(self) -> (String, u64) {
        (self.hasher.finish(), self.count)
    }
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Calls `progress(total bytes read so far)` after every read.
pub(crate) struct Progress<'a, R> {
    pub inner: R,
    pub total: u64,
    pub f: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.total += n as u64;
            (self.f)(self.total);
        }
        Ok(n)
    }
}

/// Reads until `buf` is full or EOF; returns how much was read.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads all of `r`, refusing more than `limit` bytes (no allocation by announced size).
pub(crate) fn read_limited(r: &mut dyn Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut v = Vec::new();
    r.take(limit + 1).read_to_end(&mut v)?;
    if v.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(v))
}

/// RFC 3339 UTC time (`2026-01-02T03:04:05Z`) of unix seconds.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The normal components of a relative archive path (`.` and empty components dropped).
/// Refuses empty, absolute and `..`-containing paths.
pub(crate) fn rel_components(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.is_empty() {
        return Err("empty path");
    }
    if name[0] == b'/' {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err("path names the archive root");
    }
    Ok(out)
}

/// Whether a link target stays inside the archive root. A symlink's target is relative to the
/// link's directory; a hard link's target is relative to the root.
pub(crate) fn link_escapes(entry: &[&[u8]], target: &[u8], symlink: bool) -> Option<&'static str> {
    if target.is_empty() {
        return Some("has an empty target");
    }
    if target[0] == b'/' {
        return Some("points to an absolute path, outside the archive");
    }
    let mut stack: Vec<&[u8]> = if symlink && !entry.is_empty() {
        entry[..entry.len() - 1].to_vec()
    } else {
        Vec::new()
    };
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if stack.pop().is_none() {
                    return Some("points outside the archive root");
                }
            }
            c => stack.push(c),
        }
    }
    if !symlink && stack.is_empty() {
        return Some("points to the archive root");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_323_045), "2026-01-02T03:04:05Z");
    }

    #[test]
    fn hex_and_digest() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_digest(&sha256_digest(b"x")));
        assert!(!is_sha256_digest("sha256:ABC"));
    }

    #[test]
    fn hash_thread_matches_sha256_digest() {
        let data: Vec<u8> = (0..3 * CHUNK + 777).map(|i| (i * 31 % 251) as u8).collect();
        let mut h = HashThread::spawn().unwrap();
        // Small copies that cross buffer boundaries, then whole buffers handed over.
        for piece in data[..CHUNK + 5000].chunks(4093) {
            h.update(piece);
        }
        for piece in data[CHUNK + 5000..].chunks(CHUNK) {
            let mut b = h.buffer();
            b.truncate(piece.len());
            b.copy_from_slice(piece);
            h.send(b);
        }
        assert_eq!(
            h.finish().unwrap(),
            (sha256_digest(&data), data.len() as u64)
        );
        let h = HashThread::spawn().unwrap();
        assert_eq!(h.finish().unwrap(), (sha256_digest(b""), 0));
        let mut w = ThreadHashingWriter::new(Vec::new()).unwrap();
        w.write_all(&data).unwrap();
        let (d, n, v) = w.finish().unwrap();
        assert_eq!((d, n), (sha256_digest(&data), data.len() as u64));
        assert_eq!(v, data);
    }

    #[test]
    fn paths_and_links() {
        assert_eq!(rel_components(b"./a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(rel_components(b"/etc/passwd").is_err());
        assert!(rel_components(b"a/../../b").is_err());
        assert!(rel_components(b"./").is_err());
        let e = rel_components(b"abc/layer.tar").unwrap();
        assert!(link_escapes(&e, b"../blobs/sha256/x", true).is_none());
        assert!(link_escapes(&e, b"../../etc/passwd", true).is_some());
        assert!(link_escapes(&e, b"/etc/passwd", true).is_some());
        assert!(link_escapes(&e, b"blobs/x", false).is_none());
        assert!(link_escapes(&e, b"../x", false).is_some());
    }
}
