//! dlenv's one integration-test binary. Tests run the real `dlenv` binary against the
//! real container engine (never a mock); `.ci/run` starts one. Images come from local
//! root filesystems (busybox-static, debootstrap); the registry tests start Debian's
//! `docker-registry` on loopback, and the Podman tests their own `podman system service`.
//!
//! Modules, by command group:
mod base;
mod build;
mod cli;
mod compat;
mod doctor;
mod engine;
mod faults;
mod podman;
mod registry;
mod run;
mod share;
mod shell;
mod spec;
mod support;
mod up;
