//! Rule primitives: the cubin/PTX architecture rule, driver floors, `NVIDIA_REQUIRE_CUDA`
//! evaluation, and the independent [`verify_stack`] checker.

use serde::Serialize;

use crate::db::{CompatDb, ImageRow};
use crate::host::{ComputeCapability, GpuFact, HostFacts, Platform};
use crate::request::Framework;
use crate::resolve::{Accelerator, Stack};
use crate::version::DottedVersion;

/// Stable rule identifiers, in evaluation order.
pub mod rule {
    /// Framework version spec matches no release.
    pub const VERSION: &str = "version";
    /// Requested CUDA variant does not exist for the release.
    pub const VARIANT_MISSING: &str = "variant-missing";
    /// Requested Python not supported.
    pub const PYTHON: &str = "python";
    /// Requested cuDNN not matched.
    pub const CUDNN: &str = "cudnn";
    /// Build not available for the host platform.
    pub const PLATFORM: &str = "platform";
    /// Host driver below the build's floor.
    pub const DRIVER_FLOOR: &str = "driver-floor";
    /// No cubin/PTX for a GPU.
    pub const GPU_ARCH: &str = "gpu-arch";
    /// GPU only reachable through PTX that is newer than the driver's JIT.
    pub const PTX_JIT: &str = "ptx-jit";
    /// GPU architecture newer than the driver.
    pub const GPU_DRIVER: &str = "gpu-driver";
    /// JAX driver / compute-capability floor.
    pub const JAX_FLOOR: &str = "jax-floor";
    /// TensorFlow tested CUDA/cuDNN pair mismatch.
    pub const TF_CUDA_PAIR: &str = "tf-cuda-pair";
    /// No image tag with the needed CUDA / cuDNN / flavour / Ubuntu.
    pub const IMAGE_TAG: &str = "image-tag";
    /// Driver does not satisfy the image's `NVIDIA_REQUIRE_CUDA`.
    pub const IMAGE_REQUIRE: &str = "image-require";
    /// A brand exception in `NVIDIA_REQUIRE_CUDA` covers the driver, but not this GPU's brand.
    pub const BRAND_EXCEPTION: &str = "brand-exception";

    /// All rule ids in evaluation/report order.
    pub const ALL: [&str; 14] = [
        VERSION,
        VARIANT_MISSING,
        PYTHON,
        CUDNN,
        PLATFORM,
        DRIVER_FLOOR,
        GPU_ARCH,
        PTX_JIT,
        GPU_DRIVER,
        JAX_FLOOR,
        TF_CUDA_PAIR,
        IMAGE_TAG,
        IMAGE_REQUIRE,
        BRAND_EXCEPTION,
    ];
}

/// One rule violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHit {
    /// Stable rule id (see [`rule`]).
    pub rule: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl RuleHit {
    pub(crate) fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// How a binary reaches a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Coverage {
    /// A cubin for this arch runs natively.
    Sass(ComputeCapability),
    /// Only PTX for this arch, JIT-compiled by the driver.
    Ptx(ComputeCapability),
    /// No usable code.
    None,
}

/// The architecture rule: a cubin for `sm_XY` runs on a GPU of the same major `X` with minor
/// `>= Y`; integrated-GPU CCs (`igpu`) need an exact cubin. PTX for `compute_XY` JIT-compiles
/// for any GPU with CC `>= X.Y`.
pub fn coverage(
    sass: &[ComputeCapability],
    ptx: &[ComputeCapability],
    gpu: ComputeCapability,
    igpu: bool,
) -> Coverage {
    let s = sass
        .iter()
        .filter(|s| {
            if igpu {
                **s == gpu
            } else {
                s.major == gpu.major && s.minor <= gpu.minor
            }
        })
        .max();
    if let Some(s) = s {
        return Coverage::Sass(*s);
    }
    match ptx.iter().filter(|p| **p <= gpu).max() {
        Some(p) => Coverage::Ptx(*p),
        None => Coverage::None,
    }
}

/// Context for evaluating an `NVIDIA_REQUIRE_CUDA` value.
#[derive(Debug, Clone, Copy)]
pub struct RequireCtx<'a> {
    /// Host driver.
    pub driver: &'a DottedVersion,
    /// CUDA version the driver supports (`cuda>=` compares against it).
    pub driver_cuda: Option<&'a DottedVersion>,
    /// GPU brand (`brand=`), if known.
    pub brand: Option<&'a str>,
    /// GPU compute capability (`arch>=`), if known.
    pub cc: Option<ComputeCapability>,
}

