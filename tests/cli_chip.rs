//! `prepare --model 1` and `keys` through the built binary.

mod support;

use support::{persodesk, root};

use std::process::Output;

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Asserts that persodesk exited with `code`, showing its stdout when not.
fn assert_exit(o: &std::process::Output, code: i32) {
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(code), "{stdout}");
}

/// Runs persodesk with the words of `fixed` and then `more` (paths and other values).
fn persodesk_with(fixed: &str, more: &[&str]) -> std::process::Output {
    let args: Vec<&str> = fixed
        .split_whitespace()
        .chain(more.iter().copied())
        .collect();
    persodesk(&args, support::NO_ENV)
}

#[test]
fn model1_json_masked_and_revealed() {
    let args = [
        "prepare",
        "assets/demo/orders.json",
        "--model",
        "1",
        "--json",
        "--date",
        "250115",
    ];
    let o = persodesk(&args, support::NO_ENV);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = lines(&o);
    assert_eq!(all.len(), 6);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("4761739001010010") && !text.contains("5413330089012345"));
    let v = all
        .iter()
        .find(|v| v["id"] == "DEMO-VISA-0001")
        .expect("visa");
    let chip = &v["chip"];
    assert_eq!(chip["profile"], "vis-1.6.3-vcps-2.2.4");
    assert_eq!(chip["model"], 1);
    assert_eq!(chip["oda"]["method"], "DDA");
    assert_eq!(chip["oda"]["caIndex"], "E2");
    assert_eq!(chip["oda"]["iccKeyBits"], 1024);
    assert_eq!(chip["dgis"][0]["dgi"], "0101");
    assert!(chip["dgis"][0].get("value").is_none());
    assert!(chip["kcv"]["ac"].as_str().expect("kcv").len() == 6);

    let o = persodesk(
        &[&args[..], &["--reveal", "--order", "DEMO-VISA-0001"]].concat(),
        support::NO_ENV,
    );
    assert!(o.status.success());
    let v = &lines(&o)[0];
    let dgis = v["chip"]["dgis"].as_array().expect("dgis");
    let d0101 = &dgis[0];
    assert!(
        d0101["value"]
            .as_str()
            .expect("clear")
            .contains("4761739001010010")
    );
    for d in dgis {
        if ["8000", "8010", "8201", "8202", "8203", "8204", "8205"]
            .contains(&d["dgi"].as_str().expect("id"))
        {
            assert!(d.get("value").is_none(), "{} has a value", d["dgi"]);
        }
    }
    let d8000 = dgis.iter().find(|d| d["dgi"] == "8000").expect("8000");
    assert_eq!(d8000["length"], 48);
    assert_eq!(d8000["encrypted"], true);
}

#[test]
fn model_flags_and_ca_public() {
    let o = persodesk(
        &[
            "prepare",
            "assets/demo/orders.json",
            "--model",
            "2",
            "--order",
            "DEMO-MC-0001",
        ],
        support::NO_ENV,
    );
    assert_eq!(o.status.code(), Some(1));
    // An order without tlvData cannot be Model 2: a clear error naming the field.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "encryptedData.tlvData: the order has no Model 2 data (tlvData); use Model 1"
        )
    );
    let o = persodesk(
        &["prepare", "assets/demo/orders.json", "--model", "3"],
        support::NO_ENV,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = persodesk(
        &[
            "prepare",
            "assets/demo/orders.json",
            "--model",
            "none",
            "--json",
        ],
        support::NO_ENV,
    );
    assert!(o.status.success());
    assert!(lines(&o).iter().all(|v| v.get("chip").is_none()));

    let o = persodesk(
        &["keys", "ca-public", "--keys", "assets/demo/keys.toml"],
        support::NO_ENV,
    );
    assert!(o.status.success());
    let cas = lines(&o);
    assert_eq!(cas.len(), 2);
    assert_eq!(cas[0]["rid"], "A000000004");
    assert_eq!(cas[0]["modulus"].as_str().expect("modulus").len(), 1408 / 4);
}

