//! Table-driven rule tests, an exhaustive property test and bad-database tests.

use crate::resolve::resolve_inner;
use crate::rules::{Coverage, coverage, rule};
use crate::*;

fn db() -> CompatDb {
    CompatDb::embedded()
}

fn v(s: &str) -> DottedVersion {
    s.parse().unwrap()
}

fn cc(s: &str) -> ComputeCapability {
    s.parse().unwrap()
}

fn host(db: &CompatDb, driver: &str, gpus: &[&str]) -> HostFacts {
    HostFacts {
        driver: Some(v(driver)),
        gpus: gpus
            .iter()
            .map(|g| GpuFact::from_name(db, g).unwrap())
            .collect(),
        platform: Platform::LinuxX86_64,
    }
}

fn req(s: &str) -> Request {
    Request::new(s.parse().unwrap())
}

/// Rules that `matrix` reports for one build on a host.
fn matrix_rules(db: &CompatDb, h: &HostFacts, build: &str) -> Vec<&'static str> {
    let fw = if build.contains("cuda1") || build.starts_with("0.") {
        Framework::Jax
    } else if build.contains('+') {
        Framework::Pytorch
    } else {
        Framework::Tensorflow
    };
    let rows = matrix(db, h, Some(fw));
    let row = rows
        .iter()
        .find(|r| r.build == build && r.cuda.is_some())
        .unwrap_or_else(|| panic!("no matrix row {build}"));
    row.why_not.iter().map(|h| h.rule).collect()
}

#[test]
fn embedded_db_loads_and_counts() {
    let db = db();
    let info = db_info(&db);
    assert_eq!(info.schema_version, 1);
    assert!(!info.version.is_empty());
    assert!(info.rows["pytorch.release"] >= 38);
    assert!(info.rows["images.cuda"] >= 19);
    assert!(
        serde_json::to_string(&info)
            .unwrap()
            .contains("gpus.product")
    );
}

#[test]
fn dotted_version_order_and_display() {
    assert!(v("570.124.06") > v("570.26"));
    assert_eq!(v("12.8"), v("12.8.0"));
    assert!(v("9.1.0.70") < v("9.5.1.17"));
    assert_eq!(v("570.124.06").to_string(), "570.124.06");
    assert!("12..8".parse::<DottedVersion>().is_err());
    assert!("".parse::<DottedVersion>().is_err());
    assert!("12.x".parse::<DottedVersion>().is_err());
}

#[test]
fn version_specs() {
    let cases = [
        ("==2.7.0", "2.7.0", true),
        ("==2.7.0", "2.7.1", false),
        (">=2.4,<2.8", "2.7.1", true),
        (">=2.4,<2.8", "2.8.0", false),
        ("==2.15.*", "2.15.0", true),
        ("==2.15.*", "2.16.1", false),
        ("2.7", "2.7.1", true),
        ("2.7", "2.8.0", false),
        ("~=2.7", "2.9.0", true),
        ("~=2.7.0", "2.8.0", false),
        ("!=2.6.0", "2.6.0", false),
        (">2.6", "2.6.0", false),
    ];
    for (spec, ver, want) in cases {
        let s: VersionSpec = spec.parse().unwrap();
        assert_eq!(s.matches(&v(ver)), want, "{spec} vs {ver}");
    }
    for bad in [">=", "==2.x", ">=2.*", "~=2", "2.7,,"] {
        assert!(bad.parse::<VersionSpec>().is_err(), "{bad}");
    }
}

#[test]
fn request_parsers_explain_errors() {
    let e = "pytroch==2.7".parse::<FrameworkReq>().unwrap_err();
    assert!(e.to_string().contains("did you mean \"pytorch\""), "{e}");
    let f: FrameworkReq = "torch>=2.4,<2.8".parse().unwrap();
    assert_eq!(f.framework, Framework::Pytorch);
    assert!(f.version.unwrap().matches(&v("2.5.1")));
    let f: FrameworkReq = "tensorflow==2.15.*".parse().unwrap();
    assert_eq!(f.framework, Framework::Tensorflow);
    let e = "torch==two".parse::<FrameworkReq>().unwrap_err();
    assert!(e.to_string().contains("torch==2.7.0"), "{e}");
    assert_eq!(
        "cu128".parse::<CudaReq>().unwrap(),
        CudaReq::Exact(v("12.8"))
    );
    assert_eq!("12".parse::<CudaReq>().unwrap(), CudaReq::Major(12));
    assert_eq!(
        "12.8.1".parse::<CudaReq>().unwrap(),
        CudaReq::Exact(v("12.8"))
    );
    assert!(
        "cpu"
            .parse::<CudaReq>()
            .unwrap_err()
            .to_string()
            .contains("--cpu-only")
    );
    let e = "runtme".parse::<Flavor>().unwrap_err();
    assert!(e.to_string().contains("did you mean \"runtime\""), "{e}");
    assert_eq!(parse_ubuntu("ubuntu24.04").unwrap(), "24.04");
    assert!(parse_ubuntu("noble").is_err());
    assert!(parse_python("3.12").unwrap().matches(&v("3.12")));
    assert!(parse_python("2.7").is_err());
}

