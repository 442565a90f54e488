//! Table-driven bad input: malformed orders, products and key files. Each case asserts the path
//! and the rule its error names, and that no sensitive value is echoed.

use persodesk::domain::order::{OrderRules, parse_order_file};
use persodesk::domain::product::{Catalog, Product};
use persodesk::keys::SoftwareKeyStore;

/// A valid order; cases patch one field.
fn base() -> serde_json::Value {
    serde_json::json!({
        "cardId": "T-1",
        "cardProductId": "STRICT",
        "encryptedData": {
            "pan": "4761739001010010",
            "exp": "2906",
            "encodedName": "DOE/ALICE",
            "panSequenceNumber": "00",
            "effectiveDate": "2406",
            "cvv1": "123",
            "pin": {"type": "ISO0", "encryptedPin": "F421D9C96658A940", "kid": 1}
        },
        "paymentApplication": {"cvKeyIndex": 1, "pvKeyIndex": 1},
        "trackData": {}
    })
}

fn set(v: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).expect("path exists");
    }
    let obj = cur.as_object_mut().expect("object");
    let last = parts[parts.len() - 1];
    if value.is_null() {
        obj.remove(last);
    } else {
        obj.insert(last.to_string(), value);
    }
}

/// (field to patch, new value or null to remove, expected error path, expected rule fragment)
fn order_cases() -> Vec<(&'static str, serde_json::Value, &'static str, &'static str)> {
    use serde_json::{Value::Null, json};
    vec![
        (
            "encryptedData.exp",
            json!("2913"),
            "encryptedData.exp",
            "month 13 is not 01-12",
        ),
        (
            "encryptedData.exp",
            json!("29A6"),
            "encryptedData.exp",
            "must be 4 digits YYMM",
        ),
        (
            "encryptedData.pan",
            json!("4761A39001010010"),
            "encryptedData.pan",
            "digits only",
        ),
        (
            "encryptedData.pan",
            json!("47617390010"),
            "encryptedData.pan",
            "must be 12-19 digits",
        ),
        (
            "encryptedData.pan",
            json!("4761739001010011"),
            "encryptedData.pan",
            "Luhn check digit is wrong",
        ),
        (
            "encryptedData.pan",
            Null,
            "encryptedData.pan",
            "is required",
        ),
        (
            "encryptedData.pan",
            json!(4761739001010010u64),
            "encryptedData.pan",
            "must be a string",
        ),
        ("cardProductId", Null, "cardProductId", "is required"),
        ("encryptedData", Null, "encryptedData", "is required"),
        (
            "encryptedData",
            json!("eyJhbGciOiJFQ0RILUVTIn0..x.y.z"),
            "encryptedData",
            "JWE IV is not base64url",
        ),
        (
            "encryptedData.panSequenceNumber",
            json!("1"),
            "encryptedData.panSequenceNumber",
            "must be 2 digits",
        ),
        (
            "encryptedData.effectiveDate",
            json!("2413"),
            "encryptedData.effectiveDate",
            "month 13 is not 01-12",
        ),
        (
            "encryptedData.effectiveDate",
            json!("3001"),
            "encryptedData.effectiveDate",
            "must not be after encryptedData.exp",
        ),
        (
            "encryptedData.encodedName",
            json!("Doe/Alice"),
            "encryptedData.encodedName",
            "lowercase",
        ),
        (
            "encryptedData.encodedName",
            json!("DOE^ALICE"),
            "encryptedData.encodedName",
            "field separator",
        ),
        (
            "encryptedData.encodedName",
            json!("ABCDEFGHIJKLMNOPQRSTUVWXYZ/A"),
            "encryptedData.encodedName",
            "2-26 characters",
        ),
        (
            "encryptedData.encodedName",
            json!("DOE ALICE"),
            "encryptedData.encodedName",
            "'/' between surname and first name",
        ),
        (
            "encryptedData.cvv1",
            json!("12"),
            "encryptedData.cvv1",
            "must be 3 digits",
        ),
        (
            "encryptedData.icvv",
            json!("12a"),
            "encryptedData.icvv",
            "must be 3 digits",
        ),
        (
            "encryptedData.pvv",
            json!("123"),
            "encryptedData.pvv",
            "must be 4 digits",
        ),
        (
            "encryptedData.paymentAccountReference",
            json!("V001"),
            "encryptedData.paymentAccountReference",
            "29 characters",
        ),
        (
            "encryptedData.pin.type",
            json!("ISO1"),
            "encryptedData.pin.type",
            "one of ISO0, ISO0TK, ISO4",
        ),
        (
            "encryptedData.pin.type",
            json!("ISO4"),
            "encryptedData.pin.encryptedPin",
            "32 hex digits for ISO4",
        ),
        (
            "encryptedData.pin.encryptedPin",
            json!("F421D9C96658A94G"),
            "encryptedData.pin.encryptedPin",
            "16 hex digits for ISO0",
        ),
        (
            "encryptedData.pin.kid",
            Null,
            "encryptedData.pin.kid",
            "is required",
        ),
        (
            "paymentApplication.cvKeyIndex",
            json!(-1),
            "paymentApplication.cvKeyIndex",
            "non-negative integer",
        ),
        (
            "paymentApplication.pvKeyIndex",
            json!(1.5),
            "paymentApplication.pvKeyIndex",
            "non-negative integer",
        ),
        (
            "paymentApplication",
            json!([1]),
            "paymentApplication",
            "must be an object",
        ),
        (
            "trackData.track2",
            json!("4761739001010010=2906201?"),
            "trackData.track2",
            "start sentinel ';'",
        ),
        (
            "trackData.track3",
            json!(";4761739001010010=123"),
            "trackData.track3",
            "end sentinel",
        ),
        (
            "trackData.track2",
            json!(";4761739001010010=2906201A?"),
            "trackData.track2",
            "character set",
        ),
        (
            "trackData.track1",
            json!(format!(
                "%B4761739001010010^DOE/ALICE^2906201{}?",
                "0".repeat(50)
            )),
            "trackData.track1",
            "more than the 78 that fit on track 1 (79 with the LRC)",
        ),
        (
            "trackData.track2",
            json!(";5413330089012345=2906201?"),
            "trackData.track2",
            "PAN does not match",
        ),
        (
            "trackData.track2",
            json!(";4761739001010010=2907201?"),
            "trackData.track2",
            "expiry does not match",
        ),
        (
            "trackData.track1",
            json!("%B4761739001010010^DOE/ALICE^2906?201?"),
            "trackData.track1",
            "sentinel inside",
        ),
    ]
}

