//! `dlenv check`: inside the environment, what the framework sees — import, CUDA, each GPU
//! with a small matmul, the CPU with the same matmul, versions. This is the tutorial's
//! "does PyTorch see my 4 GPUs", for PyTorch, TensorFlow and JAX (and plain Python).

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cli::Globals;
use crate::commands::run::{ContainerArgs, Target, create, plan, target, translate_start_error};
use crate::ui::{CliError, Exit, Printer};

/// The probe script, run with the environment's Python.
pub const PROBE: &str = include_str!("check/probe.py");

/// Arguments of `dlenv check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// What the probe printed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observed {
    /// Python version.
    pub python: String,
    /// Each framework found.
    pub frameworks: Vec<Framework>,
    /// A pure-Python matmul when there is no framework.
    #[serde(default)]
    pub cpu_python: Option<Timing>,
}

/// One framework's view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Framework {
    /// `torch`, `tensorflow`, `jax`.
    pub name: String,
    /// Its version (`None` when the import failed).
    pub version: Option<String>,
    /// CUDA version it was built with.
    #[serde(default)]
    pub cuda_version: Option<String>,
    /// Whether it sees a CUDA device.
    pub cuda_available: bool,
    /// The GPUs it sees.
    pub devices: Vec<Device>,
    /// The CPU matmul.
    pub cpu: Option<Timing>,
    /// Import or probe error.
    pub error: Option<String>,
}

/// One GPU as the framework sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Compute capability.
    pub capability: Option<String>,
    /// Memory.
    pub memory_mib: Option<u64>,
    /// The matmul ran and gave the right answer.
    pub ok: bool,
    /// How long it took.
    pub ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A matmul on the CPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Right answer.
    pub ok: bool,
    /// Milliseconds.
    pub ms: f64,
}

/// The verdict on what was observed.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Everything expected works.
    pub ok: bool,
    /// Problems, each a sentence.
    pub problems: Vec<String>,
}

/// Judge `o`: every framework imports and computes on the CPU; with GPUs requested, each
/// framework sees CUDA and every device computes.
pub fn judge(o: &Observed, gpus_requested: bool) -> Verdict {
    let mut problems = Vec::new();
    for f in &o.frameworks {
        if let Some(e) = &f.error {
            problems.push(format!("{}: {e}", f.name));
            continue;
        }
        if !f.cpu.as_ref().is_some_and(|c| c.ok) {
            problems.push(format!("{}: the CPU matmul gave a wrong result", f.name));
        }
        if gpus_requested && !f.cuda_available {
            problems.push(format!(
                "{} {} sees no CUDA device although GPUs were requested (CPU-only build, or the \
                 driver is too old for its CUDA {})",
                f.name,
                f.version.as_deref().unwrap_or("?"),
                f.cuda_version.as_deref().unwrap_or("?")
            ));
        }
        for d in f.devices.iter().filter(|d| !d.ok) {
            problems.push(format!(
                "{}: GPU {} ({}) failed the matmul: {}",
                f.name,
                d.index,
                d.name,
                d.error.as_deref().unwrap_or("wrong result")
            ));
        }
    }
    if let Some(c) = &o.cpu_python
        && !c.ok
    {
        problems.push("python: the CPU matmul gave a wrong result".into());
    }
    Verdict {
        ok: problems.is_empty(),
        problems,
    }
}

fn print_report(p: &Printer, o: &Observed, v: &Verdict) {
    p.out(format!("python {}", o.python));
    if o.frameworks.is_empty() {
        p.out("no framework (torch, tensorflow, jax) installed");
    }
    for f in &o.frameworks {
        let cuda = f
            .cuda_version
            .as_deref()
            .map(|c| format!(", built for CUDA {c}"))
            .unwrap_or_default();
        p.out(format!(
            "{} {}{cuda}",
            f.name,
            f.version.as_deref().unwrap_or("(import failed)")
        ));
        if let Some(c) = &f.cpu {
            p.out(format!(
                "  cpu      matmul {} ({:.1} ms)",
                if c.ok { "ok" } else { "WRONG" },
                c.ms
            ));
        }
        if !f.cuda_available {
            p.out("  cuda     not available: CPU only");
        }
        for d in &f.devices {
            let cap = d
                .capability
                .as_deref()
                .map(|c| format!(" sm {c}"))
                .unwrap_or_default();
            let mem = d
                .memory_mib
                .map(|m| format!(", {} MiB", m))
                .unwrap_or_default();
            let res = match (&d.error, d.ok) {
                (Some(e), _) => format!("FAILED: {e}"),
                (None, true) => format!("matmul ok ({:.1} ms)", d.ms.unwrap_or_default()),
                (None, false) => "matmul WRONG".into(),
            };
            p.out(format!("  gpu {}    {}{cap}{mem}: {res}", d.index, d.name));
        }
    }
    if let Some(c) = &o.cpu_python {
        p.out(format!(
            "  cpu      pure-Python matmul {} ({:.1} ms)",
            if c.ok { "ok" } else { "WRONG" },
            c.ms
        ));
    }
    if v.ok {
        p.out("check passed");
    }
}

