//! JWE `encryptedData` intake (issue 16): RFC 7518 Appendix C (ECDH-ES key agreement and Concat
//! KDF), JWEs made by an independent implementation (Python jwcrypto, tests/vectors/jwe/), every
//! refusal rule (the order's error at `encryptedData`, no PAN anywhere, the other orders of the
//! batch still prepared), key store rules, and the `jwe seal` / `keys jwe-new` tools.
mod support;

use support::{persodesk_env, root};

use std::path::PathBuf;

use base64ct::{Base64UrlUnpadded, Encoding};
use persodesk::domain::jwe::{self, DECRYPT_RULE, P256Point, SealRandom};
use persodesk::domain::keystore::{JweKeys, KeyStore, KeyUsage};
use persodesk::domain::order::{OrderEntry, OrderRules, parse_order_file, parse_orders};
use persodesk::keys::SoftwareKeyStore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The jwcrypto vectors (tests/vectors/jwe/README.md).
fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/jwe/jwcrypto.json")).expect("vectors")
}

fn jwe_entry(kid: &str, value: &str, public: &str) -> String {
    format!(
        "[[key]]\nusage = \"jwe\"\nkid = \"{kid}\"\nalgorithm = \"ec-p256\"\nvalue = \"{value}\"\npublic = \"{public}\"\ntest = true\n"
    )
}

/// A store holding the vectors' key.
fn vector_store() -> SoftwareKeyStore {
    let k = &vectors()["key"];
    let toml = jwe_entry(
        k["kid"].as_str().expect("kid"),
        k["value"].as_str().expect("value"),
        k["public"].as_str().expect("public"),
    );
    SoftwareKeyStore::from_toml("vectors", &toml).expect("vector key loads")
}

fn case(i: usize) -> (String, String, String) {
    let c = &vectors()["cases"][i];
    let s = |k: &str| c[k].as_str().expect("string").to_string();
    (s("cardId"), s("jwe"), s("plaintext"))
}

/// The PANs of the vectors' plaintexts and the demo orders: none may show in any output.
fn pans() -> Vec<String> {
    support::demo::order_cards()
        .iter()
        .map(|c| c["encryptedData"]["pan"].as_str().expect("pan").to_string())
        .collect()
}

fn demo_order(id: &str) -> Value {
    support::demo::order_cards()
        .into_iter()
        .find(|o| o["cardId"] == id)
        .expect("demo order")
}

fn rules() -> OrderRules {
    let catalog = persodesk::catalog::load_products(&root().join("profiles")).expect("products");
    catalog.order_rules()
}

/// A batch: a good JWE order, the order under test (encryptedData = `bad`), a plain order.
fn batch_with(bad: &str) -> Vec<OrderEntry> {
    let (id0, good, _) = case(0);
    let mut first = demo_order(&id0);
    first["encryptedData"] = json!(good);
    let mut second = demo_order("DEMO-MC-0002");
    second["encryptedData"] = json!(bad);
    let third = demo_order("DEMO-VISA-0003");
    let file = json!({"cards": [first, second, third]}).to_string();
    parse_orders(&file, &rules(), &vector_store()).expect("file parses")
}

