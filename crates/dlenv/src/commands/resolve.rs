//! `dlenv resolve` and `dlenv matrix`: the compat resolver on this host (or a simulated
//! one).
//!
//! Host facts come from flags when given (`--driver`, `--gpu`, `--gpu-cc`, `--platform`),
//! each one independently, and otherwise from the live host (NVML, then
//! `/proc/driver/nvidia/version`, then `nvidia-smi`). A host with no NVIDIA GPU and no
//! `--gpu`/`--gpu-cc` gets a CPU-only stack, and dlenv says so: pass `--gpu NAME` (or
//! `--gpu-cc X.Y`) with `--driver VER` to resolve for a GPU host from any machine.

use clap::Args;
use serde::Serialize;

use dlenv_compat::{
    Brand, ComputeCapability, CudaReq, DottedVersion, Flavor, Framework, FrameworkReq, GpuFact,
    HostFacts, Platform, Request, Stack, check_image, lookup_gpu, matrix as compat_matrix,
    parse_cudnn, parse_python, parse_ubuntu,
};

use crate::cli::Globals;
use crate::commands::compat::load_db;
use crate::ui::{CliError, Exit, Printer};

/// Host facts given on the command line instead of probed.
#[derive(Debug, Args, Clone, Default)]
pub struct HostArgs {
    /// NVIDIA driver version to assume, e.g. `535.104.05` (default: this host's).
    #[arg(long, value_name = "VER")]
    pub driver: Option<String>,
    /// A GPU by product name, e.g. `"RTX 4090"`, `H100`, `"NVIDIA H200"` (repeatable;
    /// default: this host's GPUs). Supplies the compute capability and the brand.
    #[arg(long = "gpu", value_name = "NAME")]
    pub gpus: Vec<String>,
    /// A GPU's compute capability, e.g. `8.6` or `sm_86` (repeatable). Wins over the
    /// capability implied by `--gpu`; paired with `--gpu` values in order.
    #[arg(long = "gpu-cc", value_name = "X.Y")]
    pub gpu_ccs: Vec<String>,
    /// Target platform: `linux-x86_64` or `linux-aarch64` (default: this machine's).
    #[arg(long, value_name = "P")]
    pub platform: Option<String>,
}

/// Arguments of `dlenv resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Framework with an optional version spec: `pytorch`, `pytorch==2.7.0`,
    /// `"pytorch>=2.4,<2.8"`, `tensorflow==2.15.*`, `jax`, `none`.
    #[arg(long, default_value = "pytorch", value_name = "NAME[SPEC]")]
    pub framework: String,
    /// Python version or spec, e.g. `3.11` or `">=3.10"`.
    #[arg(long, value_name = "VER")]
    pub python: Option<String>,
    /// CUDA version (`12.8`), major (`12` = any 12.x) or wheel variant (`cu128`).
    #[arg(long, value_name = "VER|cuXYZ")]
    pub cuda: Option<String>,
    /// cuDNN version or spec, e.g. `9` or `8.9`.
    #[arg(long, value_name = "VER")]
    pub cudnn: Option<String>,
    /// Base image flavour: base, runtime or devel (default: runtime).
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// Ubuntu release of the base image, e.g. `22.04` (default: newest available).
    #[arg(long, value_name = "VER")]
    pub ubuntu: Option<String>,
    /// Resolve a CPU-only stack even on a GPU host.
    #[arg(long)]
    pub cpu: bool,
    /// Instead of resolving, check this image against the host: is the tag known, does the
    /// driver satisfy its NVIDIA_REQUIRE_CUDA for this GPU's brand.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Arguments of `dlenv matrix`.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Only this framework (pytorch, tensorflow, jax).
    #[arg(long, value_name = "NAME")]
    pub framework: Option<String>,
    /// Only the builds that run on this host.
    #[arg(long)]
    pub runnable: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Where each host fact came from.
#[derive(Debug, Clone, Serialize)]
pub struct HostUsed {
    /// The facts the resolver saw.
    #[serde(flatten)]
    pub facts: HostFacts,
    /// `flag`, `probe` or `unknown`.
    pub driver_from: &'static str,
    /// `flag`, `probe` or `none`.
    pub gpus_from: &'static str,
}

fn usage(flag: &str, e: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("{flag}: {e}"))
}