#[test]
fn gpu_lookup_is_fuzzy() {
    let db = db();
    let cases = [
        ("NVIDIA H200", "9.0", Brand::Tesla),
        ("H200", "9.0", Brand::Tesla),
        ("GeForce RTX 4090", "8.9", Brand::Geforcertx),
        ("NVIDIA GeForce RTX 5090", "12.0", Brand::Geforcertx),
        ("NVIDIA A100-SXM4-80GB", "8.0", Brand::Tesla),
        ("Tesla V100-SXM2-16GB", "7.0", Brand::Tesla),
        ("nvidia l40s", "8.9", Brand::Tesla),
        ("NVIDIA RTX 6000 Ada Generation", "8.9", Brand::Nvidiartx),
        ("Quadro RTX 6000", "7.5", Brand::Quadrortx),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", "8.9", Brand::Geforcertx),
        ("Jetson AGX Orin", "8.7", Brand::Jetson),
    ];
    for (name, want, brand) in cases {
        let p = lookup_gpu(&db, name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.cc, cc(want), "{name}");
        assert_eq!(p.brand, brand, "{name}");
    }
    assert_eq!(
        lookup_gpu(&db, "RTX 4070 Ti").unwrap().name,
        "GeForce RTX 4070 Ti"
    );
    let e = lookup_gpu(&db, "RTX 4099").unwrap_err();
    assert!(!e.close.is_empty(), "{e}");
    assert!(e.to_string().contains("did you mean"), "{e}");
}

#[test]
fn arch_rule_cubin_and_ptx() {
    let s = |l: &[&str]| l.iter().map(|x| cc(x)).collect::<Vec<_>>();
    // (sass, ptx, gpu, igpu, expected)
    type Case<'a> = (
        Vec<ComputeCapability>,
        Vec<ComputeCapability>,
        &'a str,
        bool,
        Coverage,
    );
    let cases: Vec<Case> = vec![
        (s(&["8.0"]), s(&[]), "8.6", false, Coverage::Sass(cc("8.0"))),
        (s(&["8.0"]), s(&[]), "8.9", false, Coverage::Sass(cc("8.0"))),
        (s(&["8.0"]), s(&[]), "9.0", false, Coverage::None),
        (s(&["8.6"]), s(&[]), "8.0", false, Coverage::None),
        (
            s(&["8.0"]),
            s(&["8.0"]),
            "9.0",
            false,
            Coverage::Ptx(cc("8.0")),
        ),
        (
            s(&["7.5"]),
            s(&["12.0"]),
            "12.1",
            false,
            Coverage::Ptx(cc("12.0")),
        ),
        (
            s(&["12.0"]),
            s(&[]),
            "12.1",
            false,
            Coverage::Sass(cc("12.0")),
        ),
        (
            s(&["6.0", "7.0"]),
            s(&["9.0"]),
            "8.9",
            false,
            Coverage::None,
        ),
        (s(&["3.7"]), s(&[]), "3.5", false, Coverage::None),
        (s(&["8.0", "8.6"]), s(&[]), "8.7", true, Coverage::None),
        (s(&["8.7"]), s(&[]), "8.7", true, Coverage::Sass(cc("8.7"))),
    ];
    for (sass, ptx, gpu, igpu, want) in cases {
        assert_eq!(coverage(&sass, &ptx, cc(gpu), igpu), want, "{gpu}");
    }
}

#[test]
fn driver_floor_table() {
    let db = db();
    // (build, gpu, driver, must_have_driver_floor)
    let cases = [
        ("1.12.1+cu102", "V100", "440.33", false),
        ("1.12.1+cu102", "V100", "418.39", true),
        ("1.7.1+cu92", "V100", "396.26", false),
        ("1.7.1+cu101", "V100", "410.48", true),
        ("1.7.1+cu110", "A100", "450.51.05", false),
        ("2.0.0+cu118", "A100", "450.80.02", false),
        ("2.0.0+cu118", "A100", "450.51.06", true),
        ("2.7.0+cu128", "A100", "525.60.13", false),
        ("2.7.0+cu128", "A100", "525.60.12", true),
        ("2.13.0+cu130", "A100", "575.57.08", true),
        ("2.13.0+cu130", "A100", "580.65.06", false),
        ("2.13.0+cu132", "H100", "580.65.06", false),
    ];
    for (build, gpu, driver, want) in cases {
        let h = host(&db, driver, &[gpu]);
        let rules = matrix_rules(&db, &h, build);
        assert_eq!(
            rules.contains(&rule::DRIVER_FLOOR),
            want,
            "{build} {gpu} {driver}: {rules:?}"
        );
    }
}

