//! Importing an existing `requirements.txt` into a spec (`dlenv init --from-requirements`).

/// What a requirements file turns into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// `framework = …` value, when the file pins a framework (`torch==2.7.0` →
    /// `pytorch==2.7.0`).
    pub framework: Option<String>,
    /// CUDA implied by a local version label (`torch==2.7.0+cu128` → `cu128`).
    pub cuda: Option<String>,
    /// Everything else, for `pip`.
    pub pip: Vec<String>,
    /// Lines left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// Packages dlenv pins itself with the framework (companions and CUDA libraries).
fn companion(name: &str) -> bool {
    matches!(
        name,
        "torchvision"
            | "torchaudio"
            | "jaxlib"
            | "jax-cuda12-plugin"
            | "jax-cuda12-pjrt"
            | "jax-cuda13-plugin"
            | "jax-cuda13-pjrt"
            | "triton"
    ) || name.starts_with("nvidia-")
}

fn split_name(req: &str) -> (&str, &str) {
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(req.len());
    (&req[..end], &req[end..])
}

/// Import a requirements file's text.
pub fn import_requirements(text: &str) -> Imported {
    let mut out = Imported::default();
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('-') {
            if crate::spec::requirement_file(line).is_some() {
                out.pip.push(line.to_string());
            } else {
                out.skipped.push((
                    line.to_string(),
                    "pip options are set by dlenv (the framework's index URL comes from the \
                     compat database)"
                        .into(),
                ));
            }
            continue;
        }
        let (name, rest) = split_name(line);
        let norm = name.to_ascii_lowercase().replace('_', "-");
        // Extras (`tensorflow[and-cuda]`, `jax[cuda12]`) are chosen by the resolver.
        let rest_no_extras = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map_or("", |(_, after)| after),
            None => rest,
        };
        let spec = rest_no_extras.split(';').next().unwrap_or("").trim();
        let framework = match norm.as_str() {
            "torch" => Some("pytorch"),
            "tensorflow" | "tensorflow-gpu" | "tensorflow-cpu" => Some("tensorflow"),
            "jax" => Some("jax"),
            _ => None,
        };
        if let Some(fw) = framework {
            if out.framework.is_some() {
                out.skipped
                    .push((line.to_string(), "a second framework pin".into()));
                continue;
            }
            // `==2.7.0+cu128`: the local label names the CUDA variant.
            let (spec, local) = match spec.split_once('+') {
                Some((s, l)) => (s.to_string(), Some(l.to_string())),
                None => (spec.to_string(), None),
            };
            if let Some(l) = local.filter(|l| l.starts_with("cu") && l.len() > 2) {
                out.cuda = Some(l);
            }
            out.framework = Some(format!("{fw}{}", spec.replace(' ', "")));
            continue;
        }
        if companion(&norm) {
            out.skipped.push((
                line.to_string(),
                "pinned by dlenv together with the framework".into(),
            ));
            continue;
        }
        out.pip.push(line.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_framework_pins() {
        let i = import_requirements(
            "# deps\ntorch==2.7.0+cu128\ntorchvision==0.22.0\ntransformers>=4.44  # nlp\n\
             --extra-index-url https://x\n-r more.txt\nnumpy<2; python_version<'3.13'\n",
        );
        assert_eq!(i.framework.as_deref(), Some("pytorch==2.7.0"));
        assert_eq!(i.cuda.as_deref(), Some("cu128"));
        assert_eq!(
            i.pip,
            vec![
                "transformers>=4.44",
                "-r more.txt",
                "numpy<2; python_version<'3.13'"
            ]
        );
        assert_eq!(i.skipped.len(), 2);
        let t = import_requirements("tensorflow[and-cuda]==2.17.0\n");
        assert_eq!(t.framework.as_deref(), Some("tensorflow==2.17.0"));
        let j = import_requirements("jax[cuda12]>=0.4\n");
        assert_eq!(j.framework.as_deref(), Some("jax>=0.4"));
    }
}