/// Asserts the rule of a refused order, the other orders valid, and no PAN in any output.
fn assert_refused(bad: &str, rule: &str) {
    let entries = batch_with(bad);
    assert_eq!(entries.len(), 3);
    assert!(entries[0].outcome.is_ok(), "{:?}", entries[0].outcome);
    assert!(entries[2].outcome.is_ok(), "{:?}", entries[2].outcome);
    let errors = entries[1].outcome.as_ref().expect_err("refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "encryptedData");
    assert!(
        errors[0].rule.contains(rule),
        "rule {:?} should contain {rule:?}",
        errors[0].rule
    );
    // Nothing of the refused order is kept: no PAN, masked or not.
    assert_eq!(entries[1].masked_pan, None);
    assert_eq!(entries[1].id, "DEMO-MC-0002");
    let shown = format!("{entries:?} {}", errors[0]);
    for pan in pans() {
        assert!(!shown.contains(&pan), "a PAN shows in {shown}");
    }
}

/// The vector JWE of case 1 (DEMO-MC-0002) split into its five parts.
fn parts() -> Vec<String> {
    case(1).1.split('.').map(str::to_string).collect()
}

fn header() -> serde_json::Map<String, Value> {
    let bytes = Base64UrlUnpadded::decode_vec(&parts()[0]).expect("b64");
    serde_json::from_slice(&bytes).expect("header")
}

/// The vector with its protected header replaced (the tag no longer matches, but every header
/// rule is checked before the key agreement and the tag).
fn with_header(h: &serde_json::Map<String, Value>) -> String {
    let mut p = parts();
    p[0] = Base64UrlUnpadded::encode_string(Value::Object(h.clone()).to_string().as_bytes());
    p.join(".")
}

// RFC 7518 Appendix C: Z = ECDH(Bob's private key, Alice's ephemeral public key), and the Concat
// KDF of Z with AlgorithmID "A128GCM", PartyUInfo "Alice", PartyVInfo "Bob", 128 bits.
// The keys are the appendix's JWKs (base64url) in hex; Z and the key are the published values.
const RFC_BOB_D: &str = "5449836690D75CAF29F0DD029DDB31B3DDB8ABA9D2D515C5012465E817D4A9DC";
const RFC_BOB_PUBLIC: &str = "04C1E349CB61EC70248CE801034C3834E1B88EBE1161CB25AF38741F785FCFC4C47BC96708EF80952B53F8D2555FE72B841ED04588628B1D378A594939500EC9C9";
const RFC_ALICE_EPK: &str = "04808D060082C176EED3E776A4AC598CC8672C1779F974EECC9B03411CA5B9495D48B5BFC527DFCE53D6AC7115237D031CCFF87A0570B77350A9E503EE7305A69B";
const RFC_Z: &str = "9E56D91D817135D372834283BF84269CFB316EA3DA806A48F6DAA7798CFE90C4";
/// "VqqN6vgjbSBcIijNcacQGg" in the appendix.
const RFC_KEY: &str = "56AA8DEAF8236D205C2228CD71A7101A";

#[test]
fn rfc7518_appendix_c_concat_kdf_gives_the_published_key() {
    let z = hex::decode(RFC_Z).expect("hex");
    let mut key = [0u8; 16];
    jwe::concat_kdf(&z, "A128GCM", b"Alice", b"Bob", &mut key);
    assert_eq!(hex::encode_upper(key), RFC_KEY);
    assert_eq!(
        Base64UrlUnpadded::encode_string(&key),
        "VqqN6vgjbSBcIijNcacQGg"
    );
}

#[test]
fn rfc7518_appendix_c_key_agreement_in_the_store_gives_the_published_z() {
    let toml = jwe_entry("bob", RFC_BOB_D, RFC_BOB_PUBLIC);
    let store = SoftwareKeyStore::from_toml("rfc", &toml).expect("loads");
    let epk = P256Point::from_sec1(&hex::decode(RFC_ALICE_EPK).expect("hex")).expect("point");
    let z = store.jwe_agree("bob", &epk).expect("agreement");
    assert_eq!(hex::encode_upper(z.expose()), RFC_Z);
}

#[test]
fn jwcrypto_vectors_decrypt_to_the_expected_plaintext() {
    let store = vector_store();
    let cases = vectors()["cases"].as_array().expect("cases").len();
    assert_eq!(cases, 4);
    for i in 0..cases {
        let (id, compact, plain) = case(i);
        let opened = jwe::open(&compact, &store).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(opened.as_slice(), plain.as_bytes(), "{id}");
    }
}

#[test]
fn jwcrypto_vector_with_apu_apv_needs_them_in_the_kdf() {
    // Case 3 carries apu/apv: dropping them from the header changes the AAD as well, so check the
    // KDF directly: the same Z with and without PartyUInfo/PartyVInfo gives different keys.
    let h = {
        let p: Vec<String> = case(3).1.split('.').map(str::to_string).collect();
        let b = Base64UrlUnpadded::decode_vec(&p[0]).expect("b64");
        serde_json::from_slice::<Value>(&b).expect("header")
    };
    assert_eq!(h["apu"], "QnVyZWF1");
    assert_eq!(h["apv"], "SXNzdWVy");
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    jwe::concat_kdf(&[7; 32], "A256GCM", b"Bureau", b"Issuer", &mut a);
    jwe::concat_kdf(&[7; 32], "A256GCM", b"", b"", &mut b);
    assert_ne!(a, b);
}

#[test]
fn jwcrypto_orders_validate_exactly_like_their_plain_twins() {
    let store = vector_store();
    let mut sealed = Vec::new();
    let mut plain = Vec::new();
    for i in 0..4 {
        let (id, compact, _) = case(i);
        let order = demo_order(&id);
        let mut jwe_order = order.clone();
        jwe_order["encryptedData"] = json!(compact);
        sealed.push(jwe_order);
        plain.push(order);
    }
    let rules = rules();
    let a = parse_orders(&json!({ "cards": sealed }).to_string(), &rules, &store).expect("jwe");
    let b = parse_order_file(&json!({ "cards": plain }).to_string(), &rules).expect("plain");
    for (x, y) in a.iter().zip(&b) {
        let (ox, oy) = (
            x.outcome.as_ref().expect("jwe ok"),
            y.outcome.as_ref().expect("ok"),
        );
        assert_eq!(ox.pan.reveal(), oy.pan.reveal());
        assert_eq!(format!("{ox:?}"), format!("{oy:?}"), "{}", x.id);
        assert_eq!(x.masked_pan, y.masked_pan);
        assert_eq!(format!("{:?}", x.warnings), format!("{:?}", y.warnings));
    }
}

#[test]
fn refused_unknown_kid() {
    let mut h = header();
    h.insert("kid".into(), json!("bureau-enc-1999-12"));
    assert_refused(
        &with_header(&h),
        "JWE kid bureau-enc-1999-12 is not in the key store",
    );
}

#[test]
fn refused_without_a_key_store() {
    // parse_order_file has no JWE keys: a JWE order is refused, the plain ones prepared.
    let (id0, good, _) = case(0);
    let mut first = demo_order(&id0);
    first["encryptedData"] = json!(good);
    let file = json!({"cards": [first, demo_order("DEMO-VISA-0003")]}).to_string();
    let entries = parse_order_file(&file, &rules()).expect("parses");
    let errors = entries[0].outcome.as_ref().expect_err("refused");
    assert_eq!(errors[0].path, "encryptedData");
    assert!(
        errors[0].rule.contains("no key store was given"),
        "{errors:?}"
    );
    assert!(entries[1].outcome.is_ok());
}

#[test]
fn refused_other_alg() {
    for alg in ["ECDH-ES+A256KW", "RSA-OAEP-256", "dir", "none"] {
        let mut h = header();
        h.insert("alg".into(), json!(alg));
        assert_refused(&with_header(&h), "JWE alg must be \"ECDH-ES\"");
    }
    let mut h = header();
    h.remove("alg");
    assert_refused(&with_header(&h), "JWE alg must be \"ECDH-ES\"");
}

#[test]
fn refused_other_enc() {
    for enc in ["A128GCM", "A256CBC-HS512", "A192GCM"] {
        let mut h = header();
        h.insert("enc".into(), json!(enc));
        assert_refused(&with_header(&h), "JWE enc must be \"A256GCM\"");
    }
}

#[test]
fn refused_zip_header() {
    let mut h = header();
    h.insert("zip".into(), json!("DEF"));
    assert_refused(&with_header(&h), "JWE header zip is refused");
}

#[test]
fn refused_crit_header() {
    let mut h = header();
    h.insert("crit".into(), json!(["exp"]));
    h.insert("exp".into(), json!(1_900_000_000));
    assert_refused(&with_header(&h), "JWE header crit is refused");
}

#[test]
fn refused_epk_not_on_p256_before_the_key_agreement() {
    // The low bit of y flipped: (x, y') is not on the curve. The kid is unknown as well: the epk rule must
    // come first, so the point never reaches the key store.
    let mut h = header();
    let y = h["epk"]["y"].as_str().expect("y").to_string();
    let mut yb = Base64UrlUnpadded::decode_vec(&y).expect("b64");
    yb[31] ^= 1;
    let mut epk = h["epk"].clone();
    epk["y"] = json!(Base64UrlUnpadded::encode_string(&yb));
    h.insert("epk".into(), epk.clone());
    h.insert("kid".into(), json!("no-such-kid"));
    assert_refused(&with_header(&h), "JWE epk: not a valid P-256 public key");
    // Coordinates out of range (x = p) and the all-zero point.
    let p = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";
    epk["x"] = json!(Base64UrlUnpadded::encode_string(
        &hex::decode(p).expect("hex")
    ));
    h.insert("epk".into(), epk.clone());
    assert_refused(&with_header(&h), "JWE epk: not a valid P-256 public key");
    epk["x"] = json!(Base64UrlUnpadded::encode_string(&[0; 32]));
    epk["y"] = json!(Base64UrlUnpadded::encode_string(&[0; 32]));
    h.insert("epk".into(), epk.clone());
    assert_refused(&with_header(&h), "JWE epk: not a valid P-256 public key");
    // Another curve, a missing epk.
    epk["crv"] = json!("P-384");
    h.insert("epk".into(), epk);
    assert_refused(&with_header(&h), "JWE epk: crv must be \"P-256\"");
    h.remove("epk");
    assert_refused(&with_header(&h), "JWE epk: is required");
}

#[test]
fn refused_wrong_number_of_parts() {
    let p = parts();
    assert_refused(&p[..4].join("."), "JWE compact form must have 5 parts");
    assert_refused(
        &format!("{}.{}", p.join("."), p[4]),
        "JWE compact form must have 5 parts",
    );
    assert_refused("", "JWE compact form must have 5 parts");
}

#[test]
fn refused_bad_base64url() {
    let mut p = parts();
    p[2].push('=');
    assert_refused(&p.join("."), "JWE IV is not base64url");
    let mut p = parts();
    p[3] = p[3].replace(['-', '_'], "+");
    p[3].insert(0, '+');
    assert_refused(&p.join("."), "JWE ciphertext is not base64url");
    let mut p = parts();
    p[0].insert(0, '*');
    assert_refused(&p.join("."), "JWE protected header is not base64url");
}

#[test]
fn refused_non_empty_encrypted_key() {
    let mut p = parts();
    p[1] = Base64UrlUnpadded::encode_string(&[0x42; 40]);
    assert_refused(&p.join("."), "JWE encrypted key must be empty");
}

#[test]
fn refused_failed_tag_with_one_message_for_every_decryption_failure() {
    let flip = |i: usize| {
        let mut p = parts();
        let mut b = Base64UrlUnpadded::decode_vec(&p[i]).expect("b64");
        b[0] ^= 0x01;
        p[i] = Base64UrlUnpadded::encode_string(&b);
        p.join(".")
    };
    // An altered tag, ciphertext or IV; an added header field (changes the AAD).
    let mut h = header();
    h.insert("cty".into(), json!("application/json"));
    let mut altered = vec![flip(4), flip(3), flip(2), with_header(&h)];
    // The right kid, another key: sealed for a point that is not the store's key.
    let other = p256::SecretKey::from_slice(&[0x11; 32]).expect("scalar");
    let random = SealRandom {
        ephemeral: Zeroizing::new([0x22; 32]),
        iv: [0x33; 12],
    };
    let plain = case(1).2;
    let compact = jwe::seal(
        plain.as_bytes(),
        "vector-bureau-enc-01",
        &P256Point::from(other.public_key()),
        &random,
    )
    .expect("sealed");
    altered.push(compact);
    for bad in &altered {
        assert_refused(bad, DECRYPT_RULE);
        let errors = batch_with(bad)[1]
            .outcome
            .as_ref()
            .expect_err("refused")
            .clone();
        assert_eq!(errors[0].rule, DECRYPT_RULE, "one message, no oracle");
    }
}

#[test]
fn refused_plaintext_not_a_json_object() {
    let refused = vectors()["refused"].as_array().expect("refused").clone();
    assert_eq!(refused.len(), 2);
    assert_refused(
        refused[0]["jwe"].as_str().expect("jwe"),
        "JWE plaintext is not a JSON object",
    );
    assert_refused(
        refused[1]["jwe"].as_str().expect("jwe"),
        "JWE plaintext is not JSON",
    );
}

#[test]
fn refused_short_iv_and_tag() {
    let mut p = parts();
    p[2] = Base64UrlUnpadded::encode_string(&[0; 8]);
    assert_refused(&p.join("."), "JWE IV must be 96 bits");
    let mut p = parts();
    p[4] = Base64UrlUnpadded::encode_string(&[0; 12]);
    assert_refused(&p.join("."), "JWE tag must be 128 bits");
}

#[test]
fn seal_opens_with_the_store_and_other_random_gives_other_ciphertext() {
    let store = vector_store();
    let point = store
        .jwe_public("vector-bureau-enc-01")
        .expect("public")
        .point;
    let r = |b: u8| SealRandom {
        ephemeral: Zeroizing::new([b; 32]),
        iv: [b; 12],
    };
    let a = jwe::seal(b"{\"pan\":\"x\"}", "vector-bureau-enc-01", &point, &r(1)).expect("a");
    let b = jwe::seal(b"{\"pan\":\"x\"}", "vector-bureau-enc-01", &point, &r(2)).expect("b");
    assert_ne!(a, b);
    assert_eq!(
        jwe::open(&a, &store).expect("opens").as_slice(),
        b"{\"pan\":\"x\"}"
    );
    // A scalar of zero is not a key: seal asks for another draw.
    assert!(jwe::seal(b"{}", "k", &point, &r(0)).is_none());
}

#[test]
fn store_checks_the_public_point_against_the_value_and_redacts_it() {
    let k = &vectors()["key"];
    let (value, public) = (
        k["value"].as_str().expect("v"),
        k["public"].as_str().expect("p"),
    );
    let store = vector_store();
    let info = store.list();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].key.usage, KeyUsage::Jwe);
    assert!(info[0].test);
    assert_eq!(store.info(info[0].key).expect("info").kcv, info[0].kcv);
    let debug = format!("{store:?}");
    assert!(!debug.contains(value), "the private value shows in Debug");

    let err = |toml: &str| {
        SoftwareKeyStore::from_toml("k", toml)
            .expect_err("refused")
            .to_string()
    };
    let wrong_public = jwe_entry("k1", value, RFC_BOB_PUBLIC);
    assert!(err(&wrong_public).contains("key[1].public: does not match the private value"));
    let short = jwe_entry("k1", &value[..62], public);
    assert!(err(&short).contains("key[1].value: must be 64 hex digits"));
    let zero = jwe_entry("k1", &"0".repeat(64), public);
    assert!(err(&zero).contains("is not a valid P-256 private scalar"));
    let off_curve = jwe_entry("k1", value, &format!("{}00", &public[..128]));
    assert!(err(&off_curve).contains("key[1].public: must be 04 || X || Y"));
    let twice = format!(
        "{}\n{}",
        jwe_entry("k1", value, public),
        jwe_entry("k1", value, public)
    );
    assert!(err(&twice).contains("k1 is defined twice"));
    let rsa_alg = jwe_entry("k1", value, public).replace("ec-p256", "rsa");
    assert!(err(&rsa_alg).contains("must be ec-p256"));
    for e in [wrong_public, short, zero, off_curve, twice, rsa_alg] {
        assert!(!err(&e).contains(value), "a key value shows in an error");
    }
}

