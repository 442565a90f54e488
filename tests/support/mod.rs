//! Hand-made card data for the personalization tests (until Model 1 produces it): a Visa-like
//! DGI set with records, FCI, GPO answer, ICC master keys derived from the demo IMKs (option A),
//! KCVs, a reference PIN, and a self-made ODA chain (test CA → issuer → ICC, 1024/896/768 bits).
//!
//! The values here are inputs, not expected answers: every check in the tests recomputes what it
//! expects with an independent path (domain::emv_keys / domain::oda on the host side, the virtual
//! card's own code on the card side).

#![allow(dead_code, unused_imports)]

pub mod demo;
pub mod gui;
pub mod pcsc;
pub mod run;
pub mod softhsm;

pub use run::{persodesk_command, persodesk_input};

use std::sync::OnceLock;

use persodesk::domain::dgi::PersoDgi as Dgi;
use persodesk::domain::emv_keys::{DesKey16, IccMasterKeys, MkdOption};
use persodesk::domain::oda::{
    self, CaPublicKey, CertExpiry, IccCertFields, IssuerCertFields, RsaExponent, RsaKeyPair,
};

/// The demo order's PAN (Luhn-valid), expiry and PSN.
pub const PAN: &str = "4761739001010119";
/// Expiry YYMM.
pub const EXPIRY: &str = "3012";
/// PAN sequence number.
pub const PSN: &str = "01";
/// The demo IMK-AC (assets/demo/keys.toml, imk-ac #1, a test key).
pub const IMK_AC: &str = "0123456789ABCDEFFEDCBA9876543210";
/// The demo IMK-SMI (imk-smi #1, a test key).
pub const IMK_SMI: &str = "1123456789ABCDEFFEDCBA9876543211";
/// The demo IMK-SMC (imk-smc #1, a test key).
pub const IMK_SMC: &str = "2123456789ABCDEFFEDCBA9876543212";
/// The reference PIN.
pub const PIN: &str = "1234";
/// The Visa credit AID.
pub const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10];
/// The test CA's RID and index.
pub const CA_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x00, 0x03];
/// CA index (8F).
pub const CA_INDEX: u8 = 0x99;

/// The test key chain, generated once per test binary.
pub struct Chain {
    /// The test CA.
    pub ca: RsaKeyPair,
    /// The issuer key.
    pub issuer: RsaKeyPair,
    /// The ICC key.
    pub icc: RsaKeyPair,
}

/// The key chain (CA 1024, issuer 896, ICC 768 bits, exponent 3).
pub fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
        let mut make =
            |bits| RsaKeyPair::generate(&mut rng, bits, RsaExponent::Three).expect("rsa");
        Chain {
            ca: make(1024),
            issuer: make(896),
            icc: make(768),
        }
    })
}

/// The test CA public key.
pub fn ca_public() -> CaPublicKey {
    CaPublicKey {
        rid: CA_RID,
        index: CA_INDEX,
        key: chain().ca.public_key().clone(),
    }
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test hex")
}

/// A BER TLV with a 1- or 2-byte tag.
pub fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if tag > 0xFF {
        out.extend_from_slice(&tag.to_be_bytes());
    } else {
        out.push(tag as u8);
    }
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// The ICC master keys (MK-AC, MK-SMI, MK-SMC) of the test card.
pub fn icc_master_keys() -> IccMasterKeys {
    let k = |s: &str| DesKey16::from_slice(&h(s)).expect("key");
    IccMasterKeys::derive(MkdOption::A, &k(IMK_AC), &k(IMK_SMI), &k(IMK_SMC), PAN, PSN).expect("mk")
}

/// AIP: SDA off, DDA supported, cardholder verification, terminal risk management, issuer auth.
pub const AIP: [u8; 2] = [0x3C, 0x00];
/// AFL: SFI 1 records 1-2 (the first one for ODA), SFI 2 records 1-2.
pub const AFL: [u8; 8] = [0x08, 0x01, 0x02, 0x01, 0x10, 0x01, 0x02, 0x00];
/// CDOL1: the minimum terminal data (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37).
pub const CDOL1: &str = "9F02069F03069F1A0295055F2A029A039C019F3704";

