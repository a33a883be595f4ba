//! The resolver: candidates → ordered rules → best stack, or a conflict with nearest fixes.
//! Also [`check_image`] and [`matrix`].

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use crate::db::{CompatDb, ImageRow, ImageStatus, JaxBuild, TfRelease, TorchRelease};
use crate::host::{ComputeCapability, HostFacts, Platform};
use crate::request::{Flavor, Framework, FrameworkReq, Request};
use crate::rules::{Coverage, RuleHit, check_require, coverage, rule};
use crate::version::{DottedVersion, VersionSpec};

/// Ubuntu releases offered for CPU stacks (`ubuntu:<release>` base images).
pub const CPU_UBUNTU: [&str; 3] = ["24.04", "22.04", "20.04"];

/// Python versions offered when no framework constrains them (`framework = none`).
const NONE_PYTHONS: [u32; 6] = [14, 13, 12, 11, 10, 9];

/// How many alternatives a resolution lists.
const MAX_ALTERNATIVES: usize = 5;

/// What the stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// NVIDIA GPU through CUDA.
    Cuda,
    /// CPU only.
    Cpu,
}

/// A fully pinned environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    /// `cuda` or `cpu`.
    pub accelerator: Accelerator,
    /// Framework.
    pub framework: Framework,
    /// Exact framework release (`None` for framework `none`).
    pub version: Option<DottedVersion>,
    /// Build id: `2.7.0+cu128`, `2.7.0+cpu`, `2.15.0`, `0.7.1+cuda12`, `none+cuda12.8`.
    pub build: String,
    /// pip requirement lines (framework + companions, pinned).
    pub requirements: Vec<String>,
    /// pip index URL to install from (`--index-url`), if not PyPI.
    pub index_url: Option<String>,
    /// Python `major.minor`.
    pub python: DottedVersion,
    /// CUDA the framework build targets (`None` on CPU).
    pub cuda: Option<DottedVersion>,
    /// cuDNN the build uses, when known.
    pub cudnn: Option<DottedVersion>,
    /// Base image reference.
    pub base_image: String,
    /// CUDA version of the base image (`None` for plain ubuntu).
    pub image_cuda: Option<DottedVersion>,
    /// The base image's `NVIDIA_REQUIRE_CUDA`.
    pub nvidia_require_cuda: Option<String>,
    /// Minimum driver the framework build needs on this host's GPUs.
    pub driver_floor: Option<DottedVersion>,
    /// GPU code in the build: `sm_XY` cubins, `compute_XY` PTX (JAX: `sm_XY+`).
    pub gpu_archs: Vec<String>,
    /// Caveats (EOL image, unknown driver, experimental builds…).
    pub warnings: Vec<String>,
}

impl Stack {
    /// One-line summary: `torch 2.7.0+cu128, python 3.13, nvidia/cuda:12.8.1-runtime-ubuntu24.04`.
    pub fn summary(&self) -> String {
        let fw = match self.framework {
            Framework::None => "no framework".to_string(),
            f => format!("{} {}", f.short(), self.build),
        };
        format!("{fw}, python {}, {}", self.python, self.base_image)
    }
}

/// A successful resolution.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// The preferred stack.
    pub stack: Stack,
    /// Other valid stacks, best first.
    pub alternatives: Vec<Stack>,
}

/// A change that would make the request resolvable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// What to change, e.g. `upgrade the driver to ≥ 570.26`.
    pub change: String,
    /// The stack that change yields.
    pub stack: String,
}

/// No stack satisfies the request on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    /// One hit per violated rule (most preferred candidate's message), in rule order.
    pub conflicts: Vec<RuleHit>,
    /// Nearest fixes, most specific first.
    pub nearest: Vec<Suggestion>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = self
            .conflicts
            .iter()
            .map(|h| h.message.as_str())
            .collect::<Vec<_>>()
            .join("; and ");
        f.write_str(&why)?;
        if self.nearest.is_empty() {
            f.write_str(" (no nearby fix found)")
        } else {
            let fixes = self
                .nearest
                .iter()
                .map(|s| format!("{} ({})", s.change, s.stack))
                .collect::<Vec<_>>()
                .join(", or ");
            write!(f, ": {fixes}")
        }
    }
}

impl std::error::Error for Conflict {}

// ---------------------------------------------------------------------------------------------
// Candidates

#[derive(Debug, Clone)]
enum Kind<'a> {
    Torch(&'a TorchRelease, Option<&'a str>),
    Tf(&'a TfRelease),
    Jax(&'a DottedVersion, Option<&'a JaxBuild>),
    None(Option<&'a ImageRow>),
}

#[derive(Debug, Clone)]
struct Cand<'a> {
    kind: Kind<'a>,
    framework: Framework,
    version: Option<DottedVersion>,
    build: String,
    cuda: Option<DottedVersion>,
    cudnn: Option<DottedVersion>,
    sass: Vec<ComputeCapability>,
    ptx: Vec<ComputeCapability>,
    pythons: Vec<DottedVersion>,
}

impl Cand<'_> {
    fn gpu(&self) -> bool {
        self.cuda.is_some()
    }
    fn label(&self) -> String {
        match self.framework {
            Framework::None => format!("CUDA {} base image", self.build),
            f => format!("{} {}", f.short(), self.build),
        }
    }
}

