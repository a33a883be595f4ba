//! What to bootstrap: a pure description of a base root filesystem, its debootstrap
//! command line and the tags it gets. No I/O here.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::BaseError;

/// Image repository every base image lives in.
pub const BASE_REPO: &str = "dlenv/base";

/// Version of the recipe format; part of the recipe hash, so changing how dlenv builds
/// bases invalidates old cached images.
const RECIPE_FORMAT: u32 = 1;

/// A Linux distribution debootstrap can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    /// Debian.
    Debian,
    /// Ubuntu.
    Ubuntu,
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debian => "debian",
            Self::Ubuntu => "ubuntu",
        })
    }
}

/// Release codenames dlenv knows, with their version numbers (so `debian:12` and
/// `ubuntu:24.04` work too).
const RELEASES: &[(Distro, &str, &str)] = &[
    (Distro::Debian, "bullseye", "11"),
    (Distro::Debian, "bookworm", "12"),
    (Distro::Debian, "trixie", "13"),
    (Distro::Debian, "forky", "14"),
    (Distro::Debian, "sid", "unstable"),
    (Distro::Ubuntu, "focal", "20.04"),
    (Distro::Ubuntu, "jammy", "22.04"),
    (Distro::Ubuntu, "noble", "24.04"),
    (Distro::Ubuntu, "resolute", "26.04"),
];

/// debootstrap variants.
pub const VARIANTS: &[&str] = &["minbase", "buildd", "fakechroot", "standard"];

/// A base root filesystem recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    /// Distribution.
    pub distro: Distro,
    /// Release codename, e.g. `bookworm`.
    pub release: String,
    /// Debian architecture name, e.g. `amd64`.
    pub arch: String,
    /// debootstrap `--variant` (`standard` means none).
    pub variant: String,
    /// Package mirror URL.
    pub mirror: String,
    /// Extra packages (`--include`), sorted and de-duplicated.
    pub include: Vec<String>,
}