#[test]
fn malformed_orders_name_path_and_rule() {
    let rules = OrderRules::default();
    let cases = order_cases();
    assert!(cases.len() >= 25);
    for (field, value, path, rule) in cases {
        let mut order = base();
        set(&mut order, field, value);
        let entries = parse_order_file(&order.to_string(), &rules).expect("file parses");
        let errors = entries[0]
            .outcome
            .as_ref()
            .expect_err(&format!("patching {field} must fail"));
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.rule.contains(rule)),
            "patching {field}: wanted `{path}: ..{rule}..`, got {errors:?}"
        );
        for e in errors {
            let text = e.to_string();
            for secret in ["4761739001010010", "F421D9C96658A940"] {
                assert!(!text.contains(secret), "error echoes a secret: {text}");
            }
        }
    }
}

#[test]
fn the_base_order_is_valid_and_unknown_fields_warn() {
    let mut order = base();
    set(
        &mut order,
        "encryptedData.colour",
        serde_json::json!("blue"),
    );
    let entries = parse_order_file(&order.to_string(), &OrderRules::default()).expect("parses");
    assert!(entries[0].outcome.is_ok(), "{:?}", entries[0].outcome);
    assert_eq!(entries[0].warnings[0].path, "encryptedData.colour");
    assert!(entries[0].warnings[0].rule.contains("unknown field"));
}

#[test]
fn one_bad_order_does_not_stop_the_others() {
    let mut bad = base();
    set(&mut bad, "encryptedData.exp", serde_json::json!("2913"));
    set(&mut bad, "cardId", serde_json::Value::Null);
    // Another id for the third order: the same id twice in one file is an error (issue 13).
    let mut third = base();
    set(&mut third, "cardId", serde_json::json!("ORDER-3"));
    let batch = serde_json::json!({"cards": [base(), bad, third]});
    let entries = parse_order_file(&batch.to_string(), &OrderRules::default()).expect("parses");
    assert_eq!(entries.len(), 3);
    assert!(entries[0].outcome.is_ok() && entries[2].outcome.is_ok());
    assert!(entries[1].outcome.is_err());
    assert_eq!(entries[1].id, "#2");
    // JSON Lines: a broken line is that order's error only.
    let lines = format!("{}\n{{not json\n{}\n", base(), base());
    let entries = parse_order_file(&lines, &OrderRules::default()).expect("parses");
    assert_eq!(entries.len(), 3);
    let err = entries[1].outcome.as_ref().expect_err("bad line");
    assert_eq!(err[0].path, "line 2");
}

#[test]
fn unreadable_files_are_file_errors() {
    for text in ["", "   ", "{not json", "42", "{\"cards\": 3}"] {
        assert!(
            parse_order_file(text, &OrderRules::default()).is_err(),
            "{text:?}"
        );
    }
}

const PRODUCT: &str = r#"
card_product_id = "P"
service_code = "201"
track1_discretionary = "000|cvv"
track2_discretionary = "000|cvv"
"#;

/// Each `(from, to, place, rule)` edit of `base` must fail: `parse` gives the error's place (file
/// and key) and rule, which must be `place` and contain `rule`; a failure names the edit (`to`).
fn assert_edits_fail(
    base: &str,
    cases: &[(&str, &str, &str, &str)],
    parse: impl Fn(&str) -> Result<(), (String, String)>,
) {
    for (from, to, place, rule) in cases {
        let (at, why) = parse(&base.replace(from, to)).expect_err(to);
        assert_eq!(at, *place, "{to}");
        assert!(why.contains(rule), "{to}: {why}");
    }
}

