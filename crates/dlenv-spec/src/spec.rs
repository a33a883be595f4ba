//! The spec model and its parser / validator.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use dlenv_compat::{
    CompatDb, CudaReq, Flavor, Framework, FrameworkReq, Request, VersionSpec, parse_python,
};

use crate::error::{ErrorKind, Source, SpecError, closest};

/// Python versions dlenv knows about (3.x minors), for "unknown version" checks.
pub const KNOWN_PYTHON_MINORS: std::ops::RangeInclusive<u32> = 6..=14;

/// `auto` or a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Choice<T> {
    /// Let dlenv pick.
    Auto,
    /// This value.
    Value(T),
}

impl<T> Choice<T> {
    /// The value, if not `auto`.
    pub fn value(&self) -> Option<&T> {
        match self {
            Choice::Auto => None,
            Choice::Value(v) => Some(v),
        }
    }
}

/// `flavor`: which image flavour (or CPU only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlavorChoice {
    /// Resolver's default (`runtime` for GPU stacks; CPU when the host has no GPU).
    Auto,
    /// A CPU-only stack even on a GPU host.
    Cpu,
    /// An nvidia/cuda flavour.
    Image(Flavor),
}

impl FlavorChoice {
    /// As written in a spec.
    pub fn as_str(self) -> String {
        match self {
            FlavorChoice::Auto => "auto".into(),
            FlavorChoice::Cpu => "cpu".into(),
            FlavorChoice::Image(f) => f.to_string(),
        }
    }
}

/// `[run].gpus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Gpus {
    /// Every GPU.
    All,
    /// No GPU.
    None,
    /// The first N GPUs.
    Count(u32),
    /// These devices: indices, `GPU-…` UUIDs, `MIG-…` ids or `gpu:mig` indices.
    Devices(Vec<String>),
}

/// `[run].shm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shm {
    /// `--ipc=host`.
    Host,
    /// `--shm-size=<size>` (as written, e.g. `16g`).
    Size(String),
}

/// The `[env]` table: everything that goes into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSpec {
    /// Environment name (image name part).
    pub name: String,
    /// Framework and version constraint.
    pub framework: FrameworkReq,
    /// Python version constraint.
    pub python: Choice<VersionSpec>,
    /// CUDA constraint.
    pub cuda: Choice<CudaReq>,
    /// Image flavour or CPU.
    pub flavor: FlavorChoice,
    /// Explicit base image.
    pub base: Choice<String>,
    /// Debian/Ubuntu packages (`name` or `name=version`).
    pub apt: Vec<String>,
    /// pip requirement lines; `-r FILE` entries name requirement files (spec-relative).
    pub pip: Vec<String>,
    /// Environment variables set in the image.
    pub env: BTreeMap<String, String>,
    /// Extra build steps (shell commands).
    pub run: Vec<String>,
}

/// The `[run]` table: how containers are started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSpec {
    /// GPUs given to the container.
    pub gpus: Gpus,
    /// Port publications as written (`8888`, `8080:80`, `127.0.0.1:8888:8888/tcp`).
    pub ports: Vec<String>,
    /// Bind mounts as written (`.:/workspace`, `/data:/data:ro`).
    pub mounts: Vec<String>,
    /// Shared memory.
    pub shm: Option<Shm>,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            gpus: Gpus::All,
            ports: Vec::new(),
            mounts: vec![".:/workspace".into()],
            shm: None,
        }
    }
}

/// The `[jupyter]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JupyterSpec {
    /// Start Jupyter in the environment (`dlenv up`); JupyterLab is installed into the
    /// image unless `[env].pip` already names `jupyterlab` or `notebook`.
    pub enabled: bool,
}

/// A parsed, validated spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `[env]`.
    pub env: EnvSpec,
    /// `[run]`.
    pub run: RunSpec,
    /// `[jupyter]`.
    pub jupyter: JupyterSpec,
    /// Where it came from (for located errors after parsing).
    pub source: Source,
    /// Byte spans of values, by dotted key (`env.framework`), or of tables (`env`).
    pub spans: BTreeMap<String, Range<usize>>,
}

/// The canonical form hashed into [`Spec::hash`]: only what goes into the image.
#[derive(Serialize)]
struct Canonical<'a> {
    canonical_format: u32,
    name: &'a str,
    framework: String,
    python: String,
    cuda: String,
    flavor: String,
    base: String,
    apt: &'a [String],
    pip: &'a [String],
    env: &'a BTreeMap<String, String>,
    run: &'a [String],
    /// Only when enabled (it adds JupyterLab to the image), so specs without Jupyter keep
    /// their hash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    jupyter: bool,
}

