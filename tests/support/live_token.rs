//! A live (non-test) SoftHSM2 token for production-mode tests: production refuses the software
//! key store, so a production workstation's keys are on a token whose store file says
//! `test = false`. The keys are entered as the key ceremony does (`persodesk keys import`, two
//! components each with its KCV), so the objects are sensitive and non-extractable.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// SoftHSM2's PKCS#11 module (Debian softhsm2, installed by `.ci/setup`).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of the token (a test fixture, handed over in `PIN_ENV`).
pub const PIN: &str = "271828";
/// The variable the store file names for the PIN.
pub const PIN_ENV: &str = "PERSODESK_LIVE_HSM_PIN";
const SO_PIN: &str = "31415926";
const LABEL: &str = "persodesk-live";

/// Whether SoftHSM2 is installed; says so loudly when it is not.
pub fn present(test: &str) -> bool {
    let util = Command::new("softhsm2-util").arg("--version").output();
    if Path::new(MODULE).exists() && util.is_ok_and(|o| o.status.success()) {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED {test}: production needs a PKCS#11 store and SoftHSM2 is not installed \
         ({MODULE} or softhsm2-util missing; `bash .ci/setup` installs softhsm2) ***\n"
    );
    false
}

/// A token directory: its SoftHSM2 configuration and the store file of its token.
pub struct LiveToken {
    /// The SoftHSM2 configuration (`SOFTHSM2_CONF` for every persodesk run).
    pub conf: PathBuf,
    /// The `[pkcs11]` store file (`test = false`).
    pub store_file: PathBuf,
}

impl LiveToken {
    /// Makes a token in `dir` holding `keys` (label, algorithm, value), entered as components.
    pub fn make(dir: &Path, keys: &[(&str, &str, Vec<u8>)]) -> LiveToken {
        let hsm = dir.join("hsm");
        let _ = std::fs::remove_dir_all(&hsm);
        std::fs::create_dir_all(hsm.join("tokens")).expect("token dir");
        let conf = hsm.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                hsm.join("tokens").display()
            ),
        )
        .expect("conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", LABEL, "--pin", PIN])
            .args(["--so-pin", SO_PIN])
            .output()
            .expect("softhsm2-util runs");
        assert!(out.status.success(), "init-token: {out:?}");
        let store_file = hsm.join("store.toml");
        std::fs::write(
            &store_file,
            format!(
                "[pkcs11]\nmodule = \"{MODULE}\"\ntoken = \"{LABEL}\"\npin_env = \"{PIN_ENV}\"\n\
                 test = false\n"
            ),
        )
        .expect("store file");
        let token = LiveToken { conf, store_file };
        for (label, algorithm, value) in keys {
            token.import(&hsm, label, algorithm, value);
        }
        token
    }

    /// `persodesk keys import --label L --algorithm A` with two components (test mode: the
    /// ceremony is not a production flow here, the token is what production then uses).
    fn import(&self, hsm: &Path, label: &str, algorithm: &str, value: &[u8]) {
        let kcv = |v: &[u8]| {
            let k = match algorithm {
                "aes" => persodesk::domain::crypto::kcv_aes(v),
                _ => persodesk::domain::crypto::kcv_tdes(v),
            };
            hex::encode_upper(k.expect("kcv"))
        };
        let mut c1 = vec![0u8; value.len()];
        getrandom::fill(&mut c1).expect("random");
        let c2: Vec<u8> = value.iter().zip(&c1).map(|(v, c)| v ^ c).collect();
        let input = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            hex::encode_upper(&c1),
            kcv(&c1),
            hex::encode_upper(&c2),
            kcv(&c2),
            kcv(value)
        );
        let config = hsm.join("ceremony.toml");
        std::fs::write(&config, "mode = \"test\"\n").expect("ceremony config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_persodesk"))
            .args(["keys", "import", "--keys"])
            .arg(&self.store_file)
            .args(["--label", label, "--algorithm", algorithm])
            .env("SOFTHSM2_CONF", &self.conf)
            .env(PIN_ENV, PIN)
            .env("PERSODESK_DATA_DIR", hsm.join("ceremony-data"))
            .env("PERSODESK_CONFIG", &config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("persodesk runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("output");
        assert!(out.status.success(), "keys import {label}: {out:?}");
    }

    /// Sets the environment a persodesk run on this token needs.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("SOFTHSM2_CONF", &self.conf).env(PIN_ENV, PIN)
    }
}