#[test]
fn malformed_products_name_file_key_and_rule() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "service_code = \"201\"",
            "service_code = \"20\"",
            "p.toml: service_code",
            "must be 3 digits",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\npan_luhn = \"warn\"",
            "p.toml: pan_luhn",
            "is for test products only",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\ntest = \"yes\"",
            "p.toml: test",
            "must be true or false",
        ),
        (
            "track2_discretionary = \"000|cvv\"",
            "track2_discretionary = \"000|cvc\"",
            "p.toml: track2_discretionary",
            "segment 2 `cvc` is an unknown token",
        ),
        (
            "track2_discretionary = \"000|cvv\"",
            "track2_discretionary = \"0A0|cvv\"",
            "p.toml: track2_discretionary",
            "segment 1 `0A0` is not a literal",
        ),
        (
            "track1_discretionary = \"000|cvv\"",
            "track1_discretionary = \"0^0|cvv\"",
            "p.toml: track1_discretionary",
            "not a literal",
        ),
        (
            "card_product_id = \"P\"",
            "",
            "p.toml: card_product_id",
            "is required",
        ),
        (
            "track2_discretionary = \"000|cvv\"",
            "track2_discretionary = \"000|pvv\"",
            "p.toml: pvki",
            "required because a pattern uses the pvv token",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\nservce_code = \"1\"",
            "p.toml: servce_code",
            "unknown key",
        ),
        (
            "service_code = \"201\"",
            "service_code = 201",
            "p.toml: service_code",
            "must be a string",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\ntrack3_body = \"12A\"",
            "p.toml: track3_body",
            "digits and '='",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\npvki = \"12\"",
            "p.toml: pvki",
            "one digit",
        ),
        (
            "service_code = \"201\"",
            "service_code = [",
            "p.toml",
            "not valid TOML",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\nmodels = [3]",
            "p.toml: models",
            "distinct 1 and 2",
        ),
        (
            "service_code = \"201\"",
            "service_code = \"201\"\nmodels = []",
            "p.toml: models",
            "at least one model",
        ),
    ];
    assert_edits_fail(PRODUCT, cases, |text| {
        Product::from_toml("p.toml", text)
            .map(drop)
            .map_err(|e| (e.path, e.rule))
    });
    let a = Product::from_toml("a.toml", PRODUCT).expect("valid");
    let b = Product::from_toml("b.toml", PRODUCT).expect("valid");
    let e = Catalog::new(vec![a, b]).expect_err("duplicate");
    assert_eq!(e.path, "b.toml: card_product_id");
    assert!(e.rule.contains("already defined in a.toml"));
}

const KEY: &str = r#"
[[key]]
usage = "cvk"
index = 1
algorithm = "tdes"
value = "0123456789ABCDEFFEDCBA9876543210"
kcv = "08D7B4"
test = true
"#;

#[test]
fn malformed_key_files_name_the_key_never_the_value() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "usage = \"cvk\"",
            "usage = \"cvv\"",
            "key[1].usage",
            "unknown usage",
        ),
        (
            "value = \"0123456789ABCDEFFEDCBA9876543210\"",
            "value = \"0123456789ABCDEFFEDCBA98765432\"",
            "key cvk #1: value",
            "is 15 bytes",
        ),
        (
            "value = \"0123456789ABCDEFFEDCBA9876543210\"",
            "value = \"0123456789ABCDEFFEDCBA987654321G\"",
            "key cvk #1: value",
            "hex",
        ),
        (
            "kcv = \"08D7B4\"",
            "kcv = \"08D7B5\"",
            "key cvk #1: kcv",
            "check value mismatch",
        ),
        ("index = 1", "", "key[1].index", "is required"),
        ("index = 1", "index = -1", "key[1].index", "non-negative"),
        (
            "algorithm = \"tdes\"",
            "algorithm = \"des\"",
            "key[1].algorithm",
            "must be tdes or aes",
        ),
        (
            "algorithm = \"tdes\"",
            "algorithm = \"aes\"",
            "key cvk #1: kcv",
            "check value mismatch",
        ),
        (
            "test = true",
            "test = \"yes\"",
            "key[1].test",
            "true or false",
        ),
        (
            "test = true",
            "test = true\ncolour = 1",
            "key[1].colour",
            "unknown field",
        ),
    ];
    assert_edits_fail(KEY, cases, |text| {
        SoftwareKeyStore::from_toml("k.toml", text)
            .map(drop)
            .map_err(|e| {
                assert!(!e.to_string().contains("0123456789ABCDEF"), "{e}");
                (e.location, e.rule)
            })
    });
    let dup = format!("{KEY}{KEY}");
    let e = SoftwareKeyStore::from_toml("k.toml", &dup).expect_err("duplicate");
    assert_eq!(e.location, "key cvk #1");
    assert!(e.rule.contains("defined twice"));
    // A TOML syntax error near a key value does not quote the line.
    let broken = KEY.replace("kcv = \"08D7B4\"", "kcv = 08D7B4\"");
    let e = SoftwareKeyStore::from_toml("k.toml", &broken).expect_err("syntax");
    assert!(e.rule.contains("not valid TOML") && !e.to_string().contains("0123456789"));
}