impl Spec {
    /// Parse and validate a `dlenv.toml` (values only; see [`Spec::check_versions`]).
    pub fn parse(path: &str, text: &str) -> Result<Spec, SpecError> {
        let src = Source {
            path: path.into(),
            text: text.into(),
        };
        let root = parse_toml(&src)?;
        Parser::new(src.clone()).root(root.get_ref(), "", 0..0)
    }

    /// Parse the `[tool.dlenv]` table of a `pyproject.toml`. `Ok(None)` when it has none.
    pub fn parse_pyproject(path: &str, text: &str) -> Result<Option<Spec>, SpecError> {
        let src = Source {
            path: path.into(),
            text: text.into(),
        };
        let root = parse_toml(&src)?;
        let Some(tool) = entry(root.get_ref(), "tool") else {
            return Ok(None);
        };
        let Some(tool) = tool.get_ref().as_table() else {
            return Ok(None);
        };
        let Some(dl) = entry(tool, "dlenv") else {
            return Ok(None);
        };
        let p = Parser::new(src.clone());
        let t = p.table(dl, "tool.dlenv")?;
        p.root(t, "tool.dlenv.", dl.span()).map(Some)
    }

    /// Parse and validate, then check versions against the compat database.
    pub fn load(path: &str, text: &str, db: &CompatDb) -> Result<Spec, SpecError> {
        let s = Spec::parse(path, text)?;
        s.check_versions(db)?;
        Ok(s)
    }

