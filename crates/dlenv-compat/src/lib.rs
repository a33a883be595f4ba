//! # dlenv-compat
//!
//! The pure "brain" of dlenv: a compatibility database (NVIDIA driver ↔ CUDA ↔ cuDNN ↔
//! framework build ↔ Python ↔ GPU architecture ↔ `nvidia/cuda` base image) and a resolver over
//! it. This crate does no I/O: the database is embedded with `include_str!` from `data/*.toml`
//! ([`CompatDb::embedded`]), and an alternative database is passed in as `(file_name, text)`
//! pairs ([`CompatDb::from_sources`]). Host facts ([`HostFacts`]) are plain data gathered by
//! the caller.
//!
//! ```
//! use dlenv_compat::*;
//! let db = CompatDb::embedded();
//! let host = HostFacts {
//!     driver: Some("570.124.06".parse().unwrap()),
//!     gpus: vec![GpuFact::from_name(&db, "NVIDIA GeForce RTX 5090").unwrap()],
//!     platform: Platform::LinuxX86_64,
//! };
//! let req = Request::new("pytorch==2.7.0".parse().unwrap());
//! let res = resolve(&db, &req, &host).unwrap();
//! assert_eq!(res.stack.build, "2.7.0+cu128");
//! assert_eq!(res.stack.base_image, "nvidia/cuda:12.8.1-runtime-ubuntu24.04");
//! ```
//!
//! ## Rules (ids are stable, see [`rules::rule`])
//!
//! * **driver-floor** — a framework wheel built against CUDA X.Y needs the driver
//!   `min(toolkit driver of X.Y, minor-version-compatibility floor of X)`: 11.x ≥ 450.80.02
//!   (11.0 builds also run on the 11.0 GA driver 450.51.05), 12.x ≥ 525.60.13, 13.x ≥ 580.65.06.
//!   CUDA ≤ 10.2 has no minor-version compatibility, so those builds need the toolkit's own
//!   driver (10.2 → 440.33). This is the "practical rule" of NVIDIA's minor-version
//!   compatibility page; features may be limited under it, and the two rules below cover the
//!   cases that break in practice.
//! * **ptx-jit** — when a GPU is reached only through PTX, the driver must JIT PTX of the
//!   build's CUDA, i.e. be ≥ the toolkit driver of X.Y (`cudaErrorUnsupportedPtxVersion`
//!   otherwise).
//! * **gpu-driver** — a GPU needs a driver at least as new as the toolkit driver of the first
//!   CUDA that can target its architecture (inferred; e.g. RTX 50 / sm_120 → CUDA 12.8 →
//!   ≥ 570.26). This is why `torch+cu128` on an RTX 5090 needs ≥ 570 even though cu128 wheels
//!   otherwise run on 525.60.13 under minor-version compatibility.
//! * **gpu-arch** — a cubin for `sm_XY` runs on the same major X with minor ≥ Y; PTX
//!   (`compute_XY`) JIT-compiles for any CC ≥ X.Y; integrated-GPU CCs (5.3, 6.2, 7.2, 8.7) need
//!   an exact cubin.
//! * **jax-floor** — JAX CUDA wheels state their own driver floor and minimum CC.
//! * **tf-cuda-pair** — TensorFlow < 2.14 uses the image's CUDA/cuDNN, so the image must have
//!   exactly the tested CUDA major.minor and a cuDNN of the tested major (≥ the tested version
//!   when the image's cuDNN is recorded); requested CUDA/cuDNN must equal the tested pair.
//! * **variant-missing**, **python**, **cudnn**, **platform**, **version** — request filters.
//! * **image-tag**, **image-require**, **brand-exception** — the base image must exist and the
//!   host must satisfy its `NVIDIA_REQUIRE_CUDA` (`cuda>=X.Y` ⇔ driver ≥ toolkit driver of X.Y,
//!   or a `brand=…,driver>=B,driver<B+1` exception for the GPU's brand).
//!
//! ## GPU-less hosts / CPU stacks
//!
//! With `cpu_only`, or when the host lists no GPU and no CUDA version is requested, the resolver
//! returns a CPU stack: PyTorch `+cpu` wheels from `https://download.pytorch.org/whl/cpu`, plain
//! `tensorflow`, plain `jax`. Its base image is `ubuntu:24.04` (or the requested Ubuntu
//! release): the nvidia/cuda images would only add unused CUDA libraries. `stack.accelerator`
//! is then `"cpu"`.
//!
//! ## Preference order
//!
//! Newest framework release within the spec → newest CUDA build that passes every rule →
//! newest Python the build supports → `runtime` flavour (wheels bring their own CUDA libraries,
//! the flavour only matters for tools) → image of the same CUDA major.minor (else the newest one
//! below it), supported before end-of-life → newest Ubuntu.

pub mod db;
pub mod host;
pub mod request;
pub mod resolve;
pub mod rules;
pub mod version;

pub use db::{CompatDb, DB_FILES, DbError, DbInfo, SCHEMA_VERSION, db_info};
pub use host::{
    Brand, ComputeCapability, GpuFact, GpuLookupError, HostFacts, Platform, lookup_gpu,
};
pub use request::{
    CudaReq, Flavor, Framework, FrameworkReq, Request, RequestError, parse_cudnn, parse_python,
    parse_ubuntu,
};
pub use resolve::{
    Accelerator, Conflict, ImageVerdict, MatrixRow, Resolution, Stack, Suggestion, check_image,
    matrix, resolve,
};
pub use rules::{RuleHit, verify_stack};
pub use version::{DottedVersion, VersionSpec};

#[cfg(test)]
mod tests;
