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

/// What the probe printed on stdout: its last line is the JSON object (a framework may
/// print warnings before it).
fn parse_observed(stdout: &str) -> Result<Observed, serde_json::Error> {
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
}

/// The human report, line by line.
fn render_report(o: &Observed, v: &Verdict) -> Vec<String> {
    let mut lines = Vec::new();
    let mut out = |l: String| lines.push(l);
    out(format!("python {}", o.python));
    if o.frameworks.is_empty() {
        out("no framework (torch, tensorflow, jax) installed".into());
    }
    for f in &o.frameworks {
        let cuda = f
            .cuda_version
            .as_deref()
            .map(|c| format!(", built for CUDA {c}"))
            .unwrap_or_default();
        out(format!(
            "{} {}{cuda}",
            f.name,
            f.version.as_deref().unwrap_or("(import failed)")
        ));
        if let Some(c) = &f.cpu {
            out(format!(
                "  cpu      matmul {} ({:.1} ms)",
                if c.ok { "ok" } else { "WRONG" },
                c.ms
            ));
        }
        if !f.cuda_available {
            out("  cuda     not available: CPU only".into());
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
            out(format!("  gpu {}    {}{cap}{mem}: {res}", d.index, d.name));
        }
    }
    if let Some(c) = &o.cpu_python {
        out(format!(
            "  cpu      pure-Python matmul {} ({:.1} ms)",
            if c.ok { "ok" } else { "WRONG" },
            c.ms
        ));
    }
    if v.ok {
        out("check passed".into());
    }
    lines
}

fn print_report(p: &Printer, o: &Observed, v: &Verdict) {
    for l in render_report(o, v) {
        p.out(l);
    }
}

/// What `dlenv check --json` prints.
#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    image: &'a str,
    observed: &'a Observed,
    verdict: &'a Verdict,
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
    let observed = parse_observed(&out).map_err(|e| {
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
        g.printer.json(&CheckJson {
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

    /// The probe's real output on an NVIDIA H200 host (driver 580.159.04) with torch
    /// 2.11.0+cu130 and jax 0.11.2 installed, recorded 2026-11-30 with
    /// `scripts/gpu-capture.sh` (`python3 crates/dlenv/src/commands/check/probe.py`).
    const H200_TORCH_JAX: &str =
        include_str!("../../tests/fixtures/check/probe-h200-torch-jax.json");

    #[test]
    fn real_h200_torch_and_jax_report() {
        let o = parse_observed(H200_TORCH_JAX).unwrap();
        assert_eq!(o.python, "3.12.3");
        assert!(o.cpu_python.is_none());
        let names: Vec<&str> = o.frameworks.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["torch", "jax"]);
        let (torch, jax) = (&o.frameworks[0], &o.frameworks[1]);
        assert_eq!(torch.version.as_deref(), Some("2.11.0+cu130"));
        assert_eq!(torch.cuda_version.as_deref(), Some("13.0"));
        assert_eq!(jax.version.as_deref(), Some("0.11.2"));
        // probe.py reports no CUDA version for JAX.
        assert_eq!(jax.cuda_version, None);
        for f in [torch, jax] {
            assert!(f.cuda_available && f.error.is_none(), "{f:?}");
            assert!(f.cpu.as_ref().is_some_and(|c| c.ok), "{f:?}");
            assert_eq!(f.devices.len(), 1, "{f:?}");
            let d = &f.devices[0];
            assert_eq!((d.index, d.name.as_str()), (0, "NVIDIA H200"));
            assert_eq!(d.capability.as_deref(), Some("9.0"));
            assert!(d.ok && d.error.is_none() && d.ms.is_some(), "{d:?}");
        }
        // torch counts the memory less what the driver reserves (NVML: 143771 MiB); JAX
        // does not report it.
        assert_eq!(torch.devices[0].memory_mib, Some(143155));
        assert_eq!(jax.devices[0].memory_mib, None);

        let v = judge(&o, true);
        assert!(v.ok && v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(
            render_report(&o, &v),
            [
                "python 3.12.3",
                "torch 2.11.0+cu130, built for CUDA 13.0",
                "  cpu      matmul ok (2.8 ms)",
                "  gpu 0    NVIDIA H200 sm 9.0, 143155 MiB: matmul ok (211.1 ms)",
                "jax 0.11.2",
                "  cpu      matmul ok (1817.9 ms)",
                "  gpu 0    NVIDIA H200 sm 9.0: matmul ok (701.9 ms)",
                "check passed",
            ]
        );

        let image = "dlenv/h200:latest";
        let j = serde_json::to_value(CheckJson {
            image,
            observed: &o,
            verdict: &v,
        })
        .unwrap();
        assert_eq!(j["image"], image);
        assert_eq!(
            j["verdict"],
            serde_json::json!({"ok": true, "problems": []})
        );
        let fw = &j["observed"]["frameworks"];
        assert_eq!(fw[0]["name"], "torch");
        assert_eq!(fw[0]["version"], "2.11.0+cu130");
        assert_eq!(fw[0]["cuda_version"], "13.0");
        assert_eq!(fw[1]["name"], "jax");
        assert_eq!(fw[1]["version"], "0.11.2");
        for i in 0..2 {
            assert_eq!(fw[i]["cuda_available"], true);
            assert_eq!(fw[i]["devices"][0]["name"], "NVIDIA H200");
            assert_eq!(fw[i]["devices"][0]["capability"], "9.0");
            assert_eq!(fw[i]["devices"][0]["ok"], true);
        }

        // Without the GPUs passed in, the same image sees no CUDA: a problem per framework.
        let mut cpu_only = o.clone();
        for f in &mut cpu_only.frameworks {
            f.cuda_available = false;
            f.devices.clear();
        }
        let v = judge(&cpu_only, true);
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        assert!(
            v.problems[0].contains("torch 2.11.0+cu130 sees no CUDA device")
                && v.problems[0].contains("its CUDA 13.0"),
            "{:?}",
            v.problems
        );
        assert!(v.problems[1].contains("jax 0.11.2 sees no CUDA device"));
    }

    /// A framework's warning on stdout before the JSON line does not break the parsing.
    #[test]
    fn probe_output_is_its_last_line() {
        let noisy = format!("W1130 01:41:02 some framework warning\n{H200_TORCH_JAX}");
        assert_eq!(parse_observed(&noisy).unwrap().frameworks.len(), 2);
        assert!(parse_observed("Traceback (most recent call last):\n").is_err());
    }

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