    /// An error located at the value of `key` (`env.framework`; falls back to the `[env]`
    /// table, then the file start).
    pub fn error_at(
        &self,
        key: &str,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> SpecError {
        let span = self
            .spans
            .get(key)
            .or_else(|| self.spans.get(key.split('.').next().unwrap_or("")))
            .cloned()
            .unwrap_or(0..0);
        self.source.error(span, kind, message, hint)
    }

    /// Versions that parse but that the compat database does not know are errors: a
    /// framework spec no release matches, an unknown Python or CUDA version.
    pub fn check_versions(&self, db: &CompatDb) -> Result<(), SpecError> {
        let e = &self.env;
        if let Some(spec) = &e.framework.version {
            let known: Vec<&dlenv_compat::DottedVersion> = match e.framework.framework {
                Framework::Pytorch => db.pytorch.releases.iter().map(|r| &r.version).collect(),
                Framework::Tensorflow => db.tensorflow.iter().map(|r| &r.version).collect(),
                Framework::Jax => db.jax.iter().map(|r| &r.version).collect(),
                Framework::None => Vec::new(),
            };
            if !known.iter().any(|v| spec.matches(v)) {
                let (lo, hi) = (
                    known
                        .iter()
                        .min()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    known
                        .iter()
                        .max()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                );
                return Err(self.error_at(
                    "env.framework",
                    ErrorKind::UnknownVersion,
                    format!(
                        "no {} release in the compat database matches `{spec}`",
                        e.framework.framework
                    ),
                    Some(format!(
                        "known releases run from {lo} to {hi} (`dlenv matrix --framework {}`); \
                         or update the database with `dlenv compat update`",
                        e.framework.framework
                    )),
                ));
            }
        }
        if let Choice::Value(spec) = &e.python {
            let ok = KNOWN_PYTHON_MINORS
                .clone()
                .any(|m| spec.matches(&dlenv_compat::DottedVersion::new(vec![3, m])));
            if !ok {
                return Err(self.error_at(
                    "env.python",
                    ErrorKind::UnknownVersion,
                    format!("no known Python version matches `{spec}`"),
                    Some(format!(
                        "dlenv knows Python 3.{}–3.{}; write e.g. `3.12`, or `auto` for the \
                         base image's own Python",
                        KNOWN_PYTHON_MINORS.start(),
                        KNOWN_PYTHON_MINORS.end()
                    )),
                ));
            }
        }
        if let Choice::Value(c) = &e.cuda
            && !db.cuda_releases.iter().any(|r| c.matches(&r.version))
        {
            let known: Vec<String> = db
                .cuda_releases
                .iter()
                .map(|r| r.version.major_minor().to_string())
                .collect();
            return Err(self.error_at(
                "env.cuda",
                ErrorKind::UnknownVersion,
                format!("CUDA {c} is not in the compat database"),
                Some(format!(
                    "known CUDA releases: {}; or `auto`",
                    dedup(known).join(", ")
                )),
            ));
        }
        Ok(())
    }

    /// The resolver request this spec makes (Python `auto` leaves Python open; the caller
    /// picks the base distribution's Python, see [`crate::resolve_spec`]).
    pub fn to_request(&self) -> Request {
        let e = &self.env;
        let mut r = Request::new(e.framework.clone());
        r.python = e.python.value().cloned();
        r.cuda = e.cuda.value().cloned();
        match e.flavor {
            FlavorChoice::Auto => {}
            FlavorChoice::Cpu => r.cpu_only = true,
            FlavorChoice::Image(f) => r.flavor = Some(f),
        }
        r
    }

    /// Requirement files named by `-r FILE` in `pip` (spec-relative), in order.
    pub fn input_files(&self) -> Vec<String> {
        self.env
            .pip
            .iter()
            .filter_map(|l| requirement_file(l))
            .map(str::to_string)
            .collect()
    }

    /// The canonical text of the image-relevant part of the spec (`[env]`), as JSON.
    /// `[run]` is left out: it changes how containers start, not what is built, so editing
    /// it does not make the lock stale. `[jupyter] enabled = true` is in (it adds JupyterLab
    /// to the image, see [`pip_with_jupyter`]); a disabled or absent `[jupyter]` is not.
    pub fn canonical(&self) -> String {
        let e = &self.env;
        let fw = match &e.framework.version {
            Some(v) => format!("{}{v}", e.framework.framework),
            None => e.framework.framework.to_string(),
        };
        let c = Canonical {
            canonical_format: 1,
            name: &e.name,
            framework: fw,
            python: e.python.value().map_or("auto".into(), ToString::to_string),
            cuda: e.cuda.value().map_or("auto".into(), ToString::to_string),
            flavor: e.flavor.as_str(),
            base: e.base.value().cloned().unwrap_or_else(|| "auto".into()),
            apt: &e.apt,
            pip: &e.pip,
            env: &e.env,
            run: &e.run,
            jupyter: self.jupyter.enabled,
        };
        serde_json::to_string(&c).expect("canonical spec serializes")
    }

    /// `sha256:<hex>` of [`Spec::canonical`]: stable across formatting, comments, key order
    /// and spelling variants (`torch` = `pytorch`).
    pub fn hash(&self) -> String {
        format!("sha256:{}", crate::sha256_hex(self.canonical().as_bytes()))
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.dedup();
    v
}

/// The pip entries to install: `[env].pip`, plus `jupyterlab` when `[jupyter] enabled` and
/// no entry already names JupyterLab or the classic notebook (`-r` files are not opened:
/// an extra unpinned `jupyterlab` next to a pinned one in a file is harmless to pip).
pub fn pip_with_jupyter(pip: &[String], jupyter: bool) -> Vec<String> {
    let mut out = pip.to_vec();
    let names_jupyter = pip.iter().any(|l| {
        let name: String = l
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect::<String>()
            .to_ascii_lowercase()
            .replace('_', "-");
        matches!(name.as_str(), "jupyterlab" | "notebook" | "jupyter")
    });
    if jupyter && !names_jupyter {
        out.push("jupyterlab".into());
    }
    out
}

/// `-r FILE` / `--requirement FILE` / `-rFILE` → `FILE`.
pub fn requirement_file(line: &str) -> Option<&str> {
    let t = line.trim();
    let rest = t
        .strip_prefix("--requirement")
        .or_else(|| t.strip_prefix("-r"))?;
    let rest = rest.trim_start_matches('=').trim();
    (!rest.is_empty()).then_some(rest)
}

fn parse_toml(src: &Source) -> Result<Spanned<DeTable<'_>>, SpecError> {
    DeTable::parse(&src.text).map_err(|e| {
        let msg = e.message().trim().to_string();
        let hint = if msg.contains("duplicate") {
            Some("remove one of the two definitions".to_string())
        } else {
            Some("see https://toml.io for the syntax; strings need quotes".to_string())
        };
        src.error(
            e.span().unwrap_or(0..0),
            ErrorKind::Syntax,
            format!("invalid TOML: {msg}"),
            hint,
        )
    })
}

fn entry<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

type Val<'a, 'i> = &'a Spanned<DeValue<'i>>;

struct Parser {
    src: Source,
    spans: BTreeMap<String, Range<usize>>,
}

const ROOT_KEYS: &[&str] = &["env", "run", "jupyter"];
const ENV_KEYS: &[&str] = &[
    "name",
    "framework",
    "python",
    "cuda",
    "flavor",
    "base",
    "apt",
    "pip",
    "env",
    "run",
];
const RUN_KEYS: &[&str] = &["gpus", "ports", "mounts", "shm"];
const JUPYTER_KEYS: &[&str] = &["enabled"];

impl Parser {
    fn new(src: Source) -> Self {
        Self {
            src,
            spans: BTreeMap::new(),
        }
    }

