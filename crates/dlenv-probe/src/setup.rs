//! `dlenv setup`'s plan: a pure function from [`HostFacts`] and [`SetupOptions`] to a list
//! of steps (commands and file edits, each marked already done or not). dlenv's command
//! executes the plan; `--dry-run` prints [`render_plan`].

use serde::Serialize;

use crate::facts::HostFacts;

/// Which engine to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Docker Engine.
    Docker,
    /// Podman (GPUs through CDI).
    Podman,
}

/// Where Docker Engine comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineSource {
    /// Docker's official apt repository (`docker-ce`).
    Docker,
    /// The distribution's package (`docker.io`).
    Distro,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupOptions {
    /// Docker or Podman.
    pub engine: EngineChoice,
    /// Docker's repository or the distribution's package.
    pub engine_source: EngineSource,
    /// A Docker Hub mirror to add to `daemon.json`.
    pub registry_mirror: Option<String>,
}

impl Default for SetupOptions {
    fn default() -> Self {
        Self {
            engine: EngineChoice::Docker,
            engine_source: EngineSource::Docker,
            registry_mirror: None,
        }
    }
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A shell command line (run with `sh -c`, as root).
    Run {
        /// The command line.
        command: String,
    },
    /// Write a whole file.
    WriteFile {
        /// Path.
        path: String,
        /// New content.
        content: String,
    },
    /// Start `dockerd` in the background (no systemd), logging to [`DOCKERD_LOG`], and wait
    /// for `/_ping` (at most 60 s).
    StartDockerd,
}

/// Where `dlenv setup` logs a `dockerd` it starts itself.
pub const DOCKERD_LOG: &str = "/var/log/dlenv-dockerd.log";

/// A step's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "kebab-case")]
pub enum StepState {
    /// To do.
    Todo,
    /// Already done (why we think so).
    Done(String),
    /// Not applicable (why).
    Skipped(String),
    /// Cannot be done automatically (why, and what to do).
    Blocked(String),
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Stable id, e.g. `engine.install`.
    pub id: String,
    /// What it does.
    pub description: String,
    /// Its state.
    pub state: StepState,
    /// The actions (also listed for done steps, for reference; not executed then).
    pub actions: Vec<Action>,
    /// Something to tell the user after it runs.
    pub note: Option<String>,
}

impl Step {
    fn new(id: &str, description: impl Into<String>, state: StepState) -> Self {
        Self {
            id: id.into(),
            description: description.into(),
            state,
            actions: Vec::new(),
            note: None,
        }
    }
    fn run(mut self, cmd: impl Into<String>) -> Self {
        self.actions.push(Action::Run {
            command: cmd.into(),
        });
        self
    }
    fn write(mut self, path: &str, content: impl Into<String>) -> Self {
        self.actions.push(Action::WriteFile {
            path: path.into(),
            content: content.into(),
        });
        self
    }
    fn note(mut self, n: impl Into<String>) -> Self {
        self.note = Some(n.into());
        self
    }

    /// Whether the step would change something.
    pub fn is_todo(&self) -> bool {
        self.state == StepState::Todo
    }
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The host, in one line.
    pub host: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Why setup cannot run on this host at all, if so.
    pub unsupported: Option<String>,
}

impl Plan {
    /// Whether anything is left to do.
    pub fn has_work(&self) -> bool {
        self.steps.iter().any(Step::is_todo)
    }
}