/// Outcome of evaluating `NVIDIA_REQUIRE_CUDA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequireOutcome {
    /// Satisfied.
    Ok,
    /// Not satisfied; `brand_blocked` lists brands whose driver-branch exception would have
    /// admitted this driver.
    Fail {
        /// Brands of the exceptions the driver falls into.
        brand_blocked: Vec<String>,
    },
}

fn cmp_ok(op: &str, a: &DottedVersion, b: &DottedVersion) -> bool {
    match op {
        ">=" => a >= b,
        "<=" => a <= b,
        ">" => a > b,
        "<" => a < b,
        "=" | "==" => a == b,
        "!=" => a != b,
        _ => false,
    }
}

fn split_cond(c: &str) -> Option<(&str, &str, &str)> {
    let i = c.find(['<', '>', '=', '!'])?;
    let key = &c[..i];
    let rest = &c[i..];
    let oplen = if rest.len() >= 2 && rest.as_bytes()[1] == b'=' {
        2
    } else {
        1
    };
    Some((key, &rest[..oplen], &rest[oplen..]))
}

/// Evaluates an `NVIDIA_REQUIRE_CUDA` value: space-separated alternatives are ORed,
/// comma-separated conditions ANDed; keys `cuda`, `driver`, `brand`, `arch`.
pub fn eval_require(require: &str, ctx: &RequireCtx<'_>) -> RequireOutcome {
    let mut blocked = Vec::new();
    for alt in require.split_whitespace() {
        let mut all = true;
        let mut non_brand_ok = true;
        let mut alt_brand = None;
        for cond in alt.split(',') {
            let Some((key, op, val)) = split_cond(cond) else {
                all = false;
                non_brand_ok = false;
                continue;
            };
            let ok = match key {
                "brand" => {
                    alt_brand = Some(val.to_string());
                    let b = ctx.brand == Some(val);
                    if !b {
                        all = false;
                    }
                    continue;
                }
                "cuda" => match (ctx.driver_cuda, val.parse::<DottedVersion>()) {
                    (Some(dc), Ok(v)) => cmp_ok(op, dc, &v),
                    _ => false,
                },
                "driver" => val
                    .parse::<DottedVersion>()
                    .is_ok_and(|v| cmp_ok(op, ctx.driver, &v)),
                "arch" => match (ctx.cc, val.parse::<DottedVersion>()) {
                    (Some(cc), Ok(v)) => {
                        cmp_ok(op, &DottedVersion::new(vec![cc.major, cc.minor]), &v)
                    }
                    _ => false,
                },
                _ => false,
            };
            if !ok {
                all = false;
                non_brand_ok = false;
            }
        }
        if all {
            return RequireOutcome::Ok;
        }
        if non_brand_ok && let Some(b) = alt_brand {
            blocked.push(b);
        }
    }
    RequireOutcome::Fail {
        brand_blocked: blocked,
    }
}