    fn err(
        &self,
        span: Range<usize>,
        kind: ErrorKind,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> SpecError {
        self.src.error(span, kind, msg, hint.into())
    }

    fn unknown_key(
        &self,
        k: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
        prefix: &str,
    ) -> SpecError {
        let name = k.get_ref().as_ref();
        let (msg, hint) = match closest(name, known) {
            Some(s) => (
                format!("unknown key `{prefix}{name}`: did you mean `{s}`?"),
                Some(format!("rename it to `{s}`")),
            ),
            None => (
                format!("unknown key `{prefix}{name}`"),
                Some(format!(
                    "{} takes: {}",
                    if prefix.is_empty() {
                        "the file".to_string()
                    } else {
                        format!("[{}]", prefix.trim_end_matches('.'))
                    },
                    known.join(", ")
                )),
            ),
        };
        self.err(k.span(), ErrorKind::UnknownKey, msg, hint)
    }

    fn wrong_type(&self, v: Val<'_, '_>, key: &str, expected: &str, example: &str) -> SpecError {
        self.err(
            v.span(),
            ErrorKind::WrongType,
            format!(
                "`{key}` must be {expected}, not {}",
                article(v.get_ref().type_str())
            ),
            Some(format!("write it like {example}")),
        )
    }

    fn table<'a, 'i>(&self, v: Val<'a, 'i>, key: &str) -> Result<&'a DeTable<'i>, SpecError> {
        v.get_ref().as_table().ok_or_else(|| {
            self.wrong_type(v, key, "a table", &format!("`[{key}]` on its own line"))
        })
    }

    fn string<'a>(&self, v: Val<'a, '_>, key: &str, example: &str) -> Result<&'a str, SpecError> {
        v.get_ref()
            .as_str()
            .ok_or_else(|| self.wrong_type(v, key, "a string", example))
    }

    fn strings(
        &self,
        v: Val<'_, '_>,
        key: &str,
        example: &str,
    ) -> Result<Vec<(String, Range<usize>)>, SpecError> {
        let arr = v
            .get_ref()
            .as_array()
            .ok_or_else(|| self.wrong_type(v, key, "a list of strings", example))?;
        arr.iter()
            .map(|item| {
                let s = item.get_ref().as_str().ok_or_else(|| {
                    self.wrong_type(item, &format!("{key}[…]"), "a string", example)
                })?;
                Ok((s.to_string(), item.span()))
            })
            .collect()
    }

    fn root(
        mut self,
        t: &DeTable<'_>,
        prefix: &str,
        whole: Range<usize>,
    ) -> Result<Spec, SpecError> {
        let mut env = None;
        let mut run = RunSpec::default();
        let mut jupyter = JupyterSpec::default();
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            match key {
                "env" => {
                    self.spans.insert("env".into(), k.span());
                    let tb = self.table(v, &format!("{prefix}env"))?;
                    env = Some(self.env(tb, &format!("{prefix}env."))?);
                }
                "run" => {
                    let tb = self.table(v, &format!("{prefix}run"))?;
                    run = self.run(tb, &format!("{prefix}run."))?;
                }
                "jupyter" => {
                    let tb = self.table(v, &format!("{prefix}jupyter"))?;
                    jupyter = self.jupyter(tb, &format!("{prefix}jupyter."))?;
                }
                _ => return Err(self.unknown_key(k, ROOT_KEYS, prefix)),
            }
        }
        let env = env.ok_or_else(|| {
            self.err(
                whole,
                ErrorKind::Missing,
                format!("missing table `[{prefix}env]`"),
                Some(format!(
                    "add `[{prefix}env]` with at least `name = \"myenv\"` (or run `dlenv init`)"
                )),
            )
        })?;
        Ok(Spec {
            env,
            run,
            jupyter,
            source: self.src,
            spans: self.spans,
        })
    }

