//! Dotted version numbers and a small PEP 440-style version-specifier parser.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version made of dot-separated unsigned integers: drivers (`570.124.06`), CUDA (`12.8`),
/// cuDNN (`9.1.0.70`), Python (`3.12`), framework releases (`2.7.0`).
///
/// Comparison pads the shorter version with zeros, so `12.8 == 12.8.0` and
/// `570.124.06 > 570.26`. Leading zeros in a field are accepted (`06` is 6) but
/// [`Display`](fmt::Display) prints the text it was parsed from.
#[derive(Debug, Clone)]
pub struct DottedVersion {
    parts: Vec<u32>,
    /// The text it was parsed from, when parsed (keeps leading zeros such as `06`);
    /// `None` for computed versions, which display their fields. Computed versions are
    /// made in hot loops, so they must not format a string eagerly.
    text: Option<String>,
}

/// Error for a string that is not a dotted version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {input:?}: {reason}")]
pub struct VersionError {
    /// The rejected input.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

impl DottedVersion {
    /// Builds a version from its numeric fields.
    pub fn new(parts: Vec<u32>) -> Self {
        Self { parts, text: None }
    }

    /// The numeric fields.
    pub fn parts(&self) -> &[u32] {
        &self.parts
    }

    /// First field.
    pub fn major(&self) -> u32 {
        self.parts.first().copied().unwrap_or(0)
    }

    /// Second field (0 when absent).
    pub fn minor(&self) -> u32 {
        self.parts.get(1).copied().unwrap_or(0)
    }

    /// The first `n` fields (zero-padded), e.g. `12.8.1` → `12.8` for `n = 2`.
    pub fn truncate(&self, n: usize) -> Self {
        Self::new(
            (0..n)
                .map(|i| self.parts.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }

    /// `major.minor`.
    pub fn major_minor(&self) -> Self {
        self.truncate(2)
    }

    /// True when the first fields of `self` equal all fields of `prefix` (zero-padded):
    /// `12.8.1` starts with `12.8` and with `12`.
    pub fn starts_with(&self, prefix: &DottedVersion) -> bool {
        prefix
            .parts
            .iter()
            .enumerate()
            .all(|(i, p)| self.parts.get(i).copied().unwrap_or(0) == *p)
    }
}

impl FromStr for DottedVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = |reason: &str| VersionError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if t.is_empty() {
            return Err(err("empty"));
        }
        let mut parts = Vec::new();
        for field in t.split('.') {
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    "expected numbers separated by dots, like 12.8 or 570.124.06",
                ));
            }
            parts.push(field.parse::<u32>().map_err(|_| err("number too large"))?);
        }
        Ok(Self {
            parts,
            text: Some(t.to_string()),
        })
    }
}

impl fmt::Display for DottedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => f.write_str(t),
            None => {
                for (i, p) in self.parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Ord for DottedVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for DottedVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DottedVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DottedVersion {}

impl Serialize for DottedVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DottedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Comparison operator of one version clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpecOp {
    /// `==` (with `.*`: prefix match).
    Eq,
    /// `!=` (with `.*`: prefix mismatch).
    Ne,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `~=` compatible release.
    Compatible,
}

impl SpecOp {
    fn as_str(self) -> &'static str {
        match self {
            SpecOp::Eq => "==",
            SpecOp::Ne => "!=",
            SpecOp::Ge => ">=",
            SpecOp::Le => "<=",
            SpecOp::Gt => ">",
            SpecOp::Lt => "<",
            SpecOp::Compatible => "~=",
        }
    }
}

/// One clause of a [`VersionSpec`], e.g. `>=2.4` or `==2.15.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecClause {
    /// Operator.
    pub op: SpecOp,
    /// Version operand.
    pub version: DottedVersion,
    /// Trailing `.*` (only with `==` / `!=`).
    pub wildcard: bool,
}