const DOCKER_KEYRING: &str = "/etc/apt/keyrings/docker.asc";
const DOCKER_LIST: &str = "/etc/apt/sources.list.d/docker.list";
const NV_KEYRING: &str = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg";
const NV_LIST: &str = "/etc/apt/sources.list.d/nvidia-container-toolkit.list";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Add a registry mirror to `daemon.json` text, keeping every other key. `Ok(None)` when
/// it is already there; `Err` when the existing file is not a JSON object.
pub fn merge_registry_mirror(
    existing: Option<&str>,
    mirror: &str,
) -> Result<Option<String>, String> {
    let mut v = match existing.map(str::trim) {
        None | Some("") => serde_json::Value::Object(Default::default()),
        Some(t) => {
            serde_json::from_str(t).map_err(|e| format!("{DAEMON_JSON} is not valid JSON: {e}"))?
        }
    };
    let obj = v
        .as_object_mut()
        .ok_or_else(|| format!("{DAEMON_JSON} is not a JSON object"))?;
    let mirrors = obj
        .entry("registry-mirrors")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let arr = mirrors
        .as_array_mut()
        .ok_or_else(|| "`registry-mirrors` in daemon.json is not a list".to_string())?;
    let norm = |s: &str| s.trim_end_matches('/').to_string();
    if arr
        .iter()
        .any(|m| m.as_str().map(norm) == Some(norm(mirror)))
    {
        return Ok(None);
    }
    arr.push(serde_json::Value::String(mirror.to_string()));
    let mut text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(Some(text))
}

/// Compute the plan. Pure: everything comes from `f` and `o`.
pub fn plan(f: &HostFacts, o: &SetupOptions) -> Plan {
    let mut host = f.os.describe();
    host.push_str(if f.os.systemd {
        "; systemd"
    } else {
        "; no systemd"
    });
    match (&f.nvidia.driver_version, f.nvidia.driver_present()) {
        (Some(v), _) => host.push_str(&format!("; NVIDIA driver {v}")),
        (None, true) => host.push_str("; NVIDIA driver (not answering)"),
        (None, false) => host.push_str("; no NVIDIA driver"),
    }
    let mut plan = Plan {
        host,
        steps: Vec::new(),
        unsupported: None,
    };
    let Some(distro) = f.os.docker_repo_distro() else {
        plan.unsupported = Some(format!(
            "dlenv setup automates Ubuntu and Debian (apt); this is {}. Install an engine by hand: https://docs.docker.com/engine/install/ and https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html",
            f.os.pretty_name
                .as_deref()
                .or(f.os.id.as_deref())
                .unwrap_or("an unknown distribution")
        ));
        return plan;
    };
    if f.os.wsl.as_deref() == Some("wsl1") {
        plan.unsupported = Some(
            "WSL 1 cannot run Docker Engine or GPUs: `wsl --set-version <distro> 2` first".into(),
        );
        return plan;
    }
    match o.engine {
        EngineChoice::Docker => plan_docker(f, o, distro, &mut plan.steps),
        EngineChoice::Podman => plan_podman(f, o, &mut plan.steps),
    }
    plan
}

fn toolkit_steps(f: &HostFacts, steps: &mut Vec<Step>) {
    let id = "toolkit.install";
    let desc = "Install the NVIDIA Container Toolkit from NVIDIA's repository";
    if !f.nvidia.driver_present() {
        steps.push(Step::new(
            id,
            desc,
            StepState::Skipped("no NVIDIA driver on this host: install one first (`dlenv doctor` names the command), then run setup again".into()),
        ));
        return;
    }
    if let Some(v) = &f.toolkit.version {
        steps.push(Step::new(
            id,
            desc,
            StepState::Done(format!("NVIDIA Container Toolkit {v} is installed")),
        ));
        return;
    }
    // Stale NVIDIA lists go first: with them `apt-get update` can fail (Signed-By conflict).
    let stale: Vec<&str> = f
        .toolkit
        .apt_sources
        .iter()
        .map(|s| s.file.as_str())
        .filter(|p| *p != NV_LIST)
        .collect();
    let mut s = Step::new(id, desc, StepState::Todo);
    if !stale.is_empty() {
        s = s.run(format!("rm -f {}", stale.join(" ")));
    }
    s = s
        .run("apt-get update")
        .run("apt-get install -y ca-certificates curl gpg")
        .run(format!(
            "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor --yes -o {NV_KEYRING}"
        ));
    s = s
        .write(
            NV_LIST,
            format!("deb [signed-by={NV_KEYRING}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n"),
        )
        .run("apt-get update")
        .run("apt-get install -y nvidia-container-toolkit");
    steps.push(s);
}

