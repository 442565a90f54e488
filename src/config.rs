//! The machine's configuration: the operating mode ([`Mode`]), the key store, the profiles and
//! who may work in which role.
//!
//! Read from `/etc/persodesk/persodesk.toml` (owned by the administrator). Only when that file
//! does not exist (the lookup fails with "no such file or directory"), `$PERSODESK_CONFIG` may
//! name another file (development and tests); without either the workstation runs in test mode.
//! Anything else fails closed, never silently in test mode: a directory the user may not search,
//! a dangling symbolic link, a FIFO or other non-regular file, an empty or comment-only file, a
//! file without `mode`, or a production file without `keys`, `profiles` and `[roles]` is an
//! error. An operator cannot leave production by setting an environment variable or a flag: the
//! system file wins.
//!
//! ```toml
//! mode = "production"                      # or "test"
//! keys = "/etc/persodesk/keys.toml"        # the key store (production: the only one used)
//! profiles = "/etc/persodesk/profiles"     # products/ and chip/ (production: the only ones)
//! store = "postgresql://persodesk@db.bureau/persodesk"  # optional: the shared store
//! reveal_timeout = 60                      # optional: seconds a tester's clear values stay shown
//!
//! [roles]                                  # operating-system accounts per role
//! operator = ["alice", "bob"]
//! supervisor = ["carol"]
//! tester = []                              # production: testers work in test mode only
//! ```

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use crate::domain::mode::Mode;
pub use crate::domain::review::Roles;

/// The system configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/persodesk/persodesk.toml";
/// The variable naming a configuration file when the system file is absent.
pub const CONFIG_ENV: &str = "PERSODESK_CONFIG";
/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The configuration file in force, if any: the system file unless it is absent, else the file
/// `$PERSODESK_CONFIG` names. A system file that cannot be looked up (other than absent) or an
/// empty `$PERSODESK_CONFIG` is an error.
pub fn config_path() -> Result<Option<PathBuf>, String> {
    let system = Path::new(SYSTEM_CONFIG);
    match std::fs::symlink_metadata(system) {
        Ok(_) => return Ok(Some(system.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "{SYSTEM_CONFIG}: cannot be looked up: {} (refusing to fall back to test mode)",
                e.kind()
            ));
        }
    }
    match std::env::var_os(CONFIG_ENV) {
        None => Ok(None),
        Some(v) if v.is_empty() => Err(format!(
            "${CONFIG_ENV} is set but empty: name a configuration file or unset it"
        )),
        Some(v) => Ok(Some(PathBuf::from(v))),
    }
}

/// The machine's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Test or production.
    pub mode: Mode,
    /// The key store (production needs one, and uses no other).
    pub keys: Option<PathBuf>,
    /// The profiles directory (products/, chip/); production needs one and uses no other.
    pub profiles: Option<PathBuf>,
    /// Who may work in which role (`None`: no `[roles]` table, test mode only).
    pub roles: Option<Roles>,
    /// The shared store (`postgresql://…`, `sqlite:PATH` or a path); `None`: the workstation's
    /// SQLite file in the data directory ([`crate::store::StoreLocation`]).
    pub store: Option<String>,
    /// How long a tester's revealed clear values stay on the window before they are masked
    /// again (`reveal_timeout`, whole seconds, 5 to 600); `None`: the window's default (60 s).
    pub reveal_timeout: Option<std::time::Duration>,
}

/// The shortest and longest `reveal_timeout` accepted, in seconds.
pub const REVEAL_TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 5..=600;

/// Reads the file's text: a regular file (checked before opening, and opened non-blocking so a
/// FIFO swapped in cannot hang the process), at most 64 KiB.
fn read_text(path: &Path) -> Result<String, String> {
    let fail = |what: String| format!("{}: {what}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| {
        let dangling = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if dangling && e.kind() == std::io::ErrorKind::NotFound {
            fail("is a symbolic link to nothing".into())
        } else {
            fail(format!("cannot be read: {}", e.kind()))
        }
    })?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(fail(format!("is larger than {MAX_CONFIG_BYTES} bytes")));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(fail("is not a regular file".into()));
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot be read: {}", e.kind())))?;
    Ok(text)
}

/// Reads the configuration file `path`: errors name the file and the key.
pub fn read(path: &Path) -> Result<Config, String> {
    parse(&path.display().to_string(), &read_text(path)?)
}

/// Parses configuration text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{file}: not valid TOML: {}", e.message()))?;
    let string = |key: &str| match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(format!("{file}: {key}: must be a non-empty string")),
    };
    if let Some(k) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "{file}: {k}: unknown key (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let mode = match string("mode")? {
        None => {
            return Err(format!(
                "{file}: mode: is required (\"test\" or \"production\"); an empty or incomplete configuration is refused"
            ));
        }
        Some(s) => Mode::parse(&s)
            .ok_or_else(|| format!("{file}: mode: `{s}` is not test or production"))?,
    };
    let roles = match table.get("roles") {
        None => None,
        Some(toml::Value::Table(t)) => Some(parse_roles(file, t)?),
        Some(_) => return Err(format!("{file}: roles: must be a table [roles]")),
    };
    let config = Config {
        mode,
        keys: string("keys")?.map(PathBuf::from),
        profiles: string("profiles")?.map(PathBuf::from),
        roles,
        store: string("store")?,
        reveal_timeout: reveal_timeout(file, table.get("reveal_timeout"))?,
    };
    if mode == Mode::Production {
        for (key, missing) in [
            ("keys", config.keys.is_none()),
            ("profiles", config.profiles.is_none()),
            ("roles", config.roles.is_none()),
        ] {
            if missing {
                return Err(format!(
                    "{file}: {key}: is required in production (keys, profiles and [roles])"
                ));
            }
        }
    }
    Ok(config)
}

