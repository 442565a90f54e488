//! Chip profiles as data: the three shipped profiles load, their AFLs follow their records, and
//! bad profiles fail at load with the file and the key named.

use std::path::Path;

use persodesk::domain::chip::profile::{ChipProfile, Interface, OdaMethod};

fn shipped() -> persodesk::domain::chip::ChipProfiles {
    persodesk::catalog::load_chip_profiles(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("profiles")
            .as_path(),
    )
    .expect("shipped chip profiles load")
}

#[test]
fn the_three_profiles_load() {
    let p = shipped();
    let names: Vec<&str> = p.profiles().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mchip-advance-1.2.3",
            "vis-1.5.4-vcps-2.1.3",
            "vis-1.6.3-vcps-2.2.4"
        ]
    );
    let visa = p.get("vis-1.6.3-vcps-2.2.4").expect("visa");
    assert_eq!(visa.aid, hex::decode("A0000000031010").expect("hex"));
    assert_eq!(visa.oda.method, OdaMethod::Dda);
    // Records 0101, 0201-0203, 0205 without ODA; 0301-0302 with ODA (docs/domain.md §1.4
    // format). 0203 holds the contact ICC certificate, 0204 the contactless one: each AFL
    // lists only its own. 0206 (9F6E, out of the fDDA GPO answer) is contactless only.
    assert_eq!(
        hex::encode_upper(visa.afl(Interface::Contact)),
        "08010100100103001005050018010202"
    );
    assert_eq!(
        hex::encode_upper(visa.afl(Interface::Contactless)),
        "08010100100102001004060018010202"
    );
    let rule = visa.dgi_rule(0x8201).expect("8201");
    assert!(rule.encrypt && rule.pad);
    let rule = visa.dgi_rule(0x8000).expect("8000");
    assert!(rule.encrypt && !rule.pad);
    assert!(visa.required_dgis().any(|d| d == 0x8010));
    assert!(visa.is_reserved(0x7FF0) && !visa.is_reserved(0x7FFF));
    let us = p.get("vis-1.5.4-vcps-2.1.3").expect("us");
    assert_eq!(us.oda.method, OdaMethod::Sda);
    assert!(!us.required_dgis().any(|d| d == 0x8010));
    let mc = p.get("mchip-advance-1.2.3").expect("mc");
    assert_eq!(mc.send_order().last(), Some(0xAD14));
    // No contactless mag-stripe record (0101, 56/9F6B) any more: both AFLs start at SFI 2
    // (records 1-2 for ODA) and differ in their own ICC certificate record (0303 / 0304).
    assert_eq!(
        hex::encode_upper(&mc.afl(Interface::Contact)[..4]),
        "10010302"
    );
    assert_eq!(
        hex::encode_upper(&mc.afl(Interface::Contactless)[..4]),
        "10010302"
    );
    assert_ne!(mc.afl(Interface::Contact), mc.afl(Interface::Contactless));
}

fn load(text: &str) -> Result<ChipProfile, String> {
    ChipProfile::from_toml("t.toml", "t", text).map_err(|f| f.to_string())
}

const BASE: &str = r#"
aid = "A0000000031010"
label = "X"
cvn = "visa-cvn18"
mkd = "b"
aip = { contact = "3C00" }
send_order = ["0101"]
[dgi.0101]
tags = ["5A", "5F24"]
"#;

/// Loading `text` fails, and the error says each of `says` (file and key, then the rule).
fn refused(text: &str, says: &[&str]) {
    let e = load(text).expect_err(&format!("refused: {says:?}"));
    for s in says {
        assert!(e.contains(s), "{s:?} not in: {e}");
    }
}

