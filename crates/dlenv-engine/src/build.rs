//! Image builds with BuildKit through the Engine API (`POST /build?version=2`).
//!
//! Why not bollard's `build_image` here: in bollard 0.21.1 a BuildKit build either needs
//! the `buildkit` feature, which runs a gRPC session (tonic, about 60 more crates) that a
//! tar-context build does not need, or fails to parse BuildKit's progress lines (base64
//! protobuf in `aux`) and stops the stream. The engine accepts a tar context with no
//! session (verified on Engine 20.10), so this module sends the request itself over the
//! same socket and decodes the few progress fields it needs: step names, cache hits, step
//! output and errors. Everything else still goes through bollard.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::{Engine, EngineError};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// The build context as an uncompressed tar; it contains the Dockerfile.
    pub context: Bytes,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    /// Tags (`repo:tag`); the first is the main one.
    pub tags: Vec<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// Labels added to the image.
    pub labels: BTreeMap<String, String>,
    /// Ignore the build cache.
    pub no_cache: bool,
}

/// Progress of a build, as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BuildEvent {
    /// A step started (or was found in the cache).
    Step {
        /// BuildKit's name for it, e.g. `[3/7] RUN apt-get …`.
        name: String,
        /// Taken from the cache.
        cached: bool,
    },
    /// A line a step printed.
    Log {
        /// The step.
        step: String,
        /// The line.
        line: String,
    },
}

/// A finished build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    /// The image id.
    pub image_id: String,
    /// Steps in the build (BuildKit vertices with a name).
    pub steps: usize,
    /// Steps taken from the cache.
    pub cached_steps: usize,
}

/// A build that failed: which step, why, and the end of its output.
#[derive(Debug, Clone, Serialize)]
pub struct BuildFailure {
    /// The failing step, when BuildKit named it.
    pub step: Option<String>,
    /// The engine's error message.
    pub message: String,
    /// The last lines the failing step printed.
    pub tail: Vec<String>,
}

const TAIL_LINES: usize = 25;

#[derive(Default)]
struct Progress {
    names: HashMap<String, String>,
    announced: HashMap<String, bool>,
    tails: HashMap<String, VecDeque<String>>,
    partial: HashMap<String, String>,
    failed: Option<String>,
    cached: std::collections::HashSet<String>,
}

impl Progress {
    fn status(&mut self, s: StatusResponse, on_event: &mut impl FnMut(BuildEvent)) {
        for v in s.vertexes {
            if !v.name.is_empty() {
                self.names.insert(v.digest.clone(), v.name.clone());
            }
            // A cache hit may be reported in a later update than the step's start.
            if v.cached && !v.name.is_empty() {
                self.cached.insert(v.digest.clone());
            }
            let started = v.started || v.cached;
            if started && !v.name.is_empty() && !self.announced.contains_key(&v.digest) {
                self.announced.insert(v.digest.clone(), v.cached);
                on_event(BuildEvent::Step {
                    name: v.name.clone(),
                    cached: v.cached,
                });
            }
            if !v.error.is_empty() && self.failed.is_none() {
                self.failed = Some(v.digest.clone());
            }
        }
        for l in s.logs {
            let step = self.names.get(&l.vertex).cloned().unwrap_or_default();
            let buf = self.partial.entry(l.vertex.clone()).or_default();
            buf.push_str(&String::from_utf8_lossy(&l.msg));
            while let Some(i) = buf.find(['\n', '\r']) {
                let line: String = buf.drain(..=i).collect();
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    continue;
                }
                let tail = self.tails.entry(l.vertex.clone()).or_default();
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                on_event(BuildEvent::Log {
                    step: step.clone(),
                    line,
                });
            }
        }
    }

    fn failure(&self, message: String) -> BuildFailure {
        let step = self
            .failed
            .as_ref()
            .and_then(|d| self.names.get(d))
            .cloned();
        let tail = self
            .failed
            .as_ref()
            .and_then(|d| self.tails.get(d))
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        BuildFailure {
            step,
            message,
            tail,
        }
    }
}

