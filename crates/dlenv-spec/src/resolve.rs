//! Spec → stack: the compat resolver plus the base distribution's Python.
//!
//! Python comes from the base's own `python3` package (see [`crate::distro`]). So:
//! * `base = "auto"`, `python = "auto"`: try Ubuntu 24.04 with Python 3.12, then 22.04 with
//!   3.10, then 20.04 with 3.8, and take the first that resolves.
//! * `base = "auto"`, explicit Python: first the Ubuntu release whose own Python matches,
//!   then any stack (its Python then comes from the deadsnakes PPA).
//! * explicit `base`: its distribution's Python (`auto`), or an explicit Python that equals
//!   it; another Python is taken from deadsnakes on Ubuntu and is an error on Debian.

use serde::{Deserialize, Serialize};

use dlenv_compat::{
    CompatDb, Conflict, Flavor, HostFacts, Request, Stack, VersionSpec, parse_python, resolve,
};

use crate::distro::{Distro, Family, auto_ubuntu, distro_of};
use crate::error::{ErrorKind, SpecError};
use crate::spec::{Choice, FlavorChoice, Spec};

/// Where the environment's Python comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PythonSource {
    /// The base distribution's `python3` package.
    Distro,
    /// The deadsnakes PPA (Ubuntu only; needs Launchpad access at build time).
    Deadsnakes,
}

/// A spec resolved to a stack.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    /// The stack (its `base_image` is the spec's explicit base when one is given).
    pub stack: Stack,
    /// Where Python comes from.
    pub python_source: PythonSource,
    /// The base's distribution.
    pub distro: &'static Distro,
    /// nvidia/cuda flavour of the base, when it is an nvidia/cuda image.
    pub flavor: Option<Flavor>,
    /// Remarks about choices made here.
    pub notes: Vec<String>,
}

/// Why a spec does not resolve.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// The spec asks for something impossible (located; a usage error).
    #[error("{0}")]
    Spec(Box<SpecError>),
    /// No stack satisfies it on this host.
    #[error("{conflict}")]
    Conflict {
        /// The resolver's conflict (for the first combination tried).
        conflict: Box<Conflict>,
        /// The base/Python combinations tried, in order.
        tried: Vec<String>,
    },
}

fn py_spec(v: &str) -> VersionSpec {
    parse_python(v).expect("table python versions parse")
}