/// Checks `row`'s `NVIDIA_REQUIRE_CUDA` against the host for every GPU (or once with no brand
/// when no GPU is known). `Ok(())` when satisfied or the driver is unknown.
pub fn check_require(
    db: &CompatDb,
    row: &ImageRow,
    tag: &str,
    host: &HostFacts,
) -> Result<(), RuleHit> {
    let Some(driver) = &host.driver else {
        return Ok(());
    };
    let dc = db.driver_cuda(driver);
    // Fast path: the requirement's first alternative is the plain `cuda>=X.Y`; when the
    // driver's CUDA satisfies it, no brand exception matters (and building and parsing the
    // long brand list dominated `matrix`).
    if dc
        .as_ref()
        .is_some_and(|dc| *dc >= row.version.major_minor())
    {
        return Ok(());
    }
    let req = row.nvidia_require_cuda();
    let gpus: Vec<Option<&GpuFact>> = if host.gpus.is_empty() {
        vec![None]
    } else {
        host.gpus.iter().map(Some).collect()
    };
    let need = db
        .toolkit_driver(&row.version)
        .map(|d| d.to_string())
        .unwrap_or_else(|| "?".into());
    for g in gpus {
        let ctx = RequireCtx {
            driver,
            driver_cuda: dc.as_ref(),
            brand: g.and_then(|g| g.brand).map(|b| b.as_str()),
            cc: g.map(|g| g.cc),
        };
        if let RequireOutcome::Fail { brand_blocked } = eval_require(&req, &ctx) {
            let who = g.map(|g| g.label()).unwrap_or_else(|| "the host".into());
            if brand_blocked.is_empty() {
                return Err(RuleHit::new(
                    rule::IMAGE_REQUIRE,
                    format!(
                        "{tag} requires cuda>={} (driver ≥ {need}); driver {driver} supports CUDA {} on {who}",
                        row.version.major_minor(),
                        dc.map(|d| d.to_string()).unwrap_or_else(|| "<none>".into()),
                    ),
                ));
            }
            let brand = g
                .and_then(|g| g.brand)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "unknown brand".into());
            return Err(RuleHit::new(
                rule::BRAND_EXCEPTION,
                format!(
                    "{tag} admits driver {driver} only for brands {} (brand exception of NVIDIA_REQUIRE_CUDA), not {who} of brand {brand}; otherwise it needs driver ≥ {need}",
                    brand_blocked.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Independent checker: every rule a resolved `stack` must satisfy on `host`, recomputed from
/// the database without using the resolver's candidate code. Empty = the stack is valid.
pub fn verify_stack(db: &CompatDb, stack: &Stack, host: &HostFacts) -> Vec<RuleHit> {
    let mut hits = Vec::new();
    let v = stack.version.clone();
    // 1. The build exists, with the python, and gives its arch lists and CUDA.
    let mut sass: Vec<ComputeCapability> = Vec::new();
    let mut ptx: Vec<ComputeCapability> = Vec::new();
    let mut pythons: Vec<DottedVersion> = Vec::new();
    let mut cuda: Option<DottedVersion> = None;
    let mut jax_min: Option<(ComputeCapability, DottedVersion)> = None;
    let mut tf_pair: Option<(DottedVersion, DottedVersion)> = None;
    let gpu = stack.accelerator == Accelerator::Cuda;
    let found = match (stack.framework, &v) {
        (Framework::Pytorch, Some(v)) => {
            let suffix = stack.build.split('+').nth(1).unwrap_or("");
            db.pytorch
                .releases
                .iter()
                .find(|r| &r.version == v)
                .filter(|r| {
                    (suffix == "cpu") != gpu && (!gpu || r.variants.iter().any(|x| x == suffix))
                })
                .map(|r| {
                    pythons = r.python.clone();
                    if gpu {
                        cuda = crate::db::parse_cu_variant(suffix);
                        if let Some(a) = db.torch_archs(v, suffix) {
                            sass = a.sass.clone();
                            ptx = a.ptx.clone();
                        }
                    }
                })
                .is_some()
        }
        (Framework::Tensorflow, Some(v)) => db
            .tensorflow
            .iter()
            .find(|r| &r.version == v)
            .map(|r| {
                pythons = r.python.clone();
                if gpu {
                    cuda = Some(r.cuda.clone());
                    sass = r.sass.clone();
                    ptx = r.ptx.clone();
                    if !r.and_cuda {
                        tf_pair = Some((r.cuda.clone(), r.cudnn.clone()));
                    }
                }
            })
            .is_some(),
        (Framework::Jax, Some(v)) => {
            let extra = stack.build.split('+').nth(1).unwrap_or("cpu");
            db.jax
                .iter()
                .find(|b| &b.version == v && (!gpu || b.extra == extra))
                .map(|b| {
                    pythons = b.python.clone();
                    if gpu {
                        cuda = Some(b.cuda.clone());
                        jax_min = Some((b.min_cc, b.driver.clone()));
                    }
                })
                .is_some()
        }
        (Framework::None, None) => {
            pythons = (9..=14).map(|m| DottedVersion::new(vec![3, m])).collect();
            cuda = stack.cuda.clone();
            true
        }
        _ => false,
    };
    if !found {
        hits.push(RuleHit::new(
            rule::VARIANT_MISSING,
            format!(
                "{} {} is not a build in the database",
                stack.framework, stack.build
            ),
        ));
        return hits;
    }
    if !pythons.contains(&stack.python) {
        hits.push(RuleHit::new(
            rule::PYTHON,
            format!(
                "python {} is not supported by {}",
                stack.python, stack.build
            ),
        ));
    }
    if stack.cuda != cuda {
        hits.push(RuleHit::new(
            rule::VARIANT_MISSING,
            "stack CUDA does not match the build's CUDA",
        ));
    }
    if !gpu {
        if !stack.base_image.starts_with("ubuntu:") || stack.nvidia_require_cuda.is_some() {
            hits.push(RuleHit::new(
                rule::IMAGE_TAG,
                "CPU stacks use a plain ubuntu image",
            ));
        }
        return hits;
    }
    if stack.framework != Framework::None
        && host.platform != Platform::LinuxX86_64
        && stack.framework != Framework::Jax
    {
        hits.push(RuleHit::new(
            rule::PLATFORM,
            "GPU build only recorded for linux-x86_64",
        ));
    }
    // 2. Driver floor of the CUDA build.
    if let (Some(d), Some(c)) = (&host.driver, &cuda) {
        let tk = db
            .cuda_releases
            .iter()
            .filter(|r| r.version.major_minor() == c.major_minor())
            .map(|r| r.driver.clone())
            .min();
        let mc = db
            .minor_compat
            .iter()
            .find(|m| m.major == c.major())
            .map(|m| m.driver.clone());
        let floor = match (tk.clone(), mc) {
            (Some(t), Some(m)) => Some(if m < t { m } else { t }),
            (t, None) => t,
            (None, Some(m)) => Some(m),
        };
        if stack.framework != Framework::None
            && let Some(f) = floor
            && d < &f
        {
            hits.push(RuleHit::new(
                rule::DRIVER_FLOOR,
                format!("driver {d} < {f}"),
            ));
        }
        if let Some((min_cc, jd)) = &jax_min {
            if d < jd {
                hits.push(RuleHit::new(rule::JAX_FLOOR, format!("driver {d} < {jd}")));
            }
            for g in &host.gpus {
                if g.cc < *min_cc {
                    hits.push(RuleHit::new(
                        rule::JAX_FLOOR,
                        format!("{} < {min_cc}", g.cc),
                    ));
                }
            }
        }
        // 3. Each GPU: arch coverage, PTX JIT, GPU-vs-driver.
        for g in &host.gpus {
            let arch = db.arch(g.cc);
            if jax_min.is_none() && stack.framework != Framework::None {
                let igpu = arch.is_some_and(|a| a.igpu);
                let native = sass.iter().any(|s| {
                    if igpu {
                        *s == g.cc
                    } else {
                        s.major == g.cc.major && s.minor <= g.cc.minor
                    }
                });
                let jit = ptx.iter().any(|p| *p <= g.cc);
                if !native && !jit {
                    hits.push(RuleHit::new(
                        rule::GPU_ARCH,
                        format!("no code for {}", g.cc.sm()),
                    ));
                } else if !native
                    && let Some(t) = &tk
                    && d < t
                {
                    hits.push(RuleHit::new(
                        rule::PTX_JIT,
                        format!("PTX needs driver ≥ {t}"),
                    ));
                }
            }
            if let Some(fc) = arch.and_then(|a| a.first_cuda.as_ref()) {
                let need = db
                    .cuda_releases
                    .iter()
                    .filter(|r| r.version.major_minor() == fc.major_minor())
                    .map(|r| r.driver.clone())
                    .min();
                if let Some(n) = need
                    && d < &n
                {
                    hits.push(RuleHit::new(
                        rule::GPU_DRIVER,
                        format!("{} needs driver ≥ {n}", g.cc.sm()),
                    ));
                }
            }
        }
    }
    // 4. Image: a known tag whose NVIDIA_REQUIRE_CUDA the host satisfies.
    let verdict = crate::resolve::check_image(db, &stack.base_image, host);
    if !verdict.known {
        hits.push(RuleHit::new(
            rule::IMAGE_TAG,
            format!("unknown image {}", stack.base_image),
        ));
    }
    for p in verdict.problems {
        if p.rule == rule::IMAGE_REQUIRE || p.rule == rule::BRAND_EXCEPTION {
            hits.push(p);
        }
    }
    if verdict.nvidia_require_cuda != stack.nvidia_require_cuda {
        hits.push(RuleHit::new(
            rule::IMAGE_TAG,
            "stack NVIDIA_REQUIRE_CUDA differs from the image's",
        ));
    }
    if let Some((tc, tn)) = tf_pair {
        let ok = verdict.cuda.as_ref().is_some_and(|c| c.major_minor() == tc)
            && verdict.cudnn.as_ref().is_some_and(|c| {
                c.major() == tn.major() && c >= &tn.truncate(c.parts().len().min(2))
            });
        if !ok {
            hits.push(RuleHit::new(
                rule::TF_CUDA_PAIR,
                "image CUDA/cuDNN differ from the tested pair",
            ));
        }
    }
    if stack.framework == Framework::None
        && verdict.cuda.as_ref().map(|c| c.major_minor()) != cuda.map(|c| c.major_minor())
    {
        hits.push(RuleHit::new(
            rule::IMAGE_TAG,
            "image CUDA differs from stack CUDA",
        ));
    }
    hits
}

/// Split an architecture list as a lock's `gpu_archs` (and `torch.cuda.get_arch_list()`)
/// write it — `sm_80`, `sm_90a`, `sm_120`, `compute_90` — into cubin and PTX capabilities.
/// Entries that are not of that form are ignored. The last digit is the minor version.
pub fn parse_arch_list<S: AsRef<str>>(
    list: &[S],
) -> (Vec<ComputeCapability>, Vec<ComputeCapability>) {
    let mut sass = Vec::new();
    let mut ptx = Vec::new();
    for a in list {
        let a = a.as_ref().trim();
        let (digits, into) = if let Some(d) = a.strip_prefix("sm_") {
            (d, &mut sass)
        } else if let Some(d) = a.strip_prefix("compute_") {
            (d, &mut ptx)
        } else {
            continue;
        };
        // `sm_90a` / `sm_100f`: arch-specific variants of the same capability.
        let digits = digits.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let (major, minor) = digits.split_at(digits.len() - 1);
        if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
            into.push(ComputeCapability::new(major, minor));
        }
    }
    (sass, ptx)
}

/// How an image's GPU code (its `gpu_archs`) reaches each of a host's GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuCoverage {
    /// GPU name as the host reports it.
    pub name: String,
    /// Its compute capability.
    pub cc: ComputeCapability,
    /// Native cubin, PTX JIT, or nothing.
    pub coverage: Coverage,
}

/// [`coverage`] for each GPU `(name, cc)` against an architecture list; integrated-GPU
/// capabilities come from the database.
pub fn gpu_coverage<S: AsRef<str>>(
    db: &CompatDb,
    archs: &[S],
    gpus: &[(String, ComputeCapability)],
) -> Vec<GpuCoverage> {
    let (sass, ptx) = parse_arch_list(archs);
    gpus.iter()
        .map(|(name, cc)| GpuCoverage {
            name: name.clone(),
            cc: *cc,
            coverage: coverage(&sass, &ptx, *cc, db.arch(*cc).is_some_and(|a| a.igpu)),
        })
        .collect()
}

#[cfg(test)]
mod arch_list_tests {
    use super::*;

    #[test]
    fn arch_lists_parse_like_torch_prints_them() {
        let (sass, ptx) = parse_arch_list(&[
            "sm_75",
            "sm_80",
            "sm_90a",
            "sm_100",
            "sm_120",
            "compute_120",
            "bogus",
            "sm_x",
        ]);
        let cc = ComputeCapability::new;
        assert_eq!(
            sass,
            vec![cc(7, 5), cc(8, 0), cc(9, 0), cc(10, 0), cc(12, 0)]
        );
        assert_eq!(ptx, vec![cc(12, 0)]);
    }

    #[test]
    fn coverage_per_gpu_on_the_real_h200_list() {
        let db = &CompatDb::embedded();
        // torch 2.11.0+cu130's list as observed on a real H200 (2026-11-30).
        let real = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"];
        let h200 = ("NVIDIA H200".to_string(), ComputeCapability::new(9, 0));
        let v = gpu_coverage(db, &real, std::slice::from_ref(&h200));
        assert_eq!(v[0].coverage, Coverage::Sass(ComputeCapability::new(9, 0)));
        // torch 1.13.1+cu117 had no sm_90 and no PTX: nothing runs on an H200.
        let old = [
            "sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86",
        ];
        let v = gpu_coverage(db, &old, std::slice::from_ref(&h200));
        assert_eq!(v[0].coverage, Coverage::None);
        // With PTX for 8.0 the driver JIT-compiles for 9.0.
        let ptx = ["sm_80", "compute_80"];
        let v = gpu_coverage(db, &ptx, &[h200]);
        assert_eq!(v[0].coverage, Coverage::Ptx(ComputeCapability::new(8, 0)));
    }
}