    fn env(&mut self, t: &DeTable<'_>, prefix: &str) -> Result<EnvSpec, SpecError> {
        let mut name: Option<String> = None;
        let mut e = EnvSpec {
            name: String::new(),
            framework: FrameworkReq::any(Framework::None),
            python: Choice::Auto,
            cuda: Choice::Auto,
            flavor: FlavorChoice::Auto,
            base: Choice::Auto,
            apt: Vec::new(),
            pip: Vec::new(),
            env: BTreeMap::new(),
            run: Vec::new(),
        };
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            let full = format!("{prefix}{key}");
            self.spans.insert(format!("env.{key}"), v.span());
            match key {
                "name" => {
                    let s = self.string(v, &full, "`name = \"vision\"`")?;
                    if let Err(why) = check_name(s) {
                        return Err(self.err(
                            v.span(),
                            ErrorKind::InvalidValue,
                            format!("invalid environment name {s:?}: {why}"),
                            Some(
                                "use lower-case letters, digits, `-`, `_` and `.`, starting with \
                                 a letter or digit, e.g. `vision`"
                                    .to_string(),
                            ),
                        ));
                    }
                    name = Some(s.to_string());
                }
                "framework" => {
                    let s = self.string(v, &full, "`framework = \"pytorch>=2.4\"`")?;
                    e.framework = s.parse().map_err(|err: dlenv_compat::RequestError| {
                        self.err(
                            v.span(),
                            ErrorKind::InvalidValue,
                            err.message,
                            Some(
                                "write pytorch, tensorflow, jax or none, optionally with a \
                                 version spec: `pytorch>=2.4`, `tensorflow==2.15.*`"
                                    .to_string(),
                            ),
                        )
                    })?;
                }
                "python" => {
                    let s = self.string(v, &full, "`python = \"3.11\"`")?;
                    e.python = if s.trim() == "auto" {
                        Choice::Auto
                    } else {
                        Choice::Value(parse_python(s).map_err(|err| {
                            self.err(
                                v.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid python {s:?}: {}", err.message),
                                Some("write `auto`, `3.11` or `>=3.10`".into()),
                            )
                        })?)
                    };
                }
                "cuda" => {
                    let s = self.string(v, &full, "`cuda = \"12.8\"`")?;
                    e.cuda = if s.trim() == "auto" {
                        Choice::Auto
                    } else {
                        Choice::Value(s.parse::<CudaReq>().map_err(|err| {
                            let hint = if matches!(s.trim(), "cpu" | "none") {
                                "for a CPU-only environment write `flavor = \"cpu\"` and \
                                 `cuda = \"auto\"`"
                            } else {
                                "write `auto`, `12.8`, `12` (any 12.x) or `cu128`"
                            };
                            self.err(
                                v.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid cuda {s:?}: {}", err.message),
                                Some(hint.into()),
                            )
                        })?)
                    };
                }
                "flavor" => {
                    let s = self.string(v, &full, "`flavor = \"runtime\"`")?;
                    let opts = ["auto", "cpu", "base", "runtime", "devel"];
                    e.flavor = match s.trim().to_ascii_lowercase().as_str() {
                        "auto" => FlavorChoice::Auto,
                        "cpu" => FlavorChoice::Cpu,
                        other => match other.parse::<Flavor>() {
                            Ok(f) => FlavorChoice::Image(f),
                            Err(_) => {
                                let dym = closest(other, &opts)
                                    .map(|o| format!(": did you mean `{o}`?"))
                                    .unwrap_or_default();
                                return Err(self.err(
                                    v.span(),
                                    ErrorKind::InvalidValue,
                                    format!("unknown flavor {s:?}{dym}"),
                                    Some(format!("flavor is one of {}", opts.join(", "))),
                                ));
                            }
                        },
                    };
                }
                "base" => {
                    let s = self.string(v, &full, "`base = \"dlenv/base:debian-bookworm\"`")?;
                    e.base = if s.trim() == "auto" {
                        Choice::Auto
                    } else {
                        check_image_ref(s).map_err(|why| {
                            self.err(
                                v.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid base image {s:?}: {why}"),
                                Some(
                                    "write `auto` or an image reference like \
                                     `dlenv/base:debian-bookworm` or `ubuntu:24.04`"
                                        .into(),
                                ),
                            )
                        })?;
                        Choice::Value(s.trim().to_string())
                    };
                }
                "apt" => {
                    for (p, span) in self.strings(v, &full, "`apt = [\"git\", \"ffmpeg\"]`")? {
                        if let Err(why) = check_apt(&p) {
                            return Err(self.err(
                                span,
                                ErrorKind::InvalidValue,
                                format!("invalid apt package {p:?}: {why}"),
                                Some(
                                    "Debian package names are lower-case letters, digits and \
                                     `+-.`, optionally `=VERSION`; one package per entry"
                                        .into(),
                                ),
                            ));
                        }
                        e.apt.push(p);
                    }
                }
                "pip" => {
                    for (p, span) in self.strings(
                        v,
                        &full,
                        "`pip = [\"transformers>=4.44\", \"-r requirements.txt\"]`",
                    )? {
                        if let Err(why) = check_pip(&p) {
                            return Err(self.err(
                                span,
                                ErrorKind::InvalidValue,
                                format!("invalid pip entry {p:?}: {why}"),
                                Some(
                                    "write one requirement per entry (`numpy>=1.26`) or \
                                     `-r requirements.txt`"
                                        .into(),
                                ),
                            ));
                        }
                        e.pip.push(p.trim().to_string());
                    }
                }
                "env" => {
                    let tb = v.get_ref().as_table().ok_or_else(|| {
                        self.wrong_type(v, &full, "a table", "`env = { HF_HOME = \"/cache/hf\" }`")
                    })?;
                    for (ek, ev) in tb.iter() {
                        let name = ek.get_ref().as_ref();
                        if !valid_env_name(name) {
                            return Err(self.err(
                                ek.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid environment variable name {name:?}"),
                                Some(
                                    "use letters, digits and `_`, not starting with a digit".into(),
                                ),
                            ));
                        }
                        let val = match ev.get_ref() {
                            DeValue::String(s) => s.to_string(),
                            DeValue::Integer(i) => i.as_str().to_string(),
                            DeValue::Boolean(b) => b.to_string(),
                            _ => {
                                return Err(self.wrong_type(
                                    ev,
                                    &format!("{full}.{name}"),
                                    "a string",
                                    "`HF_HOME = \"/workspace/.cache/hf\"`",
                                ));
                            }
                        };
                        e.env.insert(name.to_string(), val);
                    }
                }
                "run" => {
                    for (s, span) in
                        self.strings(v, &full, "`run = [\"python -c 'import torch'\"]`")?
                    {
                        if s.trim().is_empty() {
                            return Err(self.err(
                                span,
                                ErrorKind::InvalidValue,
                                "empty build step",
                                Some("remove it, or write a shell command".to_string()),
                            ));
                        }
                        e.run.push(s);
                    }
                }
                _ => return Err(self.unknown_key(k, ENV_KEYS, prefix)),
            }
        }
        e.name = name.ok_or_else(|| {
            self.err(
                self.spans.get("env").cloned().unwrap_or(0..0),
                ErrorKind::Missing,
                format!("missing `{prefix}name`"),
                Some("add `name = \"myenv\"` to the [env] table".to_string()),
            )
        })?;
        Ok(e)
    }