/// Assemble host facts from flags, probing the live host for what is not given.
pub fn host_facts(db: &dlenv_compat::CompatDb, a: &HostArgs) -> Result<HostUsed, CliError> {
    let platform = match a
        .platform
        .as_deref()
        .unwrap_or(match std::env::consts::ARCH {
            "aarch64" => "linux-aarch64",
            _ => "linux-x86_64",
        }) {
        "linux-x86_64" | "linux-amd64" => Platform::LinuxX86_64,
        "linux-aarch64" | "linux-arm64" => Platform::LinuxAarch64,
        other => {
            return Err(usage("--platform", format!("unknown platform `{other}`"))
                .with_hint("use linux-x86_64 or linux-aarch64"));
        }
    };
    let mut ccs = Vec::new();
    for c in &a.gpu_ccs {
        ccs.push(c.parse::<ComputeCapability>().map_err(|e| {
            usage("--gpu-cc", e).with_hint("write a compute capability like 8.6 or sm_86")
        })?);
    }
    let mut gpus = Vec::new();
    for name in &a.gpus {
        gpus.push(GpuFact::from_name(db, name).map_err(|e| {
            usage("--gpu", e).with_hint("give the capability instead: --gpu-cc X.Y")
        })?);
    }
    let gpus = match (gpus.len(), ccs.len()) {
        (_, 0) => gpus,
        (0, _) => ccs
            .into_iter()
            .map(|cc| GpuFact {
                name: None,
                cc,
                brand: None,
            })
            .collect(),
        (1, 1) => vec![GpuFact {
            cc: ccs[0],
            ..gpus.remove(0)
        }],
        (n, m) if n == m => gpus
            .into_iter()
            .zip(ccs)
            .map(|(g, cc)| GpuFact { cc, ..g })
            .collect(),
        (n, m) => {
            return Err(CliError::usage(format!(
                "{n} --gpu values but {m} --gpu-cc values: they are paired in order"
            ))
            .with_hint("give one --gpu-cc per --gpu, or only one of the two kinds"));
        }
    };
    let driver = match &a.driver {
        Some(d) => Some(d.parse::<DottedVersion>().map_err(|e| {
            usage("--driver", e).with_hint("write a driver version like 535.104.05")
        })?),
        None => None,
    };

    let need_probe = driver.is_none() || gpus.is_empty();
    let probed =
        need_probe.then(|| dlenv_probe::facts::read_nvidia(&dlenv_probe::LiveHost::default()));
    let (driver, driver_from) = match (driver, &probed) {
        (Some(d), _) => (Some(d), "flag"),
        (None, Some(p)) => match p.driver_version.as_deref().and_then(|v| v.parse().ok()) {
            Some(d) => (Some(d), "probe"),
            None => (None, "unknown"),
        },
        (None, None) => (None, "unknown"),
    };
    let (gpus, gpus_from) = if !gpus.is_empty() {
        (gpus, "flag")
    } else {
        let found: Vec<GpuFact> = probed
            .iter()
            .flat_map(|p| p.gpus.iter())
            .filter_map(|g| {
                let product = lookup_gpu(db, &g.name).ok();
                let cc = g
                    .compute_capability
                    .as_deref()
                    .and_then(|c| c.parse().ok())
                    .or(product.map(|p| p.cc))?;
                Some(GpuFact {
                    name: Some(g.name.clone()),
                    cc,
                    brand: product.map(|p| p.brand).or(Some(Brand::Unknown)),
                })
            })
            .collect();
        let from = if found.is_empty() { "none" } else { "probe" };
        (found, from)
    };
    Ok(HostUsed {
        facts: HostFacts {
            driver,
            gpus,
            platform,
        },
        driver_from,
        gpus_from,
    })
}

