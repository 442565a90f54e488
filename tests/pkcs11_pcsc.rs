//! `persodesk personalize` through the real PC/SC stack (pcscd + vsmartcard-vpcd +
//! `persodesk sim-card`) with the host's keys on a SoftHSM2 token: every demo chip order, over
//! SCP02 and SCP03, personalized and read back once with the demo software key file and once with
//! the same keys imported into a token. The card side is the same simulated card stock both times
//! (a card holds its own keys); only the host's key store changes.
//!
//! The two runs must agree: the same outcome, chip model, profile, channel, DGI count, APDU count
//! and the same read-back checks with the same results (ARQC checked with MK-AC from the store,
//! ODA with the CA keys from the store), and the store's audit trail verifies.
//!
//! One pcscd per machine: the stack's lock file serializes this with the other pcscd tests. Skips
//! with a loud message when SoftHSM2, pcscd or vpcd is not installed (`bash .ci/setup` installs
//! them, so CI runs it).

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::pcsc::{Cleanup, DEMO, Stack, card_stock, insert_card, pull_card, start_stack};
use support::softhsm::{self, TokenDir};

const TOKEN: &str = "persodesk-demo";
const PIN: &str = "2718-hsm";
const PIN_ENV: &str = "PERSODESK_TEST_HSM_PIN";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment a persodesk process needs for the token.
fn token_env(hsm: &TokenDir) -> Vec<(&'static str, OsString)> {
    vec![
        ("SOFTHSM2_CONF", hsm.conf.clone().into_os_string()),
        (PIN_ENV, PIN.into()),
    ]
}

/// A token holding the demo keys, imported with `keys import`; returns its store file.
fn demo_token(hsm: &TokenDir) -> PathBuf {
    hsm.init_token(TOKEN, PIN, "so-3141");
    let store = hsm.store_file("store.toml", TOKEN, PIN_ENV, true, "");
    let demo = root().join("assets/demo/keys.toml");
    let mut envs = token_env(hsm);
    envs.push((
        "PERSODESK_DATA_DIR",
        hsm.dir.join("import").into_os_string(),
    ));
    let out = support::persodesk_command(&[], &envs)
        .args(["keys", "import", "--keys"])
        .arg(&store)
        .arg("--from")
        .arg(&demo)
        .output()
        .expect("keys import");
    assert!(out.status.success(), "keys import: {out:?}");
    store
}

/// What a personalization must give the same with either key store.
#[derive(Debug, PartialEq)]
struct Result {
    outcome: Value,
    chip: [Value; 5],
    checks: Vec<(String, String)>,
}

/// Personalizes `order` on a fresh card of its stock over `scp`; returns what is compared.
fn personalize(
    stack: &mut Stack,
    data: &Path,
    order: (&str, &str, &str, &str),
    scp: &str,
    envs: &[(&'static str, OsString)],
    keys: &[&str],
) -> Result {
    let (file, id, profile, pan) = order;
    let (card_args, overrides) = card_stock(profile, scp);
    let card = insert_card(&mut stack.cleanup, &stack.reader0, &card_args);
    let mut all_envs = envs.to_vec();
    all_envs.push(("PERSODESK_DATA_DIR", data.as_os_str().to_owned()));
    let out = support::persodesk_command(&[], &all_envs)
        .current_dir(root())
        .args([
            "personalize",
            file,
            "--order",
            id,
            "--reader",
            &stack.reader0,
        ])
        .args(["--role", "tester", "--user", "ci", "--json"])
        .args(&overrides)
        .args(keys)
        .output()
        .expect("persodesk personalize");
    pull_card(&mut stack.cleanup, &stack.reader0, card);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{id} over {scp}: {stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(pan) && !stderr.contains(pan),
        "{id}: clear PAN printed"
    );
    let j: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let c = &j["chip"];
    let checks: Vec<(String, String)> = c["readBack"]
        .as_array()
        .expect("read-back checks")
        .iter()
        .map(|k| (k["check"].to_string(), k["status"].to_string()))
        .collect();
    for (name, status) in &checks {
        assert_ne!(status, "\"fail\"", "{id} over {scp}: {name} failed");
    }
    assert!(
        checks
            .iter()
            .any(|(n, s)| n.contains("ARQC (9F26) per ") && s == "\"pass\""),
        "{id} over {scp}: the ARQC was not checked: {checks:?}"
    );
    Result {
        outcome: j["outcome"].clone(),
        chip: [
            c["model"].clone(),
            c["profile"].clone(),
            c["channel"].clone(),
            c["dgis"].clone(),
            c["apdus"].clone(),
        ],
        checks,
    }
}

fn audit_verifies(data: &Path, envs: &[(&'static str, OsString)], keys: &[&str]) {
    let mut all_envs = envs.to_vec();
    all_envs.push(("PERSODESK_DATA_DIR", data.as_os_str().to_owned()));
    let out = support::persodesk_command(&[], &all_envs)
        .args(["audit", "verify"])
        .args(keys)
        .output()
        .expect("audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "audit verify: {out:?}");
    assert!(
        stdout.contains(", sealed"),
        "the seals were not checked: {stdout}"
    );
}

/// The token runs really use the token: without its PIN the same command stops at the key store
/// (exit 2, naming the variable, never a PIN).
fn refused_without_the_pin(hsm: &TokenDir, store: &str, reader: &str) {
    let (file, id, ..) = DEMO[0];
    let out = support::persodesk_command(&[], &[("SOFTHSM2_CONF", hsm.conf.as_os_str())])
        .args(["personalize", file, "--order", id, "--reader", reader])
        .args(["--role", "tester", "--user", "ci", "--keys", store])
        .env_remove(PIN_ENV)
        .output()
        .expect("persodesk personalize");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains(PIN_ENV), "{stderr}");
}

#[test]
fn every_demo_chip_order_personalizes_through_pcscd_on_a_token_as_on_the_software_store() {
    if !softhsm::present(
        "every_demo_chip_order_personalizes_through_pcscd_on_a_token_as_on_the_software_store",
        "",
    ) {
        return;
    }
    let Some(mut stack) = start_stack() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("persodesk-p11-pcsc-{}", std::process::id()));
    let hsm = TokenDir::new(dir.join("hsm"));
    let store = demo_token(&hsm);
    let store_arg = store.display().to_string();
    let token_keys = ["--keys", store_arg.as_str()];
    let hsm_env = token_env(&hsm);
    refused_without_the_pin(&hsm, &store_arg, &stack.reader0);
    for scp in ["scp02", "scp03"] {
        let soft_data = dir.join(format!("soft-{scp}"));
        let token_data = dir.join(format!("token-{scp}"));
        for order in DEMO {
            let soft = personalize(&mut stack, &soft_data, order, scp, &[], &[]);
            let token = personalize(&mut stack, &token_data, order, scp, &hsm_env, &token_keys);
            assert_eq!(soft.outcome, "personalized", "{} over {scp}", order.1);
            assert_eq!(
                token, soft,
                "{} over {scp}: token against software",
                order.1
            );
        }
        let demo_keys = root().join("assets/demo/keys.toml").display().to_string();
        audit_verifies(&soft_data, &[], &["--keys", &demo_keys]);
        audit_verifies(&token_data, &hsm_env, &token_keys);
    }
    let Stack { cleanup, .. } = stack;
    drop::<Cleanup>(cleanup);
    let _ = std::fs::remove_dir_all(&dir);
}