    fn run(&mut self, t: &DeTable<'_>, prefix: &str) -> Result<RunSpec, SpecError> {
        let mut r = RunSpec::default();
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            let full = format!("{prefix}{key}");
            self.spans.insert(format!("run.{key}"), v.span());
            match key {
                "gpus" => {
                    r.gpus = match v.get_ref() {
                        DeValue::Integer(i) => {
                            let n: u32 = i.as_str().parse().map_err(|_| {
                                self.err(
                                    v.span(),
                                    ErrorKind::InvalidValue,
                                    format!("invalid gpus count {}", i.as_str()),
                                    Some("write a count ≥ 0, `all` or `none`".to_string()),
                                )
                            })?;
                            Gpus::Count(n)
                        }
                        DeValue::String(s) => parse_gpus(s).map_err(|why| {
                            self.err(
                                v.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid gpus {s:?}: {why}"),
                                Some(
                                    "write `all`, `none`, a count (`2`), device indices \
                                     (`\"0,1\"`), GPU UUIDs (`GPU-…`) or MIG ids (`MIG-…`)"
                                        .to_string(),
                                ),
                            )
                        })?,
                        _ => {
                            return Err(self.wrong_type(
                                v,
                                &full,
                                "a string or an integer",
                                "`gpus = \"all\"`",
                            ));
                        }
                    };
                }
                "ports" => {
                    let arr = v.get_ref().as_array().ok_or_else(|| {
                        self.wrong_type(v, &full, "a list", "`ports = [\"8888\"]`")
                    })?;
                    for item in arr.iter() {
                        let s = match item.get_ref() {
                            DeValue::String(s) => s.to_string(),
                            DeValue::Integer(i) => i.as_str().to_string(),
                            _ => {
                                return Err(self.wrong_type(
                                    item,
                                    &format!("{full}[…]"),
                                    "a string",
                                    "`\"8888\"`",
                                ));
                            }
                        };
                        check_port(&s).map_err(|why| {
                            self.err(
                                item.span(),
                                ErrorKind::InvalidValue,
                                format!("invalid port {s:?}: {why}"),
                                Some(
                                    "write `PORT`, `HOST_PORT:CONTAINER_PORT` or \
                                     `IP:HOST_PORT:CONTAINER_PORT`, optionally `/tcp` or `/udp`; \
                                     ports are 1–65535"
                                        .to_string(),
                                ),
                            )
                        })?;
                        r.ports.push(s);
                    }
                }
                "mounts" => {
                    r.mounts.clear();
                    for (m, span) in self.strings(v, &full, "`mounts = [\".:/workspace\"]`")? {
                        check_mount(&m).map_err(|why| {
                            self.err(
                                span,
                                ErrorKind::InvalidValue,
                                format!("invalid mount {m:?}: {why}"),
                                Some(
                                    "write `HOST_PATH:CONTAINER_PATH` or \
                                     `HOST_PATH:CONTAINER_PATH:ro`, with an absolute container \
                                     path"
                                        .to_string(),
                                ),
                            )
                        })?;
                        r.mounts.push(m);
                    }
                }
                "shm" => {
                    let s = self.string(v, &full, "`shm = \"16g\"`")?;
                    r.shm = Some(parse_shm(s).map_err(|why| {
                        self.err(
                            v.span(),
                            ErrorKind::InvalidValue,
                            format!("invalid shm {s:?}: {why}"),
                            Some(
                                "write a size like `16g`, `512m`, or `host` for --ipc=host"
                                    .to_string(),
                            ),
                        )
                    })?);
                }
                _ => return Err(self.unknown_key(k, RUN_KEYS, prefix)),
            }
        }
        Ok(r)
    }

    fn jupyter(&mut self, t: &DeTable<'_>, prefix: &str) -> Result<JupyterSpec, SpecError> {
        let mut j = JupyterSpec::default();
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "enabled" => {
                    j.enabled = v.get_ref().as_bool().ok_or_else(|| {
                        self.wrong_type(
                            v,
                            &format!("{prefix}enabled"),
                            "a boolean",
                            "`enabled = true`",
                        )
                    })?;
                }
                _ => return Err(self.unknown_key(k, JUPYTER_KEYS, prefix)),
            }
        }
        Ok(j)
    }
}

