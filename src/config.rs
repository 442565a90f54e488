//! The machine's configuration: the operating mode ([`Mode`]).
//!
//! Read from `/etc/persodesk/persodesk.toml` (owned by the administrator). Only when that file
//! does not exist, `$PERSODESK_CONFIG` may name another file (development and tests); without
//! either the workstation runs in test mode. An operator cannot leave production by setting an
//! environment variable or a flag: the system file wins.
//!
//! ```toml
//! mode = "production"                      # or "test"
//! keys = "/etc/persodesk/keys.toml"        # the key store the workstation window uses
//! profiles = "/etc/persodesk/profiles"     # products/ and chip/ for the window
//! ```

use std::path::{Path, PathBuf};

pub use crate::domain::mode::Mode;

/// The system configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/persodesk/persodesk.toml";
/// The variable naming a configuration file when the system file is absent.
pub const CONFIG_ENV: &str = "PERSODESK_CONFIG";

/// The configuration file in force, if any.
pub fn config_path() -> Option<PathBuf> {
    let system = Path::new(SYSTEM_CONFIG);
    if system.exists() {
        return Some(system.to_path_buf());
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The machine's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// Test or production.
    pub mode: Mode,
    /// The key store the workstation window uses (production needs one).
    pub keys: Option<PathBuf>,
    /// The profiles directory (products/, chip/) the workstation window uses.
    pub profiles: Option<PathBuf>,
}

/// Reads the configuration file `path`: errors name the file and the key.
pub fn read(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot be read: {}", path.display(), e.kind()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!("{}: not valid TOML: {}", path.display(), e.message())
    })?;
    let string = |key: &str| match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{}: {key}: must be a string", path.display())),
    };
    if let Some(k) = table
        .keys()
        .find(|k| !["mode", "keys", "profiles"].contains(&k.as_str()))
    {
        return Err(format!(
            "{}: {k}: unknown key (known: mode, keys, profiles)",
            path.display()
        ));
    }
    let mode = match string("mode")? {
        None => Mode::Test,
        Some(s) => Mode::parse(&s)
            .ok_or_else(|| format!("{}: mode: `{s}` is not test or production", path.display()))?,
    };
    Ok(Config {
        mode,
        keys: string("keys")?.map(PathBuf::from),
        profiles: string("profiles")?.map(PathBuf::from),
    })
}

/// Reads the mode from `path`.
pub fn read_mode(path: &Path) -> Result<Mode, String> {
    read(path).map(|c| c.mode)
}

/// The configuration in force (defaults without a file). A configuration file that cannot be
/// read is an error, never a silent fallback to test mode.
pub fn load() -> Result<Config, String> {
    match config_path() {
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
        std::fs::write(&f, "mode = \"production\"\n").expect("write");
        assert_eq!(read_mode(&f), Ok(Mode::Production));
        std::fs::write(&f, "mode = \"live\"\n").expect("write");
        assert!(
            read_mode(&f)
                .expect_err("bad mode")
                .contains("mode: `live`")
        );
        std::fs::write(&f, "# nothing\n").expect("write");
        assert_eq!(read_mode(&f), Ok(Mode::Test));
        std::fs::write(&f, "mode = \"production\"\nkeys = \"/k.toml\"\n").expect("write");
        let c = read(&f).expect("config");
        assert_eq!(c.keys.as_deref(), Some(Path::new("/k.toml")));
        assert_eq!(c.profiles, None);
        std::fs::write(&f, "mood = \"test\"\n").expect("write");
        assert!(
            read(&f)
                .expect_err("unknown key")
                .contains("mood: unknown key")
        );
        assert!(read_mode(&dir.join("missing.toml")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
