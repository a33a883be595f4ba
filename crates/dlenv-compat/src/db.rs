//! The compat database: embedded TOML tables, loading, validation and look-ups.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::host::{Brand, ComputeCapability};
use crate::request::Flavor;
use crate::version::{DottedVersion, VersionSpec};

/// Schema version of the data files this crate understands.
pub const SCHEMA_VERSION: i64 = 1;

/// The file names that make up a database.
pub const DB_FILES: [&str; 7] = [
    "meta.toml",
    "cuda.toml",
    "gpus.toml",
    "pytorch.toml",
    "tensorflow.toml",
    "jax.toml",
    "images.toml",
];

const EMBEDDED: [(&str, &str); 7] = [
    ("meta.toml", include_str!("../data/meta.toml")),
    ("cuda.toml", include_str!("../data/cuda.toml")),
    ("gpus.toml", include_str!("../data/gpus.toml")),
    ("pytorch.toml", include_str!("../data/pytorch.toml")),
    ("tensorflow.toml", include_str!("../data/tensorflow.toml")),
    ("jax.toml", include_str!("../data/jax.toml")),
    ("images.toml", include_str!("../data/images.toml")),
];

/// An invalid database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// A required file is missing from the sources.
    #[error("{file}: missing from the database sources (expected {})", DB_FILES.join(", "))]
    MissingFile {
        /// File name.
        file: String,
    },
    /// A source that is not one of the database files.
    #[error("{file}: not a database file (expected {})", DB_FILES.join(", "))]
    UnknownFile {
        /// File name.
        file: String,
    },
    /// A file-level problem (TOML syntax, schema version, missing key).
    #[error("{file}: {message}")]
    File {
        /// File name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A row-level problem: `torch.toml: [[release]] #12 (version "2.7.0"): unknown cuda variant "cu999"`.
    #[error("{file}: [[{table}]] #{index}{}: {message}", .key.as_ref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Row {
        /// File name.
        file: String,
        /// Array-of-tables name.
        table: String,
        /// 1-based row number within the table.
        index: usize,
        /// Identifying field of the row, e.g. `version "2.7.0"`.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

/// `meta.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// File-layout version.
    pub schema_version: i64,
    /// Database version (date-like, e.g. `2026.11.29`).
    pub version: String,
    /// Date of the data.
    pub date: String,
}

/// A CUDA toolkit release and its minimum Linux driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CudaRelease {
    /// Full version, e.g. `12.8.1`.
    pub version: DottedVersion,
    /// Release label, e.g. `12.8 Update 1`.
    pub label: String,
    /// Minimum Linux x86_64 driver (the toolkit's own driver).
    pub driver: DottedVersion,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// Minor-version-compatibility floor of a CUDA major.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinorCompat {
    /// CUDA major.
    pub major: u32,
    /// Minimum driver for any `major.x` build.
    pub driver: DottedVersion,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// A GPU architecture (compute capability).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Compute capability.
    pub cc: ComputeCapability,
    /// Architecture name.
    pub name: String,
    /// First CUDA toolkit (`major.minor`) that can target it, when inside the DB's CUDA table.
    #[serde(default)]
    pub first_cuda: Option<DottedVersion>,
    /// CUDA toolkit that dropped it.
    #[serde(default)]
    pub dropped_in: Option<DottedVersion>,
    /// Integrated (Tegra/Jetson) CC, excluded from cubin ranges.
    #[serde(default)]
    pub igpu: bool,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// A GPU product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Product name, e.g. `GeForce RTX 4090`.
    pub name: String,
    /// Compute capability.
    pub cc: ComputeCapability,
    /// Brand.
    pub brand: Brand,
    /// Public source URL.
    pub source: String,
}

/// A PyTorch release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchRelease {
    /// Release, e.g. `2.7.0`.
    pub version: DottedVersion,
    /// Supported Python `major.minor` versions.
    pub python: Vec<DottedVersion>,
    /// CUDA wheel variants (`cu128`); `cpu` is implied.
    pub variants: Vec<String>,
    /// CUDA variant of the plain PyPI wheel.
    pub default_variant: String,
    /// Matching torchvision.
    pub torchvision: String,
    /// Matching torchaudio, when known.
    #[serde(default)]
    pub torchaudio: Option<String>,
    /// cuDNN per variant, where known.
    #[serde(default)]
    pub cudnn: BTreeMap<String, DottedVersion>,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// Architectures compiled into a PyTorch variant for a range of releases.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchArchs {
    /// Releases this row applies to.
    pub versions: VersionSpec,
    /// Variant, e.g. `cu128`.
    pub variant: String,
    /// Cubin (SASS) architectures.
    pub sass: Vec<ComputeCapability>,
    /// PTX architectures.
    #[serde(default)]
    pub ptx: Vec<ComputeCapability>,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// `pytorch.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct PytorchTable {
    /// Wheel index URL template with `{variant}`.
    pub index_url: String,
    /// Releases, newest last as in the file.
    pub releases: Vec<TorchRelease>,
    /// Arch rows.
    pub archs: Vec<TorchArchs>,
}