fn candidates(db: &CompatDb, fw: Framework, gpu: bool) -> Vec<Cand<'_>> {
    let mut out = Vec::new();
    match fw {
        Framework::Pytorch => {
            for r in &db.pytorch.releases {
                let mut variants: Vec<Option<&str>> = if gpu {
                    r.variants.iter().map(|v| Some(v.as_str())).collect()
                } else {
                    vec![None]
                };
                variants
                    .sort_by_key(|v| std::cmp::Reverse(v.and_then(crate::db::parse_cu_variant)));
                for v in variants {
                    let archs = v.and_then(|v| db.torch_archs(&r.version, v));
                    out.push(Cand {
                        kind: Kind::Torch(r, v),
                        framework: fw,
                        version: Some(r.version.clone()),
                        build: format!("{}+{}", r.version, v.unwrap_or("cpu")),
                        cuda: v.and_then(crate::db::parse_cu_variant),
                        cudnn: v.and_then(|v| r.cudnn.get(v).cloned()),
                        sass: archs.map(|a| a.sass.clone()).unwrap_or_default(),
                        ptx: archs.map(|a| a.ptx.clone()).unwrap_or_default(),
                        pythons: r.python.clone(),
                    });
                }
            }
        }
        Framework::Tensorflow => {
            for r in &db.tensorflow {
                out.push(Cand {
                    kind: Kind::Tf(r),
                    framework: fw,
                    version: Some(r.version.clone()),
                    build: r.version.to_string(),
                    cuda: gpu.then(|| r.cuda.clone()),
                    cudnn: gpu.then(|| r.cudnn.clone()),
                    sass: r.sass.clone(),
                    ptx: r.ptx.clone(),
                    pythons: r.python.clone(),
                });
            }
        }
        Framework::Jax => {
            let mut versions: Vec<&DottedVersion> = db.jax.iter().map(|b| &b.version).collect();
            versions.dedup();
            for v in versions {
                let builds: Vec<&JaxBuild> = db.jax.iter().filter(|b| &b.version == v).collect();
                if gpu {
                    let mut bs = builds.clone();
                    bs.sort_by(|a, b| b.cuda.cmp(&a.cuda));
                    for b in bs {
                        out.push(Cand {
                            kind: Kind::Jax(v, Some(b)),
                            framework: fw,
                            version: Some(v.clone()),
                            build: format!("{v}+{}", b.extra),
                            cuda: Some(b.cuda.clone()),
                            cudnn: Some(b.cudnn.clone()),
                            sass: Vec::new(),
                            ptx: Vec::new(),
                            pythons: b.python.clone(),
                        });
                    }
                } else if let Some(b) = builds.first() {
                    out.push(Cand {
                        kind: Kind::Jax(v, None),
                        framework: fw,
                        version: Some(v.clone()),
                        build: format!("{v}+cpu"),
                        cuda: None,
                        cudnn: None,
                        sass: Vec::new(),
                        ptx: Vec::new(),
                        pythons: b.python.clone(),
                    });
                }
            }
        }
        Framework::None => {
            let pythons: Vec<DottedVersion> = NONE_PYTHONS
                .iter()
                .rev()
                .map(|m| DottedVersion::new(vec![3, *m]))
                .collect();
            if gpu {
                for row in &db.images.rows {
                    out.push(Cand {
                        kind: Kind::None(Some(row)),
                        framework: fw,
                        version: None,
                        build: format!("none+cuda{}", row.version),
                        cuda: Some(row.version.clone()),
                        cudnn: None,
                        sass: Vec::new(),
                        ptx: Vec::new(),
                        pythons: pythons.clone(),
                    });
                }
            } else {
                out.push(Cand {
                    kind: Kind::None(None),
                    framework: fw,
                    version: None,
                    build: "none+cpu".into(),
                    cuda: None,
                    cudnn: None,
                    sass: Vec::new(),
                    ptx: Vec::new(),
                    pythons,
                });
            }
        }
    }
    // Preference: newest release, then newest CUDA.
    out.sort_by(|a, b| b.version.cmp(&a.version).then(b.cuda.cmp(&a.cuda)));
    out
}

fn arch_list(c: &Cand<'_>) -> Vec<String> {
    if let Kind::Jax(_, Some(b)) = c.kind {
        return vec![format!("{}+", b.min_cc.sm())];
    }
    let mut v: Vec<String> = c.sass.iter().map(|s| s.sm()).collect();
    v.extend(c.ptx.iter().map(|p| p.compute()));
    v
}

// ---------------------------------------------------------------------------------------------
// Rules applied to one candidate