/// Run the probe in a container of `target` and judge it.
pub async fn check_target(
    a: &ContainerArgs,
    target: &Target,
    g: &Globals,
) -> Result<(Observed, Verdict), CliError> {
    let engine = super::connect(g).await?;
    let cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        "if command -v python >/dev/null; then exec python -c \"$0\"; else exec python3 -c \"$0\"; fi"
            .to_string(),
        PROBE.to_string(),
    ];
    let mut planned = plan(a, target, Some(cmd))?;
    planned.spec.ports.clear();
    let gpus_requested = planned.spec.gpus.as_ref().is_some_and(|g| g.any());
    let id = create(&engine, g, planned).await?;
    let (code, out, err) = engine
        .run_created_capture(&id)
        .await
        .map_err(translate_start_error)?;
    if code != 0 {
        return Err(CliError::failure(format!(
            "the check script failed in {} (exit {code}): {}",
            target.image(),
            err.trim().lines().last().unwrap_or_default()
        ))
        .with_hint("the image needs a Python 3 interpreter (`python` or `python3`)"));
    }
    let observed: Observed = serde_json::from_str(out.trim().lines().last().unwrap_or_default())
        .map_err(|e| {
            CliError::failure(format!(
                "unexpected output from the check script ({e}): {}",
                out.trim()
            ))
        })?;
    let verdict = judge(&observed, gpus_requested);
    Ok((observed, verdict))
}

/// `dlenv check`.
pub async fn run(a: CheckArgs, g: &Globals) -> Result<Exit, CliError> {
    let t = target(&a.container, g).await?;
    let (observed, verdict) = check_target(&a.container, &t, g).await?;
    if g.printer.json {
        #[derive(Serialize)]
        struct Out<'a> {
            image: &'a str,
            observed: &'a Observed,
            verdict: &'a Verdict,
        }
        g.printer.json(&Out {
            image: t.image(),
            observed: &observed,
            verdict: &verdict,
        });
    } else {
        print_report(&g.printer, &observed, &verdict);
    }
    if verdict.ok {
        Ok(Exit::Ok)
    } else {
        Err(CliError::failure(format!(
            "check failed:\n  - {}",
            verdict.problems.join("\n  - ")
        ))
        .with_hint("`dlenv doctor` checks the host side (driver, toolkit, runtime)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Observed {
        serde_json::from_str(s).unwrap()
    }

    /// The probe's output format on a GPU host (two GPUs, one whose kernel fails); built
    /// from the probe's own schema, as no GPU host was available to record one.
    const GPU: &str = r#"{"python": "3.12.3", "frameworks": [{"name": "torch", "version": "2.7.0+cu128", "cuda_available": true, "devices": [{"index": 0, "name": "NVIDIA H200", "capability": "9.0", "memory_mib": 143771, "ok": true, "ms": 41.2, "error": null}, {"index": 1, "name": "NVIDIA GeForce RTX 5090", "capability": "12.0", "memory_mib": 32607, "ok": false, "ms": null, "error": "CUDA error: no kernel image is available for execution on the device"}], "cpu": {"ok": true, "ms": 3.1}, "error": null, "cuda_version": "12.8"}]}"#;

    #[test]
    fn gpu_report_flags_the_failing_device() {
        let v = judge(&parse(GPU), true);
        assert!(!v.ok);
        assert_eq!(v.problems.len(), 1);
        assert!(
            v.problems[0].contains("GPU 1 (NVIDIA GeForce RTX 5090)"),
            "{:?}",
            v.problems
        );
        assert!(v.problems[0].contains("no kernel image"));
    }

    #[test]
    fn cpu_build_with_gpus_requested_is_a_problem_and_without_is_fine() {
        let cpu = r#"{"python": "3.11.2", "frameworks": [{"name": "torch", "version": "2.7.0+cpu", "cuda_available": false, "devices": [], "cpu": {"ok": true, "ms": 2.0}, "error": null, "cuda_version": null}]}"#;
        assert!(judge(&parse(cpu), false).ok);
        let v = judge(&parse(cpu), true);
        assert!(
            !v.ok && v.problems[0].contains("sees no CUDA device"),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn import_errors_and_plain_python() {
        let bad = r#"{"python": "3.11.2", "frameworks": [{"name": "tensorflow", "version": null, "cuda_available": false, "devices": [], "cpu": null, "error": "libcudart.so.12: cannot open shared object file"}]}"#;
        let v = judge(&parse(bad), false);
        assert!(v.problems[0].contains("libcudart"));
        let plain =
            r#"{"python": "3.11.2", "frameworks": [], "cpu_python": {"ok": true, "ms": 12.5}}"#;
        assert!(judge(&parse(plain), false).ok);
    }
}