/// A TensorFlow tested GPU build configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TfRelease {
    /// Release, e.g. `2.15.0`.
    pub version: DottedVersion,
    /// Supported Python versions.
    pub python: Vec<DottedVersion>,
    /// Tested CUDA `major.minor`.
    pub cuda: DottedVersion,
    /// Tested cuDNN `major.minor`.
    pub cudnn: DottedVersion,
    /// GPU libraries from pip (`tensorflow[and-cuda]`).
    pub and_cuda: bool,
    /// Cubin architectures.
    pub sass: Vec<ComputeCapability>,
    /// PTX architectures.
    #[serde(default)]
    pub ptx: Vec<ComputeCapability>,
    /// Public source URL (tested configurations).
    pub source: String,
    /// Public source URL for the arch list.
    #[serde(default)]
    pub arch_source: Option<String>,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// A JAX CUDA build (release × pip extra).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JaxBuild {
    /// Release, e.g. `0.7.1`.
    pub version: DottedVersion,
    /// Pip extra, `cuda12` / `cuda13`.
    pub extra: String,
    /// Supported Python versions.
    pub python: Vec<DottedVersion>,
    /// CUDA the plugin is built with.
    pub cuda: DottedVersion,
    /// Minimum CUDA runtime.
    pub cuda_min: DottedVersion,
    /// Minimum cuDNN (same major).
    pub cudnn: DottedVersion,
    /// Minimum driver.
    pub driver: DottedVersion,
    /// Minimum compute capability.
    pub min_cc: ComputeCapability,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

/// Brand set used to generate `NVIDIA_REQUIRE_CUDA` brand alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrandSet {
    /// Up to 12.5: includes GeForce/TITAN brands.
    All,
    /// From 12.6.3: datacenter/professional/virtual brands only (no GeForce).
    Datacenter,
}

impl BrandSet {
    /// Brand names in the set.
    pub fn brands(self) -> &'static [&'static str] {
        match self {
            BrandSet::All => &[
                "unknown",
                "tesla",
                "nvidia",
                "nvidiartx",
                "quadro",
                "quadrortx",
                "geforce",
                "geforcertx",
                "titan",
                "titanrtx",
            ],
            BrandSet::Datacenter => &[
                "unknown",
                "grid",
                "tesla",
                "nvidia",
                "quadro",
                "quadrortx",
                "nvidiartx",
                "vapps",
                "vpc",
                "vcs",
                "vws",
                "cloudgaming",
            ],
        }
    }
}

/// Support status of an image row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Listed as supported.
    Supported,
    /// End of life (tags deleted six months after EOL).
    Eol,
}

/// One `nvidia/cuda` CUDA version with its tag variants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRow {
    /// Full CUDA version, e.g. `12.8.1`.
    pub version: DottedVersion,
    /// Ubuntu releases (`24.04`).
    pub ubuntu: Vec<String>,
    /// Flavours.
    pub flavors: Vec<Flavor>,
    /// cuDNN tag infix (`cudnn8`, `cudnn9`, `cudnn`), if cuDNN tags exist.
    #[serde(default)]
    pub cudnn_tag: Option<String>,
    /// Ubuntu releases with cuDNN tags.
    #[serde(default)]
    pub cudnn_ubuntu: Vec<String>,
    /// cuDNN version inside the cuDNN tags, when known.
    #[serde(default)]
    pub cudnn: Option<DottedVersion>,
    /// Driver branches of the brand alternatives in `NVIDIA_REQUIRE_CUDA`.
    #[serde(default)]
    pub require_branches: Vec<u32>,
    /// Brands of the alternatives.
    #[serde(default)]
    pub require_brands: Option<BrandSet>,
    /// Support status.
    pub status: ImageStatus,
    /// Public source URL.
    pub source: String,
    /// Remarks.
    #[serde(default)]
    pub note: Option<String>,
}

