//! Production mode (issue 8): configured by the machine (here through `PERSODESK_CONFIG`, which
//! only counts when `/etc/persodesk/persodesk.toml` is absent), it refuses key stores holding
//! test keys, demo orders and test products entirely, and never reveals. Since issue 13 the key
//! store and profiles come from the configuration only (tests/production_probe.rs has the rest).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/live_token.rs"]
mod live_token;

use live_token::LiveToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs persodesk in production mode (`config`), on `token` when given.
fn persodesk_on(args: &[&str], config: &Path, token: Option<&LiveToken>) -> Output {
    let mut envs: Vec<(&str, OsString)> = vec![("PERSODESK_CONFIG", config.into())];
    if let Some(t) = token {
        envs.extend(t.envs());
    }
    live_token::run::persodesk_command(args, &envs)
        .output()
        .expect("run persodesk")
}

fn persodesk(args: &[&str], config: &Path) -> Output {
    persodesk_on(args, config, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn production_refuses_test_keys_demo_orders_test_products_and_reveal() {
    if Path::new(persodesk::config::SYSTEM_CONFIG).exists() {
        eprintln!("skipped: this machine has a system configuration that decides the mode");
        return;
    }
    let dir = Dir(std::env::temp_dir().join(format!("persodesk-prod-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("dir");
    let config = dir.0.join("persodesk.toml");
    let fixtures = root().join("tests/fixtures/profiles");
    let write_config = |keys: &Path| {
        std::fs::write(
            &config,
            format!(
                "mode = \"production\"\nkeys = \"{}\"\nprofiles = \"{}\"\n[roles]\noperator = []\n",
                keys.display(),
                fixtures.display()
            ),
        )
        .expect("config");
    };

    // The demo key store holds test keys: refused outright, naming a test key.
    write_config(&root().join("assets/demo/keys.toml"));
    let o = persodesk(&["prepare", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("production refuses key stores holding test keys"));

    // Live key values in a software key file (values made for this test: cvk and audit key):
    // production refuses the software store itself, whatever its keys.
    let cvk = "3B7A5C1D9E8F20416273849506A7B8C9";
    let audit = "9F8E7D6C5B4A39281706F5E4D3C2B1A09F8E7D6C5B4A39281706F5E4D3C2B1A0";
    let keys = dir.0.join("keys.toml");
    std::fs::write(
        &keys,
        "[[key]]\nusage = \"cvk\"\nindex = 1\nalgorithm = \"tdes\"\n\
         value = \"CVK\"\nkcv = \"KCV1\"\ntest = false\n\
         [[key]]\nusage = \"audit\"\nindex = 1\nalgorithm = \"aes\"\n\
         value = \"AUDIT\"\nkcv = \"KCV2\"\ntest = false\n"
            .replace("KCV1", &kcv("tdes", cvk))
            .replace("KCV2", &kcv("aes", audit))
            .replace("CVK", cvk)
            .replace("AUDIT", audit),
    )
    .expect("keys");
    write_config(&keys);
    let o = persodesk(&["prepare", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr)
            .contains("is a software key store (keys in a file): production needs a PKCS#11 store"),
        "{}",
        text(&o.stderr)
    );
    if !live_token::present("production_refuses_test_keys_demo_orders_test_products_and_reveal") {
        return;
    }

    // The same values on a token that is not a test token, but without the audit key: refused.
    let bare = dir.0.join("bare");
    let token = LiveToken::make(&bare, &[("cvk/1", "tdes", hex::decode(cvk).expect("hex"))]);
    write_config(&token.store_file);
    let o = persodesk_on(
        &["prepare", "assets/demo/orders.json"],
        &config,
        Some(&token),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("production needs an audit key"),
        "{}",
        text(&o.stderr)
    );
    // And the token's store file saying `test = true`: a test token, refused.
    let test_file = bare.join("test-token.toml");
    let as_test = std::fs::read_to_string(&token.store_file)
        .expect("store file")
        .replace("test = false", "test = true");
    std::fs::write(&test_file, as_test).expect("test store file");
    write_config(&test_file);
    let o = persodesk_on(
        &["prepare", "assets/demo/orders.json"],
        &config,
        Some(&token),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("test key"), "{}", text(&o.stderr));

    // The live keys on a live token (cvk and the audit key as an HMAC object) and a production
    // product: prepared, masked; reveal refused.
    let token = LiveToken::make(
        &dir.0.join("live"),
        &[
            ("cvk/1", "tdes", hex::decode(cvk).expect("hex")),
            ("audit/1", "aes", hex::decode(audit).expect("hex")),
        ],
    );
    write_config(&token.store_file);
    let persodesk = |args: &[&str], config: &Path| persodesk_on(args, config, Some(&token));

    // Demo orders and test products are refused with a live key store too (validate opens
    // the configured one for JWE orders): `validate FILE` exits 1 and names `why`.
    let refused = |file: &str, why: &str| {
        let o = persodesk(&["validate", file], &config);
        assert_eq!(o.status.code(), Some(1), "{file}");
        assert!(text(&o.stdout).contains(why), "{}", text(&o.stdout));
    };
    refused("assets/demo/orders.json", "cardId: is a demo order");

    let orders = dir.0.join("orders.json");
    std::fs::write(
        &orders,
        r#"{"cardId":"C-0001","cardProductId":"STRICT","encryptedData":{"pan":"4000000000000002","exp":"3012","encodedName":"DOE/JOHN"},"paymentApplication":{"cvKeyIndex":1}}"#,
    )
    .expect("orders");
    let orders = orders.to_str().expect("utf8");
    let args = ["prepare", orders, "--model", "none"];
    let o = persodesk(&args, &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("400000******0002"));
    assert!(!text(&o.stdout).contains("4000000000000002"));
    let mut reveal = args.to_vec();
    reveal.push("--reveal");
    let o = persodesk(&reveal, &config);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--reveal refused: this workstation runs in production mode"));
    assert!(!text(&o.stdout).contains("4000000000000002"));

    // The same order against a test product is refused in production.
    refused("tests/fixtures/kat_orders.json", "is a test product");

    // A broken configuration is an error, not a silent fallback to test mode.
    std::fs::write(&config, "mode = \"live\"\n").expect("config");
    let o = persodesk(&["validate", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("mode: `live` is not test or production"));
}

/// The key check value as the key file declares it (setup, not an expected result).
fn kcv(algorithm: &str, value: &str) -> String {
    let bytes = hex::decode(value).expect("hex");
    let kcv = match algorithm {
        "aes" => persodesk::domain::crypto::kcv_aes(&bytes),
        _ => persodesk::domain::crypto::kcv_tdes(&bytes),
    }
    .expect("kcv");
    hex::encode_upper(kcv)
}