fn plan_docker(f: &HostFacts, o: &SetupOptions, distro: &str, steps: &mut Vec<Step>) {
    let e = &f.engine;
    let running = e.reachable && !e.is_podman() && !e.is_docker_desktop();

    // 1. Docker Engine.
    let installed = f
        .packages
        .get("docker-ce")
        .map(|v| format!("docker-ce {v}"))
        .or_else(|| {
            f.packages
                .get("docker.io")
                .map(|v| format!("docker.io {v}"))
        })
        .or_else(|| f.os.dockerd.then(|| "dockerd".to_string()))
        .or_else(|| running.then(|| format!("Docker {}", e.version.as_deref().unwrap_or(""))));
    match (installed, o.engine_source) {
        (Some(what), _) => steps.push(Step::new(
            "engine.install",
            "Install Docker Engine",
            StepState::Done(format!("{what} is installed")),
        )),
        (None, EngineSource::Distro) => steps.push(
            Step::new(
                "engine.install",
                "Install Docker Engine from the distribution (docker.io)",
                StepState::Todo,
            )
            .run("apt-get update")
            .run("apt-get install -y docker.io"),
        ),
        (None, EngineSource::Docker) => {
            let codename = f.os.codename.as_deref().unwrap_or("stable");
            let mut s = Step::new(
                "engine.install",
                "Install Docker Engine from Docker's apt repository",
                StepState::Todo,
            );
            if f.os.snap_docker {
                s = s.run("snap remove --purge docker");
            }
            s = s
                .run("apt-get update")
                .run("apt-get install -y ca-certificates curl")
                .run("install -m 0755 -d /etc/apt/keyrings")
                .run(format!(
                    "curl -fsSL https://download.docker.com/linux/{distro}/gpg -o {DOCKER_KEYRING}"
                ))
                .run(format!("chmod a+r {DOCKER_KEYRING}"))
                .write(
                    DOCKER_LIST,
                    format!(
                        "deb [arch={} signed-by={DOCKER_KEYRING}] https://download.docker.com/linux/{distro} {codename} stable\n",
                        f.os.dpkg_arch()
                    ),
                )
                .run("apt-get update")
                .run("apt-get install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin");
            steps.push(s);
        }
    }

    // 2. The docker group.
    let a = &f.access;
    match a.sudo_user.as_deref().filter(|u| *u != "root") {
        None => steps.push(Step::new(
            "user.group",
            "Add the invoking user to the docker group",
            StepState::Skipped(
                "no invoking user (run `sudo dlenv setup` from your account to add it); root needs no group".into(),
            ),
        )),
        Some(u) if a.docker_members.iter().any(|m| m == u) => steps.push(Step::new(
            "user.group",
            format!("Add {u} to the docker group"),
            StepState::Done(format!("{u} is in the docker group")),
        )),
        Some(u) => steps.push(
            Step::new("user.group", format!("Add {u} to the docker group"), StepState::Todo)
                .run(format!("usermod -aG docker {u}"))
                .note(format!(
                    "{u} must log out and back in (or run `newgrp docker`) before the group applies; the docker group is root-equivalent"
                )),
        ),
    }

    // 3. Registry mirror (before `nvidia-ctk runtime configure`, which keeps other keys).
    let mut config_changed = false;
    if let Some(m) = &o.registry_mirror {
        let desc = format!("Add the registry mirror {m} to {DAEMON_JSON}");
        if e.registry_mirrors
            .iter()
            .any(|x| x.trim_end_matches('/') == m.trim_end_matches('/'))
        {
            steps.push(Step::new(
                "registry.mirror",
                desc,
                StepState::Done("the engine already uses it".into()),
            ));
        } else {
            match merge_registry_mirror(f.daemon_config.text.as_deref(), m) {
                Ok(None) => {
                    steps.push(Step::new(
                        "registry.mirror",
                        desc,
                        StepState::Done(format!("{DAEMON_JSON} lists it")),
                    ));
                    config_changed |= e.reachable;
                }
                Ok(Some(text)) => {
                    steps.push(
                        Step::new("registry.mirror", desc, StepState::Todo)
                            .run("install -m 0755 -d /etc/docker")
                            .write(DAEMON_JSON, text)
                            .note("registry mirrors apply to Docker Hub images only"),
                    );
                    config_changed = true;
                }
                Err(err) => steps.push(Step::new(
                    "registry.mirror",
                    desc,
                    StepState::Blocked(format!("{err}; fix the file, then run setup again")),
                )),
            }
        }
    }

    // 4. Toolkit.
    toolkit_steps(f, steps);

    // 5. Register the runtime.
    let id = "toolkit.configure";
    let desc = "Register the nvidia runtime with Docker (nvidia-ctk runtime configure)";
    if !f.nvidia.driver_present() {
        steps.push(Step::new(
            id,
            desc,
            StepState::Skipped("no NVIDIA driver".into()),
        ));
    } else if e.runtimes.iter().any(|r| r == "nvidia")
        || f.daemon_config.runtimes.iter().any(|r| r == "nvidia")
    {
        steps.push(Step::new(
            id,
            desc,
            StepState::Done(format!(
                "{} registers the nvidia runtime",
                f.daemon_config.path
            )),
        ));
        // Registered in the file but not loaded: the engine needs a restart.
        config_changed |= e.reachable && !e.runtimes.iter().any(|r| r == "nvidia");
    } else {
        steps.push(
            Step::new(id, desc, StepState::Todo)
                .run("nvidia-ctk runtime configure --runtime=docker"),
        );
        config_changed = true;
    }

    // 6. Start or restart the engine.
    let id = "engine.start";
    if running && !config_changed {
        steps.push(Step::new(
            id,
            "Start Docker Engine",
            StepState::Done(format!(
                "Docker {} answers at {}",
                e.version.as_deref().unwrap_or(""),
                e.endpoint.as_deref().unwrap_or("?")
            )),
        ));
    } else if running {
        let s = Step::new(
            id,
            "Restart Docker Engine to load the new configuration",
            StepState::Todo,
        );
        steps.push(if f.os.systemd {
            s.run("systemctl restart docker")
        } else {
            s.run("kill -HUP $(cat /var/run/docker.pid)")
                .note("without systemd, dockerd reloads runtimes and registry mirrors on SIGHUP")
        });
    } else if f.os.systemd {
        steps.push(
            Step::new(
                id,
                "Start Docker Engine (and at every boot)",
                StepState::Todo,
            )
            .run("systemctl enable docker")
            .run("systemctl restart docker"),
        );
    } else {
        let mut s = Step::new(
            id,
            "Start dockerd in the background (no systemd)",
            StepState::Todo,
        );
        s.actions.push(Action::StartDockerd);
        steps.push(s.note(format!(
            "systemd is not PID 1 here, so dockerd runs as a plain background process (log: {DOCKERD_LOG}); it will not survive a reboot"
        )));
    }
}

