//! # dlenv-render
//!
//! Renders a [`Lock`] into a Dockerfile that is readable, commented, ordered for cache reuse
//! and builds without dlenv (`dlenv dockerfile > Dockerfile && docker build .`). Pure: no
//! I/O; [`render`] returns the text and the build-context files it `COPY`s.
//!
//! ## Layers, in cache order
//!
//! base image → apt packages (one `RUN`, `--no-install-recommends`, lists kept out of the
//! image) → Python (the distribution's `python3` in a venv at `/opt/dlenv/venv`, or the
//! deadsnakes PPA on Ubuntu) → framework (pinned, with its `--index-url`) → requirements
//! files → each user pip entry → spec `ENV` → user `run` steps → non-root user → labels.
//! Changing one pip entry rebuilds from that entry's layer on; the framework stays cached.
//!
//! ## Lean bases: runtime vs devel
//!
//! PyTorch, TensorFlow (`tensorflow[and-cuda]`) and JAX (`jax[cudaNN]`) wheels bring their own
//! CUDA user-space libraries (cuBLAS, cuDNN, NCCL… as `nvidia-*` wheels or bundled), so the
//! resolver's `runtime`/`base` image (or a plain distribution image for CPU) is enough. The
//! `devel` images add the CUDA compiler, headers and static libraries: several GB more per
//! image (the exact difference depends on the CUDA release), useful only to compile CUDA
//! extensions. dlenv uses `devel` only when the spec says `flavor = "devel"`.
//!
//! ## Proxy CA without leaking it into the image
//!
//! With [`RenderOptions::ca_bundle`], every `RUN` that downloads bind-mounts
//! `.dlenv/ca-bundle.pem` from the build context at [`CA_MOUNT_TARGET`] and points apt
//! (`Acquire::https::CAInfo`), pip (`PIP_CERT`) and OpenSSL users (`SSL_CERT_FILE`,
//! `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`) at it for that `RUN` only. A bind mount is not
//! part of any layer and the variables are not `ENV`, so the CA is in neither the image nor
//! its history. The mount target is not `/etc/ssl/certs/ca-certificates.crt` because the
//! apt layer installs `ca-certificates`, whose `update-ca-certificates` must write that file
//! (a read-only bind mount over it would make the install fail). No `# syntax=` line is
//! emitted: the engine's built-in frontend supports `RUN --mount`, and a syntax line would
//! pull a frontend image from a registry.

use dlenv_spec::{Lock, PythonSource, requirement_file};

/// Where the build context holds the host's trust store when [`RenderOptions::ca_bundle`].
pub const CA_BUNDLE_PATH: &str = ".dlenv/ca-bundle.pem";
/// Where it is mounted during `RUN`s.
pub const CA_MOUNT_TARGET: &str = "/run/dlenv/ca-bundle.pem";
/// The venv.
pub const VENV: &str = "/opt/dlenv/venv";
/// Where requirement files are copied.
pub const INPUTS_DIR: &str = "/opt/dlenv/inputs";
/// The framework pins (without extras), used as pip constraints by later layers.
pub const FRAMEWORK_PINS: &str = "/opt/dlenv/constraints.txt";

/// How to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Default of the `DLENV_UID` build argument (the host user's uid).
    pub uid: u32,
    /// Default of the `DLENV_GID` build argument.
    pub gid: u32,
    /// Name of the non-root user.
    pub user: String,
    /// Mount `.dlenv/ca-bundle.pem` into downloading `RUN`s (see the crate docs).
    pub ca_bundle: bool,
    /// `COPY . /workspace` as the last layer (off: `dlenv run` mounts the project instead).
    pub copy_project: bool,
    /// Pull Docker Hub base images through this registry mirror (`host[:port]`), see
    /// [`mirror_ref`].
    pub registry_mirror: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            uid: 1000,
            gid: 1000,
            user: "dlenv".into(),
            ca_bundle: false,
            copy_project: false,
            registry_mirror: None,
        }
    }
}

/// A rendered Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The Dockerfile.
    pub dockerfile: String,
    /// Spec-relative files the Dockerfile `COPY`s (plus [`CA_BUNDLE_PATH`] when
    /// `ca_bundle`; plus `.` when `copy_project`), in order.
    pub context_files: Vec<String>,
}