fn article(t: &str) -> String {
    let an = matches!(t.chars().next(), Some('a' | 'e' | 'i' | 'o' | 'u'));
    format!("{} {t}", if an { "an" } else { "a" })
}

/// Environment names become image names (`dlenv/<name>`): lower-case, docker-safe.
pub fn check_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("it must start with a lower-case letter or a digit");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err("it may only hold lower-case letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Debian policy: package names are `[a-z0-9][a-z0-9+.-]+`; an optional `=VERSION` pin.
pub fn check_apt(s: &str) -> Result<(), &'static str> {
    let (name, version) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    if name.len() < 2 {
        return Err("package names have at least two characters");
    }
    let b = name.as_bytes();
    if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
        return Err("a package name starts with a lower-case letter or a digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
    {
        return Err("package names hold only lower-case letters, digits, `+`, `-` and `.`");
    }
    if let Some(v) = version
        && (v.is_empty()
            || !v
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".+-~:".contains(&c)))
    {
        return Err("the version after `=` is empty or has characters Debian versions never use");
    }
    Ok(())
}

fn check_pip(s: &str) -> Result<(), String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("it is empty".into());
    }
    if t.starts_with('-') {
        return match requirement_file(t) {
            Some(f) if f.starts_with('/') => {
                Err("requirement files are named relative to the spec's directory".into())
            }
            Some(f) if f.split('/').any(|c| c == "..") => {
                Err("requirement files must be inside the spec's directory".into())
            }
            Some(_) => Ok(()),
            None if t == "-r" || t == "--requirement" => {
                Err("`-r` needs a file name: `-r requirements.txt`".into())
            }
            None => Err(format!(
                "pip options are not allowed here (only `-r FILE`); `{}` belongs in the build \
                 configuration",
                t.split_whitespace().next().unwrap_or(t)
            )),
        };
    }
    let first = t.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err("a requirement starts with a package name".into());
    }
    if t.contains('\n') {
        return Err("one requirement per entry".into());
    }
    Ok(())
}