fn plan_podman(f: &HostFacts, o: &SetupOptions, steps: &mut Vec<Step>) {
    let e = &f.engine;
    match f.packages.get("podman") {
        Some(v) => steps.push(Step::new(
            "engine.install",
            "Install Podman",
            StepState::Done(format!("podman {v} is installed")),
        )),
        None if f.os.podman => steps.push(Step::new(
            "engine.install",
            "Install Podman",
            StepState::Done("podman is installed".into()),
        )),
        None => steps.push(
            Step::new(
                "engine.install",
                "Install Podman from the distribution",
                StepState::Todo,
            )
            .run("apt-get update")
            .run("apt-get install -y podman"),
        ),
    }
    toolkit_steps(f, steps);
    let id = "cdi.generate";
    let desc = "Generate the CDI spec for the GPUs (/etc/cdi/nvidia.yaml)";
    if !f.nvidia.driver_present() {
        steps.push(Step::new(
            id,
            desc,
            StepState::Skipped("no NVIDIA driver".into()),
        ));
    } else if f
        .cdi
        .iter()
        .any(|s| s.driver_version == f.nvidia.driver_version && s.driver_version.is_some())
    {
        steps.push(Step::new(
            id,
            desc,
            StepState::Done("a CDI spec for this driver exists".into()),
        ));
    } else {
        steps.push(
            Step::new(id, desc, StepState::Todo)
                .run("install -m 0755 -d /etc/cdi")
                .run("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
                .run("chmod 644 /etc/cdi/nvidia.yaml")
                .note("regenerate it after every driver upgrade or MIG change; use `--device nvidia.com/gpu=all`"),
        );
    }
    if o.registry_mirror.is_some() {
        steps.push(Step::new(
            "registry.mirror",
            "Add a registry mirror",
            StepState::Skipped(
                "for Podman, add a [[registry.mirror]] to /etc/containers/registries.conf by hand"
                    .into(),
            ),
        ));
    }
    let id = "engine.start";
    if e.reachable && e.is_podman() {
        steps.push(Step::new(
            id,
            "Start the Podman API socket",
            StepState::Done("Podman answers".into()),
        ));
    } else if f.os.systemd {
        steps.push(
            Step::new(id, "Start the Podman API socket", StepState::Todo)
                .run("systemctl enable --now podman.socket"),
        );
    } else {
        steps.push(
            Step::new(id, "Start the Podman API service in the background (no systemd)", StepState::Todo)
                .run("install -m 0755 -d /run/podman")
                .run("nohup podman system service --time=0 unix:///run/podman/podman.sock >/var/log/dlenv-podman.log 2>&1 &")
                .note("systemd is not PID 1 here: the service will not survive a reboot"),
        );
    }
}

/// The plan as text: what `--dry-run` prints.
pub fn render_plan(p: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!("host: {}\n", p.host));
    if let Some(u) = &p.unsupported {
        s.push_str(&format!("\nsetup is not supported here: {u}\n"));
        return s;
    }
    for (i, step) in p.steps.iter().enumerate() {
        let tag = match &step.state {
            StepState::Todo => String::new(),
            StepState::Done(why) => format!("  [already done: {why}]"),
            StepState::Skipped(why) => format!("  [skipped: {why}]"),
            StepState::Blocked(why) => format!("  [blocked: {why}]"),
        };
        s.push_str(&format!("\n{}. {}{tag}\n", i + 1, step.description));
        if !step.is_todo() {
            continue;
        }
        for a in &step.actions {
            match a {
                Action::Run { command } => s.push_str(&format!("   $ {command}\n")),
                Action::WriteFile { path, content } => {
                    s.push_str(&format!("   write {path}:\n"));
                    for l in content.lines() {
                        s.push_str(&format!("     | {l}\n"));
                    }
                }
                Action::StartDockerd => s.push_str(&format!(
                    "   $ dockerd >>{DOCKERD_LOG} 2>&1 &   # then wait for /_ping, at most 60 s\n"
                )),
            }
        }
        if let Some(n) = &step.note {
            s.push_str(&format!("   note: {n}\n"));
        }
    }
    let todo = p.steps.iter().filter(|s| s.is_todo()).count();
    if todo == 0 {
        s.push_str("\nnothing to do: everything is already set up\n");
    } else {
        s.push_str(&format!("\n{todo} step(s) to apply, as root\n"));
    }
    s
}