impl Engine {
    /// Build an image with BuildKit. `on_event` sees steps and their output as they
    /// happen. On failure the error names the step and carries the end of its output.
    pub async fn build_image(
        &self,
        spec: &BuildSpec,
        mut on_event: impl FnMut(BuildEvent),
    ) -> Result<BuildOutcome, EngineError> {
        let what = "build image".to_string();
        let local = |message: String| EngineError::Local {
            what: what.clone(),
            message,
        };
        let mut query: Vec<(String, String)> = vec![
            ("version".into(), "2".into()),
            ("dockerfile".into(), spec.dockerfile.clone()),
            ("rm".into(), "1".into()),
            ("forcerm".into(), "1".into()),
        ];
        for t in &spec.tags {
            query.push(("t".into(), t.clone()));
        }
        if spec.no_cache {
            query.push(("nocache".into(), "1".into()));
        }
        if !spec.build_args.is_empty() {
            query.push((
                "buildargs".into(),
                serde_json::to_string(&spec.build_args).unwrap_or_default(),
            ));
        }
        if !spec.labels.is_empty() {
            query.push((
                "labels".into(),
                serde_json::to_string(&spec.labels).unwrap_or_default(),
            ));
        }
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let path = format!("/v{}/build?{}", self.api_version, qs.join("&"));

        let response = self
            .raw_post(&path, spec.context.clone())
            .await
            .map_err(local)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut progress = Progress::default();
        let mut pending = Vec::<u8>::new();
        let mut image_id = None;
        let mut error = None;
        let mut steps = 0usize;
        let mut classic = ClassicStream::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| local(format!("reading the build stream: {e}")))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                    continue;
                };
                if !status.is_success() || v.get("error").is_some() {
                    let msg = v
                        .pointer("/errorDetail/message")
                        .or_else(|| v.get("error"))
                        .or_else(|| v.get("message"))
                        .and_then(|m| m.as_str())
                        .unwrap_or("the build failed")
                        .to_string();
                    error.get_or_insert(msg);
                    continue;
                }
                match (v.get("id").and_then(|i| i.as_str()), v.get("aux")) {
                    (Some("moby.buildkit.trace"), Some(aux)) => {
                        let Some(b64) = aux.as_str() else { continue };
                        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                            continue;
                        };
                        if let Some(s) = StatusResponse::decode(&raw) {
                            steps += s
                                .vertexes
                                .iter()
                                .filter(|v| {
                                    !v.name.is_empty() && !progress.names.contains_key(&v.digest)
                                })
                                .count();
                            progress.status(s, &mut on_event);
                        }
                    }
                    // BuildKit says `{"id":"moby.image.id","aux":{"ID":…}}`; a classic builder
                    // (Podman's Buildah behind the compat API) says `{"aux":{"ID":…}}`.
                    (Some("moby.image.id") | None, Some(aux)) if aux.get("ID").is_some() => {
                        image_id = aux.get("ID").and_then(|i| i.as_str()).map(String::from);
                    }
                    // A classic builder's step output.
                    (None, None) => {
                        if let Some(text) = v.get("stream").and_then(|t| t.as_str()) {
                            classic.lines(text, &mut on_event);
                        }
                    }
                    _ => {}
                }
            }
        }
        if !status.is_success() && error.is_none() {
            let text = String::from_utf8_lossy(&pending).trim().to_string();
            error = Some(format!("engine answered {status}: {text}"));
        }
        if let Some(message) = error {
            let failure = if progress.names.is_empty() && classic.steps > 0 {
                classic.failure(message)
            } else {
                progress.failure(message)
            };
            return Err(EngineError::Build(Box::new(failure)));
        }
        let image_id =
            image_id.ok_or_else(|| local("the engine did not report an image id".into()))?;
        Ok(BuildOutcome {
            image_id,
            steps: steps + classic.steps,
            cached_steps: progress.cached.len() + classic.cached,
        })
    }

    /// POST a body to the engine and return the streaming response (unix or tcp).
    async fn raw_post(
        &self,
        path: &str,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let req = http::Request::post(path)
            .header(http::header::HOST, "docker")
            .header(http::header::CONTENT_TYPE, "application/x-tar")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        self.raw_send(req).await
    }

    /// Send a request over a fresh connection to the engine and return the streaming
    /// response (unix or tcp). Used where bollard drops fields dlenv needs.
    pub(crate) async fn raw_send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        macro_rules! send {
            ($stream:expr) => {{
                let io = hyper_util::rt::TokioIo::new($stream);
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                sender.send_request(req).await.map_err(|e| e.to_string())
            }};
        }
        if let Some(p) = self.endpoint.unix_path() {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?;
            send!(s)
        } else {
            let hostport = self
                .endpoint
                .uri
                .split("://")
                .nth(1)
                .map(|h| h.trim_end_matches('/'))
                .ok_or_else(|| format!("cannot build over {}", self.endpoint.uri))?;
            let s = tokio::net::TcpStream::connect(hostport)
                .await
                .map_err(|e| format!("{hostport}: {e}"))?;
            send!(s)
        }
    }
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The slice of BuildKit's `StatusResponse` protobuf (moby/buildkit api/services/control/
// control.proto) that progress needs: vertexes (1) and logs (3).

#[derive(Debug, Default)]
struct StatusResponse {
    vertexes: Vec<Vertex>,
    logs: Vec<VertexLog>,
}