/// A loose check of an image reference: `[registry/]path[:tag][@sha256:…]`.
pub fn check_image_ref(s: &str) -> Result<(), &'static str> {
    let t = s.trim();
    if t.is_empty() {
        return Err("it is empty");
    }
    if t.chars().any(char::is_whitespace) {
        return Err("it contains whitespace");
    }
    let (name, digest) = match t.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (t, None),
    };
    if let Some(d) = digest
        && !(d.starts_with("sha256:")
            && d.len() == 71
            && d[7..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err("the digest must be `sha256:` and 64 hex digits");
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    let (path_last, tag) = match last.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (last, None),
    };
    if path_last.is_empty() {
        return Err("the repository name is empty");
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) && !name.contains('/') {
        return Err("repository names are lower case");
    }
    if let Some(tag) = tag
        && (tag.is_empty()
            || tag.len() > 128
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
    {
        return Err("a tag holds letters, digits, `_`, `.` and `-` (at most 128)");
    }
    Ok(())
}

fn parse_gpus(s: &str) -> Result<Gpus, String> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "all" => return Ok(Gpus::All),
        "none" | "" => return Ok(Gpus::None),
        _ => {}
    }
    // A number in a string (`"2"`) is a device index; a TOML integer (`2`) is a count.
    let mut devs = Vec::new();
    for d in t.split(',').map(str::trim) {
        let ok = d.parse::<u32>().is_ok()
            || (d.split(':').count() == 2 && d.split(':').all(|p| p.parse::<u32>().is_ok()))
            || (d.starts_with("GPU-")
                && d.len() > 4
                && d[4..].bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            || (d.starts_with("MIG-")
                && d.len() > 4
                && d[4..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/".contains(&b)));
        if !ok {
            let dym = closest(d, &["all", "none"])
                .map(|o| format!(" (did you mean `{o}`?)"))
                .unwrap_or_default();
            return Err(format!("`{d}` is not a GPU index, UUID or MIG id{dym}"));
        }
        devs.push(d.to_string());
    }
    Ok(Gpus::Devices(devs))
}

fn check_port(s: &str) -> Result<(), String> {
    let (body, proto) = match s.rsplit_once('/') {
        Some((b, p)) => (b, Some(p)),
        None => (s, None),
    };
    if let Some(p) = proto
        && !matches!(p, "tcp" | "udp" | "sctp")
    {
        return Err(format!("unknown protocol `{p}`"));
    }
    let parts: Vec<&str> = body.split(':').collect();
    let ports = match parts.len() {
        1 | 2 => &parts[..],
        3 => {
            if parts[0].parse::<std::net::IpAddr>().is_err() {
                return Err(format!("`{}` is not an IP address", parts[0]));
            }
            &parts[1..]
        }
        _ => return Err("too many `:`".into()),
    };
    for p in ports {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => {}
            Ok(n) => return Err(format!("{n} is out of range")),
            Err(_) => return Err(format!("`{p}` is not a port number")),
        }
    }
    Ok(())
}

fn check_mount(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst) = match parts.len() {
        2 => (parts[0], parts[1]),
        3 => {
            if !parts[2]
                .split(',')
                .all(|o| matches!(o, "ro" | "rw" | "z" | "Z" | "cached" | "delegated"))
            {
                return Err(format!(
                    "unknown mount option `{}` (use `ro` or `rw`)",
                    parts[2]
                ));
            }
            (parts[0], parts[1])
        }
        1 => return Err("missing `:CONTAINER_PATH`".into()),
        _ => return Err("too many `:`".into()),
    };
    if src.is_empty() {
        return Err("the host path is empty".into());
    }
    if !dst.starts_with('/') {
        return Err(format!("the container path `{dst}` must be absolute"));
    }
    Ok(())
}

fn parse_shm(s: &str) -> Result<Shm, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "host" {
        return Ok(Shm::Host);
    }
    let t2 = t.trim_end_matches('b');
    let t2 = if t2.is_empty() { "x" } else { t2 };
    let (num, unit) = match t2.char_indices().last() {
        Some((i, c)) if "kmgt".contains(c) => (&t2[..i], Some(c)),
        _ => (t2, None),
    };
    match num.parse::<u64>() {
        Ok(0) => Err("the size must be more than 0".into()),
        Ok(_) if unit.is_none() && !t.ends_with('b') => {
            Err("give a unit: `16g`, `512m` (a bare number would be bytes)".into())
        }
        Ok(_) => Ok(Shm::Size(t)),
        Err(_) => Err("not a size".into()),
    }
}
