//! dlenv's host probe: from a bare Ubuntu host to working GPU containers.
//!
//! - [`source`]: the one interface every probe reads through ([`HostSource`]), with a live
//!   implementation and a fixture one (a directory of recorded files and command outputs).
//! - [`facts`]: `read_*` (I/O through a [`HostSource`]) and pure `parse_*` functions that
//!   produce [`HostFacts`]: OS, NVIDIA driver and GPUs, toolkit, daemon.json, CDI, access.
//! - [`engine`]: [`EngineFacts`], plain data the caller fills from its engine client (this
//!   crate never connects to an engine).
//! - [`checks`]: `dlenv doctor`'s checks, pure functions of the facts, in dependency order.
//! - [`setup`]: `dlenv setup`'s plan, a pure function of the facts and the options.
//!
//! # `dlenv doctor --json` schema (`dlenv.doctor/v1`)
//!
//! Stable: fields are only added, never renamed or removed; a breaking change bumps the
//! `schema` string.
//!
//! ```text
//! {
//!   "schema":  "dlenv.doctor/v1",
//!   "healthy": bool,                  // no check has status "fail" (exit 0; else exit 1)
//!   "summary": { "pass": n, "warn": n, "fail": n, "skip": n },
//!   "checks": [                       // in dependency order
//!     {
//!       "id":      "nvidia.driver",   // stable ids, see below
//!       "group":   "driver",          // platform | driver | engine | toolkit | cdi | smoke
//!       "status":  "warn",            // pass | warn | fail | skip
//!       "summary": "no NVIDIA driver: CPU-only host (GPU containers need a driver)",
//!       "fix":     "sudo ubuntu-drivers install && sudo reboot" | null,
//!                                     // exact command(s), one per line; `#` starts a remark
//!       "details": [ "…" ]            // evidence, explanations
//!     }
//!   ],
//!   "facts": {                        // everything probed (see HostFacts)
//!     "os": {…}, "nvidia": {…}, "engine": {…}, "toolkit": {…},
//!     "daemon_config": {…}, "cdi": [ … ], "access": {…}, "packages": { name: version }
//!   }
//! }
//! ```
//!
//! Check ids, in order: `platform.os`, `platform.wsl` (WSL only), `nvidia.driver`,
//! `nvidia.nouveau` (when loaded), `nvidia.mismatch`, `nvidia.gpus`,
//! `nvidia.fabricmanager` (NVSwitch systems only), `access.socket`, `access.group`,
//! `engine.reachable`, `engine.install`, `engine.version`, `engine.disk`,
//! `toolkit.installed`, `toolkit.version`, `toolkit.apt` (when NVIDIA apt lists exist),
//! `toolkit.legacy` (when deprecated packages are installed), `toolkit.runtime`,
//! `toolkit.cgroups`, `cdi.specs`, and with `--smoke` `smoke.gpu`.
//!
//! When no engine answers, `engine.reachable` fails and the engine-dependent checks
//! (`engine.install`, `engine.version`, `engine.disk`, `toolkit.runtime`,
//! `toolkit.cgroups`, `smoke.gpu`) are `skip` with a summary that says so.
//!
//! Verdict policy: see [`checks`]. In short, a host **without an NVIDIA driver is a
//! `warn`** (a valid CPU-only host: exit 0), while a driver that is installed but broken,
//! a missing toolkit on a GPU host, an unregistered runtime, a vulnerable toolkit, or an
//! unreachable engine is a `fail` (exit 1).

pub mod checks;
pub mod engine;
pub mod facts;
pub mod setup;
pub mod source;

pub use checks::{Check, Report, Status, report, run_checks};
pub use engine::{EngineFacts, EngineFailure};
pub use facts::{HostFacts, probe};
pub use setup::{Plan, SetupOptions, plan, render_plan};
pub use source::{FixtureHost, HostSource, LiveHost, RecordingHost};