#[test]
fn demo_pki_appends_a_working_issuer_key() {
    let dir = std::env::temp_dir().join(format!("persodesk-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = dir.join("keys.toml");
    std::fs::copy(root().join("tests/fixtures/keys.toml"), &keys).expect("copy");
    let k = keys.to_str().expect("utf8");
    let o = persodesk_with(
        "keys demo-pki --index 5 --ca-bits 1024 --issuer-bits 1024",
        &["--keys", k],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = persodesk(&["keys", "ca-public", "--keys", k], support::NO_ENV);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lines(&o)[0]["bits"], 1024);
    // The same index twice is refused; the file still loads.
    let o = persodesk(
        &["keys", "demo-pki", "--keys", k, "--index", "5"],
        support::NO_ENV,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        persodesk(&["keys", "ca-public", "--keys", k], support::NO_ENV)
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model2_demo_orders_and_the_packer() {
    // The shipped Model 2 demo orders default to Model 2 and pass every check.
    let o = persodesk(
        &["prepare", "assets/demo/orders-model2.json", "--json"],
        support::NO_ENV,
    );
    assert_exit(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.lines().count(), 3);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["chip"]["model"], 2, "{line}");
    }
    // The packer seals a DGI file for an order; the result imports as Model 2.
    let dir = std::env::temp_dir().join(format!("persodesk-m2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let packed = dir.join("packed.json");
    let packed_arg = packed.to_str().expect("utf8");
    // `model2 pack` of the demo Visa DGI file for order `id` under `kek #kek`, into `packed`.
    let pack = |kek: &str, id: &str| {
        let dgis = "assets/demo/model2/vis-1.6.3-vcps-2.2.4.dgi";
        let orders = "assets/demo/orders.json";
        let args = [
            "model2",
            "pack",
            "--dgis",
            dgis,
            "--kek-index",
            kek,
            "--order",
            orders,
            "--id",
            id,
            "--out",
            packed_arg,
        ];
        persodesk(&args, support::NO_ENV)
    };
    let o = pack("2", "DEMO-VISA-0001");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = persodesk(
        &["prepare", packed_arg, "--model", "2", "--json"],
        support::NO_ENV,
    );
    assert_exit(&o, 0);
    // Packed for another order, the same data is rejected: its PAN/expiry do not match.
    let o = pack("1", "DEMO-VISA-0002");
    assert_eq!(o.status.code(), Some(0));
    let o = persodesk(&["prepare", packed_arg, "--model", "2"], support::NO_ENV);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not match encryptedData"));
    // An unknown KEK index is refused by the packer.
    let o = pack("9", "DEMO-VISA-0001");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kek #9"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_product_may_allow_only_one_model() {
    // A copy of the profiles where the Visa credit product allows Model 1 only.
    let dir = std::env::temp_dir().join(format!("persodesk-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["products", "chip"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
        for f in std::fs::read_dir(root().join("profiles").join(sub)).expect("read") {
            let f = f.expect("entry").path();
            let name = f.file_name().expect("name");
            std::fs::copy(&f, dir.join(sub).join(name)).expect("copy");
        }
    }
    let p = dir.join("products/demo_visa_credit.toml");
    let text = std::fs::read_to_string(&p).expect("product");
    std::fs::write(&p, format!("models = [1]\n{text}")).expect("write");
    let profiles = dir.to_str().expect("utf8");
    let o = persodesk_with(
        "prepare assets/demo/orders-model2.json --order DEMO-VISA-0001-M2",
        &["--profiles", profiles],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("product DEMO_VISA_CREDIT does not allow chip Model 2"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = persodesk_with(
        "prepare assets/demo/orders.json --order DEMO-VISA-0001 --model 1",
        &["--profiles", profiles],
    );
    assert_eq!(o.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn prepare_records_outcomes_in_the_workstation_store() {
    let dir = std::env::temp_dir().join(format!("persodesk-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("orders.json");
    std::fs::write(
        &bad,
        r#"{"cards":[{"cardId":"OK-1","cardProductId":"DEMO_VISA_CREDIT","encryptedData":{"pan":"4761739001010010","exp":"2812","encodedName":"MARTIN/BOB","pin":{"type":"ISO0","encryptedPin":"F421D9C96658A940","kid":1}},"paymentApplication":{"cvKeyIndex":1,"pvKeyIndex":1}},{"cardId":"BAD-1","cardProductId":"DEMO_VISA_CREDIT","encryptedData":{"pan":"4761739001010010","exp":"2813","encodedName":"MARTIN/BOB","pin":{"type":"ISO0","encryptedPin":"F421D9C96658A940","kid":1}},"paymentApplication":{"cvKeyIndex":1,"pvKeyIndex":1}}]}"#,
    )
    .expect("orders");
    let o = support::persodesk_command(
        &[
            "prepare",
            bad.to_str().expect("utf8"),
            "--model",
            "none",
            "--record",
        ],
        &[("PERSODESK_DATA_DIR", &dir)],
    )
    .output()
    .expect("prepare --record");
    assert_eq!(o.status.code(), Some(1), "one order is invalid");
    let store = persodesk::store::Store::open(&dir.join(persodesk::store::DB_FILE)).expect("store");
    let ok = store.state("OK-1").expect("state").expect("OK-1 recorded");
    assert_eq!(ok.status.as_str(), "DATA_PREPARED");
    let bad = store
        .state("BAD-1")
        .expect("state")
        .expect("BAD-1 recorded");
    assert_eq!(bad.status.as_str(), "DATA_EXCEPTION");
    let reason = bad.reason.expect("reason");
    assert!(reason.contains("encryptedData.exp"), "{reason}");
    assert!(reason.contains("month 13"), "{reason}");
    assert!(!reason.contains("4761739001010010"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `personalize` and `sim-card` refuse bad arguments before touching a device or the store,
/// naming the option and the rule.
#[test]
fn personalize_and_sim_card_name_bad_arguments() {
    let dir = std::env::temp_dir().join(format!("persodesk-args-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |args: &[&str]| {
        support::persodesk_command(args, &[("PERSODESK_DATA_DIR", &dir)])
            .output()
            .expect("persodesk")
    };
    let base = [
        "personalize",
        "assets/demo/orders.json",
        "--order",
        "DEMO-VISA-0001",
    ];
    let cases: &[(&[&str], &str)] = &[
        (
            &["--role", "supervisor"],
            "--role: `supervisor` is not operator or tester",
        ),
        (
            &["--scp", "scp04:00"],
            "--scp: `scp04` is not scp02 or scp03",
        ),
        (
            &["--scp", "scp02:10"],
            "--scp: SCP02 i=10 is not 05, 15, 45 or 55",
        ),
        (&["--model", "3"], "--model must be 1, 2, auto or none"),
        (&["--date", "261340"], "--date must be a valid YYMMDD date"),
        (
            &["--role", "tester"],
            "--reader is needed: the order has chip data",
        ),
    ];
    for (extra, says) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(!err.contains("4761739001010010"));
    }
    for (fault, says) in [
        ("remove-at:0", "N must be a command number from 1"),
        ("status-at:3:69", "SW must be 4 hex digits"),
        (
            "explode-at:1",
            "is not remove-at:N, status-at:N:SW or garbage-at:N",
        ),
    ] {
        let o = run(&["sim-card", "--vpcd", "127.0.0.1:9", "--fault", fault]);
        assert_eq!(o.status.code(), Some(2), "{fault}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--fault") && err.contains(says),
            "{fault}: {err}"
        );
    }
    for (args, says) in [
        (
            &["--profile", "no-such-profile"][..],
            "--profile: no chip profile `no-such-profile`",
        ),
        (
            &["--interface", "nfc"][..],
            "--interface: `nfc` is not contact or contactless",
        ),
        (
            &["--profile", "vis-1.6.3-vcps-2.2.4", "--scp", "scp03"][..],
            "cannot be used with",
        ),
    ] {
        let mut a = vec!["sim-card", "--vpcd", "127.0.0.1:9"];
        a.extend_from_slice(args);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
