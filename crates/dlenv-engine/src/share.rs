//! Sharing images: container changes, commit, save (export) and load (import) streams.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

use bollard::models::ContainerConfig;
use bollard::query_parameters::{CommitContainerOptionsBuilder, ImportImageOptionsBuilder};

use crate::{Engine, EngineError};

/// What happened to a path in a container's filesystem since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Modified.
    Modified,
    /// Added.
    Added,
    /// Deleted.
    Deleted,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The change.
    pub kind: ChangeKind,
    /// Absolute path in the container.
    pub path: String,
}

/// The facts about an image that sharing needs.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDetails {
    /// `sha256:…` id.
    pub id: String,
    /// Its tags.
    pub repo_tags: Vec<String>,
    /// Layer diff ids, bottom first.
    pub diff_ids: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Size in bytes.
    pub size: i64,
}

impl Engine {
    /// The filesystem changes of a container (`docker diff`).
    pub async fn container_changes(&self, id: &str) -> Result<Vec<Change>, EngineError> {
        let changes = self
            .docker
            .container_changes(id)
            .await
            .map_err(|e| EngineError::api(format!("list the changes of container {id}"), e))?;
        Ok(changes
            .unwrap_or_default()
            .into_iter()
            .map(|c| Change {
                kind: match c.kind {
                    bollard::models::ChangeType::_1 => ChangeKind::Added,
                    bollard::models::ChangeType::_2 => ChangeKind::Deleted,
                    _ => ChangeKind::Modified,
                },
                path: c.path,
            })
            .collect())
    }

    /// Commit a container as `repo:tag` with extra labels. Returns the image id.
    pub async fn commit(
        &self,
        id: &str,
        repo: &str,
        tag: &str,
        comment: Option<&str>,
        author: Option<&str>,
        labels: HashMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut opts = CommitContainerOptionsBuilder::new()
            .container(id)
            .repo(repo)
            .tag(tag)
            .pause(true);
        if let Some(c) = comment {
            opts = opts.comment(c);
        }
        if let Some(a) = author {
            opts = opts.author(a);
        }
        // A commit of a large container takes a while before the engine answers.
        self.slow_client()
            .commit_container(
                opts.build(),
                ContainerConfig {
                    labels: Some(labels),
                    ..Default::default()
                },
            )
            .await
            .map(|r| r.id)
            .map_err(|e| EngineError::api(format!("commit container {id}"), e))
    }

    /// What sharing needs to know about an image.
    pub async fn image_details(&self, reference: &str) -> Result<ImageDetails, EngineError> {
        let i = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|e| EngineError::api(format!("inspect image {reference}"), e))?;
        let config = i.config.unwrap_or_default();
        Ok(ImageDetails {
            id: i.id.unwrap_or_default(),
            repo_tags: i.repo_tags.unwrap_or_default(),
            diff_ids: i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            labels: config.labels.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            size: i.size.unwrap_or_default(),
        })
    }

    /// `docker save` of one image, as a byte stream (uncompressed tar).
    pub fn save_image(
        &self,
        reference: &str,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static + use<> {
        let what = format!("save image {reference}");
        self.slow_client()
            .export_image(reference)
            .map_err(move |e| {
                // A broken connection is told apart (ConnectionAborted) so callers can say
                // that the engine went away rather than blame the disk.
                let kind = if crate::error::connection_broke(&e) {
                    std::io::ErrorKind::ConnectionAborted
                } else {
                    std::io::ErrorKind::Other
                };
                std::io::Error::new(kind, format!("{what}: {e}"))
            })
            .boxed()
    }

    /// `docker load` from a byte stream. Returns what the engine reported as loaded
    /// (`repo:tag` references or image ids). If the stream fails midway the engine discards
    /// the partial archive: nothing is loaded.
    pub async fn load_images<S>(&self, archive: S) -> Result<Vec<String>, EngineError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let opts = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut s = self.slow_client().import_image_stream(opts, archive, None);
        let mut loaded = Vec::new();
        while let Some(item) = s.next().await {
            let info = item.map_err(|e| EngineError::api("load the image archive", e))?;
            if let Some(line) = info.stream {
                for l in line.lines() {
                    if let Some(r) = l
                        .strip_prefix("Loaded image: ")
                        .or_else(|| l.strip_prefix("Loaded image ID: "))
                    {
                        loaded.push(r.trim().to_string());
                    }
                }
            }
        }
        Ok(loaded)
    }
}
