//! A SoftHSM2 token directory for the PKCS#11 tests: its own SoftHSM2 configuration (pointed at
//! by `SOFTHSM2_CONF`), tokens initialised with `softhsm2-util`, and `[pkcs11]` store files.
//!
//! Part of `support` (`support::softhsm`); `support/live_token.rs` declares it alone.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// SoftHSM2's PKCS#11 module (Debian softhsm2, installed by `.ci/setup`).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Whether SoftHSM2 is installed; says so loudly when it is not (`why` says what needs it).
pub fn present(test: &str, why: &str) -> bool {
    let util = Command::new("softhsm2-util").arg("--version").output();
    if Path::new(MODULE).exists() && util.is_ok_and(|o| o.status.success()) {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED {test}: {why}SoftHSM2 is not installed ({MODULE} or softhsm2-util \
         missing; `bash .ci/setup` installs the Debian package softhsm2) ***\n"
    );
    false
}

/// A directory holding SoftHSM2 tokens and the configuration that names it.
pub struct TokenDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its SoftHSM2 configuration (`SOFTHSM2_CONF`).
    pub conf: PathBuf,
}

impl TokenDir {
    /// Makes `dir` afresh (its `tokens/` and `softhsm2.conf`).
    pub fn new(dir: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tokens")).expect("token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .expect("conf");
        Self { dir, conf }
    }

    /// Initialises a token `label` with the user PIN `pin` and the SO PIN `so_pin`.
    pub fn init_token(&self, label: &str, pin: &str, so_pin: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label, "--pin", pin])
            .args(["--so-pin", so_pin])
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "init-token: {out:?}");
    }

    /// Writes the store file `file` (in the directory) for token `token`, its PIN in the
    /// variable `pin_env`, `test` as given, then `extra` lines.
    pub fn store_file(
        &self,
        file: &str,
        token: &str,
        pin_env: &str,
        test: bool,
        extra: &str,
    ) -> PathBuf {
        let f = self.dir.join(file);
        std::fs::write(
            &f,
            format!(
                "[pkcs11]\nmodule = \"{MODULE}\"\ntoken = \"{token}\"\n\
                 pin_env = \"{pin_env}\"\ntest = {test}\n{extra}"
            ),
        )
        .expect("store file");
        f
    }
}

/// Runs the ignored test `child` of the current test binary (SoftHSM2 reads `SOFTHSM2_CONF`
/// once per process, so each token scenario runs in its own child) with `conf` as its
/// SoftHSM2 configuration and `envs` set; asserts that it ran and passed and returns its output
/// (stdout and stderr).
pub fn run_child(conf: &Path, child: &str, envs: &[(&str, &std::ffi::OsStr)]) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([child, "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env("SOFTHSM2_CONF", conf)
        .env_remove("PERSODESK_CONFIG")
        .env_remove("PERSODESK_STORE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("child runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{child} failed:\n{text}");
    assert!(text.contains("1 passed"), "{child} did not run:\n{text}");
    text
}