#[test]
fn bad_profiles_name_file_and_key() {
    assert!(load(BASE).is_ok());
    refused(
        &BASE.replace("\"5F24\"", "\"5F24\", \"8E\""),
        &["t.toml: dgi.0101", "tag 8E", "nothing fills it"],
    );
    // Optional with ?.
    assert!(load(&BASE.replace("\"5F24\"", "\"5F24\", \"8E?\"")).is_ok());
    refused(
        &BASE.replace("\"5F24\"", "\"5F24\", \"90\""),
        &["needs an oda.method"],
    );
    refused(
        &BASE.replace(
            "send_order = [\"0101\"]",
            "send_order = [\"0101\", \"8000\"]",
        ),
        &["t.toml: send_order", "DGI 8000 has no"],
    );
    refused(
        &format!("{BASE}\n[dgi.7FF0]\nvalue = \"00\""),
        &["dgi.7FF0"],
    );
    refused(
        &BASE.replace(
            "send_order = [\"0101\"]",
            "send_order = [\"0101\", \"7FF0\"]\n[dgi.7FF0]\nvalue = \"00\"",
        ),
        &["reserved"],
    );
    refused(
        &BASE.replace("cvn = \"visa-cvn18\"", "cvn = \"visa-cvn99\""),
        &["t.toml: cvn"],
    );
    // 9F10 is built from the CVN and the order's derivationKeyIndex, not copied.
    refused(
        &format!("{BASE}\n[tags]\n\"9F10\" = \"06010A03A00000\""),
        &["tags.9F10", "[iad]"],
    );
    refused(
        &format!("{BASE}\n[iad]\ncvr = \"00\""),
        &["t.toml: iad.cvr"],
    );
    refused(&format!("{BASE}\n[tags]\n\"57\" = \"00\""), &["tags.57"]);
    refused(
        &format!("{BASE}\n[oda]\nmethod = \"dda\""),
        &["oda.icc_key_bits"],
    );
    refused(
        &format!("bogus = 1\n{BASE}"),
        &["t.toml: bogus", "unknown key"],
    );
    refused("not toml [", &["not valid TOML"]);
}

/// ODA per interface at load (EMV Book 3 §10.3): every GPO answer whose AIP asks for ODA reads
/// exactly one signature and the certificate chain from the records its AFL lists.
#[test]
fn oda_layout_rules_at_load() {
    let oda = r#"
aid = "A0000000031010"
label = "X"
cvn = "visa-cvn18"
mkd = "b"
aip = { contact = "3C00", contactless = "2020" }
send_order = ["0201", "0202", "0203", "0301", "9104", "9117", "8201", "8202", "8203", "8204", "8205"]
[oda]
method = "dda"
icc_key_bits = 1024
sda_tag_list = "82"
certificates = "per-interface"
[dgi.0201]
tags = ["8F", "90", "9F32", "92?", "9F47", "9F48?"]
[dgi.0202]
tags = ["9F46"]
interfaces = ["contact"]
[dgi.0203]
tags = ["9F46"]
interfaces = ["contactless"]
[dgi.0301]
tags = ["5A", "5F24", "9F4A"]
oda = true
[dgi.9104]
tags = ["82", "94"]
[dgi.9117]
tags = ["82", "94"]
interface = "contactless"
[dgi.8201]
[dgi.8202]
[dgi.8203]
[dgi.8204]
[dgi.8205]
"#;
    let p = load(oda).expect("per-interface layout");
    assert_eq!(p.records_with(0x9F46).len(), 2);
    // Both 9F46 records on both interfaces: each interface reads two.
    refused(
        &oda.replace("interfaces = [\"contactless\"]", ""),
        &["also in DGI 0202"],
    );
    // The contactless answer asks for ODA but no record it reads carries 9F46.
    refused(
        &oda.replace(
            "[dgi.0203]\ntags = [\"9F46\"]",
            "[dgi.0203]\ntags = [\"9F49?\"]",
        ),
        &["t.toml: dgi.9117", "0 times"],
    );
    // "shared" with one certificate per interface is a contradiction.
    refused(
        &oda.replace("\"per-interface\"", "\"shared\""),
        &["t.toml: oda.certificates"],
    );
    // The chain must be readable on every ODA interface.
    refused(
        &oda.replace(
            "[dgi.0201]\ntags",
            "[dgi.0201]\ninterfaces = [\"contact\"]\ntags",
        ),
        &["dgi.9117", "tag 8F"],
    );
}
