//! What the user asks for: framework + version spec, Python, CUDA, cuDNN, flavour, Ubuntu.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::db::parse_cu_variant;
use crate::host::levenshtein;
use crate::version::{DottedVersion, VersionSpec};

/// A deep-learning framework (or none: just a CUDA base image and Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    /// PyTorch (`torch`).
    Pytorch,
    /// TensorFlow.
    Tensorflow,
    /// JAX.
    Jax,
    /// No framework.
    None,
}

impl Framework {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Pytorch => "pytorch",
            Framework::Tensorflow => "tensorflow",
            Framework::Jax => "jax",
            Framework::None => "none",
        }
    }

    /// Short name used in messages (`torch 2.7.0`).
    pub fn short(self) -> &'static str {
        match self {
            Framework::Pytorch => "torch",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that could not be parsed; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// Human-readable message with a suggestion.
    pub message: String,
}

fn did_you_mean(input: &str, options: &[&str]) -> String {
    let low = input.to_ascii_lowercase();
    let best = options
        .iter()
        .map(|o| (levenshtein(&low, o), *o))
        .min()
        .filter(|(d, _)| *d <= 3);
    match best {
        Some((_, o)) => format!("; did you mean {o:?}?"),
        None => format!(
            " (expected one of {})",
            options
                .iter()
                .map(|o| format!("{o:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl FromStr for Framework {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pytorch" | "torch" => Ok(Framework::Pytorch),
            "tensorflow" | "tf" => Ok(Framework::Tensorflow),
            "jax" => Ok(Framework::Jax),
            "none" | "" => Ok(Framework::None),
            _ => Err(RequestError {
                message: format!(
                    "unknown framework {:?}{}",
                    s.trim(),
                    did_you_mean(s.trim(), &["pytorch", "tensorflow", "jax", "none"])
                ),
            }),
        }
    }
}

/// Framework plus optional version specifier: `pytorch`, `pytorch==2.7.0`, `torch>=2.4,<2.8`,
/// `tensorflow==2.15.*`, `jax 0.7` (a bare version is a prefix match).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameworkReq {
    /// Framework.
    pub framework: Framework,
    /// Version constraint, if any.
    pub version: Option<VersionSpec>,
}

impl FrameworkReq {
    /// Any version of `framework`.
    pub fn any(framework: Framework) -> Self {
        Self {
            framework,
            version: None,
        }
    }
}

impl FromStr for FrameworkReq {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| "=<>!~ ".contains(c)).unwrap_or(t.len());
        let (name, rest) = t.split_at(split);
        let framework: Framework = name.parse()?;
        let rest = rest.trim();
        let version = if rest.is_empty() {
            None
        } else {
            if framework == Framework::None {
                return Err(RequestError {
                    message: "framework \"none\" takes no version".into(),
                });
            }
            Some(rest.parse::<VersionSpec>().map_err(|e| RequestError {
                message: format!(
                    "{e}; write e.g. `{name}==2.7.0`, `{name}>=2.4,<2.8` or `{name}==2.15.*`"
                ),
            })?)
        };
        Ok(Self { framework, version })
    }
}

/// Requested CUDA: `12.8` (that minor), `12` (any 12.x) or a PyTorch tag `cu128`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CudaReq {
    /// Exactly this `major.minor`.
    Exact(DottedVersion),
    /// Any minor of this major.
    Major(u32),
}

impl CudaReq {
    /// True when CUDA `v` satisfies the request.
    pub fn matches(&self, v: &DottedVersion) -> bool {
        match self {
            CudaReq::Exact(x) => v.major_minor() == x.major_minor(),
            CudaReq::Major(m) => v.major() == *m,
        }
    }
}

impl fmt::Display for CudaReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaReq::Exact(v) => write!(f, "{v}"),
            CudaReq::Major(m) => write!(f, "{m}.x"),
        }
    }
}