/// The records, as the card returns them (template 70).
pub fn records(with_pdol: bool) -> Vec<(u16, Vec<u8>)> {
    let _ = with_pdol;
    let c = chain();
    let track2 = h(&format!("{PAN}D{EXPIRY}2011234567890000F"));
    let rec11 = tlv(
        0x70,
        &[
            tlv(0x57, &track2),
            tlv(0x5F20, b"TEST/CARDHOLDER"),
            tlv(0x9F1F, b"1234567890"),
        ]
        .concat(),
    );
    let rec12 = tlv(
        0x70,
        &[
            tlv(0x5A, &h(PAN)),
            tlv(0x5F24, &h(&format!("{EXPIRY}31"))),
            tlv(0x5F25, &h("240101")),
            tlv(0x5F28, &h("0840")),
            tlv(0x5F34, &h(PSN)),
            tlv(0x8C, &h(CDOL1)),
            tlv(0x8D, &h("8A029F02069F03069F1A0295055F2A029A039C019F3704")),
            tlv(0x8E, &h("000000000000000042031E031F00")),
            tlv(0x9F07, &h("FF00")),
            tlv(0x9F49, &h("9F3704")),
            tlv(0x9F4A, &[0x82]),
        ]
        .concat(),
    );
    // Static data to authenticate: value of record 0101 (the first record of SFI 1) + AIP.
    let static_data = oda::static_data_to_authenticate(
        &AFL,
        |sfi, n| (sfi == 1 && n == 1).then_some(rec11.as_slice()),
        Some(&[0x82]),
        AIP,
    )
    .expect("static data");
    let issuer_cert = oda::sign_issuer_certificate(
        &c.ca,
        &IssuerCertFields {
            issuer_id: oda::issuer_identifier("476173").expect("iid"),
            expiry: CertExpiry::new(12, 30).expect("exp"),
            serial: [0, 0, 1],
        },
        c.issuer.public_key(),
    )
    .expect("issuer cert");
    let icc_cert = oda::sign_icc_certificate(
        &c.issuer,
        &IccCertFields {
            pan: oda::pan_field(PAN).expect("pan"),
            expiry: CertExpiry::new(12, 30).expect("exp"),
            serial: [0, 0, 2],
        },
        c.icc.public_key(),
        &static_data,
    )
    .expect("icc cert");
    let mut rec21 = vec![
        tlv(0x8F, &[CA_INDEX]),
        tlv(0x90, &issuer_cert.certificate),
        tlv(0x9F32, &issuer_cert.exponent),
    ];
    if !issuer_cert.remainder.is_empty() {
        rec21.push(tlv(0x92, &issuer_cert.remainder));
    }
    let mut rec22 = vec![
        tlv(0x9F46, &icc_cert.certificate),
        tlv(0x9F47, &icc_cert.exponent),
    ];
    if !icc_cert.remainder.is_empty() {
        rec22.push(tlv(0x9F48, &icc_cert.remainder));
    }
    vec![
        (0x0101, rec11),
        (0x0102, rec12),
        (0x0201, tlv(0x70, &rec21.concat())),
        (0x0202, tlv(0x70, &rec22.concat())),
    ]
}