#[test]
fn gpu_arch_ptx_and_gpu_driver_table() {
    let db = db();
    // (build, gpu, driver, rule expected or None for ok)
    let cases = [
        ("2.7.0+cu128", "V100", "580.65.06", Some(rule::GPU_ARCH)),
        ("2.8.0+cu128", "V100", "580.65.06", None),
        ("2.11.0+cu128", "V100", "580.65.06", Some(rule::GPU_ARCH)),
        ("2.13.0+cu126", "V100", "580.65.06", None),
        (
            "2.7.0+cu126",
            "GeForce RTX 5090",
            "580.65.06",
            Some(rule::GPU_ARCH),
        ),
        ("2.7.0+cu128", "GeForce RTX 5090", "580.65.06", None),
        (
            "2.7.0+cu128",
            "GeForce RTX 5090",
            "535.104.05",
            Some(rule::GPU_DRIVER),
        ),
        ("2.7.0+cu128", "GeForce RTX 5090", "570.26", None),
        ("2.8.0+cu129", "GB10", "575.51.03", None),
        ("1.12.1+cu113", "Tesla K80", "470.82.01", None),
        (
            "1.12.1+cu113",
            "Tesla K40",
            "470.82.01",
            Some(rule::GPU_ARCH),
        ),
        (
            "2.1.0+cu121",
            "Tesla K80",
            "470.82.01",
            Some(rule::GPU_ARCH),
        ),
        ("2.13.0+cu126", "Tesla P100", "580.65.06", None),
        (
            "2.13.0+cu130",
            "Tesla P100",
            "580.65.06",
            Some(rule::GPU_ARCH),
        ),
        (
            "2.13.0+cu126",
            "Jetson AGX Orin",
            "580.65.06",
            Some(rule::GPU_ARCH),
        ),
        // TF 2.17: sm_60/70/80/89 + compute_90: an H100 needs the PTX JIT of CUDA 12.3.
        ("2.17.0", "H100", "535.104.05", Some(rule::PTX_JIT)),
        ("2.17.0", "H100", "545.23.06", None),
        ("2.17.0", "L4", "535.104.05", None),
        (
            "2.17.0",
            "GeForce GTX 980",
            "550.54.15",
            Some(rule::GPU_ARCH),
        ),
    ];
    for (build, gpu, driver, want) in cases {
        let h = host(&db, driver, &[gpu]);
        let rules = matrix_rules(&db, &h, build);
        match want {
            Some(r) => assert!(rules.contains(&r), "{build} {gpu} {driver}: {rules:?}"),
            None => assert!(rules.is_empty(), "{build} {gpu} {driver}: {rules:?}"),
        }
    }
}

#[test]
fn request_rule_table() {
    let db = db();
    let a100 = host(&db, "580.65.06", &["A100"]);
    // (framework, python, cuda, cudnn, ok build or failing rule)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Result<&'a str, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "pytorch==2.7.0",
            Some("3.14"),
            None,
            None,
            Err(rule::PYTHON),
        ),
        (
            "pytorch==2.7.0",
            Some("3.13"),
            None,
            None,
            Ok("2.7.0+cu128"),
        ),
        (
            "pytorch==2.7.0",
            None,
            Some("12.1"),
            None,
            Err(rule::VARIANT_MISSING),
        ),
        (
            "pytorch==2.7.0",
            None,
            Some("cu126"),
            None,
            Ok("2.7.0+cu126"),
        ),
        ("pytorch==2.7.0", None, Some("12"), None, Ok("2.7.0+cu128")),
        (
            "pytorch==2.7.0",
            None,
            Some("11"),
            Some("9.1"),
            Ok("2.7.0+cu118"),
        ),
        ("pytorch==2.7.0", None, None, Some("8"), Err(rule::CUDNN)),
        ("pytorch==2.99", None, None, None, Err(rule::VERSION)),
        (
            "tensorflow==2.15.0",
            None,
            Some("12.3"),
            None,
            Err(rule::TF_CUDA_PAIR),
        ),
        ("tensorflow==2.15.0", None, Some("12.2"), None, Ok("2.15.0")),
        (
            "tensorflow==2.15.0",
            None,
            None,
            Some("9"),
            Err(rule::TF_CUDA_PAIR),
        ),
        ("tensorflow==2.12.0", None, None, None, Ok("2.12.0")),
        (
            "tensorflow==2.3.0",
            None,
            None,
            None,
            Err(rule::TF_CUDA_PAIR),
        ),
        ("jax==0.11.0", Some("3.11"), None, None, Err(rule::PYTHON)),
        ("jax==0.7.1", None, Some("13"), None, Ok("0.7.1+cuda13")),
        (
            "jax==0.6.0",
            None,
            Some("13"),
            None,
            Err(rule::VARIANT_MISSING),
        ),
    ];
    for (fw, py, cuda, cudnn, want) in cases {
        let mut r = req(fw);
        r.python = py.map(|p| parse_python(p).unwrap());
        r.cuda = cuda.map(|c| c.parse().unwrap());
        r.cudnn = cudnn.map(|c| parse_cudnn(c).unwrap());
        let got = resolve_inner(&db, &r, &a100);
        match (want, got) {
            (Ok(b), Ok(res)) => {
                assert_eq!(res.stack.build, b, "{fw} {py:?} {cuda:?}");
                assert!(verify_stack(&db, &res.stack, &a100).is_empty());
            }
            (Err(rid), Err(rej)) => assert!(
                rej.iter().any(|(_, h)| h.iter().any(|x| x.rule == rid)),
                "{fw} {py:?} {cuda:?}: expected {rid}, got {rej:?}"
            ),
            (w, g) => panic!(
                "{fw} {py:?} {cuda:?}: want {w:?}, got {:?}",
                g.map(|r| r.stack.build)
            ),
        }
    }
}

