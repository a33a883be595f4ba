//! Images: look up, tag, remove, and import a root filesystem (`docker import`).

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
    TagImageOptionsBuilder,
};

use crate::{Engine, EngineError};

/// Progress of a root-filesystem import, reported as bytes go to the engine.
#[derive(Debug, Clone, Default)]
pub struct ImportProgress {
    /// Bytes sent so far.
    pub bytes_sent: u64,
}

/// One line of an image listing.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummaryLine {
    /// Image id.
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Labels.
    pub labels: HashMap<String, String>,
}

impl Engine {
    /// The id of the image `reference`, or `None` when the engine does not have it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(img.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::api(format!("inspect image {reference}"), e)),
        }
    }

    /// The labels of image `reference`.
    pub async fn image_labels(
        &self,
        reference: &str,
    ) -> Result<HashMap<String, String>, EngineError> {
        let img = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|e| EngineError::api(format!("inspect image {reference}"), e))?;
        Ok(img.config.and_then(|c| c.labels).unwrap_or_default())
    }

    /// The `Env` of image `reference` (`KEY=VALUE` lines).
    pub async fn image_env(&self, reference: &str) -> Result<Vec<String>, EngineError> {
        let img = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|e| EngineError::api(format!("inspect image {reference}"), e))?;
        Ok(img.config.and_then(|c| c.env).unwrap_or_default())
    }

    /// Tag `source` (an id or reference) as `repo:tag`.
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.docker
            .tag_image(source, Some(opts))
            .await
            .map_err(|e| EngineError::api(format!("tag {source} as {repo}:{tag}"), e))
    }

    /// Remove an image (a tag, or an id with `force`).
    pub async fn remove_image(&self, reference: &str, force: bool) -> Result<(), EngineError> {
        let opts = RemoveImageOptionsBuilder::new().force(force).build();
        self.docker
            .remove_image(reference, Some(opts), None)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::api(format!("remove image {reference}"), e))
    }

    /// Images carrying `label` (`key` or `key=value`).
    pub async fn images_with_label(
        &self,
        label: &str,
    ) -> Result<Vec<ImageSummaryLine>, EngineError> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(|e| EngineError::api("list images", e))?;
        Ok(list
            .into_iter()
            .map(|i| ImageSummaryLine {
                id: i.id,
                tags: i.repo_tags,
                size: i.size,
                labels: i.labels,
            })
            .collect())
    }

    /// Import a root filesystem tar stream as image `repo:tag` (the API behind
    /// `docker import`). `changes` are Dockerfile instructions applied to the image config
    /// (`ENV`, `CMD`, `LABEL`, …). Returns the new image id. The stream is sent as it is
    /// produced; if it fails midway the engine discards the partial import and no tag is
    /// created.
    pub async fn import_rootfs<S>(
        &self,
        rootfs_tar: S,
        repo: &str,
        tag: &str,
        changes: Vec<String>,
    ) -> Result<String, EngineError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes)
            .build();
        let what = format!("import root filesystem as {repo}:{tag}");
        let mut stream = self.slow_client().create_image(
            Some(opts),
            Some(bollard::body_try_stream(rootfs_tar)),
            None,
        );
        let mut id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::api(what.clone(), e))?;
            if let Some(s) = info.status.filter(|s| s.starts_with("sha256:")) {
                id = Some(s);
            }
        }
        id.ok_or_else(|| EngineError::Local {
            what,
            message: "the engine finished without reporting an image id".into(),
        })
    }
}