/// Driver the framework build needs on this host's GPUs (floor + PTX JIT + GPU arch), with the
/// hits when the host driver is lower.
fn driver_rules(
    db: &CompatDb,
    c: &Cand<'_>,
    host: &HostFacts,
) -> (Option<DottedVersion>, Vec<RuleHit>) {
    let mut hits = Vec::new();
    let Some(cuda) = &c.cuda else {
        return (None, hits);
    };
    let mut need: Option<DottedVersion> = None;
    let mut bump = |d: &DottedVersion| {
        if need.as_ref().is_none_or(|n| d > n) {
            need = Some(d.clone());
        }
    };
    let drv = host.driver.as_ref();
    let below = |d: &DottedVersion| drv.is_some_and(|h| h < d);
    // driver-floor / jax-floor
    if let Kind::Jax(_, Some(b)) = c.kind {
        bump(&b.driver);
        if below(&b.driver) {
            hits.push(RuleHit::new(
                rule::JAX_FLOOR,
                format!(
                    "jax[{}] {} needs driver ≥ {} (host driver {})",
                    b.extra,
                    b.version,
                    b.driver,
                    drv.map(|d| d.to_string()).unwrap_or_default()
                ),
            ));
        }
        for g in &host.gpus {
            if g.cc < b.min_cc {
                hits.push(RuleHit::new(
                    rule::JAX_FLOOR,
                    format!(
                        "jax[{}] {} needs compute capability ≥ {}, {} is {}",
                        b.extra,
                        b.version,
                        b.min_cc,
                        g.label(),
                        g.cc
                    ),
                ));
            }
        }
    } else if c.framework != Framework::None
        && let Some(floor) = db.wheel_driver_floor(cuda)
    {
        bump(&floor);
        if below(&floor) {
            let basis = if db.minor_compat.iter().any(|m| m.major == cuda.major()) {
                format!("CUDA {}.x minor-version compatibility", cuda.major())
            } else {
                format!(
                    "CUDA {} has no minor-version compatibility",
                    cuda.major_minor()
                )
            };
            hits.push(RuleHit::new(
                rule::DRIVER_FLOOR,
                format!(
                    "{} needs driver ≥ {floor} ({basis}); host driver is {}",
                    c.label(),
                    drv.map(|d| d.to_string()).unwrap_or_default()
                ),
            ));
        }
    }
    // gpu-arch / ptx-jit
    let tk = db.toolkit_driver(cuda).cloned();
    if !matches!(c.kind, Kind::Jax(..) | Kind::None(_)) {
        for g in &host.gpus {
            let igpu = db.arch(g.cc).is_some_and(|a| a.igpu);
            match coverage(&c.sass, &c.ptx, g.cc, igpu) {
                Coverage::Sass(_) => {}
                Coverage::Ptx(p) => {
                    if let Some(t) = &tk {
                        bump(t);
                        if below(t) {
                            hits.push(RuleHit::new(
                                rule::PTX_JIT,
                                format!(
                                    "{} reaches {} only through {} PTX, which needs a driver that JITs CUDA {} PTX (≥ {t})",
                                    c.label(),
                                    g.label(),
                                    p.compute(),
                                    cuda.major_minor()
                                ),
                            ));
                        }
                    }
                }
                Coverage::None => hits.push(RuleHit::new(
                    rule::GPU_ARCH,
                    format!(
                        "{} contains no kernel for {} (it has {})",
                        c.label(),
                        g.label(),
                        arch_list(c).join(" ")
                    ),
                )),
            }
        }
    }
    // gpu-driver: the GPU's architecture needs a driver at least as new as the first toolkit
    // that can target it.
    for g in &host.gpus {
        if let Some(fc) = db.arch(g.cc).and_then(|a| a.first_cuda.as_ref())
            && let Some(d) = db.toolkit_driver(fc)
        {
            bump(d);
            if below(d) {
                hits.push(RuleHit::new(
                    rule::GPU_DRIVER,
                    format!(
                        "{} needs driver ≥ {d} (its architecture first appears in CUDA {fc}); host driver is {}",
                        g.label(),
                        drv.map(|d| d.to_string()).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    (need, hits)
}

fn platform_rule(c: &Cand<'_>, host: &HostFacts) -> Option<RuleHit> {
    let x86_only = matches!(c.kind, Kind::Torch(..) | Kind::Tf(_)) && c.gpu();
    (x86_only && host.platform != Platform::LinuxX86_64).then(|| {
        RuleHit::new(
            rule::PLATFORM,
            format!(
                "{} GPU wheels are only recorded for linux-x86_64 in this database",
                c.label()
            ),
        )
    })
}

fn request_rules(c: &Cand<'_>, req: &Request) -> Vec<RuleHit> {
    let mut hits = Vec::new();
    if let (Some(want), Some(cuda)) = (&req.cuda, &c.cuda)
        && !want.matches(cuda)
    {
        match c.kind {
            Kind::Torch(r, _) => hits.push(RuleHit::new(
                rule::VARIANT_MISSING,
                format!(
                    "torch {} has no build for CUDA {want} (builds: {}, cpu)",
                    r.version,
                    r.variants.join(", ")
                ),
            )),
            Kind::Tf(r) => hits.push(RuleHit::new(
                rule::TF_CUDA_PAIR,
                format!(
                    "tensorflow {} is built and tested only with CUDA {} / cuDNN {}, not CUDA {want}",
                    r.version, r.cuda, r.cudnn
                ),
            )),
            Kind::Jax(v, Some(b)) => hits.push(RuleHit::new(
                rule::VARIANT_MISSING,
                format!("jax {v}: jax[{}] is CUDA {}, not CUDA {want}", b.extra, b.cuda),
            )),
            _ => hits.push(RuleHit::new(
                rule::IMAGE_TAG,
                format!("nvidia/cuda {cuda} is not CUDA {want}"),
            )),
        }
    }
    if let Some(want) = &req.cudnn
        && c.gpu()
        && c.framework != Framework::None
    {
        let ok = c.cudnn.as_ref().is_some_and(|d| want.matches(d));
        if !ok {
            let rule_id = if matches!(c.kind, Kind::Tf(_)) {
                rule::TF_CUDA_PAIR
            } else {
                rule::CUDNN
            };
            hits.push(RuleHit::new(
                rule_id,
                format!(
                    "{} uses cuDNN {}, not {want}",
                    c.label(),
                    c.cudnn
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "(unknown)".into())
                ),
            ));
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------------
// Images

#[derive(Debug, Clone)]
struct ImagePick<'a> {
    row: &'a ImageRow,
    tag: String,
}

/// Structural image candidates for `c`, best first.
fn image_options<'a>(
    db: &'a CompatDb,
    c: &Cand<'a>,
    flavor: Flavor,
    ubuntu: Option<&str>,
) -> Vec<(&'a ImageRow, String, bool)> {
    let cuda = c
        .cuda
        .clone()
        .unwrap_or_else(|| DottedVersion::new(vec![0]));
    let tf_pair = match c.kind {
        Kind::Tf(r) if !r.and_cuda => Some(r),
        _ => None,
    };
    let pinned = match c.kind {
        Kind::None(Some(row)) => Some(row),
        _ => None,
    };
    let mut out = Vec::new();
    for row in &db.images.rows {
        if pinned.is_some_and(|p| !std::ptr::eq(p, row)) || !row.flavors.contains(&flavor) {
            continue;
        }
        let with_cudnn = tf_pair.is_some();
        if let Some(tf) = tf_pair {
            if row.version.major_minor() != tf.cuda.major_minor() || flavor == Flavor::Base {
                continue;
            }
            let Some(img_cudnn) = image_cudnn(row) else {
                continue;
            };
            if img_cudnn.major() != tf.cudnn.major()
                || (img_cudnn.parts().len() > 1 && img_cudnn < tf.cudnn)
            {
                continue;
            }
        }
        for u in &row.ubuntu {
            if ubuntu.is_some_and(|w| w != u) || (with_cudnn && !row.cudnn_ubuntu.contains(u)) {
                continue;
            }
            out.push((row, u.clone(), with_cudnn));
        }
    }
    // Ranking: same CUDA major.minor as the build; else newest image of the same major not newer
    // than the build; else older majors; else the oldest newer image. Supported before EOL;
    // newest Ubuntu last.
    let tier = |r: &ImageRow| {
        let v = r.version.major_minor();
        let b = cuda.major_minor();
        if v == b {
            3
        } else if v.major() == b.major() && v < b {
            2
        } else if v < b {
            1
        } else {
            0
        }
    };
    out.sort_by(|(ra, ua, _), (rb, ub, _)| {
        let (ta, tb) = (tier(ra), tier(rb));
        tb.cmp(&ta)
            .then((rb.status == ImageStatus::Supported).cmp(&(ra.status == ImageStatus::Supported)))
            .then(if ta == 0 {
                ra.version.cmp(&rb.version)
            } else {
                rb.version.cmp(&ra.version)
            })
            .then(ub.cmp(ua))
    });
    out
}

/// cuDNN in an image row: the recorded version, else the major from the tag (`cudnn8` → 8).
pub(crate) fn image_cudnn(row: &ImageRow) -> Option<DottedVersion> {
    if let Some(c) = &row.cudnn {
        return Some(c.clone());
    }
    let t = row.cudnn_tag.as_deref()?;
    t.strip_prefix("cudnn")?.parse().ok()
}

fn pick_image<'a>(
    db: &'a CompatDb,
    c: &Cand<'a>,
    req: &Request,
    host: &HostFacts,
) -> Result<ImagePick<'a>, RuleHit> {
    let flavor = req.flavor.unwrap_or(Flavor::Runtime);
    let opts = image_options(db, c, flavor, req.ubuntu.as_deref());
    if opts.is_empty() {
        let what = match c.kind {
            Kind::Tf(r) if !r.and_cuda => {
                format!("CUDA {} with cuDNN {} ({flavor})", r.cuda, r.cudnn.major())
            }
            Kind::None(Some(r)) => format!("CUDA {} ({flavor})", r.version),
            _ => format!("{flavor}"),
        };
        let ub = req
            .ubuntu
            .as_ref()
            .map(|u| format!(" for ubuntu{u}"))
            .unwrap_or_default();
        let rule_id = if matches!(c.kind, Kind::Tf(r) if !r.and_cuda) {
            rule::TF_CUDA_PAIR
        } else {
            rule::IMAGE_TAG
        };
        return Err(RuleHit::new(
            rule_id,
            format!(
                "{} needs an {} image with {what}{ub}, and the database has none",
                c.label(),
                db.images.repository
            ),
        ));
    }
    let mut first_err = None;
    for (row, u, cudnn) in &opts {
        let tag = row.tag(&db.images.repository, flavor, u, *cudnn);
        match check_require(db, row, &tag, host) {
            Ok(()) => return Ok(ImagePick { row, tag }),
            Err(h) => {
                if first_err.is_none() {
                    first_err = Some(h);
                }
            }
        }
    }
    Err(first_err.expect("non-empty options"))
}

// ---------------------------------------------------------------------------------------------
// Resolution

fn python_pick(c: &Cand<'_>, req: &Request) -> Result<DottedVersion, RuleHit> {
    let ok: Vec<&DottedVersion> = c
        .pythons
        .iter()
        .filter(|p| req.python.as_ref().is_none_or(|s| s.matches(p)))
        .collect();
    ok.into_iter().max().cloned().ok_or_else(|| {
        RuleHit::new(
            rule::PYTHON,
            format!(
                "{} supports python {}, not {}",
                c.label(),
                c.pythons
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                req.python
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            ),
        )
    })
}

fn wants_gpu(req: &Request, host: &HostFacts) -> bool {
    !req.cpu_only && (!host.gpus.is_empty() || req.cuda.is_some())
}

fn evaluate<'a>(
    db: &'a CompatDb,
    c: &Cand<'a>,
    req: &Request,
    host: &HostFacts,
) -> Result<Stack, Vec<RuleHit>> {
    let mut hits = request_rules(c, req);
    let python = python_pick(c, req);
    if let Err(h) = &python {
        hits.insert(0, h.clone());
    }
    if let Some(h) = platform_rule(c, host) {
        hits.push(h);
    }
    let (need, dh) = driver_rules(db, c, host);
    hits.extend(dh);
    let mut image = None;
    // Image rules come last and only run for otherwise acceptable builds (they are the most
    // expensive to evaluate and the least useful when the build itself is refused).
    if c.gpu() && !hits.is_empty() {
        return Err(hits);
    }
    if c.gpu() {
        match pick_image(db, c, req, host) {
            Ok(p) => image = Some(p),
            Err(h) => hits.push(h),
        }
    } else if let Some(u) = &req.ubuntu
        && !CPU_UBUNTU.contains(&u.as_str())
    {
        hits.push(RuleHit::new(
            rule::IMAGE_TAG,
            format!(
                "no ubuntu:{u} base image for CPU stacks (have {})",
                CPU_UBUNTU.join(", ")
            ),
        ));
    }
    if !hits.is_empty() {
        return Err(hits);
    }
    let python = python.expect("checked");
    Ok(build_stack(db, c, python, image, need, req, host))
}

fn build_stack(
    db: &CompatDb,
    c: &Cand<'_>,
    python: DottedVersion,
    image: Option<ImagePick<'_>>,
    need: Option<DottedVersion>,
    req: &Request,
    host: &HostFacts,
) -> Stack {
    let mut warnings = Vec::new();
    let (requirements, index_url) = match c.kind {
        Kind::Torch(r, v) => {
            let mut reqs = vec![
                format!("torch=={}", r.version),
                format!("torchvision=={}", r.torchvision),
            ];
            match &r.torchaudio {
                Some(a) => reqs.push(format!("torchaudio=={a}")),
                None => warnings.push(format!(
                    "torchaudio is not pinned: its pairing with torch {} is not recorded",
                    r.version
                )),
            }
            let variant = v.unwrap_or("cpu");
            (
                reqs,
                Some(db.pytorch.index_url.replace("{variant}", variant)),
            )
        }
        Kind::Tf(r) => {
            let line = if c.gpu() && r.and_cuda {
                format!("tensorflow[and-cuda]=={}", r.version)
            } else {
                format!("tensorflow=={}", r.version)
            };
            (vec![line], None)
        }
        Kind::Jax(v, b) => {
            let line = match b {
                Some(b) => format!("jax[{}]=={v}", b.extra),
                None => format!("jax=={v}"),
            };
            (vec![line], None)
        }
        Kind::None(_) => (Vec::new(), None),
    };
    if c.gpu() && host.driver.is_none() {
        warnings
            .push("driver unknown: driver floors and image requirements were not checked".into());
    }
    let (base_image, image_cuda, require) = match &image {
        Some(p) => {
            if p.row.status == ImageStatus::Eol {
                warnings.push(format!(
                    "{} is end-of-life; NVIDIA deletes EOL tags six months after EOL",
                    p.tag
                ));
            }
            (
                p.tag.clone(),
                Some(p.row.version.clone()),
                Some(p.row.nvidia_require_cuda()),
            )
        }
        None => {
            let u = req
                .ubuntu
                .clone()
                .unwrap_or_else(|| CPU_UBUNTU[0].to_string());
            (format!("ubuntu:{u}"), None, None)
        }
    };
    Stack {
        accelerator: if c.gpu() {
            Accelerator::Cuda
        } else {
            Accelerator::Cpu
        },
        framework: c.framework,
        version: c.version.clone(),
        build: c.build.clone(),
        requirements,
        index_url,
        python,
        cuda: c.cuda.clone(),
        cudnn: c.cudnn.clone(),
        base_image,
        image_cuda,
        nvidia_require_cuda: require,
        driver_floor: if c.framework == Framework::None {
            None
        } else {
            need
        },
        gpu_archs: if c.gpu() { arch_list(c) } else { Vec::new() },
        warnings,
    }
}

pub(crate) type Rejections = Vec<(String, Vec<RuleHit>)>;

pub(crate) fn resolve_inner(
    db: &CompatDb,
    req: &Request,
    host: &HostFacts,
) -> Result<Resolution, Rejections> {
    let gpu = wants_gpu(req, host);
    let all = candidates(db, req.framework.framework, gpu);
    let in_spec: Vec<Cand<'_>> = all
        .into_iter()
        .filter(|c| match (&req.framework.version, &c.version) {
            (Some(s), Some(v)) => s.matches(v),
            _ => true,
        })
        .collect();
    if in_spec.is_empty() {
        let known: Vec<String> = candidates(db, req.framework.framework, gpu)
            .iter()
            .filter_map(|c| c.version.as_ref().map(|v| v.to_string()))
            .collect();
        let range = match (known.last(), known.first()) {
            (Some(lo), Some(hi)) => format!(" (known: {lo} … {hi})"),
            _ => String::new(),
        };
        return Err(vec![(
            String::new(),
            vec![RuleHit::new(
                rule::VERSION,
                format!(
                    "no {} release matches {}{range}",
                    req.framework.framework.short(),
                    req.framework
                        .version
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
            )],
        )]);
    }
    let mut ok: Vec<Stack> = Vec::new();
    let mut rejected = Vec::new();
    for c in &in_spec {
        match evaluate(db, c, req, host) {
            Ok(s) => {
                if !ok.iter().any(|o| o.build == s.build) {
                    ok.push(s);
                }
                if ok.len() > MAX_ALTERNATIVES {
                    break;
                }
            }
            Err(h) => rejected.push((c.build.clone(), h)),
        }
    }
    if ok.is_empty() {
        return Err(rejected);
    }
    let stack = ok.remove(0);
    Ok(Resolution {
        stack,
        alternatives: ok,
    })
}

fn group(rejected: &Rejections) -> Vec<RuleHit> {
    let mut out = Vec::new();
    for id in rule::ALL {
        let hits: Vec<&RuleHit> = rejected
            .iter()
            .flat_map(|(_, h)| h.iter())
            .filter(|h| h.rule == id)
            .collect();
        if let Some(first) = hits.first() {
            let builds = rejected
                .iter()
                .filter(|(_, h)| h.iter().any(|x| x.rule == id))
                .count();
            let mut msg = first.message.clone();
            if builds > 1 {
                msg.push_str(&format!(
                    " (and {} more build{})",
                    builds - 1,
                    if builds == 2 { "" } else { "s" }
                ));
            }
            out.push(RuleHit::new(id, msg));
        }
    }
    out
}

fn suggestions(db: &CompatDb, req: &Request, host: &HostFacts) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = Vec::new();
    let mut push = |change: String, s: &Stack| {
        if !out.iter().any(|o| o.change == change) {
            out.push(Suggestion {
                change,
                stack: s.summary(),
            });
        }
    };
    // 1. Driver upgrades: the smallest that yields any stack, and the one for the best stack.
    if let Some(cur) = &host.driver
        && wants_gpu(req, host)
    {
        let mut drivers: Vec<DottedVersion> = db
            .cuda_releases
            .iter()
            .map(|r| r.driver.clone())
            .chain(db.minor_compat.iter().map(|m| m.driver.clone()))
            .chain(db.jax.iter().map(|j| j.driver.clone()))
            .filter(|d| d > cur)
            .collect();
        drivers.sort();
        drivers.dedup();
        let mut first: Option<(DottedVersion, Stack)> = None;
        for d in &drivers {
            let h = HostFacts {
                driver: Some(d.clone()),
                ..host.clone()
            };
            if let Ok(r) = resolve_inner(db, req, &h) {
                first = Some((d.clone(), r.stack));
                break;
            }
        }
        if let Some((d, s)) = first {
            push(format!("upgrade the driver to ≥ {d}"), &s);
            if let Some(top) = drivers.last() {
                let h = HostFacts {
                    driver: Some(top.clone()),
                    ..host.clone()
                };
                if let Ok(r) = resolve_inner(db, req, &h)
                    && r.stack.build != s.build
                {
                    let need = r
                        .stack
                        .driver_floor
                        .clone()
                        .into_iter()
                        .chain(
                            db.toolkit_driver(r.stack.image_cuda.as_ref().unwrap_or(top))
                                .cloned(),
                        )
                        .max()
                        .unwrap_or_else(|| top.clone());
                    let need = if &need > cur { need } else { top.clone() };
                    push(format!("upgrade the driver to ≥ {need}"), &r.stack);
                }
            }
        }
    }
    // 2. Relax one request field at a time.
    let relax: Vec<(String, Request)> = vec![
        (
            format!(
                "use another {} version instead of {}",
                req.framework.framework.short(),
                req.framework
                    .version
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            ),
            Request {
                framework: FrameworkReq::any(req.framework.framework),
                ..req.clone()
            },
        ),
        (
            "use another python".into(),
            Request {
                python: None,
                ..req.clone()
            },
        ),
        (
            "drop the CUDA constraint".into(),
            Request {
                cuda: None,
                ..req.clone()
            },
        ),
        (
            "drop the cuDNN constraint".into(),
            Request {
                cudnn: None,
                ..req.clone()
            },
        ),
        (
            "use another Ubuntu release".into(),
            Request {
                ubuntu: None,
                ..req.clone()
            },
        ),
        (
            "use another image flavour".into(),
            Request {
                flavor: None,
                ..req.clone()
            },
        ),
    ];
    for (label, r) in relax {
        if &r == req {
            continue;
        }
        if let Ok(res) = resolve_inner(db, &r, host) {
            let label = match label.as_str() {
                "use another python" => format!("use python {}", res.stack.python),
                "use another Ubuntu release" | "use another image flavour" => {
                    format!("use {}", res.stack.base_image)
                }
                l if l.starts_with("use another") => {
                    format!(
                        "use {} {}",
                        req.framework.framework.short(),
                        res.stack.build
                    )
                }
                l => l.to_string(),
            };
            push(label, &res.stack);
        }
    }
    // 3. CPU fallback.
    if wants_gpu(req, host) {
        let r = Request {
            cpu_only: true,
            cuda: None,
            cudnn: None,
            ..req.clone()
        };
        if let Ok(res) = resolve_inner(db, &r, host) {
            push("run CPU-only".into(), &res.stack);
        }
    }
    out
}

/// Resolves `req` on `host`.
///
/// Preference order (deterministic): newest framework release within the spec; then newest
/// CUDA build whose rules pass (i.e. the newest the driver runs); newest Python the build
/// supports (within the request); `runtime` flavour unless asked otherwise; image CUDA equal to
/// (else newest not above) the build's CUDA, supported tags before EOL ones; newest Ubuntu.
/// A GPU stack is resolved when the host lists GPUs or a CUDA version is requested and
/// `cpu_only` is false; otherwise a CPU stack on `ubuntu:<release>`.
pub fn resolve(db: &CompatDb, req: &Request, host: &HostFacts) -> Result<Resolution, Conflict> {
    match resolve_inner(db, req, host) {
        Ok(r) => Ok(r),
        Err(rejected) => Err(Conflict {
            conflicts: group(&rejected),
            nearest: suggestions(db, req, host),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Image check

/// What `check_image` found about an image on a host.
#[derive(Debug, Clone, Serialize)]
pub struct ImageVerdict {
    /// The reference checked.
    pub image: String,
    /// The tag is in the database.
    pub known: bool,
    /// Image CUDA version.
    pub cuda: Option<DottedVersion>,
    /// Flavour.
    pub flavor: Option<Flavor>,
    /// Ubuntu release.
    pub ubuntu: Option<String>,
    /// cuDNN in the image (a cuDNN tag), when known (major only when the exact version is not).
    pub cudnn: Option<DottedVersion>,
    /// The image's `NVIDIA_REQUIRE_CUDA`.
    pub nvidia_require_cuda: Option<String>,
    /// End-of-life tag.
    pub eol: bool,
    /// No problems found.
    pub ok: bool,
    /// Problems (`image-tag`, `image-require`, `brand-exception`, `gpu-arch`).
    pub problems: Vec<RuleHit>,
    /// Remarks.
    pub notes: Vec<String>,
}

struct ParsedTag {
    version: DottedVersion,
    cudnn_tag: Option<String>,
    flavor: Flavor,
    ubuntu: String,
}

fn parse_tag(db: &CompatDb, image: &str) -> Result<ParsedTag, String> {
    let mut r = image.trim();
    for p in [
        "docker.io/",
        "index.docker.io/",
        "registry-1.docker.io/",
        "nvcr.io/",
    ] {
        if let Some(s) = r.strip_prefix(p) {
            r = s;
        }
    }
    let (repo, tag) = r
        .split_once(':')
        .ok_or_else(|| format!("{image:?} has no tag (the `latest` tag of nvidia/cuda is gone; use e.g. nvidia/cuda:12.8.1-runtime-ubuntu24.04)"))?;
    if repo != db.images.repository {
        return Err(format!(
            "{image:?} is not an {} image; only {} tags are in the database",
            db.images.repository, db.images.repository
        ));
    }
    let parts: Vec<&str> = tag.split('-').collect();
    let bad = || format!("tag {tag:?} is not <x.y.z>-[cudnn-]<base|runtime|devel>-ubuntu<yy.mm>");
    if parts.len() < 3 || parts.len() > 4 {
        return Err(bad());
    }
    let version: DottedVersion = parts[0].parse().map_err(|_| bad())?;
    let cudnn_tag = (parts.len() == 4).then(|| parts[1].to_string());
    let flavor: Flavor = parts[parts.len() - 2].parse().map_err(|_| bad())?;
    let ubuntu = parts[parts.len() - 1]
        .strip_prefix("ubuntu")
        .ok_or_else(|| format!("{bad}; only ubuntu images are in the database", bad = bad()))?
        .to_string();
    Ok(ParsedTag {
        version,
        cudnn_tag,
        flavor,
        ubuntu,
    })
}

/// Checks an image reference against the database and the host: is the tag known, does the
/// host driver satisfy its `NVIDIA_REQUIRE_CUDA` for each GPU's brand, can the image's CUDA
/// toolkit target each GPU's architecture.
pub fn check_image(db: &CompatDb, image_ref: &str, host: &HostFacts) -> ImageVerdict {
    let mut v = ImageVerdict {
        image: image_ref.to_string(),
        known: false,
        cuda: None,
        flavor: None,
        ubuntu: None,
        cudnn: None,
        nvidia_require_cuda: None,
        eol: false,
        ok: false,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let t = match parse_tag(db, image_ref) {
        Ok(t) => t,
        Err(m) => {
            v.problems.push(RuleHit::new(rule::IMAGE_TAG, m));
            return v;
        }
    };
    v.cuda = Some(t.version.clone());
    v.flavor = Some(t.flavor);
    v.ubuntu = Some(t.ubuntu.clone());
    let Some(row) = db.image_row(&t.version) else {
        let mut near: Vec<&ImageRow> = db.images.rows.iter().collect();
        near.sort_by_key(|r| {
            (
                r.version.major_minor() != t.version.major_minor(),
                r.version.major() != t.version.major(),
                std::cmp::Reverse(r.version.clone()),
            )
        });
        v.problems.push(RuleHit::new(
            rule::IMAGE_TAG,
            format!(
                "no nvidia/cuda tags for CUDA {} in the database; nearest: {}",
                t.version,
                near.iter()
                    .take(3)
                    .map(|r| r.version.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return v;
    };
    let cudnn_ok = match &t.cudnn_tag {
        None => true,
        Some(c) => {
            row.cudnn_tag.as_deref() == Some(c.as_str())
                && t.flavor != Flavor::Base
                && row.cudnn_ubuntu.contains(&t.ubuntu)
        }
    };
    if !row.ubuntu.contains(&t.ubuntu) || !row.flavors.contains(&t.flavor) || !cudnn_ok {
        let tags = row.tags(&db.images.repository);
        let want = t.cudnn_tag.as_deref().unwrap_or("");
        let mut close: Vec<&String> = tags
            .iter()
            .filter(|x| {
                x.contains(&format!("-{}-", t.flavor)) && (want.is_empty() || x.contains("cudnn"))
            })
            .collect();
        close.truncate(4);
        v.problems.push(RuleHit::new(
            rule::IMAGE_TAG,
            format!(
                "{image_ref} is not a published tag; CUDA {} tags include {}",
                row.version,
                close
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return v;
    }
    v.known = true;
    if t.cudnn_tag.is_some() {
        v.cudnn = image_cudnn(row);
    }
    v.eol = row.status == ImageStatus::Eol;
    if v.eol {
        v.notes
            .push("end-of-life tag: NVIDIA deletes EOL tags six months after EOL".into());
    }
    if let Some(n) = &row.note {
        v.notes.push(n.clone());
    }
    v.nvidia_require_cuda = Some(row.nvidia_require_cuda());
    if host.driver.is_none() {
        v.notes
            .push("driver unknown: NVIDIA_REQUIRE_CUDA not checked".into());
    }
    if let Err(h) = check_require(db, row, image_ref, host) {
        v.problems.push(h);
    }
    for g in &host.gpus {
        if let Some(a) = db.arch(g.cc) {
            let too_new = a
                .first_cuda
                .as_ref()
                .is_some_and(|fc| row.version.major_minor() < fc.major_minor());
            let dropped = a.dropped_in.as_ref().is_some_and(|d| row.version >= *d);
            if too_new || dropped {
                v.problems.push(RuleHit::new(
                    rule::GPU_ARCH,
                    format!(
                        "CUDA {} libraries in {image_ref} do not support {} ({})",
                        row.version,
                        g.label(),
                        if too_new {
                            format!(
                                "first supported in CUDA {}",
                                a.first_cuda
                                    .clone()
                                    .unwrap_or_else(|| DottedVersion::new(vec![0]))
                            )
                        } else {
                            format!(
                                "dropped in CUDA {}",
                                a.dropped_in
                                    .clone()
                                    .unwrap_or_else(|| DottedVersion::new(vec![0]))
                            )
                        }
                    ),
                ));
            }
        }
    }
    v.ok = v.problems.is_empty();
    v
}

// ---------------------------------------------------------------------------------------------
// Matrix

/// One framework build and whether it runs on the host.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixRow {
    /// Framework.
    pub framework: Framework,
    /// Release.
    pub version: DottedVersion,
    /// Build id (`2.7.0+cu128`).
    pub build: String,
    /// CUDA (`None` = CPU build).
    pub cuda: Option<DottedVersion>,
    /// Supported Pythons.
    pub python: Vec<DottedVersion>,
    /// Minimum driver for this build on the host's GPUs.
    pub driver_floor: Option<DottedVersion>,
    /// Runs on this host.
    pub ok: bool,
    /// Why not.
    pub why_not: Vec<RuleHit>,
}

/// Every framework build (optionally one framework) with ok / why-not on `host`, newest first.
/// CPU builds are always ok; GPU builds are checked against the driver, GPU architecture and
/// platform rules and the availability of a startable base image (runtime flavour, any Ubuntu).
pub fn matrix(db: &CompatDb, host: &HostFacts, framework: Option<Framework>) -> Vec<MatrixRow> {
    let fws = [Framework::Pytorch, Framework::Tensorflow, Framework::Jax];
    let req = Request::new(FrameworkReq::any(Framework::None));
    let mut out = Vec::new();
    for fw in fws
        .into_iter()
        .filter(|f| framework.is_none_or(|x| x == *f))
    {
        let mut cands = candidates(db, fw, true);
        cands.extend(candidates(db, fw, false));
        cands.sort_by(|a, b| b.version.cmp(&a.version).then(b.cuda.cmp(&a.cuda)));
        for c in cands {
            let mut hits = Vec::new();
            if let Some(h) = platform_rule(&c, host) {
                hits.push(h);
            }
            let (need, dh) = driver_rules(db, &c, host);
            hits.extend(dh);
            if c.gpu()
                && let Err(h) = pick_image(db, &c, &req, host)
            {
                hits.push(h);
            }
            out.push(MatrixRow {
                framework: fw,
                version: c
                    .version
                    .clone()
                    .unwrap_or_else(|| DottedVersion::new(vec![0])),
                build: c.build.clone(),
                cuda: c.cuda.clone(),
                python: c.pythons.clone(),
                driver_floor: need,
                ok: hits.is_empty(),
                why_not: hits,
            });
        }
    }
    out
}

/// Orders two stacks by the resolver's preference (for callers merging results).
pub fn prefer(a: &Stack, b: &Stack) -> Ordering {
    b.version
        .cmp(&a.version)
        .then(b.cuda.cmp(&a.cuda))
        .then(b.python.cmp(&a.python))
}

/// Convenience: a request for `framework` with an optional version spec.
pub fn request_for(framework: Framework, spec: Option<VersionSpec>) -> Request {
    Request::new(FrameworkReq {
        framework,
        version: spec,
    })
}