/// `image` as pulled through the Docker Hub mirror `mirror` (`host[:port]`, a scheme and
/// trailing slash are ignored). Only Docker Hub references are rewritten (`ubuntu:24.04` →
/// `MIRROR/library/ubuntu:24.04`, `nvidia/cuda:…` → `MIRROR/nvidia/cuda:…`,
/// `docker.io/x/y` → `MIRROR/x/y`); references to other registries, and dlenv's own local
/// `dlenv/…` images, are left alone.
pub fn mirror_ref(image: &str, mirror: &str) -> String {
    let mirror = mirror
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (first, rest) = match image.split_once('/') {
        Some((f, r)) => (f, Some(r)),
        None => (image, None),
    };
    let has_registry =
        rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    let path = match (has_registry, rest) {
        (true, Some(r))
            if matches!(
                first,
                "docker.io" | "index.docker.io" | "registry-1.docker.io"
            ) =>
        {
            r.to_string()
        }
        (true, _) => return image.to_string(),
        (false, Some(_)) => image.to_string(),
        (false, None) => format!("library/{image}"),
    };
    if mirror.is_empty() || path.starts_with("dlenv/") {
        return image.to_string();
    }
    let path = if path.contains('/') {
        path
    } else {
        format!("library/{path}")
    };
    format!("{mirror}/{path}")
}

/// Quote for `sh` when needed.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.,:/=+@%-".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A double-quoted Dockerfile value (ENV / LABEL): `"`, `\` and `$` escaped.
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        if c == '\n' {
            out.push_str("\\n");
            continue;
        }
        out.push(c);
    }
    out.push('"');
    out
}

struct Builder<'a> {
    out: String,
    opts: &'a RenderOptions,
    distro: String,
}

impl Builder<'_> {
    fn line(&mut self, l: impl AsRef<str>) {
        self.out.push_str(l.as_ref());
        self.out.push('\n');
    }

    fn comment(&mut self, text: &str) {
        for l in text.lines() {
            if l.is_empty() {
                self.line("#");
            } else {
                self.line(format!("# {l}"));
            }
        }
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    /// A `RUN` with mounts; `net`: it downloads (gets the CA mount and variables).
    fn run(&mut self, mounts: &[String], net: bool, apt: bool, commands: &[String]) {
        let mut parts: Vec<String> = mounts.iter().map(|m| format!("--mount={m}")).collect();
        if net && self.opts.ca_bundle {
            parts.push(format!(
                "--mount=type=bind,source={CA_BUNDLE_PATH},target={CA_MOUNT_TARGET}"
            ));
        }
        let mut script: Vec<String> = Vec::new();
        if net && self.opts.ca_bundle && !apt {
            script.push(format!(
                "export PIP_CERT={t} SSL_CERT_FILE={t} REQUESTS_CA_BUNDLE={t} CURL_CA_BUNDLE={t}",
                t = CA_MOUNT_TARGET
            ));
        }
        script.extend(commands.iter().cloned());
        let mut text = String::from("RUN ");
        for p in &parts {
            text.push_str(p);
            text.push_str(" \\\n    ");
        }
        text.push_str(&script.join(" \\\n && "));
        self.line(text);
    }

    /// The apt caches. Only one is `locked`: every apt `RUN` mounts both, so that lock
    /// alone keeps two builds from running apt on them at once. It is the *last* cache
    /// mount and it is not the lists one, for Buildah before 1.29 (Podman before 4.4, e.g.
    /// Debian 12's): it releases only the locks of a `RUN`'s last cache mount, and it keeps
    /// its lock file inside the cache directory, where `apt-get update` deletes unknown
    /// files from the lists. Either way its service process then waits forever in the next
    /// build.
    fn apt_mounts(&self) -> Vec<String> {
        vec![
            format!(
                "type=cache,id=dlenv-apt-lists-{},target=/var/lib/apt/lists,sharing=shared",
                self.distro
            ),
            format!(
                "type=cache,id=dlenv-apt-cache-{},target=/var/cache/apt,sharing=locked",
                self.distro
            ),
        ]
    }

    fn apt_get(&self) -> String {
        if self.opts.ca_bundle {
            format!("apt-get -o Acquire::https::CAInfo={CA_MOUNT_TARGET}")
        } else {
            "apt-get".into()
        }
    }
}

fn pip_mount() -> Vec<String> {
    vec!["type=cache,target=/root/.cache/pip".into()]
}