/// Resolve a spec on a host.
pub fn resolve_spec(
    spec: &Spec,
    db: &CompatDb,
    host: &HostFacts,
) -> Result<ResolvedSpec, ResolveError> {
    let base_req = spec.to_request();
    let mut tried = Vec::new();
    let mut first_conflict: Option<Conflict> = None;
    let mut attempt = |req: &Request, label: String| -> Option<Stack> {
        tried.push(label);
        match resolve(db, req, host) {
            Ok(r) => Some(r.stack),
            Err(c) => {
                first_conflict.get_or_insert(c);
                None
            }
        }
    };
    let flavor_of = |s: &Stack| {
        s.base_image
            .starts_with("nvidia/cuda:")
            .then(|| {
                ["devel", "runtime", "base"]
                    .into_iter()
                    .find(|f| s.base_image.contains(&format!("-{f}-")))
                    .and_then(|f| f.parse().ok())
            })
            .flatten()
    };

    match &spec.env.base {
        Choice::Auto => {
            // Ubuntu releases to pin, in order; then (explicit Python only) any release.
            let order: Vec<&'static Distro> = match &spec.env.python {
                Choice::Auto => auto_ubuntu().collect(),
                Choice::Value(p) => auto_ubuntu()
                    .filter(|d| p.matches(&d.python.parse().expect("table versions parse")))
                    .collect(),
            };
            for d in order {
                let mut req = base_req.clone();
                req.ubuntu = Some(d.release.into());
                if req.python.is_none() {
                    req.python = Some(py_spec(d.python));
                }
                if let Some(stack) = attempt(
                    &req,
                    format!("ubuntu {} with python {}", d.release, d.python),
                ) {
                    let distro = distro_of(&stack.base_image).unwrap_or(d);
                    return Ok(ResolvedSpec {
                        flavor: flavor_of(&stack),
                        stack,
                        python_source: PythonSource::Distro,
                        distro,
                        notes: Vec::new(),
                    });
                }
            }
            if let Choice::Value(p) = &spec.env.python
                && let Some(stack) = attempt(&base_req, format!("any base with python {p}"))
            {
                let Some(distro) = distro_of(&stack.base_image) else {
                    return Err(ResolveError::Spec(Box::new(spec.error_at(
                        "env.base",
                        ErrorKind::InvalidValue,
                        format!(
                            "the resolver chose {}, whose distribution dlenv cannot tell",
                            stack.base_image
                        ),
                        Some("set `base` to an Ubuntu or Debian image".into()),
                    ))));
                };
                let source = if stack.python.to_string() == distro.python {
                    PythonSource::Distro
                } else {
                    PythonSource::Deadsnakes
                };
                let notes = (source == PythonSource::Deadsnakes)
                    .then(|| {
                        format!(
                            "python {} is not Ubuntu {}'s own ({}): it comes from the deadsnakes \
                             PPA, which needs Launchpad access at build time",
                            stack.python, distro.release, distro.python
                        )
                    })
                    .into_iter()
                    .collect();
                return Ok(ResolvedSpec {
                    flavor: flavor_of(&stack),
                    stack,
                    python_source: source,
                    distro,
                    notes,
                });
            }
        }
        Choice::Value(base) => {
            let Some(distro) = distro_of(base) else {
                return Err(ResolveError::Spec(Box::new(spec.error_at(
                    "env.base",
                    ErrorKind::InvalidValue,
                    format!(
                        "cannot tell which Debian or Ubuntu release `{base}` is, so not which \
                         Python it has"
                    ),
                    Some(
                        "use a base whose name says its release: `dlenv/base:debian-bookworm`, \
                         `debian:12`, `ubuntu:24.04`, `nvidia/cuda:…-ubuntu24.04`"
                            .into(),
                    ),
                ))));
            };
            let own = py_spec(distro.python);
            let own_v: dlenv_compat::DottedVersion =
                distro.python.parse().expect("table versions parse");
            let (python, source) = match &spec.env.python {
                Choice::Auto => (own, PythonSource::Distro),
                Choice::Value(p) if p.matches(&own_v) => (own, PythonSource::Distro),
                Choice::Value(p) if distro.family == Family::Ubuntu => {
                    (p.clone(), PythonSource::Deadsnakes)
                }
                Choice::Value(p) => {
                    return Err(ResolveError::Spec(Box::new(spec.error_at(
                        "env.python",
                        ErrorKind::InvalidValue,
                        format!(
                            "python {p} is not available on {base}: Debian {} ({}) ships \
                             Python {}",
                            distro.release, distro.codename, distro.python
                        ),
                        Some(format!(
                            "write `python = \"auto\"` (= {}), pick a Debian release with that \
                             Python, or an Ubuntu base (other Pythons come from the deadsnakes \
                             PPA there)",
                            distro.python
                        )),
                    ))));
                }
            };
            let mut req = base_req.clone();
            req.python = Some(python);
            if distro.family == Family::Ubuntu {
                req.ubuntu = Some(distro.release.into());
            }
            let label = format!("{base} with python {}", req.python.as_ref().expect("set"));
            if let Some(mut stack) = attempt(&req, label) {
                let mut notes = Vec::new();
                let is_cuda_image = base.contains("nvidia/cuda:");
                if !is_cuda_image {
                    if matches!(spec.env.flavor, FlavorChoice::Image(_)) {
                        notes.push(format!(
                            "flavor {} applies to nvidia/cuda images only; the base is {base}",
                            spec.env.flavor.as_str()
                        ));
                    }
                    stack.image_cuda = None;
                    stack.nvidia_require_cuda = None;
                }
                stack.base_image = base.clone();
                if source == PythonSource::Deadsnakes {
                    notes.push(format!(
                        "python {} is not Ubuntu {}'s own ({}): it comes from the deadsnakes \
                         PPA, which needs Launchpad access at build time",
                        stack.python, distro.release, distro.python
                    ));
                }
                return Ok(ResolvedSpec {
                    flavor: if is_cuda_image {
                        flavor_of(&stack)
                    } else {
                        None
                    },
                    stack,
                    python_source: source,
                    distro,
                    notes,
                });
            }
        }
    }
    Err(ResolveError::Conflict {
        conflict: Box::new(first_conflict.expect("at least one attempt was made")),
        tried,
    })
}