fn describe_host(h: &HostUsed) -> String {
    let driver = match &h.facts.driver {
        Some(d) => format!(
            "driver {d} ({})",
            if h.driver_from == "flag" {
                "given"
            } else {
                "probed"
            }
        ),
        None => "driver unknown".into(),
    };
    let gpus = if h.facts.gpus.is_empty() {
        "no GPU".to_string()
    } else {
        h.facts
            .gpus
            .iter()
            .map(GpuFact::label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{driver}; {gpus}")
}

/// The request from the flags; malformed values are usage errors with a suggestion.
fn request(a: &ResolveArgs) -> Result<Request, CliError> {
    let framework: FrameworkReq = a.framework.parse().map_err(|e| usage("--framework", e))?;
    let mut r = Request::new(framework);
    r.python = a
        .python
        .as_deref()
        .map(parse_python)
        .transpose()
        .map_err(|e| usage("--python", e))?;
    r.cuda = a
        .cuda
        .as_deref()
        .map(str::parse::<CudaReq>)
        .transpose()
        .map_err(|e| usage("--cuda", e))?;
    r.cudnn = a
        .cudnn
        .as_deref()
        .map(parse_cudnn)
        .transpose()
        .map_err(|e| usage("--cudnn", e))?;
    r.flavor = a
        .flavor
        .as_deref()
        .map(str::parse::<Flavor>)
        .transpose()
        .map_err(|e| usage("--flavor", e))?;
    r.ubuntu = a
        .ubuntu
        .as_deref()
        .map(parse_ubuntu)
        .transpose()
        .map_err(|e| usage("--ubuntu", e))?;
    r.cpu_only = a.cpu;
    Ok(r)
}

#[derive(Serialize)]
struct ResolveOut<'a> {
    status: &'static str,
    stack: Option<&'a Stack>,
    alternatives: &'a [Stack],
    conflicts: &'a [dlenv_compat::RuleHit],
    nearest: &'a [dlenv_compat::Suggestion],
    host: &'a HostUsed,
    note: Option<String>,
}

/// `dlenv resolve`.
pub fn resolve(a: ResolveArgs, g: &Globals) -> Result<Exit, CliError> {
    let req = request(&a)?;
    let db = load_db(g)?.db;
    let host = host_facts(&db, &a.host)?;
    let p = &g.printer;
    if let Some(image) = &a.image {
        return image_check(&db, image, &host, p);
    }
    let cpu_note = (host.facts.gpus.is_empty() && !req.cpu_only && req.cuda.is_none()).then(|| {
        "no NVIDIA GPU on this host and no --gpu/--gpu-cc given: resolving a CPU-only stack \
         (pass --gpu NAME or --gpu-cc X.Y, with --driver VER, to resolve for a GPU host)"
            .to_string()
    });
    match dlenv_compat::resolve(&db, &req, &host.facts) {
        Ok(res) => {
            if p.json {
                p.json(&ResolveOut {
                    status: "ok",
                    stack: Some(&res.stack),
                    alternatives: &res.alternatives,
                    conflicts: &[],
                    nearest: &[],
                    host: &host,
                    note: cpu_note,
                });
                return Ok(Exit::Ok);
            }
            if let Some(n) = &cpu_note {
                p.info(format!("note: {n}"));
            }
            p.out(format!("stack for {}:", describe_host(&host)));
            print_stack(p, &res.stack);
            if !res.alternatives.is_empty() {
                p.out("alternatives:");
                for (i, s) in res.alternatives.iter().enumerate() {
                    p.out(format!("  {}. {}", i + 1, s.summary()));
                }
            }
            Ok(Exit::Ok)
        }
        Err(conflict) => {
            if p.json {
                p.json(&ResolveOut {
                    status: "conflict",
                    stack: None,
                    alternatives: &[],
                    conflicts: &conflict.conflicts,
                    nearest: &conflict.nearest,
                    host: &host,
                    note: cpu_note,
                });
                return Ok(Exit::Unsatisfiable);
            }
            Err(conflict_error(
                format!(
                    "no stack satisfies `{}` on this host ({})",
                    a.framework,
                    describe_host(&host)
                ),
                &conflict,
            ))
        }
    }
}

/// A resolver conflict as an error: `headline`, one line per violated rule, and the
/// nearest fixes as the hint (exit 3).
pub fn conflict_error(headline: String, conflict: &dlenv_compat::Conflict) -> CliError {
    let mut msg = headline;
    for c in &conflict.conflicts {
        msg.push_str(&format!("\n  - [{}] {}", c.rule, c.message));
    }
    let hint = if conflict.nearest.is_empty() {
        "relax the request (framework version, python, cuda) or check `dlenv matrix`".to_string()
    } else {
        conflict
            .nearest
            .iter()
            .map(|s| format!("{} → {}", s.change, s.stack))
            .collect::<Vec<_>>()
            .join("\n      or: ")
    };
    CliError::unsatisfiable(msg).with_hint(hint)
}

fn print_stack(p: &Printer, s: &Stack) {
    let fw = match s.framework {
        Framework::None => "none (CUDA base image only)".to_string(),
        f => format!("{} {}", f.short(), s.build),
    };
    p.out(format!("  framework:   {fw}"));
    if !s.requirements.is_empty() {
        let index = s
            .index_url
            .as_deref()
            .map(|u| format!("--index-url {u} "))
            .unwrap_or_default();
        p.out(format!(
            "  install:     pip install {index}{}",
            s.requirements.join(" ")
        ));
    }
    p.out(format!("  python:      {}", s.python));
    match &s.cuda {
        Some(c) => p.out(format!(
            "  cuda:        {c}{}",
            s.cudnn
                .as_ref()
                .map(|d| format!(" (cuDNN {d})"))
                .unwrap_or_default()
        )),
        None => p.out("  cuda:        none (CPU)"),
    }
    p.out(format!("  base image:  {}", s.base_image));
    if let Some(r) = &s.nvidia_require_cuda {
        p.out(format!(
            "  image needs: {}",
            short_require(r, p.verbose > 0)
        ));
    }
    if let Some(d) = &s.driver_floor {
        p.out(format!("  driver:      ≥ {d}"));
    }
    if !s.gpu_archs.is_empty() {
        p.out(format!("  gpu code:    {}", s.gpu_archs.join(" ")));
    }
    for w in &s.warnings {
        p.warn(w);
    }
}

/// `NVIDIA_REQUIRE_CUDA` lists dozens of brand exceptions; show the CUDA floor and a
/// count unless `-v`.
fn short_require(r: &str, full: bool) -> String {
    let brands = r
        .split_whitespace()
        .filter(|t| t.starts_with("brand="))
        .count();
    if full || brands == 0 {
        return format!("NVIDIA_REQUIRE_CUDA={r}");
    }
    let rest: Vec<&str> = r
        .split_whitespace()
        .filter(|t| !t.starts_with("brand="))
        .collect();
    format!(
        "NVIDIA_REQUIRE_CUDA={} (+{brands} brand-specific driver exceptions; -v shows them)",
        rest.join(" ")
    )
}

fn image_check(
    db: &dlenv_compat::CompatDb,
    image: &str,
    host: &HostUsed,
    p: &Printer,
) -> Result<Exit, CliError> {
    let v = check_image(db, image, &host.facts);
    let exit = if v.ok { Exit::Ok } else { Exit::Unsatisfiable };
    if p.json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            verdict: &'a dlenv_compat::ImageVerdict,
            host: &'a HostUsed,
        }
        p.json(&Out { verdict: &v, host });
        return Ok(exit);
    }
    p.out(format!("image {} on {}", v.image, describe_host(host)));
    p.out(format!(
        "  known tag:   {}",
        if v.known { "yes" } else { "no" }
    ));
    if let Some(c) = &v.cuda {
        p.out(format!("  cuda:        {c}"));
    }
    if let Some(r) = &v.nvidia_require_cuda {
        p.out(format!(
            "  requires:    {}",
            short_require(r, p.verbose > 0)
        ));
    }
    for n in &v.notes {
        p.out(format!("  note:        {n}"));
    }
    if v.ok {
        p.out("  verdict:     runs on this host");
        return Ok(Exit::Ok);
    }
    let mut msg = format!("{} cannot run on this host", v.image);
    for c in &v.problems {
        msg.push_str(&format!("\n  - [{}] {}", c.rule, c.message));
    }
    Err(CliError::unsatisfiable(msg).with_hint(
        "pick another tag (`dlenv resolve --framework none` suggests one) or upgrade the driver",
    ))
}