/// Render the Dockerfile for `lock`.
pub fn render(lock: &Lock, opts: &RenderOptions) -> Rendered {
    let s = &lock.stack;
    let e = &lock.env;
    let mut context_files = Vec::new();
    let mut b = Builder {
        out: String::new(),
        opts,
        distro: s.distro.clone(),
    };
    let gpu = s.is_gpu();
    let fw = if s.framework == "none" {
        "no framework".to_string()
    } else {
        format!("{} {}", s.framework, s.build)
    };

    // Header.
    b.comment(&format!(
        "Dockerfile for the dlenv environment \"{name}\", generated by dlenv {ver} from dlenv.toml\n\
         and dlenv.lock. Edit the spec and re-run `dlenv dockerfile` rather than this file.\n\
         \n\
         Stack: {fw}, Python {py} ({pysrc}), {acc}, base {base}\n\
         Build it without dlenv:  docker build -t dlenv/{name} .",
        name = e.name,
        ver = lock.dlenv_version,
        py = s.python,
        pysrc = match s.python_source {
            PythonSource::Distro => format!("the {} python3 package", s.distro),
            PythonSource::Deadsnakes => "deadsnakes PPA".into(),
        },
        acc = match &s.cuda {
            Some(c) if gpu => format!("CUDA {c}"),
            _ => "CPU only".into(),
        },
        base = s.base_image,
    ));
    if opts.ca_bundle {
        b.comment(&format!(
            "\n\
             Behind a TLS-intercepting proxy: downloading steps trust {CA_BUNDLE_PATH} from the\n\
             build context, mounted only while they run (never stored in the image). Create it\n\
             before building:  mkdir -p .dlenv && cp /etc/ssl/certs/ca-certificates.crt {CA_BUNDLE_PATH}\n\
             (or render without it: `dlenv dockerfile` without --ca-bundle)."
        ));
    }
    b.comment(
        "\nNeeds BuildKit (default since Docker 23; DOCKER_BUILDKIT=1 on Docker 20.10) for\n\
         RUN --mount caches. No syntax directive on purpose: the built-in frontend is enough.",
    );
    b.blank();

    // Base.
    b.comment(if gpu {
        match s.flavor.as_deref() {
            Some("devel") => "Base: CUDA devel image (compiler and headers, several GB bigger than runtime),\nbecause the spec asks for flavor = \"devel\".",
            Some(_) => "Base: the resolver's CUDA image. The framework wheels bring their own CUDA\nlibraries, so the small runtime/base flavour is enough (devel adds several GB).",
            None => "Base: the spec's base image. The framework wheels bring their own CUDA\nlibraries; the NVIDIA container runtime adds the driver at `docker run --gpus`.",
        }
    } else {
        "Base: a plain distribution image (CPU-only stack, no CUDA libraries needed)."
    });
    let from = match opts
        .registry_mirror
        .as_deref()
        .map(|m| mirror_ref(&s.base_image, m))
    {
        Some(mirrored) if mirrored != s.base_image => {
            b.comment(&format!("(`{}` through the registry mirror)", s.base_image));
            mirrored
        }
        _ => s.base_image.clone(),
    };
    b.line(format!("FROM {from}"));
    b.blank();
    if gpu {
        b.comment(
            "Let the NVIDIA container runtime expose the GPUs and the driver's compute libraries.",
        );
        b.line("ENV NVIDIA_VISIBLE_DEVICES=all \\\n    NVIDIA_DRIVER_CAPABILITIES=compute,utility");
        b.blank();
    }
    b.line("ARG DEBIAN_FRONTEND=noninteractive");
    b.blank();

    // apt.
    let mut apt: Vec<String> = vec!["ca-certificates".into()];
    if s.python_source == PythonSource::Distro {
        apt.push("python3".into());
        apt.push("python3-venv".into());
    }
    for p in &e.apt {
        if !apt.contains(p) {
            apt.push(p.clone());
        }
    }
    b.comment(
        "System packages, in one layer: CA certificates, the distribution's Python and venv,\n\
         and the spec's apt packages. The package lists live in a build cache mount, so they\n\
         never enter the image.",
    );
    let apt_get = b.apt_get();
    let mounts = b.apt_mounts();
    b.run(
        &mounts,
        true,
        true,
        &[
            format!("{apt_get} update"),
            format!(
                "{apt_get} install -y --no-install-recommends {}",
                apt.iter()
                    .map(|p| sh_quote(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ],
    );
    b.blank();

    // Python.
    let python = match s.python_source {
        PythonSource::Distro => "python3".to_string(),
        PythonSource::Deadsnakes => format!("python{}", s.python),
    };
    if s.python_source == PythonSource::Deadsnakes {
        b.comment(&format!(
            "Python {py} is not {distro}'s own, so it comes from the deadsnakes PPA\n\
             (https://launchpad.net/~deadsnakes/+archive/ubuntu/ppa; needs Launchpad access).",
            py = s.python,
            distro = s.distro
        ));
        let mounts = b.apt_mounts();
        b.run(
            &mounts,
            true,
            false,
            &[
                format!("{apt_get} install -y --no-install-recommends software-properties-common gpg-agent"),
                "add-apt-repository -y ppa:deadsnakes/ppa".into(),
                format!(
                    "{apt_get} install -y --no-install-recommends python{py} python{py}-venv",
                    py = s.python
                ),
            ],
        );
        b.blank();
    }
    b.comment(&format!(
        "Python {py} in a virtual environment at {VENV}: pip never touches the system Python.",
        py = s.python
    ));
    let mut venv = vec![format!("{python} -m venv {VENV}")];
    if s.python == "3.8" {
        // Ubuntu 20.04's bundled pip 20.0 cannot read manylinux_2_28 wheel tags.
        venv.push(format!("{VENV}/bin/pip install 'pip>=23,<25'"));
        b.run(&pip_mount(), true, false, &venv);
    } else {
        b.run(&[], false, false, &venv);
    }
    b.line(format!(
        "ENV VIRTUAL_ENV={VENV} \\\n    PATH={VENV}/bin:$PATH \\\n    PYTHONUNBUFFERED=1 \\\n    PIP_DISABLE_PIP_VERSION_CHECK=1"
    ));
    b.blank();

    // Framework.
    let constraint = if s.requirements.is_empty() {
        String::new()
    } else {
        format!(" -c {FRAMEWORK_PINS}")
    };
    if !s.requirements.is_empty() {
        b.comment(&format!(
            "The framework, pinned by the resolver ({fw}){}. The pins are kept in\n\
             {FRAMEWORK_PINS} and used as constraints below, so no later package can\n\
             silently replace the framework.",
            s.index_url
                .as_deref()
                .map(|u| format!(",\nfrom {u}"))
                .unwrap_or_default()
        ));
        let index = s
            .index_url
            .as_deref()
            .map(|u| format!(" --index-url {u}"))
            .unwrap_or_default();
        let quoted = |v: &[String]| v.iter().map(|r| sh_quote(r)).collect::<Vec<_>>().join(" ");
        // Constraints cannot carry extras (`tensorflow[and-cuda]`): pin the bare names.
        let pins: Vec<String> = s
            .requirements
            .iter()
            .map(|r| match (r.find('['), r.find(']')) {
                (Some(a), Some(z)) if a < z => format!("{}{}", &r[..a], &r[z + 1..]),
                _ => r.clone(),
            })
            .collect();
        b.run(
            &pip_mount(),
            true,
            false,
            &[
                format!("pip install{index} {}", quoted(&s.requirements)),
                format!("printf '%s\\n' {} > {FRAMEWORK_PINS}", quoted(&pins)),
            ],
        );
        b.blank();
    }

    // Requirements files.
    let files: Vec<&str> = e.pip.iter().filter_map(|p| requirement_file(p)).collect();
    if !files.is_empty() {
        b.comment("Requirements files from the project (copied alone, so editing code does not\ninvalidate this layer).");
        for f in &files {
            b.line(format!("COPY {f} {INPUTS_DIR}/{f}"));
            context_files.push((*f).to_string());
        }
        let args: Vec<String> = files
            .iter()
            .map(|f| format!("-r {}", sh_quote(&format!("{INPUTS_DIR}/{f}"))))
            .collect();
        b.run(
            &pip_mount(),
            true,
            false,
            &[format!("pip install{constraint} {}", args.join(" "))],
        );
        b.blank();
    }

    // User pip entries, one layer each.
    let pkgs: Vec<&String> = e
        .pip
        .iter()
        .filter(|p| requirement_file(p).is_none())
        .collect();
    if !pkgs.is_empty() {
        b.comment(
            "The spec's pip packages, one layer each: changing one rebuilds from its layer on.",
        );
        for p in pkgs {
            b.run(
                &pip_mount(),
                true,
                false,
                &[format!("pip install{constraint} {}", sh_quote(p))],
            );
        }
        b.blank();
    }

    // Spec ENV.
    if !e.env.is_empty() {
        b.comment("Environment variables from the spec.");
        let vars: Vec<String> = e
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", dq(v)))
            .collect();
        b.line(format!("ENV {}", vars.join(" \\\n    ")));
        b.blank();
    }

    // Run steps.
    if !e.run.is_empty() {
        b.comment("Extra build steps from the spec (run as root, in order).");
        for r in &e.run {
            b.run(&pip_mount(), true, false, std::slice::from_ref(r));
        }
        b.blank();
    }

    // User.
    let user = &opts.user;
    b.comment(&format!(
        "A non-root user \"{user}\" with the host user's uid/gid, so files written to mounted\n\
         project directories belong to the host user. Override with\n\
         --build-arg DLENV_UID=$(id -u) --build-arg DLENV_GID=$(id -g). An existing account\n\
         with that uid (e.g. \"ubuntu\" on Ubuntu 24.04 images) is replaced; uid 0 keeps root."
    ));
    b.line(format!("ARG DLENV_UID={}", opts.uid));
    b.line(format!("ARG DLENV_GID={}", opts.gid));
    b.run(
        &[],
        false,
        false,
        &[
            "set -eu".into(),
            "if [ \"$DLENV_UID\" != 0 ]; then \\\n      old=\"$(getent passwd \"$DLENV_UID\" | cut -d: -f1)\"; \\\n      if [ -n \"$old\" ]; then userdel -r \"$old\" 2>/dev/null || userdel \"$old\"; fi; \\\n      getent group \"$DLENV_GID\" >/dev/null || groupadd -g \"$DLENV_GID\" "
                .to_string()
                + &sh_quote(user)
                + "; \\\n      useradd -m -d "
                + &sh_quote(&format!("/home/{user}"))
                + " -s /bin/bash -u \"$DLENV_UID\" -g \"$DLENV_GID\" "
                + &sh_quote(user)
                + "; \\\n    fi",
            format!("mkdir -p /home/{user} /workspace"),
            format!("chown \"$DLENV_UID:$DLENV_GID\" /home/{user} /workspace"),
        ],
    );
    b.line(format!("ENV HOME=/home/{user}"));
    b.blank();

    // Labels.
    b.comment("Labels dlenv uses to find and check its images.");
    let labels = [
        ("dlenv.managed", "true".to_string()),
        ("dlenv.env", e.name.clone()),
        ("dlenv.spec-hash", lock.spec_hash.clone()),
        ("dlenv.lock-hash", lock.lock_hash()),
        ("dlenv.version", lock.dlenv_version.clone()),
        // The base as pulled: `dlenv export --delta` leaves its layers out.
        ("dlenv.base", from.clone()),
    ];
    // The framework's GPU code, so a host that imports or pulls the image can check its GPUs.
    let archs = (!s.gpu_archs.is_empty()).then(|| ("dlenv.gpu-archs", s.gpu_archs.join(" ")));
    let labels: Vec<&(&str, String)> = labels.iter().chain(archs.iter()).collect();
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", dq(v)))
        .collect();
    b.line(format!("LABEL {}", labels.join(" \\\n      ")));
    b.blank();

    b.line("USER ${DLENV_UID}:${DLENV_GID}");
    b.line("WORKDIR /workspace");
    if opts.copy_project {
        b.comment("The project itself, last: code changes rebuild only this layer.");
        b.line("COPY --chown=${DLENV_UID}:${DLENV_GID} . /workspace");
        context_files.push(".".into());
    }
    b.line("CMD [\"/bin/bash\"]");
    if opts.ca_bundle {
        context_files.push(CA_BUNDLE_PATH.into());
    }
    Rendered {
        dockerfile: b.out,
        context_files,
    }
}

#[cfg(test)]
mod mirror_tests {
    use super::mirror_ref;

    #[test]
    fn only_docker_hub_references_are_rewritten() {
        let m = "https://mirror.example:5000/";
        assert_eq!(
            mirror_ref("ubuntu:24.04", m),
            "mirror.example:5000/library/ubuntu:24.04"
        );
        assert_eq!(
            mirror_ref("nvidia/cuda:12.8.1-runtime-ubuntu24.04", m),
            "mirror.example:5000/nvidia/cuda:12.8.1-runtime-ubuntu24.04"
        );
        assert_eq!(
            mirror_ref("docker.io/nvidia/cuda:12.8.1-base-ubuntu22.04", m),
            "mirror.example:5000/nvidia/cuda:12.8.1-base-ubuntu22.04"
        );
        assert_eq!(
            mirror_ref("docker.io/python:3.12", m),
            "mirror.example:5000/library/python:3.12"
        );
        assert_eq!(
            mirror_ref("nvcr.io/nvidia/pytorch:24.05-py3", m),
            "nvcr.io/nvidia/pytorch:24.05-py3"
        );
        assert_eq!(mirror_ref("localhost:5000/x:1", m), "localhost:5000/x:1");
        assert_eq!(
            mirror_ref("dlenv/base:debian-bookworm", m),
            "dlenv/base:debian-bookworm"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("numpy"), "numpy");
        assert_eq!(sh_quote("torch==2.7.0+cu128"), "torch==2.7.0+cu128");
        assert_eq!(sh_quote("transformers>=4.44"), "'transformers>=4.44'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(dq("a\"b$c"), r#""a\"b\$c""#);
    }
}