impl ImageRow {
    /// The image's `NVIDIA_REQUIRE_CUDA` value (generated; see `images.toml`).
    pub fn nvidia_require_cuda(&self) -> String {
        let mut s = format!("cuda>={}", self.version.major_minor());
        if let Some(set) = self.require_brands {
            for b in &self.require_branches {
                for brand in set.brands() {
                    s.push_str(&format!(" brand={brand},driver>={b},driver<{}", b + 1));
                }
            }
        }
        s
    }

    /// Tag string, e.g. `nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04`.
    pub fn tag(&self, repo: &str, flavor: Flavor, ubuntu: &str, cudnn: bool) -> String {
        let infix = match (&self.cudnn_tag, cudnn) {
            (Some(t), true) => format!("{t}-"),
            _ => String::new(),
        };
        format!("{repo}:{}-{infix}{flavor}-ubuntu{ubuntu}", self.version)
    }

    /// Every tag of this row.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let mut out = Vec::new();
        for u in &self.ubuntu {
            for f in &self.flavors {
                out.push(self.tag(repo, *f, u, false));
                if self.cudnn_tag.is_some() && *f != Flavor::Base && self.cudnn_ubuntu.contains(u) {
                    out.push(self.tag(repo, *f, u, true));
                }
            }
        }
        out
    }
}

/// `images.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageTable {
    /// Repository, `nvidia/cuda`.
    pub repository: String,
    /// Rows by CUDA version.
    pub rows: Vec<ImageRow>,
}

/// The whole database. Build it with [`CompatDb::embedded`] or [`CompatDb::from_sources`].
#[derive(Debug, Clone, Serialize)]
pub struct CompatDb {
    /// Metadata.
    pub meta: Meta,
    /// CUDA toolkit releases.
    pub cuda_releases: Vec<CudaRelease>,
    /// Minor-version-compatibility floors.
    pub minor_compat: Vec<MinorCompat>,
    /// GPU architectures.
    pub archs: Vec<Arch>,
    /// GPU products.
    pub products: Vec<Product>,
    /// PyTorch.
    pub pytorch: PytorchTable,
    /// TensorFlow.
    pub tensorflow: Vec<TfRelease>,
    /// JAX.
    pub jax: Vec<JaxBuild>,
    /// nvidia/cuda images.
    pub images: ImageTable,
}

/// Summary of a database (for `dlenv compat info`).
#[derive(Debug, Clone, Serialize)]
pub struct DbInfo {
    /// Database version.
    pub version: String,
    /// Data date.
    pub date: String,
    /// Schema version.
    pub schema_version: i64,
    /// Row counts per table (`cuda.release`, `pytorch.release`, …).
    pub rows: BTreeMap<String, usize>,
}

