//! Production mode (issue 8): configured by the machine (here through `PERSODESK_CONFIG`, which
//! only counts when `/etc/persodesk/persodesk.toml` is absent), it refuses key stores holding
//! test keys, demo orders and test products entirely, and never reveals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn persodesk(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_persodesk"))
        .current_dir(root())
        .args(args)
        .env("PERSODESK_CONFIG", config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run persodesk")
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
    std::fs::write(&config, "mode = \"production\"\n").expect("config");

    // The demo key store holds test keys: refused outright, naming a test key.
    let o = persodesk(&["prepare", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("production refuses key stores holding test keys"));

    // Demo orders and test products are refused even where no key is needed.
    let o = persodesk(&["validate", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("cardId: is a demo order"),
        "{}",
        text(&o.stdout)
    );

    // A live key store and a production product: prepared, masked; reveal refused.
    let keys = dir.0.join("keys.toml");
    std::fs::write(
        &keys,
        "[[key]]\nusage = \"cvk\"\nindex = 1\nalgorithm = \"tdes\"\n\
         value = \"0123456789ABCDEFFEDCBA9876543210\"\nkcv = \"08D7B4\"\ntest = false\n",
    )
    .expect("keys");
    let orders = dir.0.join("orders.json");
    std::fs::write(
        &orders,
        r#"{"cardId":"C-0001","cardProductId":"STRICT","encryptedData":{"pan":"4761739001010010","exp":"3012","encodedName":"DOE/JOHN"},"paymentApplication":{"cvKeyIndex":1}}"#,
    )
    .expect("orders");
    let fixtures = root().join("tests/fixtures/profiles");
    let (keys, orders, fixtures) = (
        keys.to_str().expect("utf8"),
        orders.to_str().expect("utf8"),
        fixtures.to_str().expect("utf8"),
    );
    let args = [
        "prepare",
        orders,
        "--profiles",
        fixtures,
        "--keys",
        keys,
        "--model",
        "none",
    ];
    let o = persodesk(&args, &config);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("476173******0010"));
    assert!(!text(&o.stdout).contains("4761739001010010"));
    let mut reveal = args.to_vec();
    reveal.push("--reveal");
    let o = persodesk(&reveal, &config);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--reveal refused: this workstation runs in production mode"));
    assert!(!text(&o.stdout).contains("4761739001010010"));

    // The same order against a test product is refused in production.
    let o = persodesk(
        &[
            "validate",
            "tests/fixtures/kat_orders.json",
            "--profiles",
            fixtures,
        ],
        &config,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("is a test product"),
        "{}",
        text(&o.stdout)
    );

    // A broken configuration is an error, not a silent fallback to test mode.
    std::fs::write(&config, "mode = \"live\"\n").expect("config");
    let o = persodesk(&["validate", "assets/demo/orders.json"], &config);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("mode: `live` is not test or production"));
}