/// The keys a configuration file may have.
const KNOWN_KEYS: [&str; 6] = [
    "mode",
    "keys",
    "profiles",
    "roles",
    "store",
    "reveal_timeout",
];

/// `reveal_timeout`: whole seconds in [`REVEAL_TIMEOUT_RANGE`].
fn reveal_timeout(
    file: &str,
    value: Option<&toml::Value>,
) -> Result<Option<std::time::Duration>, String> {
    let (lo, hi) = (REVEAL_TIMEOUT_RANGE.start(), REVEAL_TIMEOUT_RANGE.end());
    match value {
        None => Ok(None),
        Some(toml::Value::Integer(s)) if REVEAL_TIMEOUT_RANGE.contains(s) => {
            Ok(Some(std::time::Duration::from_secs(s.unsigned_abs())))
        }
        Some(_) => Err(format!(
            "{file}: reveal_timeout: must be whole seconds from {lo} to {hi}"
        )),
    }
}

fn parse_roles(file: &str, t: &toml::Table) -> Result<Roles, String> {
    if let Some(k) = t
        .keys()
        .find(|k| !["operator", "supervisor", "tester"].contains(&k.as_str()))
    {
        return Err(format!(
            "{file}: roles.{k}: unknown role (known: operator, supervisor, tester)"
        ));
    }
    let list = |key: &str| -> Result<Vec<String>, String> {
        match t.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    _ => Err(format!(
                        "{file}: roles.{key}: must be a list of account names"
                    )),
                })
                .collect(),
            Some(_) => Err(format!(
                "{file}: roles.{key}: must be a list of account names"
            )),
        }
    };
    Ok(Roles {
        operator: list("operator")?,
        supervisor: list("supervisor")?,
        tester: list("tester")?,
    })
}

/// Reads the mode from `path`.
pub fn read_mode(path: &Path) -> Result<Mode, String> {
    read(path).map(|c| c.mode)
}

/// The configuration in force (defaults without a file). A configuration file that cannot be
/// read is an error, never a silent fallback to test mode.
pub fn load() -> Result<Config, String> {
    match config_path()? {
        None => Ok(Config::default()),
        Some(p) => read(&p),
    }
}

/// The mode in force.
pub fn mode() -> Result<Mode, String> {
    load().map(|c| c.mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mode_and_names_bad_files() {
        let dir = std::env::temp_dir().join(format!("persodesk-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        std::fs::write(&f, "mode = \"test\"\n").expect("write");
        assert_eq!(read_mode(&f), Ok(Mode::Test));
        std::fs::write(&f, "mode = \"live\"\n").expect("write");
        assert!(
            read_mode(&f)
                .expect_err("bad mode")
                .contains("mode: `live`")
        );
        std::fs::write(
            &f,
            "mode = \"production\"\nkeys = \"/k.toml\"\nprofiles = \"/p\"\n[roles]\noperator = [\"ana\"]\n",
        )
        .expect("write");
        let c = read(&f).expect("config");
        assert_eq!(c.keys.as_deref(), Some(Path::new("/k.toml")));
        assert_eq!(c.roles.map(|r| r.operator), Some(vec!["ana".to_string()]));
        std::fs::write(&f, "mood = \"test\"\n").expect("write");
        assert!(
            read(&f)
                .expect_err("unknown key")
                .contains("mood: unknown key")
        );
        assert!(read_mode(&dir.join("missing.toml")).is_err());
        std::fs::write(&f, "mode = \"test\"\nreveal_timeout = 15\n").expect("write");
        assert_eq!(
            read(&f).expect("config").reveal_timeout,
            Some(std::time::Duration::from_secs(15))
        );
        for bad in ["0", "4", "601", "\"60\"", "1.5"] {
            std::fs::write(&f, format!("mode = \"test\"\nreveal_timeout = {bad}\n"))
                .expect("write");
            let e = read(&f).expect_err(bad);
            assert!(
                e.contains("reveal_timeout: must be whole seconds from 5 to 600"),
                "{bad}: {e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 13 finding 5: nothing that cannot be read as a complete configuration is test mode.
    #[test]
    fn incomplete_or_odd_files_are_errors_not_test_mode() {
        let dir = std::env::temp_dir().join(format!("persodesk-config5-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        for (text, rule) in [
            ("", "mode: is required"),
            ("# nothing\n", "mode: is required"),
            ("mode = \"production\"\n", "keys: is required in production"),
            (
                "mode = \"production\"\nkeys = \"/k\"\nprofiles = \"/p\"\n",
                "roles: is required in production",
            ),
            ("mode = \"test\"\n[roles]\nadmin = []\n", "roles.admin"),
        ] {
            std::fs::write(&f, text).expect("write");
            let e = read(&f).expect_err(text);
            assert!(e.contains(rule), "{text:?}: {e}");
        }
        let link = dir.join("dangling.toml");
        std::os::unix::fs::symlink(dir.join("nowhere"), &link).expect("link");
        assert!(
            read(&link)
                .expect_err("dangling")
                .contains("symbolic link to nothing")
        );
        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("fifo");
        assert!(
            read(&fifo)
                .expect_err("fifo")
                .contains("not a regular file")
        );
        assert!(read(&dir).expect_err("dir").contains("not a regular file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