#[derive(Debug, Default)]
struct Vertex {
    digest: String,
    name: String,
    cached: bool,
    started: bool,
    error: String,
}

#[derive(Debug, Default)]
struct VertexLog {
    vertex: String,
    msg: Vec<u8>,
}

/// Progress from a classic builder: `STEP n/m: …` (Buildah) / `Step n/m : …` (Docker)
/// lines start steps, ` ---> Using cache` (Docker) / `--> Using cache ID` (Buildah) marks
/// the current one as cached, everything else is output of the current step.
#[derive(Default)]
struct ClassicStream {
    step: String,
    partial: String,
    /// Steps seen.
    steps: usize,
    /// Steps taken from the cache.
    cached: usize,
    /// Whether the current step was already counted as cached.
    step_cached: bool,
    /// The current step's last lines.
    tail: VecDeque<String>,
}

impl ClassicStream {
    fn lines(&mut self, text: &str, on_event: &mut impl FnMut(BuildEvent)) {
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            let trimmed = line.trim_start();
            if lower.starts_with("step ") {
                self.step = line.to_string();
                self.steps += 1;
                self.step_cached = false;
                self.tail.clear();
                on_event(BuildEvent::Step {
                    name: self.step.clone(),
                    cached: false,
                });
            } else if trimmed.starts_with("---> Using cache")
                || trimmed.starts_with("--> Using cache")
            {
                if !self.step_cached && self.steps > 0 {
                    self.step_cached = true;
                    self.cached += 1;
                }
                on_event(BuildEvent::Step {
                    name: self.step.clone(),
                    cached: true,
                });
            } else {
                if self.tail.len() == TAIL_LINES {
                    self.tail.pop_front();
                }
                self.tail.push_back(line.to_string());
                on_event(BuildEvent::Log {
                    step: self.step.clone(),
                    line: line.to_string(),
                });
            }
        }
    }

    /// A failure, named after the step that was running (classic builders stop at the
    /// failing step).
    fn failure(&self, message: String) -> BuildFailure {
        BuildFailure {
            step: (!self.step.is_empty()).then(|| self.step.clone()),
            message,
            tail: self.tail.iter().cloned().collect(),
        }
    }
}

/// Protobuf wire format: one field at a time.
struct Fields<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let parsed = (|| {
            let key = varint(&mut self.buf)?;
            let value = match key & 7 {
                0 => Value::Varint(varint(&mut self.buf)?),
                1 => {
                    self.buf = self.buf.get(8..)?;
                    Value::Other
                }
                2 => {
                    let n = usize::try_from(varint(&mut self.buf)?).ok()?;
                    let (v, rest) = (self.buf.get(..n)?, self.buf.get(n..)?);
                    self.buf = rest;
                    Value::Bytes(v)
                }
                5 => {
                    self.buf = self.buf.get(4..)?;
                    Value::Other
                }
                _ => return None,
            };
            Some((key >> 3, value))
        })();
        if parsed.is_none() {
            self.buf = &[];
        }
        Some(parsed)
    }
}