/// The DGIs in send order. `aes` pads the 8-byte PIN block to the AES DEK block (SCP03).
pub fn dgis(aes: bool) -> Vec<Dgi> {
    let pdol = false;
    let mk = icc_master_keys();
    let mut out: Vec<Dgi> = records(pdol)
        .into_iter()
        .map(|(id, v)| Dgi::new(id, v, false, false).expect("dgi"))
        .collect();
    let mut a5 = vec![
        tlv(0x50, b"VISA CREDIT"),
        tlv(0x87, &[0x01]),
        tlv(0x5F2D, b"en"),
    ];
    if pdol {
        a5.push(tlv(0x9F38, &h("9F66049F0206")));
    }
    out.push(Dgi::new(0x9102, tlv(0xA5, &a5.concat()), false, false).expect("dgi"));
    out.push(
        Dgi::new(
            0x9104,
            [tlv(0x82, &AIP), tlv(0x94, &AFL)].concat(),
            false,
            false,
        )
        .expect("dgi"),
    );
    let mut keys = Vec::with_capacity(48);
    for k in [&mk.ac, &mk.smi, &mk.smc] {
        keys.extend_from_slice(k.as_bytes());
    }
    out.push(Dgi::new(0x8000, keys, true, false).expect("dgi"));
    out.push(Dgi::new(0x9000, mk.kcvs().expect("kcv").to_vec(), false, false).expect("dgi"));
    out.push(Dgi::new(0x8010, h("241234FFFFFFFFFF"), true, aes).expect("dgi"));
    out.push(Dgi::new(0x9010, vec![0x03, 0x03], false, false).expect("dgi"));
    let crt = chain().icc.crt_components().expect("crt");
    for (id, value) in crt.dgis() {
        out.push(Dgi::new(id, value.expose().to_vec(), true, true).expect("dgi"));
    }
    out
}

/// A blank virtual card of the card stock a chip profile names: its secure channel, the test
/// KMC of the key store and the profile's CVN.
pub fn card_for(
    profile: &persodesk::domain::chip::ChipProfile,
    keys: &persodesk::keys::SoftwareKeyStore,
) -> persodesk::sim::card::VirtualCard {
    use persodesk::sim::card::channel::CardKeySource;
    use persodesk::sim::card::{CardConfig, CardCvn, VirtualCard};
    let rule = &profile.channel;
    let (kmc, _) = keys.test_kmc(rule.kmc_index).expect("test kmc");
    let method = rule.diversification.into();
    let protocol = rule.protocol.into();
    let mut config = CardConfig::new(protocol, CardKeySource::Kmc { kmc, method }, [5, 6, 7, 8]);
    config.cvn = CardCvn::parse(&profile.cvn.to_string()).expect("card CVN");
    VirtualCard::new(config).expect("virtual card")
}

/// A temporary directory with a store path in it, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `tag`, unique per process and call.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "persodesk-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// The store database path inside it.
    pub fn db(&self) -> std::path::PathBuf {
        self.0.join(persodesk::store::DB_FILE)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The repository root: the binary runs from it (the demo paths are relative to it).
pub use demo::root;

/// No extra environment for [`persodesk`].
pub const NO_ENV: &[(&str, &str)] = &[];

/// Runs the `persodesk` binary from the repository root with `args` and the extra environment
/// `envs`; see [`persodesk_env`].
pub fn persodesk(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    persodesk_env(args, envs)
}

/// Runs the `persodesk` binary from the repository root with `args` and the extra environment
/// `envs` ([`persodesk_command`]: `RUST_LOG` removed so log lines do not mix into the output; stdin empty), both outputs
/// captured, with a hard time limit (killed after 60 s).
pub fn persodesk_env<V: AsRef<std::ffi::OsStr>>(
    args: &[&str],
    envs: &[(&str, V)],
) -> std::process::Output {
    use std::io::Read as _;
    use std::time::{Duration, Instant};
    let mut child = persodesk_command(args, envs)
        .spawn()
        .expect("persodesk runs");
    // Drain both pipes while waiting: a child whose output outgrows the pipe buffer would block.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return std::process::Output {
                status,
                stdout: out.join().expect("stdout"),
                stderr: err.join().expect("stderr"),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("persodesk {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The terminal of the read-back tests: unpredictable number `un`, 15 June 2025, amount 10.00,
/// country 0840.
pub fn terminal(un: [u8; 4]) -> persodesk::domain::readback::TerminalData {
    persodesk::domain::readback::TerminalData {
        un,
        date: [0x25, 0x06, 0x15],
        amount: [0, 0, 0, 0, 0x10, 0x00],
        country: [0x08, 0x40],
    }
}