/// `dlenv matrix`.
pub fn matrix(a: MatrixArgs, g: &Globals) -> Result<Exit, CliError> {
    let framework = a
        .framework
        .as_deref()
        .map(str::parse::<Framework>)
        .transpose()
        .map_err(|e| usage("--framework", e))?;
    let db = load_db(g)?.db;
    let host = host_facts(&db, &a.host)?;
    let mut rows = compat_matrix(&db, &host.facts, framework);
    if a.runnable {
        rows.retain(|r| r.ok);
    }
    let p = &g.printer;
    if p.json {
        #[derive(Serialize)]
        struct Out<'a> {
            host: &'a HostUsed,
            rows: &'a [dlenv_compat::MatrixRow],
        }
        p.json(&Out {
            host: &host,
            rows: &rows,
        });
        return Ok(Exit::Ok);
    }
    p.out(format!(
        "builds on {} ({} rows)",
        describe_host(&host),
        rows.len()
    ));
    p.out(format!(
        "{:<3} {:<11} {:<22} {:<6} {:<16} {:<12} why not",
        "ok", "framework", "build", "cuda", "python", "driver ≥"
    ));
    for r in &rows {
        let py = match (r.python.last(), r.python.first()) {
            (Some(hi), Some(lo)) if hi != lo => format!("{lo}–{hi}"),
            (Some(v), _) => v.to_string(),
            _ => "-".into(),
        };
        let why = r
            .why_not
            .first()
            .map(|h| format!("[{}] {}", h.rule, h.message))
            .unwrap_or_default();
        p.out(format!(
            "{:<3} {:<11} {:<22} {:<6} {:<16} {:<12} {why}",
            if r.ok { "✓" } else { "✗" },
            r.framework.short(),
            r.build,
            r.cuda
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "cpu".into()),
            py,
            r.driver_floor
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
        ));
    }
    Ok(Exit::Ok)
}