impl SpecClause {
    fn matches(&self, v: &DottedVersion) -> bool {
        match (self.op, self.wildcard) {
            (SpecOp::Eq, true) => v.starts_with(&self.version),
            (SpecOp::Ne, true) => !v.starts_with(&self.version),
            (SpecOp::Eq, false) => v == &self.version,
            (SpecOp::Ne, false) => v != &self.version,
            (SpecOp::Ge, _) => v >= &self.version,
            (SpecOp::Le, _) => v <= &self.version,
            (SpecOp::Gt, _) => v > &self.version,
            (SpecOp::Lt, _) => v < &self.version,
            (SpecOp::Compatible, _) => {
                let n = self.version.parts().len().saturating_sub(1).max(1);
                v >= &self.version && v.starts_with(&self.version.truncate(n))
            }
        }
    }
}

impl fmt::Display for SpecClause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.op.as_str(), self.version)?;
        if self.wildcard {
            f.write_str(".*")?;
        }
        Ok(())
    }
}

/// A comma-separated list of version clauses, all of which must hold (PEP 440 subset):
/// `==2.7.0`, `>=2.4,<2.8`, `==2.15.*`, `~=2.7`, `!=2.6.0`.
///
/// A bare version (`2.7`, `3.12`) means `==2.7.*` (prefix match); pre-/post-/dev-releases and
/// local labels are not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSpec {
    clauses: Vec<SpecClause>,
}

/// Error for an unparsable version specifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version specifier {input:?}: {reason}")]
pub struct SpecError {
    /// The rejected input.
    pub input: String,
    /// Why, with a hint.
    pub reason: String,
}

impl VersionSpec {
    /// The clauses.
    pub fn clauses(&self) -> &[SpecClause] {
        &self.clauses
    }

    /// Spec matching exactly one version (`==v`).
    pub fn exact(v: DottedVersion) -> Self {
        Self {
            clauses: vec![SpecClause {
                op: SpecOp::Eq,
                version: v,
                wildcard: false,
            }],
        }
    }

    /// True when every clause accepts `v`.
    pub fn matches(&self, v: &DottedVersion) -> bool {
        self.clauses.iter().all(|c| c.matches(v))
    }
}

impl FromStr for VersionSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| SpecError {
            input: s.to_string(),
            reason,
        };
        let mut clauses = Vec::new();
        for raw in s.split(',') {
            let c = raw.trim();
            if c.is_empty() {
                return Err(err(
                    "empty clause; write clauses like `>=2.4,<2.8` or `==2.15.*`".into(),
                ));
            }
            let ops = [
                ("===", SpecOp::Eq),
                ("==", SpecOp::Eq),
                ("!=", SpecOp::Ne),
                (">=", SpecOp::Ge),
                ("<=", SpecOp::Le),
                ("~=", SpecOp::Compatible),
                (">", SpecOp::Gt),
                ("<", SpecOp::Lt),
                ("=", SpecOp::Eq),
            ];
            let (op, rest, bare) = match ops.iter().find(|(p, _)| c.starts_with(p)) {
                Some((p, op)) => (*op, c[p.len()..].trim(), false),
                None => (SpecOp::Eq, c, true),
            };
            let (num, wildcard) = match rest.strip_suffix(".*") {
                Some(n) => (n, true),
                None => (rest, bare),
            };
            if wildcard && !matches!(op, SpecOp::Eq | SpecOp::Ne) {
                return Err(err(format!(
                    "`.*` is only allowed after == or != (in `{c}`)"
                )));
            }
            let version: DottedVersion = num.parse().map_err(|e: VersionError| {
                err(format!(
                    "{} in `{c}`; expected e.g. `==2.7.0`, `>=2.4,<2.8` or `==2.15.*`",
                    e.reason
                ))
            })?;
            if op == SpecOp::Compatible && version.parts().len() < 2 {
                return Err(err(format!("`~=` needs at least two fields (in `{c}`)")));
            }
            clauses.push(SpecClause {
                op,
                version,
                wildcard,
            });
        }
        Ok(Self { clauses })
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl Serialize for VersionSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
