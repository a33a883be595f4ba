//! Push to and pull from registries through the engine, with per-layer progress.
//!
//! bollard's models drop the `id` of progress messages (which layer a line is about) and
//! the `aux` digest of a push, so these two calls read the engine's JSON-lines stream
//! themselves, over the same connection machinery as the build.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::auth::{RegistryAuth, registry_host, split_reference};
use crate::build::percent_encode;
use crate::{Engine, EngineError};

/// One progress message of a push or pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// About one layer: `Preparing`, `Waiting`, `Pushing`/`Downloading` with byte counts,
    /// `Pushed`, `Layer already exists`, `Pull complete`, `Already exists`, ….
    Layer {
        /// Short layer id (12 hex digits) as the engine prints it.
        id: String,
        /// The engine's status text.
        status: String,
        /// Bytes done, when the message carries them.
        current: Option<u64>,
        /// Bytes in all, when known.
        total: Option<u64>,
    },
    /// A message about the whole image (`The push refers to repository …`, `Digest: …`).
    Message(String),
}

/// How one layer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerOutcome {
    /// Short layer id.
    pub id: String,
    /// The last status the engine gave it (`Pushed`, `Layer already exists`, `Pull complete`).
    pub status: String,
    /// Largest byte total seen for it, when the engine sent one.
    pub bytes: Option<u64>,
}

/// What a push or pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferOutcome {
    /// `sha256:…` manifest digest the registry reported, when it did.
    pub digest: Option<String>,
    /// Every layer the engine talked about, in first-seen order.
    pub layers: Vec<LayerOutcome>,
}

#[derive(Default)]
struct Tracker {
    order: Vec<String>,
    last: BTreeMap<String, (String, Option<u64>)>,
    digest: Option<String>,
    error: Option<String>,
}

impl Tracker {
    /// Take one JSON line of the stream.
    fn line(&mut self, v: &serde_json::Value, on_event: &mut impl FnMut(&TransferEvent)) {
        if let Some(msg) = v
            .pointer("/errorDetail/message")
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
        {
            self.error.get_or_insert_with(|| msg.to_string());
            return;
        }
        if let Some(d) = v.pointer("/aux/Digest").and_then(|d| d.as_str()) {
            self.digest = Some(d.to_string());
        }
        let status = v.get("status").and_then(|s| s.as_str()).unwrap_or_default();
        if status.is_empty() {
            return;
        }
        // A pull says `Digest: sha256:…`; a push says `TAG: digest: sha256:… size: N`.
        if self.digest.is_none()
            && let Some(i) = status.find("sha256:")
            && status.to_ascii_lowercase().contains("digest:")
        {
            let d: String = status[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
                .collect();
            self.digest = Some(d);
        }
        let id = v.get("id").and_then(|s| s.as_str()).unwrap_or_default();
        let detail = |k: &str| {
            v.pointer(&format!("/progressDetail/{k}"))
                .and_then(|n| n.as_u64())
        };
        // Lines with an id that is a tag (`Pulling from x`, `latest: Pulling from …`) are
        // about the image, not a layer: layer ids are 12 hex digits.
        let is_layer = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let ev = if is_layer {
            let (current, total) = (detail("current"), detail("total"));
            let entry = self.last.entry(id.to_string()).or_insert_with(|| {
                self.order.push(id.to_string());
                (String::new(), None)
            });
            entry.0 = status.to_string();
            if let Some(t) = total {
                entry.1 = Some(entry.1.map_or(t, |b| b.max(t)));
            }
            TransferEvent::Layer {
                id: id.to_string(),
                status: status.to_string(),
                current,
                total,
            }
        } else if id.is_empty() {
            TransferEvent::Message(status.to_string())
        } else {
            TransferEvent::Message(format!("{id}: {status}"))
        };
        on_event(&ev);
    }

    fn outcome(self) -> TransferOutcome {
        TransferOutcome {
            digest: self.digest,
            layers: self
                .order
                .iter()
                .map(|id| {
                    let (status, bytes) = self.last[id].clone();
                    LayerOutcome {
                        id: id.clone(),
                        status,
                        bytes,
                    }
                })
                .collect(),
        }
    }
}

impl Engine {
    /// Push `reference` (which must name the registry, e.g. `127.0.0.1:5000/team/x:1`,
    /// or Docker Hub when it does not) with `auth`.
    pub async fn push_image(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        on_event: impl FnMut(&TransferEvent),
    ) -> Result<TransferOutcome, EngineError> {
        let (name, tag) = split_reference(reference);
        let path = format!(
            "/v{}/images/{name}/push?tag={}",
            self.api_version,
            percent_encode(&tag)
        );
        self.transfer(
            &format!("push {reference}"),
            reference,
            &path,
            auth,
            on_event,
        )
        .await
    }

