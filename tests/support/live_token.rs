//! A live (non-test) SoftHSM2 token for production-mode tests: production refuses the software
//! key store, so a production workstation's keys are on a token whose store file says
//! `test = false`. The keys are entered as the key ceremony does (`persodesk keys import`, two
//! components each with its KCV), so the objects are sensitive and non-extractable.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "run.rs"]
pub mod run;
#[path = "softhsm.rs"]
mod softhsm;
use softhsm::TokenDir;

/// The user PIN of the token (a test fixture, handed over in `PIN_ENV`).
pub const PIN: &str = "271828";
/// The variable the store file names for the PIN.
pub const PIN_ENV: &str = "PERSODESK_LIVE_HSM_PIN";
const SO_PIN: &str = "31415926";
const LABEL: &str = "persodesk-live";

/// Whether SoftHSM2 is installed; says so loudly when it is not.
pub fn present(test: &str) -> bool {
    softhsm::present(test, "production needs a PKCS#11 store and ")
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
        let hsm = TokenDir::new(dir.join("hsm"));
        hsm.init_token(LABEL, PIN, SO_PIN);
        let store_file = hsm.store_file("store.toml", LABEL, PIN_ENV, false, "");
        let (hsm, conf) = (hsm.dir, hsm.conf);
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
        let store_file = self.store_file.to_str().expect("utf-8 temp path");
        let args = ["keys", "import", "--keys", store_file];
        let args = [&args[..], &["--label", label, "--algorithm", algorithm]].concat();
        let mut envs = self.envs().to_vec();
        envs.push(("PERSODESK_DATA_DIR", hsm.join("ceremony-data").into()));
        envs.push(("PERSODESK_CONFIG", config.into()));
        let out = run::persodesk_input(&args, &envs, &input);
        assert!(out.status.success(), "keys import {label}: {out:?}");
    }

    /// The environment a persodesk run on this token needs.
    pub fn envs(&self) -> [(&'static str, OsString); 2] {
        [
            ("SOFTHSM2_CONF", self.conf.clone().into()),
            (PIN_ENV, PIN.into()),
        ]
    }

    /// Sets the environment a persodesk run on this token needs.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(self.envs())
    }
}
