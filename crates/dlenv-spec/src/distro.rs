//! Base image → distribution → its own Python.
//!
//! Containers built by dlenv may reach only PyPI and the distribution's mirror, so Python
//! comes from the base distribution's `python3` package, in a venv at `/opt/dlenv/venv`.
//! Which Python that is depends on the release (the `python3` source package's version):
//!
//! | Distribution | Release | `python3` | Source |
//! |---|---|---|---|
//! | Debian | 11 bullseye | 3.9 (3.9.2) | <https://packages.debian.org/bullseye/python3> |
//! | Debian | 12 bookworm | 3.11 (3.11.2) | <https://packages.debian.org/bookworm/python3> |
//! | Debian | 13 trixie | 3.13 (3.13.5) | <https://packages.debian.org/trixie/python3> |
//! | Ubuntu | 20.04 focal | 3.8 (3.8.2) | <https://packages.ubuntu.com/focal/python3> |
//! | Ubuntu | 22.04 jammy | 3.10 (3.10.6) | <https://packages.ubuntu.com/jammy/python3> |
//! | Ubuntu | 24.04 noble | 3.12 (3.12.3) | <https://packages.ubuntu.com/noble/python3> |
//!
//! Another Python on an Ubuntu base comes from the deadsnakes PPA
//! (<https://launchpad.net/~deadsnakes/+archive/ubuntu/ppa>), which needs Launchpad access
//! at build time; Debian has no such archive, so there it is an error.

use serde::{Deserialize, Serialize};

/// A distribution family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Debian.
    Debian,
    /// Ubuntu.
    Ubuntu,
}

/// One row of the distro table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distro {
    /// Family.
    pub family: Family,
    /// Release number (`12`, `24.04`).
    pub release: &'static str,
    /// Codename (`bookworm`, `noble`).
    pub codename: &'static str,
    /// `major.minor` of its `python3` package.
    pub python: &'static str,
}

impl Distro {
    /// `debian-12`, `ubuntu-24.04`.
    pub fn id(&self) -> String {
        let f = match self.family {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu",
        };
        format!("{f}-{}", self.release)
    }
}

/// The table (see the module docs for sources).
pub const DISTROS: &[Distro] = &[
    Distro {
        family: Family::Ubuntu,
        release: "24.04",
        codename: "noble",
        python: "3.12",
    },
    Distro {
        family: Family::Ubuntu,
        release: "22.04",
        codename: "jammy",
        python: "3.10",
    },
    Distro {
        family: Family::Ubuntu,
        release: "20.04",
        codename: "focal",
        python: "3.8",
    },
    Distro {
        family: Family::Debian,
        release: "13",
        codename: "trixie",
        python: "3.13",
    },
    Distro {
        family: Family::Debian,
        release: "12",
        codename: "bookworm",
        python: "3.11",
    },
    Distro {
        family: Family::Debian,
        release: "11",
        codename: "bullseye",
        python: "3.9",
    },
];

/// Ubuntu releases tried, newest first, when `base = "auto"` and `python = "auto"`.
pub fn auto_ubuntu() -> impl Iterator<Item = &'static Distro> {
    DISTROS.iter().filter(|d| d.family == Family::Ubuntu)
}

/// The distribution of a base image reference, when it can be told from the name:
/// `ubuntu:24.04`, `ubuntu:noble`, `debian:bookworm-slim`, `debian:12`,
/// `dlenv/base:debian-bookworm[-hash]`, `nvidia/cuda:12.8.1-runtime-ubuntu24.04`.
pub fn distro_of(image: &str) -> Option<&'static Distro> {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let (repo, tag) = last.split_once(':').unwrap_or((last, "latest"));
    let tag = tag.to_ascii_lowercase();
    // Codenames and `ubuntuXX.YY` anywhere in the tag.
    for d in DISTROS {
        let words: Vec<&str> = tag.split(['-', '_', '.']).collect();
        if words.contains(&d.codename)
            || (d.family == Family::Ubuntu && tag.contains(&format!("ubuntu{}", d.release)))
        {
            return Some(d);
        }
    }
    // `ubuntu:24.04`, `debian:12`, `debian:12.5-slim`.
    let family = match repo {
        "ubuntu" => Family::Ubuntu,
        "debian" => Family::Debian,
        _ => return None,
    };
    let ver = tag.split('-').next().unwrap_or("");
    DISTROS.iter().find(|d| {
        d.family == family
            && (ver == d.release
                || (family == Family::Debian && ver.split('.').next() == Some(d.release)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distros_from_refs() {
        let py = |r: &str| distro_of(r).map(|d| d.python);
        assert_eq!(py("dlenv/base:debian-bookworm"), Some("3.11"));
        assert_eq!(py("dlenv/base:debian-bookworm-3f2a9c01d4e5"), Some("3.11"));
        assert_eq!(py("debian:trixie-slim"), Some("3.13"));
        assert_eq!(py("debian:11"), Some("3.9"));
        assert_eq!(py("debian:12.5-slim"), Some("3.11"));
        assert_eq!(py("ubuntu:24.04"), Some("3.12"));
        assert_eq!(py("docker.io/library/ubuntu:jammy"), Some("3.10"));
        assert_eq!(py("nvidia/cuda:12.8.1-runtime-ubuntu24.04"), Some("3.12"));
        assert_eq!(
            py("nvidia/cuda:11.8.0-cudnn8-devel-ubuntu20.04"),
            Some("3.8")
        );
        assert_eq!(py("python:3.12-slim"), None);
        assert_eq!(py("ubuntu"), None);
    }
}
