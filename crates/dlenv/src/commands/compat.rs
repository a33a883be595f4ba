//! `dlenv compat …` and loading the compat database.
//!
//! Which database is used, first match wins:
//! 1. `--compat-db DIR` (or `DLENV_COMPAT_DB`);
//! 2. the installed one, `$XDG_DATA_HOME/dlenv/compat` (default
//!    `~/.local/share/dlenv/compat`), written by `dlenv compat update` — unless the
//!    database built into this binary is newer, in which case the built-in one is used and
//!    `compat info` says so;
//! 3. the database built into the binary.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use dlenv_compat::{CompatDb, DB_FILES, DbInfo, DottedVersion, db_info};

use crate::cli::Globals;
use crate::ui::{CliError, Exit};

/// Compat database commands.
#[derive(Debug, Subcommand)]
pub enum CompatCommand {
    /// Which database is in use, its version and date, and row counts.
    Info,
    /// Validate a newer database and install it for this user, atomically. The old one stays
    /// in place when anything is wrong.
    Update(UpdateArgs),
    /// Remove the installed database and go back to the one built into dlenv.
    Reset,
}

/// Arguments of `compat update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A directory holding the database files (meta.toml, cuda.toml, gpus.toml,
    /// pytorch.toml, tensorflow.toml, jax.toml, images.toml), or an http(s) URL of one.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub from: String,
    /// Install even if it is older than the database in use.
    #[arg(long)]
    pub allow_downgrade: bool,
}

/// Where the database in use came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DbOrigin {
    /// Built into the binary.
    Embedded,
    /// Installed by `dlenv compat update`.
    Installed {
        /// Its directory.
        path: PathBuf,
    },
    /// Given with `--compat-db`.
    Flag {
        /// Its directory.
        path: PathBuf,
    },
}

/// A loaded database and where it came from.
pub struct LoadedDb {
    /// The database.
    pub db: CompatDb,
    /// Its origin.
    pub origin: DbOrigin,
    /// A remark for `compat info` (e.g. why an installed database was passed over).
    pub note: Option<String>,
}

/// The per-user data directory: `$XDG_DATA_HOME/dlenv`, else `~/.local/share/dlenv`.
fn data_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_DATA_HOME")
        .map(|d| d.join("dlenv"))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/dlenv")))
}

fn installed_dir() -> Option<PathBuf> {
    data_dir().map(|d| d.join("compat"))
}

/// Read the database files from `dir`, naming any that is missing or unreadable.
fn read_dir_sources(dir: &Path) -> Result<Vec<(String, String)>, CliError> {
    DB_FILES
        .iter()
        .map(|f| {
            let p = dir.join(f);
            std::fs::read_to_string(&p)
                .map(|t| (f.to_string(), t))
                .map_err(|e| {
                    CliError::failure(format!(
                        "cannot read compat database file {}: {e}",
                        p.display()
                    ))
                    .with_hint(format!(
                        "a database directory holds {}",
                        DB_FILES.join(", ")
                    ))
                })
        })
        .collect()
}

fn parse_sources(sources: &[(String, String)], origin: &str) -> Result<CompatDb, CliError> {
    let refs: Vec<(&str, &str)> = sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    CompatDb::from_sources(&refs)
        .map_err(|e| CliError::failure(format!("compat database at {origin} is invalid: {e}")))
}

fn version_of(info: &DbInfo) -> Option<DottedVersion> {
    info.version.parse().ok()
}

/// Load the database the user asked for (see the module docs for the order).
pub fn load_db(g: &Globals) -> Result<LoadedDb, CliError> {
    if let Some(dir) = &g.compat_db {
        let db = parse_sources(&read_dir_sources(dir)?, &dir.display().to_string())?;
        return Ok(LoadedDb {
            db,
            origin: DbOrigin::Flag { path: dir.clone() },
            note: None,
        });
    }
    let embedded = CompatDb::embedded();
    if let Some(dir) = installed_dir().filter(|d| d.exists()) {
        let db =
            parse_sources(&read_dir_sources(&dir)?, &dir.display().to_string()).map_err(|e| {
                e.with_hint("run `dlenv compat reset` to go back to the built-in database")
            })?;
        let (inst, emb) = (db_info(&db), db_info(&embedded));
        if version_of(&inst) >= version_of(&emb) {
            return Ok(LoadedDb {
                db,
                origin: DbOrigin::Installed { path: dir },
                note: None,
            });
        }
        let note = format!(
            "the installed database {} ({}) is older than the one built into dlenv ({}); \
             using the built-in one",
            inst.version,
            dir.display(),
            emb.version
        );
        return Ok(LoadedDb {
            db: embedded,
            origin: DbOrigin::Embedded,
            note: Some(note),
        });
    }
    Ok(LoadedDb {
        db: embedded,
        origin: DbOrigin::Embedded,
        note: None,
    })
}

/// Run a compat command.
pub fn run(cmd: CompatCommand, g: &Globals) -> Result<Exit, CliError> {
    match cmd {
        CompatCommand::Info => info(g),
        CompatCommand::Update(a) => update(a, g),
        CompatCommand::Reset => reset(g),
    }
}

#[derive(Serialize)]
struct InfoOut {
    origin: DbOrigin,
    note: Option<String>,
    #[serde(flatten)]
    info: DbInfo,
}