#[test]
fn tensorflow_pre_and_cuda_uses_exact_cudnn_image() {
    let db = db();
    let h = host(&db, "525.60.13", &["A100"]);
    let res = resolve(&db, &req("tensorflow==2.12.0"), &h).unwrap();
    assert_eq!(
        res.stack.base_image,
        "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"
    );
    assert_eq!(res.stack.requirements, vec!["tensorflow==2.12.0"]);
    let res = resolve(&db, &req("tensorflow==2.16.1"), &h).unwrap();
    assert_eq!(res.stack.requirements, vec!["tensorflow[and-cuda]==2.16.1"]);
    let res = resolve(&db, &req("tensorflow==2.5.0"), &h).unwrap();
    assert!(
        res.stack
            .base_image
            .starts_with("nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu")
    );
    assert!(!res.stack.warnings.is_empty(), "EOL image warning expected");
}

#[test]
fn jax_floor_table() {
    let db = db();
    // (spec, cuda, gpu, driver, expect ok)
    let cases = [
        ("jax==0.7.1", "13", "T4", "580.65.06", true),
        ("jax==0.7.1", "13", "V100", "580.65.06", false),
        ("jax==0.7.1", "13", "T4", "575.57.08", false),
        ("jax==0.7.1", "12", "V100", "525.60.13", true),
        ("jax==0.7.1", "12", "V100", "520.61.05", false),
        ("jax==0.7.1", "12", "Tesla K80", "535.104.05", false),
        ("jax==0.8.0", "12", "Tesla M60", "525.60.13", true),
    ];
    for (spec, cuda, gpu, driver, want) in cases {
        let h = host(&db, driver, &[gpu]);
        let mut r = req(spec);
        r.cuda = Some(cuda.parse().unwrap());
        let got = resolve_inner(&db, &r, &h);
        assert_eq!(got.is_ok(), want, "{spec} cuda{cuda} {gpu} {driver}");
        if let Err(rej) = got {
            assert!(
                rej.iter()
                    .any(|(_, h)| h.iter().any(|x| x.rule == rule::JAX_FLOOR)),
                "{rej:?}"
            );
        }
    }
}

#[test]
fn image_tags_and_brand_exceptions() {
    let db = db();
    let h = host(&db, "580.65.06", &["A100"]);
    let known = [
        "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
        "nvidia/cuda:12.3.2-cudnn9-devel-ubuntu22.04",
        "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04",
        "docker.io/nvidia/cuda:13.0.2-base-ubuntu24.04",
        "nvcr.io/nvidia/cuda:12.5.1-runtime-ubuntu24.04",
    ];
    for t in known {
        let vd = check_image(&db, t, &h);
        assert!(vd.known && vd.ok, "{t}: {vd:?}");
    }
    let unknown = [
        "nvidia/cuda:latest",
        "nvidia/cuda",
        "nvidia/cuda:12.5.1-cudnn-runtime-ubuntu24.04",
        "nvidia/cuda:13.0.2-runtime-ubuntu20.04",
        "nvidia/cuda:12.7.0-base-ubuntu22.04",
        "nvidia/cuda:12.3.2-cudnn-devel-ubuntu22.04",
        "nvidia/cuda:12.8.1-cudnn-base-ubuntu24.04",
        "ubuntu:24.04",
    ];
    for t in unknown {
        let vd = check_image(&db, t, &h);
        assert!(
            !vd.known && vd.problems.iter().any(|p| p.rule == rule::IMAGE_TAG),
            "{t}: {vd:?}"
        );
    }
    // (image, gpu, driver, expected rule or None)
    let cases = [
        (
            "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
            "T4",
            "535.104.05",
            None,
        ),
        (
            "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
            "GeForce RTX 4090",
            "535.104.05",
            Some(rule::BRAND_EXCEPTION),
        ),
        (
            "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
            "GeForce RTX 4090",
            "570.124.06",
            None,
        ),
        (
            "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
            "T4",
            "470.82.01",
            None,
        ),
        (
            "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
            "GeForce GTX 1080",
            "470.82.01",
            Some(rule::BRAND_EXCEPTION),
        ),
        (
            "nvidia/cuda:11.8.0-runtime-ubuntu22.04",
            "GeForce RTX 3090",
            "470.57.02",
            None,
        ),
        (
            "nvidia/cuda:11.8.0-runtime-ubuntu22.04",
            "GeForce RTX 3090",
            "465.19.01",
            Some(rule::IMAGE_REQUIRE),
        ),
        (
            "nvidia/cuda:12.9.1-runtime-ubuntu24.04",
            "T4",
            "545.23.08",
            Some(rule::IMAGE_REQUIRE),
        ),
        (
            "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
            "GeForce RTX 5090",
            "570.26",
            Some(rule::GPU_ARCH),
        ),
        (
            "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
            "Tesla K80",
            "570.26",
            Some(rule::GPU_ARCH),
        ),
    ];
    for (img, gpu, driver, want) in cases {
        let vd = check_image(&db, img, &host(&db, driver, &[gpu]));
        let rules: Vec<_> = vd.problems.iter().map(|p| p.rule).collect();
        match want {
            Some(r) => assert!(rules.contains(&r), "{img} {gpu} {driver}: {rules:?}"),
            None => assert!(vd.ok, "{img} {gpu} {driver}: {rules:?}"),
        }
    }
    let req = db.image_row(&v("12.9.1")).unwrap().nvidia_require_cuda();
    assert!(
        req.starts_with("cuda>=12.9 brand=unknown,driver>=535,driver<536"),
        "{req}"
    );
    assert!(!req.contains("geforce"));
}