// --- The command line ---------------------------------------------------------------------

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("persodesk-jwe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prepare_json(file: &str) -> Vec<Value> {
    let o = persodesk_env(
        &[
            "prepare", file, "--json", "--model", "none", "--date", "250115",
        ],
        support::NO_ENV,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn cli_prepare_json_of_the_shipped_jwe_file_equals_the_plain_file() {
    let a = prepare_json("assets/demo/orders-jwe.json");
    let b = prepare_json("assets/demo/orders.json");
    assert_eq!(a.len(), 6);
    assert_eq!(a, b);
    // The shipped file is really sealed: no clear encryptedData in it.
    let shipped = std::fs::read_to_string(root().join("assets/demo/orders-jwe.json")).expect("f");
    let v: Value = serde_json::from_str(&shipped).expect("json");
    for c in v["cards"].as_array().expect("cards") {
        assert!(c["encryptedData"].is_string());
        // trackData travels outside encryptedData in the API (in clear here, as in orders.json).
        let mut rest = c.clone();
        rest.as_object_mut().expect("order").remove("trackData");
        for pan in pans() {
            assert!(!rest.to_string().contains(&pan));
        }
    }
}

#[test]
fn cli_jwe_new_then_seal_then_prepare_equals_plain() {
    let dir = TempDir::new("new");
    let keys = dir.0.join("keys.toml");
    let demo = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("demo keys");
    std::fs::write(&keys, demo).expect("copy");
    let keys_s = keys.to_str().expect("utf-8");
    let o = persodesk_env(
        &["keys", "jwe-new", "--kid", "t-1", "--keys", keys_s],
        support::NO_ENV,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let jwk: Value = serde_json::from_str(text(&o.stdout).trim()).expect("jwk");
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["kid"], "t-1");
    assert!(jwk.get("d").is_none(), "only the public part is printed");
    // The printed JWK is the stored key's public point.
    let store = SoftwareKeyStore::load(&keys).expect("store loads");
    let point = store.jwe_public("t-1").expect("kid").point;
    assert_eq!(point.jwk(Some("t-1")), jwk);
    // A second key with the same kid is refused.
    let again = persodesk_env(
        &["keys", "jwe-new", "--kid", "t-1", "--keys", keys_s],
        support::NO_ENV,
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("jwe kid t-1 exists already"));

    let out = dir.0.join("orders-jwe.json");
    let o = persodesk_env(
        &[
            "jwe",
            "seal",
            "assets/demo/orders.json",
            "--kid",
            "t-1",
            "--keys",
            keys_s,
            "--out",
            out.to_str().expect("utf-8"),
        ],
        support::NO_ENV,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("sealed 6 order(s)"));
    let out_s = out.to_str().expect("utf-8");
    let args = |f: &str| {
        let o = persodesk_env(
            &[
                "prepare", f, "--json", "--model", "none", "--date", "250115", "--keys", keys_s,
            ],
            support::NO_ENV,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    assert_eq!(args(out_s), args("assets/demo/orders.json"));
    // Without the key (the demo store lacks t-1): every order refused, exit 1, no PAN shown.
    let o = persodesk_env(
        &["validate", out_s, "--keys", "assets/demo/keys.toml"],
        support::NO_ENV,
    );
    assert_eq!(o.status.code(), Some(1));
    let shown = text(&o.stdout) + &text(&o.stderr);
    assert!(
        shown.contains("JWE kid t-1 is not in the key store"),
        "{shown}"
    );
    for pan in pans() {
        assert!(!shown.contains(&pan));
    }
}

#[test]
fn cli_jwe_seal_is_refused_in_production_mode() {
    let dir = TempDir::new("prod");
    let config = dir.0.join("persodesk.toml");
    // A complete production configuration (keys, profiles, roles), so the refusal is jwe seal's.
    std::fs::write(
        &config,
        "mode = \"production\"\nkeys = \"assets/demo/keys.toml\"\nprofiles = \"profiles\"\n[roles]\noperator = []\n",
    )
    .expect("config");
    let o = persodesk_env(
        &[
            "jwe",
            "seal",
            "assets/demo/orders.json",
            "--kid",
            "demo-bureau-enc-01",
        ],
        &[("PERSODESK_CONFIG", &config)],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("jwe seal refused: this workstation runs in production mode"));
    assert!(o.stdout.is_empty());
}

#[test]
fn cli_jwe_seal_refuses_an_unknown_kid() {
    let o = persodesk_env(
        &["jwe", "seal", "assets/demo/orders.json", "--kid", "nope"],
        support::NO_ENV,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("kid nope is not in the key store"));
    assert!(o.stdout.is_empty());
}

// --- The window's loader ------------------------------------------------------------------

/// Loads a file through the window's preparation worker (embedded demo products and keys).
fn window_load(file: &str) -> Vec<persodesk::gui::worker::OrderRow> {
    use persodesk::gui::worker::{OrderSource, PrepContext, PrepJob, PrepMsg, Waker, spawn};
    let ctx = PrepContext {
        catalog: persodesk::gui::demo_catalog().expect("catalog"),
        profiles: persodesk::gui::demo_chip_profiles().expect("profiles"),
        keys: std::sync::Arc::new(persodesk::gui::demo_keys().expect("demo keys")),
        key_pool: false,
        store: None,
    };
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let worker = spawn(ctx, jobs_rx, out_tx, Waker::default()).expect("worker");
    jobs_tx
        .send(PrepJob::Load {
            generation: 1,
            source: OrderSource::File(root().join(file)),
        })
        .expect("send");
    let rows = loop {
        match out_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("worker answers")
        {
            PrepMsg::Loaded { rows, .. } => break rows,
            PrepMsg::LoadFailed { error, .. } => panic!("load failed: {error}"),
            _ => {}
        }
    };
    drop(jobs_tx);
    worker.join().expect("worker ends");
    rows
}

#[test]
fn window_loads_the_shipped_jwe_file_like_the_plain_one() {
    let jwe_rows = window_load("assets/demo/orders-jwe.json");
    let plain_rows = window_load("assets/demo/orders.json");
    assert_eq!(jwe_rows.len(), 6);
    for (a, b) in jwe_rows.iter().zip(&plain_rows) {
        assert_eq!(a.id, b.id);
        assert_eq!(a.masked_pan, b.masked_pan);
        assert_eq!(a.status, b.status, "{}", a.id);
        assert_eq!(format!("{:?}", a.errors), format!("{:?}", b.errors));
        assert!(a.errors.is_empty(), "{}: {:?}", a.id, a.errors);
    }
}
