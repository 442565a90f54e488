//! The command line through the built binary: acceptance examples, exit codes, reveal policy, and
//! no sensitive data in logs or output at trace level.

mod support;

use support::{persodesk, root};

use std::path::PathBuf;
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

const FIXTURE_ARGS: [&str; 4] = [
    "--profiles",
    "tests/fixtures/profiles",
    "--keys",
    "tests/fixtures/keys.toml",
];

#[test]
fn acceptance_1_seed_example_revealed_and_masked() {
    let args = [
        "prepare",
        "assets/demo/orders.json",
        "--order",
        "DEMO-MC-0001",
        "--json",
    ];
    let o = persodesk(&[&args[..], &["--reveal"]].concat(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["id"], "DEMO-MC-0001");
    assert_eq!(v["cardProductId"], "DEMO_MC_DEBIT");
    assert_tracks(
        v,
        [
            "%B5413330089012345^DOE/ALICE^2906201000000123000000?",
            ";5413330089012345=29062010000012300000?",
            ";5413330089012345=123456789012345?",
        ],
    );
    assert_eq!(v["sources"]["cvv1"], "order (encryptedData.cvv1)");

    let o = persodesk(&args, &[]);
    assert!(o.status.success());
    let v = &json_lines(&o)[0];
    assert_tracks(
        v,
        [
            "%B541333******2345^DOE/ALICE^2906201000000***000000?",
            ";541333******2345=290620100000***00000?",
            ";541333******2345=123456789012345?",
        ],
    );
    assert!(!stdout(&o).contains("5413330089012345"));
}

/// Tracks 1, 2 and 3 of a `--json` line are `expected`.
fn assert_tracks(v: &serde_json::Value, expected: [&str; 3]) {
    for (n, want) in (1..=3).zip(expected) {
        assert_eq!(v["tracks"][format!("track{n}")], want, "track {n}");
    }
}

/// `prepare tests/fixtures/kat_orders.json --order ID` with `flags` and the fixture keys.
fn prepare_kat(id: &str, flags: &[&str]) -> std::process::Output {
    let file = "tests/fixtures/kat_orders.json";
    let args = [
        &["prepare", file][..],
        flags,
        &["--order", id],
        &FIXTURE_ARGS,
    ]
    .concat();
    persodesk(&args, &[])
}

#[test]
fn acceptance_2_cvv_and_pvv_from_keys_match_published_vectors() {
    let o = prepare_kat("CVV-KAT", &["--json", "--reveal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    // Visa CVV classic example: CVK 0123..3210, PAN 4123456789012345, 8701, SC 101 -> 561.
    assert_eq!(v["tracks"]["track2"], ";4123456789012345=8701101561?");
    assert_eq!(
        v["tracks"]["track1"],
        "%B4123456789012345^KAT/CVV^8701101561?"
    );
    assert_eq!(v["sources"]["cvv1"], "computed with cvk #1");
    assert_eq!(v["tracks"]["track3"], serde_json::Value::Null);

    // The PIN block is the ISO 0 block of PIN 4524 for PAN 1122334455667788 under zpk #1
    // (made with Python's `cryptography`); psec's PVV vector: PVK 0123..3210, PVKI 1 -> 8523.
    let o = prepare_kat("PVV-KAT", &["--json", "--reveal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["tracks"]["track2"], ";1122334455667788=300120118523000?");
    assert!(
        v["sources"]["pvv"]
            .as_str()
            .expect("source")
            .starts_with("computed with pvk #1 (PVKI 1)")
    );
}

#[test]
fn reveal_is_refused_when_a_key_is_not_a_test_key() {
    let o = prepare_kat("NON-TEST-KEY", &["--reveal"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--reveal refused: key cvk #9 is not a test key"));
    assert!(!stdout(&o).contains("4123456789012345"));
    // Masked output of the same order is fine.
    let o = prepare_kat("NON-TEST-KEY", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `persodesk FILE` opens the window on an order file; a name that is neither a file nor a
/// command is an error before any window opens (a mistyped command must not start the GUI).
#[test]
fn a_missing_file_or_mistyped_command_is_said_without_opening_the_window() {
    let o = persodesk(&["readerz"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("FILE: readerz: no such order file (nor a command"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn validate_exit_codes() {
    let o = persodesk(&["validate", "assets/demo/orders.json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("6 orders: 6 valid, 0 invalid"));

    assert_rejects(
        "validate",
        r#"{"cards": [{"cardId": "A", "cardProductId": "DEMO_MC_DEBIT", "encryptedData": {"pan": "5413330089012345", "exp": "2913"}},
                      {"cardId": "B", "cardProductId": "NOPE", "encryptedData": {"pan": "4761739001010010", "exp": "2912"}}]}"#,
        &[
            "encryptedData.exp: month 13 is not 01-12",
            "cardProductId: product NOPE is not in",
        ],
    );

    let dir = tempdir();
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "{this is not json").expect("write");
    let o = persodesk(&["validate", garbage.to_str().expect("utf8")], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = persodesk(&["validate", "no/such/file.json"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be read"));
    let o = persodesk(
        &[
            "prepare",
            "assets/demo/orders.json",
            "--keys",
            "no/such/keys.toml",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn prepare_failures_name_the_fields() {
    // Needs a computed CVV but has neither cvv1 nor cvKeyIndex; and an unknown key index.
    assert_rejects(
        "prepare",
        r#"{"cardId": "X", "cardProductId": "DEMO_MC_DEBIT", "encryptedData": {"pan": "5413330089012345", "exp": "2906", "encodedName": "A/B"}}
{"cardId": "Y", "cardProductId": "DEMO_MC_DEBIT", "encryptedData": {"pan": "5413330089012345", "exp": "2906"}, "paymentApplication": {"cvKeyIndex": 7}}"#,
        &[
            "encryptedData.cvv1, paymentApplication.cvKeyIndex",
            "encryptedData.encodedName, trackData.track1",
            "key cvk #7 is not in the key store",
        ],
    );
}

/// `persodesk <command> FILE` on a file holding `orders` exits 1 and says every one of `says`.
fn assert_rejects(command: &str, orders: &str, says: &[&str]) {
    let f = tempdir().join(format!("{command}-rejects.json"));
    std::fs::write(&f, orders).expect("write");
    let o = persodesk(&[command, f.to_str().expect("utf8")], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_says(&stdout(&o), says);
}

/// `out` says every one of `needles`.
fn assert_says(out: &str, needles: &[&str]) {
    for needle in needles {
        assert!(out.contains(needle), "{needle:?} not in: {out}");
    }
}

#[test]
fn no_sensitive_value_in_logs_or_masked_output_at_trace_level() {
    let o = persodesk(
        &["prepare", "assets/demo/orders.json"],
        &[("RUST_LOG", "trace")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o2 = persodesk(
        &["prepare", "assets/demo/orders.json", "--json"],
        &[("RUST_LOG", "trace")],
    );
    let text = format!("{}{}{}{}", stdout(&o), stderr(&o), stdout(&o2), stderr(&o2));
    assert!(
        stderr(&o).contains("products loaded"),
        "trace logging is on"
    );
    let orders = std::fs::read_to_string(root().join("assets/demo/orders.json")).expect("orders");
    let keys = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let mut secrets: Vec<String> = vec![
        "5413330089012345".into(),
        "4761739001010010".into(),
        // CVV1 and PVV in their track context.
        "000000123000000".into(),
        "0000012300000".into(),
        "28052010000987".into(),
    ];
    for field in ["encryptedPin"] {
        for part in orders.split(&format!("\"{field}\": \"")).skip(1) {
            secrets.push(part.split('"').next().expect("value").to_string());
        }
    }
    for part in keys.split("value = \"").skip(1) {
        secrets.push(part.split('"').next().expect("value").to_string());
    }
    assert!(secrets.len() > 10);
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "a sensitive value leaked");
    }
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "persodesk-cli-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}