impl Recipe {
    /// Build a recipe from user input. `distro` is `NAME:RELEASE` where RELEASE is a
    /// codename or version (`debian:bookworm`, `debian:12`, `ubuntu:24.04`); `arch` is a
    /// Debian or kernel architecture name.
    pub fn new(
        distro: &str,
        arch: &str,
        variant: &str,
        mirror: Option<&str>,
        include: &[String],
    ) -> Result<Self, BaseError> {
        let (name, rel) = distro.split_once(':').ok_or_else(|| BaseError::Input {
            message: format!("`{distro}` is not DISTRO:RELEASE"),
            hint: "write it like `debian:bookworm`, `debian:12` or `ubuntu:24.04`".into(),
        })?;
        let d = match name.to_ascii_lowercase().as_str() {
            "debian" => Distro::Debian,
            "ubuntu" => Distro::Ubuntu,
            other => {
                return Err(BaseError::Input {
                    message: format!("unknown distribution `{other}`"),
                    hint: "dlenv bootstraps `debian` and `ubuntu`".into(),
                });
            }
        };
        let rel = rel.to_ascii_lowercase();
        let release = RELEASES
            .iter()
            .find(|(dd, code, ver)| *dd == d && (*code == rel || *ver == rel))
            .map(|(_, code, _)| code.to_string())
            .ok_or_else(|| BaseError::Input {
                message: format!("unknown {d} release `{rel}`"),
                hint: format!(
                    "known {d} releases: {}",
                    RELEASES
                        .iter()
                        .filter(|(dd, ..)| *dd == d)
                        .map(|(_, c, v)| format!("{c} ({v})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let arch = debian_arch(arch).ok_or_else(|| BaseError::Input {
            message: format!("unsupported architecture `{arch}`"),
            hint: "use amd64 (x86_64) or arm64 (aarch64)".into(),
        })?;
        if !VARIANTS.contains(&variant) {
            return Err(BaseError::Input {
                message: format!("unknown debootstrap variant `{variant}`"),
                hint: format!("use one of: {}", VARIANTS.join(", ")),
            });
        }
        let mirror = match mirror {
            Some(m)
                if m.starts_with("http://")
                    || m.starts_with("https://")
                    || m.starts_with("file://") =>
            {
                m.trim_end_matches('/').to_string()
            }
            Some(m) => {
                return Err(BaseError::Input {
                    message: format!("mirror `{m}` is not an http(s):// or file:// URL"),
                    hint: "for example --mirror http://deb.debian.org/debian".into(),
                });
            }
            None => default_mirror(d, arch).to_string(),
        };
        let mut include: Vec<String> = include
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = include.iter().find(|p| !valid_package_name(p)) {
            return Err(BaseError::Input {
                message: format!("`{bad}` is not a valid Debian package name"),
                hint: "package names use lowercase letters, digits and + - .".into(),
            });
        }
        include.sort();
        include.dedup();
        Ok(Self {
            distro: d,
            release,
            arch: arch.to_string(),
            variant: variant.into(),
            mirror,
            include,
        })
    }

    /// Short content hash of everything that shapes the root filesystem.
    pub fn hash(&self) -> String {
        let canonical = format!(
            "dlenv-base-recipe-v{RECIPE_FORMAT}\ndistro={}\nrelease={}\narch={}\nvariant={}\nmirror={}\ninclude={}\n",
            self.distro,
            self.release,
            self.arch,
            self.variant,
            self.mirror,
            self.include.join(",")
        );
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// The friendly tag, e.g. `debian-bookworm` (moves to the newest bootstrap of that
    /// release).
    pub fn release_tag(&self) -> String {
        format!("{}-{}", self.distro, self.release)
    }

    /// The recipe tag, e.g. `debian-bookworm-3f2a9c01d4e5`: identifies this exact recipe,
    /// so a repeated bootstrap can reuse the image.
    pub fn recipe_tag(&self) -> String {
        format!("{}-{}", self.release_tag(), self.hash())
    }

    /// debootstrap's arguments for building into `target`.
    pub fn debootstrap_args(&self, target: &str) -> Vec<String> {
        let mut args = vec![format!("--arch={}", self.arch)];
        if self.variant != "standard" {
            args.push(format!("--variant={}", self.variant));
        }
        if !self.include.is_empty() {
            args.push(format!("--include={}", self.include.join(",")));
        }
        if self.distro == Distro::Ubuntu {
            args.push("--components=main,universe".into());
        }
        args.extend([
            self.release.clone(),
            target.to_string(),
            self.mirror.clone(),
        ]);
        args
    }

    /// Dockerfile instructions applied to the imported image's config.
    pub fn image_changes(&self, dlenv_version: &str) -> Vec<String> {
        vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "ENV LANG=C.UTF-8".into(),
            "CMD [\"/bin/bash\"]".into(),
            "LABEL dlenv.managed=true".into(),
            format!("LABEL dlenv.base.recipe={}", self.hash()),
            format!("LABEL dlenv.base.distro={}", self.distro),
            format!("LABEL dlenv.base.release={}", self.release),
            format!("LABEL dlenv.base.mirror={}", self.mirror),
            format!("LABEL dlenv.version={dlenv_version}"),
        ]
    }
}

/// Map a kernel or Debian architecture name to Debian's.
pub fn debian_arch(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" | "amd64" => Some("amd64"),
        "aarch64" | "arm64" => Some("arm64"),
        _ => None,
    }
}

fn default_mirror(d: Distro, arch: &str) -> &'static str {
    match (d, arch) {
        (Distro::Debian, _) => "http://deb.debian.org/debian",
        (Distro::Ubuntu, "amd64") => "http://archive.ubuntu.com/ubuntu",
        (Distro::Ubuntu, _) => "http://ports.ubuntu.com/ubuntu-ports",
    }
}

fn valid_package_name(p: &str) -> bool {
    p.len() >= 2
        && p.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(distro: &str, include: &[&str]) -> Result<Recipe, BaseError> {
        let inc: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        Recipe::new(distro, "x86_64", "minbase", None, &inc)
    }

    #[test]
    fn versions_map_to_codenames() {
        assert_eq!(r("debian:12", &[]).unwrap().release, "bookworm");
        assert_eq!(r("ubuntu:24.04", &[]).unwrap().release, "noble");
        assert_eq!(
            r("Debian:Bookworm", &[]).unwrap().release_tag(),
            "debian-bookworm"
        );
    }

    #[test]
    fn bad_input_is_explained() {
        let e = r("debian", &[]).unwrap_err().to_string();
        assert!(e.contains("DISTRO:RELEASE"), "{e}");
        let e = r("debian:buster2", &[]).unwrap_err();
        assert!(e.hint().unwrap().contains("bookworm (12)"));
        assert!(r("fedora:40", &[]).is_err());
        assert!(r("debian:12", &["Bad_Name"]).is_err());
        assert!(Recipe::new("debian:12", "riscv", "minbase", None, &[]).is_err());
        assert!(Recipe::new("debian:12", "amd64", "tiny", None, &[]).is_err());
        assert!(Recipe::new("debian:12", "amd64", "minbase", Some("deb.debian.org"), &[]).is_err());
    }

    #[test]
    fn hash_is_stable_and_order_insensitive() {
        let a = r("debian:bookworm", &["python3", "ca-certificates"]).unwrap();
        let b = r("debian:12", &["ca-certificates,python3", "python3"]).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 12);
        assert_ne!(a.hash(), r("debian:bookworm", &[]).unwrap().hash());
        assert_ne!(
            a.hash(),
            r("debian:trixie", &["python3", "ca-certificates"])
                .unwrap()
                .hash()
        );
        assert!(a.recipe_tag().starts_with("debian-bookworm-"));
    }

    #[test]
    fn debootstrap_command_line() {
        let a = r("debian:bookworm", &["python3"]).unwrap();
        assert_eq!(
            a.debootstrap_args("/t"),
            [
                "--arch=amd64",
                "--variant=minbase",
                "--include=python3",
                "bookworm",
                "/t",
                "http://deb.debian.org/debian"
            ]
        );
        let u = r("ubuntu:22.04", &[]).unwrap();
        assert!(
            u.debootstrap_args("/t")
                .contains(&"--components=main,universe".to_string())
        );
        assert_eq!(u.mirror, "http://archive.ubuntu.com/ubuntu");
    }
}
