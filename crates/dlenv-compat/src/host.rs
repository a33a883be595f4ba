//! Facts about the host (driver, GPUs, platform) as plain data, and GPU-name lookup.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::db::{CompatDb, Product};
use crate::version::DottedVersion;

/// A CUDA compute capability (`8.6` = `sm_86`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComputeCapability {
    /// Major (architecture generation).
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl ComputeCapability {
    /// New compute capability.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// `sm_86` form.
    pub fn sm(&self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }

    /// `compute_86` form (PTX).
    pub fn compute(&self) -> String {
        format!("compute_{}{}", self.major, self.minor)
    }
}

/// Error for an unparsable compute capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compute capability {0:?}: expected `8.6`, `sm_86` or `86`")]
pub struct CcError(pub String);

impl FromStr for ComputeCapability {
    type Err = CcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || CcError(s.to_string());
        if let Some((a, b)) = t.split_once('.') {
            return Ok(Self::new(
                a.parse().map_err(|_| bad())?,
                b.parse().map_err(|_| bad())?,
            ));
        }
        let digits = t
            .strip_prefix("sm_")
            .or_else(|| t.strip_prefix("compute_"))
            .unwrap_or(&t);
        if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (a, b) = digits.split_at(digits.len() - 1);
        Ok(Self::new(
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
        ))
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for ComputeCapability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComputeCapability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// GPU product brand, as the NVIDIA container toolkit names it in `brand=` constraints
/// (plus `jetson`, which no image constraint names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Brand {
    /// GeForce GTX and older.
    Geforce,
    /// GeForce RTX.
    Geforcertx,
    /// TITAN (non-RTX).
    Titan,
    /// TITAN RTX.
    Titanrtx,
    /// Tesla / datacenter.
    Tesla,
    /// "NVIDIA" branded datacenter parts.
    Nvidia,
    /// NVIDIA RTX professional (RTX A6000, RTX 6000 Ada, RTX PRO).
    Nvidiartx,
    /// Quadro.
    Quadro,
    /// Quadro RTX.
    Quadrortx,
    /// Jetson (integrated).
    Jetson,
    /// Unknown brand.
    Unknown,
}

impl Brand {
    /// Name used in `NVIDIA_REQUIRE_CUDA` (`brand=tesla`).
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Geforce => "geforce",
            Brand::Geforcertx => "geforcertx",
            Brand::Titan => "titan",
            Brand::Titanrtx => "titanrtx",
            Brand::Tesla => "tesla",
            Brand::Nvidia => "nvidia",
            Brand::Nvidiartx => "nvidiartx",
            Brand::Quadro => "quadro",
            Brand::Quadrortx => "quadrortx",
            Brand::Jetson => "jetson",
            Brand::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host OS/CPU platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Platform {
    /// Linux on x86_64 (the platform PyTorch/TensorFlow rows in the DB describe).
    #[default]
    #[serde(rename = "linux-x86_64")]
    LinuxX86_64,
    /// Linux on aarch64 (only JAX GPU wheels and CPU builds are resolved).
    #[serde(rename = "linux-aarch64")]
    LinuxAarch64,
}

/// One GPU on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuFact {
    /// Product name as reported (e.g. `NVIDIA H200`), if known.
    pub name: Option<String>,
    /// Compute capability.
    pub cc: ComputeCapability,
    /// Brand, if known (used for `NVIDIA_REQUIRE_CUDA` brand exceptions).
    pub brand: Option<Brand>,
}

impl GpuFact {
    /// Looks `name` up in the DB's product table ([`lookup_gpu`]) and builds a fact from it,
    /// keeping the name as given.
    pub fn from_name(db: &CompatDb, name: &str) -> Result<Self, GpuLookupError> {
        let p = lookup_gpu(db, name)?;
        Ok(Self {
            name: Some(name.to_string()),
            cc: p.cc,
            brand: Some(p.brand),
        })
    }

    /// Display label: the name, else `sm_XY`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.cc.sm()),
            None => format!("GPU {}", self.cc.sm()),
        }
    }
}

/// What the resolver knows about the host. The resolver never reads the host itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// NVIDIA driver version; `None` = unknown (driver rules are then not applied and a
    /// warning is attached to the stack).
    pub driver: Option<DottedVersion>,
    /// GPUs; empty = GPU-less host (or none given).
    pub gpus: Vec<GpuFact>,
    /// Platform.
    pub platform: Platform,
}

/// A GPU name not found in the product table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GPU {name:?}{}", fmt_close(.close))]
pub struct GpuLookupError {
    /// The name asked for.
    pub name: String,
    /// Close product names, best first.
    pub close: Vec<String>,
}

fn fmt_close(close: &[String]) -> String {
    if close.is_empty() {
        "; pass its compute capability instead (e.g. --gpu-cc 8.6)".to_string()
    } else {
        format!(
            "; did you mean {}? (or pass its compute capability, e.g. --gpu-cc 8.6)",
            close
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Normalises a GPU name to lowercase tokens without vendor words
/// (`NVIDIA GeForce RTX 4090` → `rtx 4090`; `Tesla V100-SXM2-16GB` → `v100 sxm2 16gb`).
pub(crate) fn name_tokens(s: &str) -> Vec<String> {
    s.to_ascii_lowercase()
        .replace(['-', '_', '(', ')', ','], " ")
        .split_whitespace()
        .filter(|t| !matches!(*t, "nvidia" | "tesla" | "geforce"))
        .map(str::to_string)
        .collect()
}

/// Looks a GPU product up by name, case-insensitively and ignoring the words "NVIDIA", "Tesla",
/// "GeForce": `NVIDIA H200`, `H200`, `GeForce RTX 4090`, `NVIDIA A100-SXM4-80GB` all work. The
/// longest product name that is a token prefix of the query wins.
pub fn lookup_gpu<'a>(db: &'a CompatDb, name: &str) -> Result<&'a Product, GpuLookupError> {
    let q = name_tokens(name);
    let mut best: Option<(&Product, usize)> = None;
    for p in &db.products {
        let t = name_tokens(&p.name);
        if !t.is_empty()
            && q.len() >= t.len()
            && q[..t.len()] == t[..]
            && best.is_none_or(|(_, n)| t.len() > n)
        {
            best = Some((p, t.len()));
        }
    }
    if let Some((p, _)) = best {
        return Ok(p);
    }
    let qj = q.join(" ");
    let mut scored: Vec<(usize, &str)> = db
        .products
        .iter()
        .map(|p| {
            let pj = name_tokens(&p.name).join(" ");
            let d = if !qj.is_empty() && (pj.contains(&qj) || qj.contains(&pj)) {
                0
            } else {
                levenshtein(&qj, &pj)
            };
            (d, p.name.as_str())
        })
        .filter(|(d, _)| *d <= 3)
        .collect();
    scored.sort();
    Err(GpuLookupError {
        name: name.to_string(),
        close: scored.iter().take(5).map(|(_, n)| n.to_string()).collect(),
    })
}

/// Edit distance (for "did you mean" hints).
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