    /// Pull `reference` with `auth`.
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        on_event: impl FnMut(&TransferEvent),
    ) -> Result<TransferOutcome, EngineError> {
        let (name, tag) = split_reference(reference);
        let tag_q = if tag.starts_with("sha256:") {
            // `fromImage=name@digest` is how the API takes a digest.
            format!("fromImage={}", percent_encode(&format!("{name}@{tag}")))
        } else {
            format!(
                "fromImage={}&tag={}",
                percent_encode(&name),
                percent_encode(&tag)
            )
        };
        let path = format!("/v{}/images/create?{tag_q}", self.api_version);
        self.transfer(
            &format!("pull {reference}"),
            reference,
            &path,
            auth,
            on_event,
        )
        .await
    }

    async fn transfer(
        &self,
        what: &str,
        reference: &str,
        path: &str,
        auth: Option<&RegistryAuth>,
        mut on_event: impl FnMut(&TransferEvent),
    ) -> Result<TransferOutcome, EngineError> {
        let registry = registry_host(reference);
        let failed = |message: String| EngineError::Registry {
            what: what.to_string(),
            message,
            registry: registry.clone(),
            sent_credentials: auth.is_some(),
        };
        // The engine wants the header on a push even without credentials (`{}`).
        let header = auth.map(RegistryAuth::header_value).unwrap_or_else(|| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE.encode("{}")
        });
        let req = http::Request::post(path)
            .header(http::header::HOST, "docker")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Registry-Auth", header)
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let response = self.raw_send(req).await.map_err(|e| EngineError::Local {
            what: what.to_string(),
            message: e,
        })?;
        let status = response.status();
        let mut body = response.into_body();
        let mut tracker = Tracker::default();
        let mut pending = Vec::<u8>::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| EngineError::Local {
                what: what.to_string(),
                message: format!("the engine's stream broke off: {e}"),
            })?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                    if !status.is_success()
                        && let Some(m) = v.get("message").and_then(|m| m.as_str())
                    {
                        tracker.error.get_or_insert_with(|| m.to_string());
                    }
                    tracker.line(&v, &mut on_event);
                }
            }
        }
        if !status.is_success() && tracker.error.is_none() {
            let text = String::from_utf8_lossy(&pending).trim().to_string();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(String::from))
                .unwrap_or(text);
            tracker.error = Some(format!("engine answered {status}: {message}"));
        }
        if let Some(m) = tracker.error.take() {
            return Err(failed(m));
        }
        Ok(tracker.outcome())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (Tracker, Vec<TransferEvent>) {
        let mut t = Tracker::default();
        let mut seen = Vec::new();
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            t.line(&v, &mut |e| seen.push(e.clone()));
        }
        (t, seen)
    }

    /// Lines as Engine 20.10 streams them for `docker push` to a local registry.
    #[test]
    fn a_push_stream_gives_layers_and_the_digest() {
        let (t, seen) = feed(&[
            r#"{"status":"The push refers to repository [127.0.0.1:5000/dlenv-test/x]"}"#,
            r#"{"status":"Preparing","progressDetail":{},"id":"0b3f0e2a4c11"}"#,
            r#"{"status":"Pushing","progressDetail":{"current":512,"total":2048},"progress":"[=>  ]","id":"0b3f0e2a4c11"}"#,
            r#"{"status":"Pushed","progressDetail":{},"id":"0b3f0e2a4c11"}"#,
            r#"{"status":"Layer already exists","progressDetail":{},"id":"99aa00bb11cc"}"#,
            r#"{"status":"v1: digest: sha256:4b1f6c1ca6e9bdc9c5d8fba5d7a7c1a1b0e6b0f0e0c0d0a0b0c0d0e0f0a0b0c0 size: 527"}"#,
            r#"{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:4b1f6c1ca6e9bdc9c5d8fba5d7a7c1a1b0e6b0f0e0c0d0a0b0c0d0e0f0a0b0c0","Size":527}}"#,
        ]);
        assert!(t.error.is_none());
        let o = t.outcome();
        assert_eq!(
            o.digest.as_deref(),
            Some("sha256:4b1f6c1ca6e9bdc9c5d8fba5d7a7c1a1b0e6b0f0e0c0d0a0b0c0d0e0f0a0b0c0")
        );
        assert_eq!(o.layers.len(), 2);
        assert_eq!(o.layers[0].status, "Pushed");
        assert_eq!(o.layers[0].bytes, Some(2048));
        assert_eq!(o.layers[1].status, "Layer already exists");
        assert!(seen.contains(&TransferEvent::Layer {
            id: "0b3f0e2a4c11".into(),
            status: "Pushing".into(),
            current: Some(512),
            total: Some(2048)
        }));
    }

    #[test]
    fn an_error_line_is_the_error_and_tag_ids_are_not_layers() {
        let (t, _) = feed(&[
            r#"{"status":"Pulling from dlenv-test/x","id":"v1"}"#,
            r#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}"#,
        ]);
        assert_eq!(
            t.error.as_deref(),
            Some("unauthorized: authentication required")
        );
        assert!(t.outcome().layers.is_empty());
    }

    #[test]
    fn a_pull_digest_line_is_read() {
        let (t, _) = feed(&[
            r#"{"status":"Digest: sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}"#,
        ]);
        assert_eq!(
            t.outcome().digest.as_deref(),
            Some("sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
        );
    }
}