impl FromStr for CudaReq {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        if t == "cpu" || t == "none" {
            return Err(RequestError {
                message: format!("{s:?} is not a CUDA version; use --cpu-only for a CPU stack"),
            });
        }
        if t.starts_with("cu") {
            return parse_cu_variant(&t)
                .map(CudaReq::Exact)
                .ok_or_else(|| RequestError {
                    message: format!(
                        "invalid CUDA tag {s:?}; expected cuXYZ like cu128 (= CUDA 12.8)"
                    ),
                });
        }
        let v: DottedVersion = t.parse().map_err(|_| RequestError {
            message: format!(
                "invalid CUDA version {s:?}; expected `12.8`, `12` (any 12.x) or `cu128`"
            ),
        })?;
        if v.parts().len() == 1 {
            Ok(CudaReq::Major(v.major()))
        } else {
            Ok(CudaReq::Exact(v.major_minor()))
        }
    }
}

/// nvidia/cuda image flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Minimal: libcudart only.
    Base,
    /// base + all CUDA shared libraries.
    Runtime,
    /// runtime + compiler, headers, static libraries.
    Devel,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Base => "base",
            Flavor::Runtime => "runtime",
            Flavor::Devel => "devel",
        })
    }
}

impl FromStr for Flavor {
    type Err = RequestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "base" => Ok(Flavor::Base),
            "runtime" => Ok(Flavor::Runtime),
            "devel" | "dev" | "develop" => Ok(Flavor::Devel),
            _ => Err(RequestError {
                message: format!(
                    "unknown image flavour {:?}{}",
                    s.trim(),
                    did_you_mean(s.trim(), &["base", "runtime", "devel"])
                ),
            }),
        }
    }
}

/// Parses a Python request: `3.12` (any 3.12.x), `>=3.11`, `3.11.*`.
pub fn parse_python(s: &str) -> Result<VersionSpec, RequestError> {
    let t = s
        .trim()
        .trim_start_matches("python")
        .trim_start_matches("py");
    let spec: VersionSpec = t.parse().map_err(|e| RequestError {
        message: format!("{e}; write the Python version like `3.12` or `>=3.11`"),
    })?;
    if spec.clauses().iter().any(|c| c.version.major() != 3) {
        return Err(RequestError {
            message: format!("python {s:?}: only Python 3 is supported; try `3.12`"),
        });
    }
    Ok(spec)
}

/// Parses a cuDNN request: `9` (any 9.x), `8.9`, `>=9.1`.
pub fn parse_cudnn(s: &str) -> Result<VersionSpec, RequestError> {
    let t = s.trim().trim_start_matches("cudnn");
    t.parse().map_err(|e| RequestError {
        message: format!("{e}; write the cuDNN version like `9` or `8.9`"),
    })
}

/// Parses an Ubuntu release: `24.04`, `ubuntu24.04`, `ubuntu:22.04`.
pub fn parse_ubuntu(s: &str) -> Result<String, RequestError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .trim_start_matches("ubuntu")
        .trim_start_matches([':', '-'])
        .to_string();
    let ok = t.len() == 5
        && t.as_bytes()[2] == b'.'
        && t.bytes()
            .enumerate()
            .all(|(i, b)| i == 2 || b.is_ascii_digit());
    if ok {
        Ok(t)
    } else {
        Err(RequestError {
            message: format!("invalid Ubuntu release {s:?}; write it like `24.04` or `22.04`"),
        })
    }
}

/// A stack request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Framework and version constraint.
    pub framework: FrameworkReq,
    /// Python constraint.
    pub python: Option<VersionSpec>,
    /// CUDA constraint.
    pub cuda: Option<CudaReq>,
    /// cuDNN constraint.
    pub cudnn: Option<VersionSpec>,
    /// Image flavour (default: runtime).
    pub flavor: Option<Flavor>,
    /// Ubuntu release (default: newest available).
    pub ubuntu: Option<String>,
    /// Force a CPU-only stack.
    pub cpu_only: bool,
}

impl Request {
    /// A request for `framework` with everything else open.
    pub fn new(framework: FrameworkReq) -> Self {
        Self {
            framework,
            python: None,
            cuda: None,
            cudnn: None,
            flavor: None,
            ubuntu: None,
            cpu_only: false,
        }
    }
}