/// Version, date, schema and row counts of `db`.
pub fn db_info(db: &CompatDb) -> DbInfo {
    let rows = [
        ("cuda.release", db.cuda_releases.len()),
        ("cuda.minor_compat", db.minor_compat.len()),
        ("gpus.arch", db.archs.len()),
        ("gpus.product", db.products.len()),
        ("pytorch.release", db.pytorch.releases.len()),
        ("pytorch.archs", db.pytorch.archs.len()),
        ("tensorflow.release", db.tensorflow.len()),
        ("jax.build", db.jax.len()),
        ("images.cuda", db.images.rows.len()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    DbInfo {
        version: db.meta.version.clone(),
        date: db.meta.date.clone(),
        schema_version: db.meta.schema_version,
        rows,
    }
}

/// Parses a PyTorch variant tag (`cu128` → 12.8, `cu92` → 9.2).
pub fn parse_cu_variant(v: &str) -> Option<DottedVersion> {
    let d = v.strip_prefix("cu")?;
    if d.len() < 2 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (a, b) = d.split_at(d.len() - 1);
    Some(DottedVersion::new(vec![a.parse().ok()?, b.parse().ok()?]))
}

struct FileCtx<'a> {
    file: &'a str,
    table: toml::Table,
}

impl<'a> FileCtx<'a> {
    fn parse(file: &'a str, text: &str, allowed: &[&str]) -> Result<Self, DbError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| DbError::File {
            file: file.into(),
            message: format!("TOML syntax: {}", e.message()),
        })?;
        let ferr = |message: String| DbError::File {
            file: file.into(),
            message,
        };
        match table.get("schema_version") {
            Some(toml::Value::Integer(SCHEMA_VERSION)) => {}
            Some(v) => {
                return Err(ferr(format!(
                    "schema_version {v} is not supported (this dlenv reads schema_version {SCHEMA_VERSION}); update dlenv or the database"
                )));
            }
            None => return Err(ferr("missing `schema_version`".into())),
        }
        for k in table.keys() {
            if k != "schema_version" && !allowed.contains(&k.as_str()) {
                return Err(ferr(format!(
                    "unknown key `{k}` (expected {})",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self { file, table })
    }

    fn string(&self, key: &str) -> Result<String, DbError> {
        match self.table.get(key) {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(DbError::File {
                file: self.file.into(),
                message: format!("missing or empty string `{key}`"),
            }),
        }
    }

    fn rows<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>, DbError> {
        let Some(v) = self.table.get(table) else {
            return Ok(Vec::new());
        };
        let Some(arr) = v.as_array() else {
            return Err(DbError::File {
                file: self.file.into(),
                message: format!("`{table}` must be an array of tables ([[{table}]])"),
            });
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, row) in arr.iter().enumerate() {
            let rerr = |message: String| DbError::Row {
                file: self.file.into(),
                table: table.into(),
                index: i + 1,
                key: row_key(row),
                message,
            };
            let src = row.get("source").and_then(|s| s.as_str()).unwrap_or("");
            if src.trim().is_empty() {
                return Err(rerr("missing or empty `source` (a public URL)".into()));
            }
            if !src.starts_with("https://") && !src.starts_with("http://") {
                return Err(rerr(format!("`source` {src:?} is not a public URL")));
            }
            let parsed: T = row
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| rerr(e.message().to_string()))?;
            out.push(parsed);
        }
        Ok(out)
    }

    fn row_err(&self, table: &str, index: usize, message: String) -> DbError {
        let key = self
            .table
            .get(table)
            .and_then(|v| v.as_array())
            .and_then(|a| a.get(index))
            .and_then(row_key);
        DbError::Row {
            file: self.file.into(),
            table: table.into(),
            index: index + 1,
            key,
            message,
        }
    }
}

fn row_key(row: &toml::Value) -> Option<String> {
    for k in ["version", "name", "cc", "variant"] {
        if let Some(v) = row.get(k) {
            let mut s = format!("{k} {v}");
            if k == "version" {
                for extra in ["variant", "extra"] {
                    if let Some(e) = row.get(extra) {
                        s.push_str(&format!(", {extra} {e}"));
                    }
                }
            }
            return Some(s);
        }
    }
    None
}

impl CompatDb {
    /// The database embedded in this build of dlenv.
    ///
    /// # Panics
    /// Never in a released build: the embedded data is validated by the crate's tests.
    pub fn embedded() -> CompatDb {
        Self::from_sources(&EMBEDDED).expect("embedded compat database is valid")
    }

    /// The embedded database's source files, as `(file_name, text)` pairs.
    pub fn embedded_sources() -> &'static [(&'static str, &'static str)] {
        &EMBEDDED
    }

    /// Builds and validates a database from in-memory `(file_name, text)` pairs. File names may
    /// carry a directory (only the last path component is used). All of [`DB_FILES`] are required.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<CompatDb, DbError> {
        let mut texts: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, text) in sources {
            let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
            if !DB_FILES.contains(&base) {
                return Err(DbError::UnknownFile {
                    file: (*name).to_string(),
                });
            }
            texts.insert(base, text);
        }
        let get = |f: &'static str| {
            texts.get(f).copied().ok_or(DbError::MissingFile {
                file: f.to_string(),
            })
        };

        let meta_ctx = FileCtx::parse("meta.toml", get("meta.toml")?, &["version", "date"])?;
        let meta = Meta {
            schema_version: SCHEMA_VERSION,
            version: meta_ctx.string("version")?,
            date: meta_ctx.string("date")?,
        };

        let cuda = FileCtx::parse("cuda.toml", get("cuda.toml")?, &["release", "minor_compat"])?;
        let cuda_releases: Vec<CudaRelease> = cuda.rows("release")?;
        let minor_compat: Vec<MinorCompat> = cuda.rows("minor_compat")?;
        for (i, r) in cuda_releases.iter().enumerate() {
            if cuda_releases[..i].iter().any(|o| o.version == r.version) {
                return Err(cuda.row_err("release", i, "duplicate CUDA version".into()));
            }
        }
        if cuda_releases.is_empty() {
            return Err(DbError::File {
                file: "cuda.toml".into(),
                message: "no [[release]] rows".into(),
            });
        }
        let knows_cuda = |v: &DottedVersion| {
            cuda_releases
                .iter()
                .any(|r| r.version.major_minor() == v.major_minor())
        };

        let gpus = FileCtx::parse("gpus.toml", get("gpus.toml")?, &["arch", "product"])?;
        let archs: Vec<Arch> = gpus.rows("arch")?;
        let products: Vec<Product> = gpus.rows("product")?;
        for (i, a) in archs.iter().enumerate() {
            if archs[..i].iter().any(|o| o.cc == a.cc) {
                return Err(gpus.row_err("arch", i, "duplicate compute capability".into()));
            }
            if let Some(fc) = &a.first_cuda
                && !knows_cuda(fc)
            {
                return Err(gpus.row_err(
                    "arch",
                    i,
                    format!("first_cuda {fc} is not a CUDA version in cuda.toml"),
                ));
            }
        }
        let knows_cc = |cc: &ComputeCapability| archs.iter().any(|a| a.cc == *cc);
        for (i, p) in products.iter().enumerate() {
            if !knows_cc(&p.cc) {
                return Err(gpus.row_err(
                    "product",
                    i,
                    format!(
                        "compute capability {} is not an [[arch]] in gpus.toml",
                        p.cc
                    ),
                ));
            }
        }

        let pt = FileCtx::parse(
            "pytorch.toml",
            get("pytorch.toml")?,
            &["index_url", "release", "archs"],
        )?;
        let index_url = pt.string("index_url")?;
        let releases: Vec<TorchRelease> = pt.rows("release")?;
        let tarchs: Vec<TorchArchs> = pt.rows("archs")?;
        for (i, r) in releases.iter().enumerate() {
            if r.python.is_empty() {
                return Err(pt.row_err("release", i, "empty `python` list".into()));
            }
            for v in &r.variants {
                let Some(c) = parse_cu_variant(v) else {
                    return Err(pt.row_err(
                        "release",
                        i,
                        format!("unknown cuda variant {v:?} (expected cuXYZ, e.g. cu128)"),
                    ));
                };
                if !knows_cuda(&c) {
                    return Err(pt.row_err(
                        "release",
                        i,
                        format!("unknown cuda variant {v:?}: CUDA {c} is not in cuda.toml"),
                    ));
                }
                let n = tarchs
                    .iter()
                    .filter(|a| a.variant == *v && a.versions.matches(&r.version))
                    .count();
                if n != 1 {
                    return Err(pt.row_err(
                        "release",
                        i,
                        format!(
                            "variant {v:?} is matched by {n} [[archs]] rows (exactly one needed)"
                        ),
                    ));
                }
            }
            if !r.variants.contains(&r.default_variant) {
                return Err(pt.row_err(
                    "release",
                    i,
                    format!(
                        "default_variant {:?} is not one of the variants",
                        r.default_variant
                    ),
                ));
            }
            if let Some(k) = r.cudnn.keys().find(|k| !r.variants.contains(k)) {
                return Err(pt.row_err(
                    "release",
                    i,
                    format!("cudnn names variant {k:?} that the release does not have"),
                ));
            }
        }
        for (i, a) in tarchs.iter().enumerate() {
            if !releases
                .iter()
                .any(|r| r.variants.contains(&a.variant) && a.versions.matches(&r.version))
            {
                return Err(pt.row_err(
                    "archs",
                    i,
                    "matches no (release, variant) in [[release]]".into(),
                ));
            }
            if let Some(cc) = a.sass.iter().chain(&a.ptx).find(|cc| !knows_cc(cc)) {
                return Err(pt.row_err(
                    "archs",
                    i,
                    format!("compute capability {cc} is not an [[arch]] in gpus.toml"),
                ));
            }
        }

        let tf = FileCtx::parse("tensorflow.toml", get("tensorflow.toml")?, &["release"])?;
        let tensorflow: Vec<TfRelease> = tf.rows("release")?;
        for (i, r) in tensorflow.iter().enumerate() {
            if !knows_cuda(&r.cuda) {
                return Err(tf.row_err(
                    "release",
                    i,
                    format!("CUDA {} is not in cuda.toml", r.cuda),
                ));
            }
            if let Some(cc) = r.sass.iter().chain(&r.ptx).find(|cc| !knows_cc(cc)) {
                return Err(tf.row_err(
                    "release",
                    i,
                    format!("compute capability {cc} is not an [[arch]] in gpus.toml"),
                ));
            }
            if r.python.is_empty() {
                return Err(tf.row_err("release", i, "empty `python` list".into()));
            }
        }

        let jx = FileCtx::parse("jax.toml", get("jax.toml")?, &["build"])?;
        let jax: Vec<JaxBuild> = jx.rows("build")?;
        for (i, b) in jax.iter().enumerate() {
            let major_ok = b
                .extra
                .strip_prefix("cuda")
                .and_then(|m| m.parse::<u32>().ok())
                == Some(b.cuda.major());
            if !major_ok {
                return Err(jx.row_err(
                    "build",
                    i,
                    format!("extra {:?} does not match CUDA {}", b.extra, b.cuda),
                ));
            }
            for c in [&b.cuda, &b.cuda_min] {
                if !knows_cuda(c) {
                    return Err(jx.row_err("build", i, format!("CUDA {c} is not in cuda.toml")));
                }
            }
            if !knows_cc(&b.min_cc) {
                return Err(jx.row_err(
                    "build",
                    i,
                    format!("compute capability {} is not an [[arch]]", b.min_cc),
                ));
            }
        }

        let im = FileCtx::parse("images.toml", get("images.toml")?, &["repository", "cuda"])?;
        let repository = im.string("repository")?;
        let rows: Vec<ImageRow> = im.rows("cuda")?;
        for (i, r) in rows.iter().enumerate() {
            if !cuda_releases.iter().any(|c| c.version == r.version) {
                return Err(im.row_err(
                    "cuda",
                    i,
                    format!("image CUDA {} is not a release in cuda.toml", r.version),
                ));
            }
            if r.version.parts().len() != 3 {
                return Err(im.row_err("cuda", i, "image versions must be full x.y.z".into()));
            }
            if let Some(u) = r.cudnn_ubuntu.iter().find(|u| !r.ubuntu.contains(u)) {
                return Err(im.row_err(
                    "cuda",
                    i,
                    format!("cudnn_ubuntu {u:?} is not in `ubuntu`"),
                ));
            }
            if r.require_branches.is_empty() != r.require_brands.is_none() {
                return Err(im.row_err(
                    "cuda",
                    i,
                    "require_branches and require_brands go together".into(),
                ));
            }
        }

        Ok(CompatDb {
            meta,
            cuda_releases,
            minor_compat,
            archs,
            products,
            pytorch: PytorchTable {
                index_url,
                releases,
                archs: tarchs,
            },
            tensorflow,
            jax,
            images: ImageTable { repository, rows },
        })
    }

    /// Toolkit driver of CUDA `major.minor` (the driver of its first release in the table).
    pub fn toolkit_driver(&self, cuda: &DottedVersion) -> Option<&DottedVersion> {
        let mm = cuda.major_minor();
        self.cuda_releases
            .iter()
            .filter(|r| r.version.major_minor() == mm)
            .map(|r| &r.driver)
            .min()
    }

    /// Minimum driver for a prebuilt wheel/app built against CUDA `cuda` (see the crate docs):
    /// `min(toolkit driver, minor-compat floor of the major)`, or the toolkit driver when the
    /// major has no minor-version compatibility (CUDA ≤ 10.2).
    pub fn wheel_driver_floor(&self, cuda: &DottedVersion) -> Option<DottedVersion> {
        let tk = self.toolkit_driver(cuda)?.clone();
        match self.minor_compat.iter().find(|m| m.major == cuda.major()) {
            Some(m) if m.driver < tk => Some(m.driver.clone()),
            _ => Some(tk),
        }
    }

    /// Newest CUDA `major.minor` whose toolkit driver is ≤ `driver` (what `cuda>=X.Y` in
    /// `NVIDIA_REQUIRE_CUDA` is checked against).
    pub fn driver_cuda(&self, driver: &DottedVersion) -> Option<DottedVersion> {
        self.cuda_releases
            .iter()
            .filter(|r| &r.driver <= driver)
            .map(|r| r.version.major_minor())
            .max()
    }

    /// Arch row of a compute capability.
    pub fn arch(&self, cc: ComputeCapability) -> Option<&Arch> {
        self.archs.iter().find(|a| a.cc == cc)
    }

    /// Arch rows of a PyTorch release variant.
    pub fn torch_archs(&self, version: &DottedVersion, variant: &str) -> Option<&TorchArchs> {
        self.pytorch
            .archs
            .iter()
            .find(|a| a.variant == variant && a.versions.matches(version))
    }

    /// Image row for a full CUDA version.
    pub fn image_row(&self, version: &DottedVersion) -> Option<&ImageRow> {
        self.images.rows.iter().find(|r| &r.version == version)
    }
}