fn info(g: &Globals) -> Result<Exit, CliError> {
    let loaded = load_db(g)?;
    let out = InfoOut {
        info: db_info(&loaded.db),
        origin: loaded.origin,
        note: loaded.note,
    };
    let p = &g.printer;
    if p.json {
        p.json(&out);
        return Ok(Exit::Ok);
    }
    let origin = match &out.origin {
        DbOrigin::Embedded => "built into dlenv".to_string(),
        DbOrigin::Installed { path } => format!("installed at {}", path.display()),
        DbOrigin::Flag { path } => format!("{} (--compat-db)", path.display()),
    };
    p.out(format!("compat database: {origin}"));
    p.out(format!(
        "version:         {} (data as of {})",
        out.info.version, out.info.date
    ));
    p.out(format!("schema version:  {}", out.info.schema_version));
    p.out("rows:");
    for (table, n) in &out.info.rows {
        p.out(format!("  {table:<22} {n}"));
    }
    if let Some(n) = &out.note {
        p.warn(n);
    }
    Ok(Exit::Ok)
}

fn fetch_sources(from: &str) -> Result<Vec<(String, String)>, CliError> {
    if !(from.starts_with("http://") || from.starts_with("https://")) {
        let dir = Path::new(from.strip_prefix("file://").unwrap_or(from));
        return read_dir_sources(dir);
    }
    let base = from.trim_end_matches('/');
    DB_FILES
        .iter()
        .map(|f| {
            let url = format!("{base}/{f}");
            let out = std::process::Command::new("curl")
                .args(["-fsSL", "--max-time", "60", &url])
                .output()
                .map_err(|e| {
                    CliError::failure(format!("cannot run curl to fetch {url}: {e}"))
                        .with_hint("install curl, or download the files and pass their directory")
                })?;
            if !out.status.success() {
                return Err(CliError::failure(format!(
                    "cannot fetch {url}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            String::from_utf8(out.stdout)
                .map(|t| (f.to_string(), t))
                .map_err(|_| CliError::failure(format!("{url} is not UTF-8 text")))
        })
        .collect()
}

fn update(a: UpdateArgs, g: &Globals) -> Result<Exit, CliError> {
    let unchanged = "the database in use was not changed";
    let sources = fetch_sources(&a.from).map_err(|e| e.with_hint(unchanged))?;
    let new_db = parse_sources(&sources, &a.from).map_err(|e| e.with_hint(unchanged))?;
    let new_info = db_info(&new_db);
    let current = load_db(g).ok().map(|l| db_info(&l.db));
    if let Some(cur) = &current
        && version_of(&new_info) < version_of(cur)
        && !a.allow_downgrade
    {
        return Err(CliError::failure(format!(
            "{} holds database {}, older than the one in use ({})",
            a.from, new_info.version, cur.version
        ))
        .with_hint("pass --allow-downgrade to install it anyway"));
    }
    let target = installed_dir()
        .ok_or_else(|| CliError::failure("no data directory: set HOME or XDG_DATA_HOME"))?;
    install_atomically(&target, &new_info.version, &sources)?;
    let p = &g.printer;
    if p.json {
        p.json(&InfoOut {
            origin: DbOrigin::Installed { path: target },
            note: None,
            info: new_info,
        });
    } else {
        p.out(format!(
            "installed compat database {} (data as of {}) at {}{}",
            new_info.version,
            new_info.date,
            target.display(),
            current
                .map(|c| format!(", replacing {}", c.version))
                .unwrap_or_default()
        ));
    }
    Ok(Exit::Ok)
}

/// Write the files into a fresh versioned directory, then swap the `compat` symlink to it
/// with one rename, so readers see either the old or the new database, never a mix.
fn install_atomically(
    target: &Path,
    version: &str,
    sources: &[(String, String)],
) -> Result<(), CliError> {
    let io = |what: String| move |e: std::io::Error| CliError::failure(format!("{what}: {e}"));
    let parent = target.parent().expect("data dir has a parent");
    let store = parent.join("compat.d");
    std::fs::create_dir_all(&store).map_err(io(format!("create {}", store.display())))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("{version}-{stamp}");
    let dir = store.join(&name);
    std::fs::create_dir(&dir).map_err(io(format!("create {}", dir.display())))?;
    let written = (|| {
        for (file, text) in sources {
            let path = dir.join(file);
            let mut f =
                std::fs::File::create(&path).map_err(io(format!("write {}", path.display())))?;
            std::io::Write::write_all(&mut f, text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(io(format!("write {}", path.display())))?;
        }
        let link = parent.join(format!(".compat.{stamp}.tmp"));
        std::os::unix::fs::symlink(Path::new("compat.d").join(&name), &link)
            .map_err(io(format!("create {}", link.display())))?;
        std::fs::rename(&link, target).map_err(|e| {
            let _ = std::fs::remove_file(&link);
            CliError::failure(format!("replace {}: {e}", target.display()))
        })
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    // Older versions are no longer referenced.
    if let Ok(entries) = std::fs::read_dir(&store) {
        for e in entries.flatten() {
            if e.file_name() != name.as_str() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

fn reset(g: &Globals) -> Result<Exit, CliError> {
    let Some(target) = installed_dir() else {
        return Err(CliError::failure(
            "no data directory: set HOME or XDG_DATA_HOME",
        ));
    };
    let existed = std::fs::symlink_metadata(&target).is_ok();
    if existed {
        std::fs::remove_file(&target)
            .or_else(|_| std::fs::remove_dir_all(&target))
            .map_err(|e| CliError::failure(format!("remove {}: {e}", target.display())))?;
        if let Some(parent) = target.parent() {
            let _ = std::fs::remove_dir_all(parent.join("compat.d"));
        }
    }
    g.printer.out(if existed {
        "removed the installed compat database; using the one built into dlenv"
    } else {
        "no installed compat database; already using the one built into dlenv"
    });
    Ok(Exit::Ok)
}