#[test]
fn conflict_explains_and_suggests_driver_upgrade() {
    let db = db();
    let h = host(&db, "535.104.05", &["NVIDIA GeForce RTX 5090"]);
    let c = resolve(&db, &req("pytorch==2.7.0"), &h).unwrap_err();
    let rules: Vec<_> = c.conflicts.iter().map(|h| h.rule).collect();
    assert!(
        rules.contains(&rule::GPU_DRIVER) && rules.contains(&rule::GPU_ARCH),
        "{rules:?}"
    );
    let text = c.to_string();
    assert!(text.contains("upgrade the driver to ≥ 570.26"), "{text}");
    assert!(text.contains("sm_120"), "{text}");
    assert!(
        c.nearest.iter().any(|s| s.change == "run CPU-only"),
        "{:?}",
        c.nearest
    );
    let _json = serde_json::to_string(&c).unwrap();
}

#[test]
fn conflict_suggests_older_framework_and_python() {
    let db = db();
    let h = host(&db, "580.65.06", &["GeForce RTX 5090"]);
    let c = resolve(&db, &req("pytorch==2.6.0"), &h).unwrap_err();
    assert!(
        c.nearest
            .iter()
            .any(|s| s.change == "use torch 2.13.0+cu132"),
        "{:?}",
        c.nearest
    );
    // No PyTorch build has had sm_35 since 2019: a K40 gets only a CPU fallback.
    let h = host(&db, "470.82.01", &["Tesla K40"]);
    let c = resolve(&db, &req("pytorch"), &h).unwrap_err();
    assert!(c.conflicts.iter().any(|x| x.rule == rule::GPU_ARCH));
    assert_eq!(c.nearest.len(), 1, "{:?}", c.nearest);
    let a100 = host(&db, "580.65.06", &["A100"]);
    let mut r = req("pytorch==2.7.0");
    r.python = Some(parse_python("3.14").unwrap());
    let c = resolve(&db, &r, &a100).unwrap_err();
    assert!(
        c.nearest.iter().any(|s| s.change == "use python 3.13"),
        "{:?}",
        c.nearest
    );
}

#[test]
fn cpu_stacks_on_gpu_less_hosts() {
    let db = db();
    let h = HostFacts::default();
    let cases = [
        ("pytorch", "2.13.0+cpu", "torch==2.13.0"),
        ("tensorflow", "2.21.0", "tensorflow==2.21.0"),
        ("jax", "0.11.0+cpu", "jax==0.11.0"),
    ];
    for (fw, build, line) in cases {
        let res = resolve(&db, &req(fw), &h).unwrap();
        assert_eq!(res.stack.accelerator, Accelerator::Cpu);
        assert_eq!(res.stack.build, build);
        assert_eq!(res.stack.requirements[0], line);
        assert_eq!(res.stack.base_image, "ubuntu:24.04");
        assert!(res.stack.cuda.is_none());
        assert!(verify_stack(&db, &res.stack, &h).is_empty());
    }
    let res = resolve(&db, &req("pytorch"), &h).unwrap();
    assert_eq!(
        res.stack.index_url.as_deref(),
        Some("https://download.pytorch.org/whl/cpu")
    );
    let json = serde_json::to_value(&res).unwrap();
    assert_eq!(json["stack"]["accelerator"], "cpu");
}