fn fields(buf: &[u8]) -> impl Iterator<Item = Option<(u64, Value<'_>)>> {
    Fields { buf }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl StatusResponse {
    fn decode(buf: &[u8]) -> Option<Self> {
        let mut s = Self::default();
        for f in fields(buf) {
            match f? {
                (1, Value::Bytes(b)) => s.vertexes.push(Vertex::decode(b)?),
                (3, Value::Bytes(b)) => s.logs.push(VertexLog::decode(b)?),
                _ => {}
            }
        }
        Some(s)
    }
}

impl Vertex {
    fn decode(buf: &[u8]) -> Option<Self> {
        let mut v = Self::default();
        for f in fields(buf) {
            match f? {
                (1, Value::Bytes(b)) => v.digest = text(b),
                (3, Value::Bytes(b)) => v.name = text(b),
                (4, Value::Varint(c)) => v.cached = c != 0,
                (5, Value::Bytes(_)) => v.started = true,
                (7, Value::Bytes(b)) => v.error = text(b),
                _ => {}
            }
        }
        Some(v)
    }
}

impl VertexLog {
    fn decode(buf: &[u8]) -> Option<Self> {
        let mut l = Self::default();
        for f in fields(buf) {
            match f? {
                (1, Value::Bytes(b)) => l.vertex = text(b),
                (4, Value::Bytes(b)) => l.msg = b.to_vec(),
                _ => {}
            }
        }
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trace line recorded from Engine 20.10: the first vertex of a tar-context build.
    const RECORDED: &str = "Cn0KR3NoYTI1NjpiMGJmMWNmZGQ0YWFiMjE0NWMwZmYwZmY0MWU2ZGYxOTI5NjQwMzEzNDYwZjlkYmY1MGQ0ZDRiY2Q0MGM0ZDI1GiRbaW50ZXJuYWxdIGxvYWQgcmVtb3RlIGJ1aWxkIGNvbnRleHQqDAia9bLYBhDv1LH5AQ==";

    #[test]
    fn decodes_a_recorded_vertex() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(RECORDED)
            .unwrap();
        let s = StatusResponse::decode(&raw).unwrap();
        assert_eq!(s.vertexes.len(), 1);
        let v = &s.vertexes[0];
        assert!(v.digest.starts_with("sha256:b0bf1cfd"));
        assert_eq!(v.name, "[internal] load remote build context");
        assert!(v.started && !v.cached);
    }

    fn field_bytes(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn logs_become_lines_with_a_tail_for_failures() {
        let mut vertex = field_bytes(1, b"sha256:aa");
        vertex.extend(field_bytes(3, b"[2/3] RUN pip install nope"));
        vertex.extend(field_bytes(5, b""));
        let mut log = field_bytes(1, b"sha256:aa");
        log.extend(field_bytes(
            4,
            b"ERROR: No matching distribution\nfound for no",
        ));
        let mut log2 = field_bytes(1, b"sha256:aa");
        log2.extend(field_bytes(4, b"pe\n"));
        let mut err_vertex = field_bytes(1, b"sha256:aa");
        err_vertex.extend(field_bytes(7, b"exit code: 1"));
        let mut msg = field_bytes(1, &vertex);
        msg.extend(field_bytes(3, &log));
        msg.extend(field_bytes(3, &log2));
        msg.extend(field_bytes(1, &err_vertex));
        let s = StatusResponse::decode(&msg).unwrap();
        let mut events = Vec::new();
        let mut p = Progress::default();
        p.status(s, &mut |e| events.push(e));
        assert_eq!(
            events[0],
            BuildEvent::Step {
                name: "[2/3] RUN pip install nope".into(),
                cached: false
            }
        );
        assert_eq!(events.len(), 3, "{events:?}");
        let f = p.failure("failed to solve".into());
        assert_eq!(f.step.as_deref(), Some("[2/3] RUN pip install nope"));
        assert_eq!(
            f.tail,
            ["ERROR: No matching distribution", "found for nope"]
        );
    }

    #[test]
    fn truncated_protobuf_is_rejected_not_panicking() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(RECORDED)
            .unwrap();
        for n in 0..raw.len() {
            let _ = StatusResponse::decode(&raw[..n]);
        }
    }

    #[test]
    fn classic_builder_lines_become_steps_and_logs() {
        let mut c = ClassicStream::default();
        let mut ev = Vec::new();
        c.lines(
            "STEP 1/2: FROM debian\nSTEP 2/2: RUN echo hi\nh",
            &mut |e| ev.push(e),
        );
        c.lines("i\n", &mut |e| ev.push(e));
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert_eq!(
            ev[2],
            BuildEvent::Log {
                step: "STEP 2/2: RUN echo hi".into(),
                line: "hi".into()
            }
        );
    }

    #[test]
    fn buildah_cache_hits_and_failures_are_counted_and_named() {
        // As Podman 4.3's compat /build streams them.
        let mut c = ClassicStream::default();
        let mut ev = Vec::new();
        c.lines(
            "STEP 1/3: FROM dlenv/base:debian-bookworm\n\
             STEP 2/3: ARG DEBIAN_FRONTEND=noninteractive\n\
             --> Using cache c0746156ee9aecb16a7eb6767336bbb43b7b60a3287ea4a70f10eb1bb953b71a\n\
             --> c0746156ee9\n\
             STEP 3/3: RUN apt-get install -y nope\n\
             E: Unable to locate package nope\n",
            &mut |e| ev.push(e),
        );
        assert_eq!((c.steps, c.cached), (3, 1));
        assert!(ev.contains(&BuildEvent::Step {
            name: "STEP 2/3: ARG DEBIAN_FRONTEND=noninteractive".into(),
            cached: true
        }));
        let f =
            c.failure("building at STEP \"RUN apt-get install -y nope\": exit status 100".into());
        assert_eq!(
            f.step.as_deref(),
            Some("STEP 3/3: RUN apt-get install -y nope")
        );
        assert_eq!(f.tail, vec!["E: Unable to locate package nope".to_string()]);
        // Docker's classic builder.
        let mut d = ClassicStream::default();
        d.lines(
            "Step 1/2 : FROM x\n ---> Using cache\n ---> 1234\n",
            &mut |_| {},
        );
        assert_eq!((d.steps, d.cached), (1, 1));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("a b/{\"x\":1}"), "a%20b%2F%7B%22x%22%3A1%7D");
    }
}
