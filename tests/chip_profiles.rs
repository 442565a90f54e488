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
    // Records 0101, 0201-0203 without ODA; 0301-0302 with ODA (domain reference §1.4 format).
    assert_eq!(
        hex::encode_upper(visa.afl(Interface::Contact)),
        "080101001001030018010202"
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
    // 0101 is contactless only: the contact AFL starts at SFI 2 (records 1-2 for ODA).
    assert_eq!(
        hex::encode_upper(&mc.afl(Interface::Contact)[..4]),
        "10010302"
    );
    assert_eq!(
        hex::encode_upper(&mc.afl(Interface::Contactless)[..4]),
        "08010100"
    );
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

#[test]
fn bad_profiles_name_file_and_key() {
    assert!(load(BASE).is_ok());
    let e = load(&BASE.replace("\"5F24\"", "\"5F24\", \"8E\"")).expect_err("unfillable");
    assert!(
        e.contains("t.toml: dgi.0101") && e.contains("tag 8E") && e.contains("nothing fills it"),
        "{e}"
    );
    // Optional with ?.
    assert!(load(&BASE.replace("\"5F24\"", "\"5F24\", \"8E?\"")).is_ok());
    let e = load(&BASE.replace("\"5F24\"", "\"5F24\", \"90\"")).expect_err("no oda");
    assert!(e.contains("needs an oda.method"), "{e}");
    let e = load(&BASE.replace(
        "send_order = [\"0101\"]",
        "send_order = [\"0101\", \"8000\"]",
    ))
    .expect_err("no table");
    assert!(
        e.contains("t.toml: send_order") && e.contains("DGI 8000 has no"),
        "{e}"
    );
    let e = load(&format!("{BASE}\n[dgi.7FF0]\nvalue = \"00\"")).expect_err("not in order");
    assert!(e.contains("dgi.7FF0"), "{e}");
    let e = load(&BASE.replace(
        "send_order = [\"0101\"]",
        "send_order = [\"0101\", \"7FF0\"]\n[dgi.7FF0]\nvalue = \"00\"",
    ))
    .expect_err("reserved");
    assert!(e.contains("reserved"), "{e}");
    let e = load(&BASE.replace("cvn = \"visa-cvn18\"", "cvn = \"visa-cvn99\"")).expect_err("cvn");
    assert!(e.contains("t.toml: cvn"), "{e}");
    let e = load(&format!("{BASE}\n[tags]\n\"9F10\" = \"06010A03A00000\"")).expect_err("iad cvn");
    assert!(e.contains("tags.9F10") && e.contains("CVN"), "{e}");
    let e = load(&format!("{BASE}\n[tags]\n\"57\" = \"00\"")).expect_err("computed");
    assert!(e.contains("tags.57"), "{e}");
    let e = load(&format!("{BASE}\n[oda]\nmethod = \"dda\"")).expect_err("bits");
    assert!(e.contains("oda.icc_key_bits"), "{e}");
    let e = load(&format!("bogus = 1\n{BASE}")).expect_err("unknown");
    assert!(
        e.contains("t.toml: bogus") && e.contains("unknown key"),
        "{e}"
    );
    let e = load("not toml [").expect_err("syntax");
    assert!(e.contains("not valid TOML"), "{e}");
}