#[test]
fn gpu_stack_shape() {
    let db = db();
    let h = host(&db, "570.124.06", &["NVIDIA GeForce RTX 5090"]);
    let res = resolve(&db, &req("pytorch"), &h).unwrap();
    let s = &res.stack;
    assert_eq!(s.build, "2.11.0+cu128");
    assert_eq!(
        s.requirements,
        vec!["torch==2.11.0", "torchvision==0.26.0", "torchaudio==2.11.0"]
    );
    assert_eq!(
        s.index_url.as_deref(),
        Some("https://download.pytorch.org/whl/cu128")
    );
    assert_eq!(s.base_image, "nvidia/cuda:12.8.1-runtime-ubuntu24.04");
    assert_eq!(s.python, v("3.14"));
    assert_eq!(s.driver_floor, Some(v("570.26")));
    assert!(s.gpu_archs.contains(&"sm_120".to_string()));
    assert!(!res.alternatives.is_empty());
    assert!(
        res.alternatives
            .iter()
            .all(|a| verify_stack(&db, a, &h).is_empty())
    );
    // none framework: CUDA base image the driver can start.
    let res = resolve(&db, &req("none"), &h).unwrap();
    assert_eq!(
        res.stack.base_image,
        "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
    );
}

/// Property test: every stack the resolver returns passes the independent checker.
#[test]
fn property_every_resolved_stack_verifies() {
    let db = db();
    let drivers = [
        "418.39",
        "440.33",
        "450.51.05",
        "450.80.02",
        "470.82.01",
        "510.47.03",
        "525.60.13",
        "535.104.05",
        "545.23.08",
        "550.54.15",
        "560.35.03",
        "570.26",
        "570.124.06",
        "575.57.08",
        "580.65.06",
        "590.44.01",
    ];
    let gpu_sets: Vec<Vec<&str>> = vec![
        vec![],
        vec!["Tesla K80"],
        vec!["Tesla P100"],
        vec!["GeForce GTX 1080"],
        vec!["V100"],
        vec!["T4"],
        vec!["A100"],
        vec!["GeForce RTX 3090"],
        vec!["L4"],
        vec!["H100"],
        vec!["GeForce RTX 5090"],
        vec!["B200"],
        vec!["GB10"],
        vec!["Jetson AGX Orin"],
        vec!["T4", "GeForce RTX 4090"],
    ];
    let fws = [
        "pytorch",
        "pytorch>=2.4,<2.8",
        "pytorch==1.12.1",
        "tensorflow",
        "tensorflow==2.12.0",
        "jax",
        "none",
    ];
    let pythons = [None, Some("3.10")];
    let (mut ok, mut conflicts) = (0, 0);
    for d in drivers {
        for gs in &gpu_sets {
            let h = host(&db, d, gs);
            for fw in fws {
                for py in pythons {
                    let mut r = req(fw);
                    r.python = py.map(|p| parse_python(p).unwrap());
                    match resolve_inner(&db, &r, &h) {
                        Ok(res) => {
                            ok += 1;
                            for s in std::iter::once(&res.stack).chain(&res.alternatives) {
                                let hits = verify_stack(&db, s, &h);
                                assert!(
                                    hits.is_empty(),
                                    "{fw} {py:?} {d} {gs:?}: {} {hits:?}",
                                    s.build
                                );
                                if let (Some(spec), Some(ver)) = (&r.framework.version, &s.version)
                                {
                                    assert!(spec.matches(ver));
                                }
                                if let Some(p) = &r.python {
                                    assert!(p.matches(&s.python));
                                }
                                assert_eq!(s.accelerator == Accelerator::Cpu, gs.is_empty());
                            }
                        }
                        Err(rej) => {
                            conflicts += 1;
                            assert!(rej.iter().all(|(_, h)| !h.is_empty()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        ok > 1000 && conflicts > 100,
        "ok {ok}, conflicts {conflicts}"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad database input

fn with_file(name: &str, text: &str) -> Result<CompatDb, DbError> {
    let srcs: Vec<(&str, &str)> = CompatDb::embedded_sources()
        .iter()
        .map(|(n, t)| if *n == name { (*n, text) } else { (*n, *t) })
        .collect();
    CompatDb::from_sources(&srcs)
}

fn embedded(name: &str) -> &'static str {
    CompatDb::embedded_sources()
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

#[test]
fn bad_db_errors_name_file_and_row() {
    let pt = embedded("pytorch.toml");
    // Unknown CUDA variant in the 2.7.0 row.
    let bad = pt.replacen(
        "variants = [\"cu118\", \"cu126\", \"cu128\"]",
        "variants = [\"cu118\", \"cu126\", \"cu999\"]",
        1,
    );
    let e = with_file("pytorch.toml", &bad).unwrap_err().to_string();
    assert!(e.starts_with("pytorch.toml: [[release]] #"), "{e}");
    assert!(e.contains("version \"2.7.0\""), "{e}");
    assert!(e.contains("unknown cuda variant \"cu999\""), "{e}");
    // Unparsable field.
    let bad = pt.replacen("version = \"2.7.0\"", "version = \"2.7.x\"", 1);
    let e = with_file("pytorch.toml", &bad).unwrap_err().to_string();
    assert!(
        e.contains("pytorch.toml: [[release]] #") && e.contains("2.7.x"),
        "{e}"
    );
    // Missing source.
    let bad = embedded("cuda.toml").replacen(
        "driver = \"570.26\"\nsource = \"https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html\"",
        "driver = \"570.26\"\nsource = \"\"",
        1,
    );
    let e = with_file("cuda.toml", &bad).unwrap_err().to_string();
    assert!(
        e.contains("cuda.toml: [[release]] #") && e.contains("source"),
        "{e}"
    );
    // Syntax error.
    let e = with_file("jax.toml", "schema_version = 1\n[[build]\n").unwrap_err();
    assert!(e.to_string().starts_with("jax.toml: TOML syntax"), "{e}");
    // Schema version.
    let e = with_file(
        "meta.toml",
        "schema_version = 2\nversion = \"x\"\ndate = \"y\"\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("schema_version 2 is not supported"),
        "{e}"
    );
    // Missing file.
    let e = CompatDb::from_sources(&CompatDb::embedded_sources()[..6]).unwrap_err();
    assert!(matches!(e, DbError::MissingFile { .. }), "{e}");
    // Unknown key (typo).
    let bad = embedded("tensorflow.toml").replacen("\nand_cuda =", "\nand_cud =", 1);
    let e = with_file("tensorflow.toml", &bad).unwrap_err().to_string();
    assert!(
        e.contains("tensorflow.toml: [[release]] #1 (version \"2.21.0\")"),
        "{e}"
    );
}

#[test]
fn bad_db_dangling_references() {
    let e = with_file(
        "tensorflow.toml",
        &embedded("tensorflow.toml").replacen("cuda = \"12.5\"", "cuda = \"12.7\"", 1),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tensorflow.toml: [[release]] #1")
            && e.contains("CUDA 12.7 is not in cuda.toml"),
        "{e}"
    );
    let e = with_file(
        "images.toml",
        &embedded("images.toml").replacen("version = \"12.8.1\"", "version = \"12.8.7\"", 1),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("images.toml: [[cuda]] #") && e.contains("12.8.7"),
        "{e}"
    );
    let e = with_file(
        "gpus.toml",
        &embedded("gpus.toml").replacen(
            "name = \"H100\"\ncc = \"9.0\"",
            "name = \"H100\"\ncc = \"9.9\"",
            1,
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("gpus.toml: [[product]] #") && e.contains("9.9"),
        "{e}"
    );
    // A release variant without an [[archs]] row.
    let e = with_file(
        "pytorch.toml",
        &embedded("pytorch.toml").replacen(
            "versions = \">=2.8,<2.9\"\nvariant = \"cu129\"",
            "versions = \">=2.9,<2.10\"\nvariant = \"cu129\"",
            1,
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("variant \"cu129\" is matched by 0 [[archs]] rows"),
        "{e}"
    );
}

#[test]
fn every_row_has_a_public_source() {
    let db = db();
    let json = serde_json::to_value(&db).unwrap();
    fn walk(v: &serde_json::Value, n: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(s) = m.get("source") {
                    let s = s.as_str().unwrap();
                    assert!(s.starts_with("https://") && !s.contains("reference"), "{s}");
                    *n += 1;
                }
                m.values().for_each(|x| walk(x, n));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, n)),
            _ => {}
        }
    }
    let mut n = 0;
    walk(&json, &mut n);
    assert!(n > 250, "{n}");
}

/// Cross-check against replicate/cog's scraped matrices (fixtures copied from
/// `pkg/config/torch_compatibility.json` / `tf_compatibility.json` @ 6110c912).
#[test]
fn cog_builds_are_known() {
    let db = db();
    // Disagreements found and resolved in favour of the primary source (see pytorch.toml).
    let known_disagreements = ["2.11.0 12.9"];
    for line in include_str!("../tests/fixtures/cog-torch-gpu-builds.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() || known_disagreements.contains(&line) {
            continue;
        }
        let (ver, cuda) = line.split_once(' ').unwrap();
        let variant = format!("cu{}", cuda.replace('.', ""));
        let rel = db.pytorch.releases.iter().find(|r| r.version == v(ver));
        assert!(
            rel.is_some_and(|r| r.variants.contains(&variant)),
            "cog lists torch {ver}+{variant}, the DB does not"
        );
    }
    for line in include_str!("../tests/fixtures/cog-tf-builds.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let r = db
            .tensorflow
            .iter()
            .find(|r| r.version == v(f[0]))
            .unwrap_or_else(|| panic!("cog lists tensorflow {}", f[0]));
        assert_eq!(r.cuda, v(f[1]), "{line}");
        assert_eq!(r.cudnn, v(f[2]), "{line}");
        let py: Vec<DottedVersion> = f[3].split(',').map(v).collect();
        assert_eq!(r.python, py, "{line}");
    }
}

/// The host facts `dlenv doctor` recorded on a real H200 (2026-11-30, fixture
/// `dlenv-probe/tests/fixtures/hosts/h200-ubuntu-24.04`): NVML's driver, name and compute
/// capability, the brand from the product table, as `dlenv resolve` builds them.
fn h200_recorded(db: &CompatDb) -> HostFacts {
    let name = "NVIDIA H200";
    HostFacts {
        driver: Some(v("580.159.04")),
        gpus: vec![GpuFact {
            name: Some(name.into()),
            cc: cc("9.0"),
            brand: lookup_gpu(db, name).ok().map(|p| p.brand),
        }],
        platform: Platform::LinuxX86_64,
    }
}

#[test]
fn real_h200_host_resolves_and_refuses_like_on_the_device() {
    let db = db();
    // gpus.toml knows the name NVML reports, with NVML's compute capability.
    let p = lookup_gpu(&db, "NVIDIA H200").unwrap();
    assert_eq!(
        (p.name.as_str(), p.cc, p.brand),
        ("H200", cc("9.0"), Brand::Tesla)
    );
    let h = h200_recorded(&db);
    assert_eq!(h, host(&db, "580.159.04", &["NVIDIA H200"]));

    // `dlenv resolve --framework pytorch` on the device: a CUDA stack with sm_90 kernels.
    let res = resolve(&db, &req("pytorch"), &h).unwrap();
    for s in std::iter::once(&res.stack).chain(&res.alternatives) {
        assert_eq!(s.accelerator, Accelerator::Cuda, "{}", s.build);
        assert!(
            s.gpu_archs.iter().any(|a| a == "sm_90"),
            "{}: {:?}",
            s.build,
            s.gpu_archs
        );
        assert!(
            s.driver_floor
                .as_ref()
                .is_some_and(|f| *f <= v("580.159.04")),
            "{}",
            s.build
        );
        assert!(verify_stack(&db, s, &h).is_empty(), "{}", s.build);
    }
    // TensorFlow's newest builds have sm_90 only as PTX (compute_90), which this driver
    // JITs; JAX's CUDA 13 build needs ≥ sm_75.
    let tf = resolve(&db, &req("tensorflow"), &h).unwrap();
    assert_eq!(tf.stack.accelerator, Accelerator::Cuda);
    assert!(
        tf.stack.gpu_archs.iter().any(|a| a == "compute_90"),
        "{:?}",
        tf.stack.gpu_archs
    );
    let jax = resolve(&db, &req("jax"), &h).unwrap();
    assert!(jax.stack.build.ends_with("+cuda13"), "{}", jax.stack.build);

    // `dlenv resolve --framework pytorch==1.13.1` printed (exit 3):
    //   gpu-arch: torch 1.13.1+cu117 contains no kernel for NVIDIA H200 (sm_90) (it has
    //   sm_37 sm_50 sm_60 sm_70 sm_75 sm_80 sm_86) (and 1 more build)
    let c = resolve(&db, &req("pytorch==1.13.1"), &h).unwrap_err();
    let rules: Vec<&str> = c.conflicts.iter().map(|x| x.rule).collect();
    assert_eq!(rules, [rule::GPU_ARCH]);
    let msg = &c.conflicts[0].message;
    assert!(
        msg.contains("torch 1.13.1+cu117 contains no kernel for NVIDIA H200 (sm_90)")
            && msg.contains("(it has sm_37 sm_50 sm_60 sm_70 sm_75 sm_80 sm_86)"),
        "{msg}"
    );
    assert!(
        c.nearest
            .iter()
            .any(|s| s.change.starts_with("use torch 2.")),
        "{:?}",
        c.nearest
    );
    assert!(
        c.nearest.iter().any(|s| s.change == "run CPU-only"),
        "{:?}",
        c.nearest
    );
}

/// `torch.cuda.get_arch_list()` of the real torch 2.11.0+cu130 wheel, observed on an H200
/// on 2026-11-30 (`scripts/gpu-capture.sh`, raw/torch.out):
/// `2.11.0+cu130 13.0 True ['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120']`.
/// No `compute_XX`: the wheel carries no PTX, which the pytorch.toml row assumed without a
/// source saying so ("unresolved; treated as no PTX").
#[test]
fn torch_2_11_cu130_arch_list_as_observed_on_a_real_h200() {
    let db = db();
    let observed = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"];
    let row = db.torch_archs(&v("2.11.0"), "cu130").unwrap();
    let mut listed: Vec<String> = row.sass.iter().map(|c| c.sm()).collect();
    listed.extend(row.ptx.iter().map(|c| c.compute()));
    assert_eq!(listed, observed);
    // And what the resolver reports for that build on the H200.
    let mut r = req("pytorch==2.11.0");
    r.cuda = Some("cu130".parse().unwrap());
    let res = resolve(&db, &r, &h200_recorded(&db)).unwrap();
    assert_eq!(res.stack.build, "2.11.0+cu130");
    assert_eq!(res.stack.gpu_archs, observed);
}
