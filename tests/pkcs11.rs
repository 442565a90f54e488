//! The PKCS#11 key store on SoftHSM2 (Debian `softhsm2`; `.ci/setup` installs it): a token in a
//! temp dir holding the demo keys gives the same tracks, ICC master key KCVs, issuer data and
//! Model 2 DGIs as the software store, and its objects stay sensitive and non-extractable.
//! A token provisioned by another tool (OpenSC's `pkcs11-tool`, an independent PKCS#11 client)
//! works the same; the store's errors name the module, the token, the PIN rule and the label.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process, at `C_Initialize`, so each scenario runs in a
//! child process of this test binary (the `child_*` tests, ignored in a plain run) with the
//! variable pointing at the scenario's own token directory. The tests skip, loudly, only when
//! SoftHSM2 is not installed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use persodesk::domain::chip::keys::{ChipKeys, IccMasterKeyValue};
use persodesk::domain::chip::keys::{IccKeyPair, IccKeySource};
use persodesk::domain::chip::model1::PrepDate;
use persodesk::domain::emv_keys::MkdOption;
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::fields::{Pan, Psn};
use persodesk::domain::gp::SecretKey;
use persodesk::domain::gp::kdf::Diversification;
use persodesk::domain::keystore::{CardDek, CardKeyStore, HeldSecret, KeyRef, KeyStore, KeyUsage};
use persodesk::domain::oda::{OdaError, RsaExponent, RsaKeyPair};
use persodesk::domain::prepare::{CardKeys, ModelChoice, PrepInputs, prepare_card};
use persodesk::keys::KeyStorePort;
use persodesk::keys::LoadedKeys;
use persodesk::keys::pkcs11::{IssuerPublic, Pkcs11KeyStore, ceremony};

mod support;
use support::demo::{self, Demo, root};
use support::softhsm::{self, MODULE, TokenDir};

const PIN: &str = "246810";
const SO_PIN: &str = "13579111";
const TOKEN: &str = "persodesk-demo";

/// Whether SoftHSM2 is installed; says so loudly when it is not.
/// Runs the scenario `children` (in order) of test `test` on a fresh token [`TOKEN`] with its
/// test store file in the directory `dir`; the last child's log, or `None` (loudly) when
/// SoftHSM2 is not installed.
fn token_children(test: &str, dir: &str, children: &[&str]) -> Option<String> {
    if !softhsm_present(test) {
        return None;
    }
    let hsm = Hsm::new(dir);
    hsm.init(TOKEN);
    hsm.store(TOKEN, true, "");
    let mut log = None;
    for child in children {
        log = Some(hsm.run_child(child));
    }
    log
}

fn softhsm_present(test: &str) -> bool {
    softhsm::present(test, "")
}

/// A token directory with its own SoftHSM2 configuration, removed when dropped.
struct Hsm(TokenDir);

impl std::ops::Deref for Hsm {
    type Target = TokenDir;

    fn deref(&self) -> &TokenDir {
        &self.0
    }
}

impl Hsm {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("persodesk-p11-{name}-{}", std::process::id()));
        Hsm(TokenDir::new(dir))
    }

    /// Initialises token `label` with this file's PINs.
    fn init(&self, label: &str) {
        self.0.init_token(label, PIN, SO_PIN);
    }

    /// Runs the ignored test `child` of this binary with SOFTHSM2_CONF set to this directory;
    /// returns its output (stdout and stderr).
    fn run_child(&self, child: &str) -> String {
        let envs: [(&str, &std::ffi::OsStr); 3] = [
            ("PERSODESK_TEST_HSM_DIR", self.dir.as_os_str()),
            ("PERSODESK_TEST_HSM_PIN", PIN.as_ref()),
            ("PERSODESK_TEST_WRONG_PIN", "975310".as_ref()),
        ];
        support::softhsm::run_child(&self.conf, child, &envs)
    }

    /// Writes the store file `<token>.toml` for token `token` into the directory.
    fn store(&self, token: &str, test: bool, extra: &str) -> PathBuf {
        let file = format!("{token}.toml");
        self.0
            .store_file(&file, token, "PERSODESK_TEST_HSM_PIN", test, extra)
    }
}

impl Drop for Hsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// In a child: the scenario's directory.
fn child_dir() -> Option<PathBuf> {
    std::env::var_os("PERSODESK_TEST_HSM_DIR").map(PathBuf::from)
}

/// The primes p and q of one ICC key pair, by (bits, exponent).
type Primes = HashMap<(usize, u32), (Vec<u8>, Vec<u8>)>;

/// The same ICC key pairs for both stores (generated once per size, rebuilt from the primes).
#[derive(Default)]
struct FixedIccKeys {
    primes: Mutex<Primes>,
}

impl IccKeySource for FixedIccKeys {
    fn icc_key_pair(&self, bits: usize, exponent: RsaExponent) -> Result<IccKeyPair, OdaError> {
        let mut primes = self.primes.lock().expect("lock");
        let entry = match primes.get(&(bits, exponent.value())) {
            Some(e) => e.clone(),
            None => {
                let pair = persodesk::keys::pool::generate(bits, exponent)?;
                let crt = pair.crt_components()?;
                let e = (crt.p.expose().to_vec(), crt.q.expose().to_vec());
                primes.insert((bits, exponent.value()), e.clone());
                e
            }
        };
        Ok(IccKeyPair {
            pair: RsaKeyPair::from_primes(&entry.0, &entry.1, exponent)?,
            from_pool: false,
        })
    }
}

/// The demo assets with the orders of both demo files (Model 1 and Model 2).
fn demo() -> Demo {
    let mut d = demo::demo();
    d.orders
        .extend(demo::orders(&d.catalog, demo::ORDERS_MODEL2));
    d
}

/// Everything a preparation yields that must not depend on the store: tracks, DGIs (id and
/// value, hex), KCVs, ODA summary. One line per item.
fn prepared(
    demo: &Demo,
    keys: &dyn KeyStorePort,
    icc: &FixedIccKeys,
    choice: ModelChoice,
) -> Vec<String> {
    let keys_port = keys;
    let keys: &dyn CardKeys = keys;
    let date = PrepDate {
        yy: 25,
        mm: 1,
        dd: 15,
    };
    let inputs = PrepInputs {
        profiles: &demo.profiles,
        date,
        keys,
        icc_keys: icc,
        envelope: EnvelopeSettings::default(),
    };
    let mut out = Vec::new();
    for order in &demo.orders {
        let product = demo.catalog.get(&order.card_product_id).expect("product");
        let id = &order.id;
        match prepare_card(order, product, choice, &inputs) {
            Err(e) => out.push(format!("{id}: error {e:?}")),
            Ok(data) => {
                for t in [
                    &data.tracks.track1,
                    &data.tracks.track2,
                    &data.tracks.track3,
                ]
                .into_iter()
                .flatten()
                {
                    out.push(format!("{id}: track {}", t.reveal()));
                }
                if let Some(chip) = &data.chip {
                    out.push(format!("{id}: model {:?} kcvs {:?}", chip.model, chip.kcvs));
                    out.push(format!("{id}: oda {:?}", chip.oda));
                    for d in &chip.dgis {
                        let mut v = hex::encode_upper(d.dgi.value());
                        if chip.pin_generated && d.dgi.id() == 0x8010 {
                            // A PIN drawn at random: only its control and length nibbles
                            // compare (a held block's, decrypted from what the card receives).
                            let clear = reference_pin_block_as_received(keys_port, d);
                            v = format!("{}.. (random PIN)", &clear[..2]);
                        } else if matches!(d.dgi.id(), 0x8000 | 0x8010) {
                            v = dgi_8000_as_sent(keys_port, d);
                        }
                        out.push(format!("{id}: dgi {:04X} {v}", d.dgi.id()));
                    }
                }
            }
        }
    }
    out
}

/// A fixed SCP03 static DEK (AES-128) and SCP02 session DEK (TDES) for comparing DGI 8000 as
/// the card receives it.
fn test_deks() -> (SecretKey, SecretKey) {
    let key = |h: &str| SecretKey::new(&hex::decode(h).expect("hex")).expect("test DEK");
    let aes = key("404142434445464748494A4B4C4D4E4F");
    let des = key("0123456789ABCDEFFEDCBA9876543210");
    (aes, des)
}

/// A sensitive DGI (8000, 8010) as the card would receive it under the test DEKs (SCP03,
/// SCP02): a held value is encrypted by the store (the token wraps or translates it), a clear
/// one padded as the profile says and encrypted as the GP session does. A length the cipher
/// refuses (an unpadded 8-byte 8010 under AES) compares as `refused` from both stores.
fn dgi_8000_as_sent(keys: &dyn KeyStorePort, d: &persodesk::domain::dgi::PersoDgi) -> String {
    let (aes, des) = test_deks();
    let deks = [CardDek::Scp03Static(&aes), CardDek::Scp02Session(&des)];
    let sent: Vec<String> = deks
        .into_iter()
        .map(|dek| {
            let block = if matches!(dek, CardDek::Scp03Static(_)) {
                16
            } else {
                8
            };
            dgi_sent(keys, d, dek, block).map_or("refused".into(), hex::encode_upper)
        })
        .collect();
    format!("sent {}", sent.join(" / "))
}

fn dgi_sent(
    keys: &dyn KeyStorePort,
    d: &persodesk::domain::dgi::PersoDgi,
    dek: CardDek<'_>,
    block: usize,
) -> Option<Vec<u8>> {
    match &d.held {
        Some(h) => keys.held_secret_for_card(h, dek).ok().map(|v| v.to_vec()),
        None => {
            let mut v = d.dgi.value().to_vec();
            if d.pad {
                persodesk::domain::crypto::pad_iso7816(&mut v, block);
            }
            dek.encrypt_on_host(&v).ok()
        }
    }
}

/// The clear reference PIN block (hex) the card would receive over SCP02 under the test
/// session DEK: TDES-ECB decrypted here with RustCrypto `des` (not the store's code).
fn reference_pin_block_as_received(
    keys: &dyn KeyStorePort,
    d: &persodesk::domain::dgi::PersoDgi,
) -> String {
    use des::cipher::{BlockCipherDecrypt, KeyInit};
    let (_, des_key) = test_deks();
    let mut sent = dgi_sent(keys, d, CardDek::Scp02Session(&des_key), 8).expect("8010 sent");
    let c = des::TdesEde2::new_from_slice(des_key.as_bytes()).expect("TDES key");
    for b in sent.chunks_exact_mut(8) {
        let mut block: [u8; 8] = (&*b).try_into().expect("8 bytes");
        c.decrypt_block((&mut block).into());
        b.copy_from_slice(&block);
    }
    hex::encode_upper(&sent)
}

/// Same preparation results from both stores for every demo order and model choice; DGI 8000
/// compares as the card receives it, wrapped in the token for SCP03, on the host for SCP02 on
/// this test token (SoftHSM2 has no DES3 wrapping), and the token leaves no session object.
fn assert_same_preparation(p11: &Pkcs11KeyStore) {
    let (wraps0, host0) = p11.held_counts();
    let demo = demo();
    let soft = demo::keys();
    let icc = FixedIccKeys::default();
    let mut chip_lines = 0;
    for choice in [
        ModelChoice::StripeOnly,
        ModelChoice::Auto,
        ModelChoice::Only(persodesk::domain::chip::ChipModel::Model1),
    ] {
        let a = prepared(&demo, &soft, &icc, choice);
        let b = prepared(&demo, p11, &icc, choice);
        assert_eq!(a.len(), b.len(), "{choice:?}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "{choice:?}");
        }
        assert!(
            a.iter().any(|l| l.contains(": track ")),
            "{choice:?}: no track prepared: {a:?}"
        );
        chip_lines += a.iter().filter(|l| l.contains(": dgi 8000")).count();
    }
    assert!(chip_lines > 0, "no DGI 8000 was prepared");
    let (wraps, host) = p11.held_counts();
    assert!(wraps > wraps0, "SCP03 DGI 8000 must come from C_WrapKey");
    assert!(
        host > host0,
        "SCP02 on a test token without DES3 wrap falls back, counted"
    );
    assert_eq!(
        p11.session_key_objects(),
        0,
        "session key objects left on the token"
    );
    let pan = Pan::parse("4761739001010010").expect("pan");
    let set = ChipKeys::icc_master_keys(p11, 1, MkdOption::A, &pan, Psn(1)).expect("mk");
    assert!(
        matches!(set.value, IccMasterKeyValue::Held(_)),
        "the token store must not return clear ICC master keys"
    );
    assert_eq!(
        set.kcvs,
        ChipKeys::icc_master_keys(&soft_keys(), 1, MkdOption::A, &pan, Psn(1))
            .expect("mk")
            .kcvs
    );
    assert_eq!(
        p11.session_key_objects(),
        0,
        "session key objects left on the token"
    );
}

fn soft_keys() -> persodesk::keys::SoftwareKeyStore {
    demo::keys()
}

/// A live token (`test = false`) refuses SCP02 DGI 8000 by mechanism name, since it cannot wrap
/// under a TDES DEK; SCP03 still wraps in the token, with the same bytes as the test token.
fn assert_live_token_refuses_scp02_fallback(test_path: &Path, test: &Pkcs11KeyStore) {
    let text = std::fs::read_to_string(test_path).expect("store file");
    assert!(text.contains("test = true"), "{text}");
    let live_path = test_path.with_file_name("live.toml");
    std::fs::write(&live_path, text.replace("test = true", "test = false")).expect("write");
    let live = open(&live_path);
    let held = HeldSecret::IccMasterKeys {
        derivation_index: 1,
        option: MkdOption::A,
        pan: Pan::parse("4761739001010010").expect("pan"),
        psn: Psn(1),
    };
    let (aes, des) = test_deks();
    let err = live
        .held_secret_for_card(&held, CardDek::Scp02Session(&des))
        .expect_err("a live token without DES3 wrapping must refuse")
        .to_string();
    assert!(
        err.contains("CKM_DES3_ECB") && err.contains("refused on a live token"),
        "{err}"
    );
    let a = live
        .held_secret_for_card(&held, CardDek::Scp03Static(&aes))
        .expect("wraps");
    let b = test
        .held_secret_for_card(&held, CardDek::Scp03Static(&aes))
        .expect("wraps");
    let c = soft_keys()
        .held_secret_for_card(&held, CardDek::Scp03Static(&aes))
        .expect("soft");
    assert_eq!(a, b);
    assert_eq!(
        a, c,
        "the token's C_WrapKey must equal the software AES-CBC"
    );
    assert_eq!(live.held_counts(), (1, 0));
    assert_eq!(live.session_key_objects(), 0);
}

fn assert_all_locked(p11: &Pkcs11KeyStore) {
    let objects = p11.objects();
    assert!(objects.len() > 5, "objects: {}", objects.len());
    for (label, o) in objects {
        assert!(o.sensitive && !o.extractable, "{label} is readable");
    }
}

fn open(store: &Path) -> Pkcs11KeyStore {
    match persodesk::keys::load(store).expect("store loads") {
        LoadedKeys::Pkcs11(p) => *p,
        LoadedKeys::Software(_) => panic!("a [pkcs11] file must load the PKCS#11 store"),
    }
}

#[test]
fn demo_keys_imported_into_softhsm_prepare_like_the_software_store() {
    token_children(
        "demo_keys_imported_into_softhsm_prepare_like_the_software_store",
        "import",
        &["child_import_and_prepare"],
    );
}

/// In a child: the scenario's directory, its store file, and the token opened read-write
/// with the demo keys imported (what `import_software` gave: the keys and the issuers' public
/// halves).
fn child_with_demo_keys() -> (
    PathBuf,
    PathBuf,
    Pkcs11KeyStore,
    (Vec<ceremony::Imported>, Vec<IssuerPublic>),
) {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let path = dir.join(format!("{TOKEN}.toml"));
    let text = std::fs::read_to_string(&path).expect("store file");
    let file = persodesk::keys::pkcs11::StoreFile::parse_text("store", &text).expect("parses");
    let mut rw = Pkcs11KeyStore::open("store", file, true).expect("token opens");
    let imported = ceremony::import_software(&mut rw, &demo::keys()).expect("import");
    (dir, path, rw, imported)
}

#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_import_and_prepare() {
    let (_, path, rw, (done, issuers)) = child_with_demo_keys();
    // Every software KCV was recomputed by the token and compared inside import_software; the
    // demo file's own declared KCVs are the published-convention values.
    // JWE keys stay in the software store (docs/hsm.md).
    // Every key, the JWE key (P-256, ECDH in the token) included.
    assert_eq!(done.len(), demo::keys().list().len());
    assert!(!issuers.is_empty(), "the demo issuer keys");
    drop(rw);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    std::io::Write::write_all(&mut f, ceremony::issuer_toml(&issuers).as_bytes()).expect("write");

    let p11 = open(&path);
    for info in demo::keys()
        .list()
        .into_iter()
        .filter(|i| i.key.usage != KeyUsage::Jwe && i.key.usage != KeyUsage::Audit)
    {
        assert_eq!(
            p11.info(info.key).expect("on token").kcv,
            info.kcv,
            "{}",
            info.key
        );
    }
    assert_same_preparation(&p11);
    assert_card_side_matches(&p11);
    assert_sealing_matches(&p11, &path);
    assert_jwe_matches(&p11);
    assert_job_runs_on_the_token(&p11);
    assert_live_token_refuses_scp02_fallback(&path, &p11);
    assert_eq!(
        p11.session_key_objects(),
        0,
        "session key objects left on the token"
    );
    assert_all_locked(&p11);
}

/// One virtual card behind a connector (the card keeps its state between connections).
struct OneCard(persodesk::sim::card::VirtualCard);

struct Link<'a>(&'a mut persodesk::sim::card::VirtualCard);

impl persodesk::devices::transport::CardTransport for Link<'_> {
    fn transmit_raw(
        &mut self,
        apdu: &[u8],
    ) -> Result<Vec<u8>, persodesk::devices::transport::TransportError> {
        Ok(self.0.process(apdu))
    }
    fn reader_name(&self) -> &str {
        "virtual reader"
    }
}

impl persodesk::job::CardConnector for OneCard {
    fn connect(
        &mut self,
    ) -> Result<
        Box<dyn persodesk::devices::transport::CardTransport + '_>,
        persodesk::devices::transport::TransportError,
    > {
        Ok(Box::new(Link(&mut self.0)))
    }
}

/// `job::run` (what `personalize` and the window run) on the token's port: every demo chip
/// order prepared with the token is personalized on a virtual card of its stock (the card's KMC
/// from the software store: the simulated card is the one place with test keys in clear), the
/// session's card keys diversified in the token, and read back, its ARQC checked with the
/// token's MK-AC: every check passes.
fn assert_job_runs_on_the_token(p11: &Pkcs11KeyStore) {
    use persodesk::job::{CardJob, run};
    let demo = demo();
    let soft = demo::keys();
    let mut cards = 0;
    for order in &demo.orders {
        let product = demo.catalog.get(&order.card_product_id).expect("product");
        let Some(profile) = product
            .chip_profile
            .as_deref()
            .and_then(|n| demo.profiles.get(n))
        else {
            continue;
        };
        let inputs = demo::prep_inputs(&demo.profiles, p11);
        let data = prepare_card(order, product, ModelChoice::Auto, &inputs).expect("prepared");
        let (kmc, _) = soft.test_kmc(profile.channel.kmc_index).expect("test kmc");
        let config =
            persodesk::sim::card::stock::config_for(profile, kmc, [0, 0, 0, 9]).expect("stock");
        let mut reader = OneCard(persodesk::sim::card::VirtualCard::new(config).expect("card"));
        let job = CardJob {
            order,
            data: &data,
            keys: p11,
            chip: Some((profile, profile.channel.clone())),
        };
        let report = run(
            &job,
            Some(&mut reader as &mut dyn persodesk::job::CardConnector),
            None,
            &mut |_| {},
        );
        assert!(
            report.failure.is_none(),
            "{}: {:?}",
            order.card_product_id,
            report.failure.map(|f| f.reason())
        );
        let chip = report.chip.expect("chip outcome");
        assert!(
            chip.read_back
                .iter()
                .any(|l| l.check.starts_with("ARQC (9F26) per") && l.status == "pass"),
            "{}: {:?}",
            order.card_product_id,
            chip.read_back
        );
        assert!(
            chip.read_back.iter().all(|l| l.status != "fail"),
            "{:?}",
            chip.read_back
        );
        cards += 1;
    }
    assert!(cards >= 2, "chip demo orders personalized: {cards}");
}

/// The shipped JWE demo file (ECDH-ES + A256GCM, sealed for the demo `jwe` key) opens with the
/// token's `CKM_ECDH1_DERIVE` exactly as with the software store, and a JWE header naming an
/// unknown kid is refused by name.
fn assert_jwe_matches(p11: &Pkcs11KeyStore) {
    use persodesk::domain::keystore::JweKeys;
    let soft = demo::keys();
    let text = std::fs::read_to_string(root().join("assets/demo/orders-jwe.json")).expect("jwe");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut opened = 0;
    for c in v["cards"].as_array().expect("cards") {
        let compact = c["encryptedData"].as_str().expect("compact JWE");
        let a = persodesk::domain::jwe::open(compact, &soft).expect("software opens");
        let b = persodesk::domain::jwe::open(compact, p11).expect("token opens");
        assert_eq!(a.as_slice(), b.as_slice());
        assert!(b.starts_with(b"{"), "clear encryptedData is a JSON object");
        opened += 1;
    }
    assert_eq!(opened, 6);
    for key in soft.jwe_keys() {
        let on_token = p11.jwe_public(&key.kid).expect("kid on the token");
        assert_eq!(on_token.point, key.point);
    }
    assert!(p11.jwe_public("no-such-kid").is_err());
}

/// The `store` key (AES-256-GCM, `CKM_AES_GCM`) and the `audit` key (HMAC-SHA256,
/// `CKM_SHA256_HMAC` on a generic secret): the token and the software store hold the same
/// values (imported above), so a blob sealed by one opens in the other, and the audit seals are
/// equal to the software store's (the `hmac` crate, an independent implementation).
fn assert_sealing_matches(p11: &Pkcs11KeyStore, path: &Path) {
    use persodesk::domain::keystore::StoreSealKeys;
    let soft = demo::keys();
    let purpose = "queue-order:C-1";
    let data = b"4000000000000002 3012 DOE/JOHN";
    let from_soft = soft.store_seal(purpose, data).expect("software seal");
    let opened = p11.store_open(purpose, &from_soft).expect("token opens");
    assert_eq!(opened.as_slice(), data);
    let from_token = p11.store_seal(purpose, data).expect("token seal");
    assert!(
        !from_token.windows(16).any(|w| w == &data[..16]),
        "clear data in the blob"
    );
    let opened = soft
        .store_open(purpose, &from_token)
        .expect("software opens");
    assert_eq!(opened.as_slice(), data);
    assert_ne!(
        from_token,
        p11.store_seal(purpose, data).expect("seal"),
        "a fresh nonce"
    );
    assert!(
        p11.store_open("queue-order:C-2", &from_token).is_err(),
        "purpose bound"
    );
    let mut altered = from_soft.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(
        p11.store_open(purpose, &altered).is_err(),
        "altered blob opened"
    );
    let loaded = persodesk::keys::load(path).expect("loads");
    assert!(
        loaded.store_seal().is_some(),
        "LoadedKeys::store_seal on a token"
    );

    let token_seal = loaded.audit_sealer().expect("audit/1 on the token");
    let soft_seal = soft.audit_sealer().expect("software audit key");
    for msg in [&b""[..], b"persodesk audit seal v1\0ABCDEF", &[0x5A; 300]] {
        assert_eq!(token_seal.mac(msg), soft_seal.mac(msg));
    }
    assert_eq!(token_seal.key_name(), "audit #1");
    let audit = KeyRef::new(KeyUsage::Audit, 1);
    let value = demo_values()
        .into_iter()
        .find(|(l, _, _)| l == "audit/1")
        .expect("demo audit key")
        .2;
    assert_eq!(
        p11.info(audit).expect("audit").kcv,
        persodesk::keys::pkcs11::hmac_kcv(&value)
    );
}

/// The card-side port: KMC diversification (SCP02 and SCP03 methods), CA keys, MK-AC.
fn assert_card_side_matches(p11: &Pkcs11KeyStore) {
    let soft = demo::keys();
    let kdd = [0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    for info in soft.list().iter().filter(|i| i.key.usage == KeyUsage::Kmc) {
        let methods: &[Diversification] = match info.algorithm {
            persodesk::domain::keystore::KeyAlgorithm::Aes => &[Diversification::Kdf3],
            _ => &[Diversification::EmvCps11, Diversification::Visa2],
        };
        for m in methods {
            // The static keys stay in each store: compare their KCVs and the session keys.
            let mut a = soft
                .open_card_keys(info.key.index, *m, &kdd)
                .expect("software");
            let mut b = p11.open_card_keys(info.key.index, *m, &kdd).expect("token");
            let kcvs =
                |k: &dyn persodesk::domain::keystore::CardKeySet| k.static_kcvs().expect("kcvs");
            assert_eq!(kcvs(a.as_ref()), kcvs(b.as_ref()), "{} {m:?}", info.key);
            if m.is_aes() {
                let (h, c) = ([1; 8], [2; 8]);
                let sa = a.scp03_session(&h, &c).expect("software");
                let sb = b.scp03_session(&h, &c).expect("token");
                assert_eq!(sa.enc.as_bytes(), sb.enc.as_bytes(), "{} {m:?}", info.key);
                assert_eq!(sa.mac.as_bytes(), sb.mac.as_bytes());
                assert_eq!(sa.rmac.as_bytes(), sb.rmac.as_bytes());
            } else {
                let sa = a.scp02_session([0, 7]).expect("software");
                let sb = b.scp02_session([0, 7]).expect("token");
                assert_eq!(sa.enc.as_bytes(), sb.enc.as_bytes(), "{} {m:?}", info.key);
                assert_eq!(sa.c_mac.as_bytes(), sb.c_mac.as_bytes());
                assert_eq!(sa.r_mac.as_bytes(), sb.r_mac.as_bytes());
            }
            let block = [0x5A; 16];
            assert_eq!(
                a.encrypt_sensitive(&block).expect("software"),
                b.encrypt_sensitive(&block).expect("token"),
                "sensitive data under the card's DEK"
            );
        }
    }
    assert_eq!(
        CardKeyStore::ca_public_keys(&soft),
        CardKeyStore::ca_public_keys(p11)
    );
    let pan = Pan::parse("5413330089012345").expect("pan");
    for option in [MkdOption::A, MkdOption::B] {
        let a = soft
            .arqc_master_key(1, option, &pan, Psn(0))
            .expect("software");
        let b = p11.arqc_master_key(1, option, &pan, Psn(0)).expect("token");
        assert_eq!(a.as_bytes(), b.as_bytes());
    }
}

/// Runs `pkcs11-tool` (OpenSC) against the scenario's token.
fn pkcs11_tool(hsm: &Hsm, token: &str, args: &[&str]) {
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args([
            "--module",
            MODULE,
            "--token-label",
            token,
            "--login",
            "--pin",
            PIN,
        ])
        .args(args)
        .output()
        .expect("pkcs11-tool runs");
    assert!(out.status.success(), "pkcs11-tool {args:?}: {out:?}");
}

/// Writes `value` as a secret key object with `pkcs11-tool`: sensitive, not extractable.
/// pkcs11-tool 0.23 creates no CKK_DES/CKK_DES2 objects, so DES keys go in as CKK_DES3 (a 2-key
/// key as K1‖K2‖K1, a single-DES CVK half as K‖K‖K: the same permutation).
fn write_secret(hsm: &Hsm, token: &str, label: &str, key_type: &str, value: &[u8]) {
    let f = hsm.dir.join("value.bin");
    std::fs::write(&f, value).expect("value");
    let f = f.display().to_string();
    // The IMKs derive the ICC master keys in the token (CKA_DERIVE).
    let derive = label.starts_with("imk-");
    let mut args = vec![
        "--write-object",
        &f,
        "--type",
        "secrkey",
        "--key-type",
        key_type,
        "--label",
        label,
        "--sensitive",
        "--usage-decrypt",
        "--usage-sign",
        "--usage-wrap",
    ];
    if derive {
        args.push("--usage-derive");
    }
    pkcs11_tool(hsm, token, &args);
    let _ = std::fs::remove_file(hsm.dir.join("value.bin"));
}

/// Sets `CKA_DERIVE` on the `imk-*` objects with `C_SetAttributeValue` (CKA_DERIVE is
/// modifiable, PKCS#11 2.40 §4.7): `pkcs11-tool` 0.23 sets it on EC keys only (`--usage-derive`),
/// and the IMKs derive the ICC master keys in the token. Done before the store opens the module.
fn allow_imk_derivation(token: &str) {
    set_imk_derive(token, true);
}

/// Sets `CKA_DERIVE` of the `imk-*/1` objects to `derive`.
fn set_imk_derive(token: &str, derive: bool) {
    set_derive(token, &["imk-ac/1", "imk-smi/1", "imk-smc/1"], derive);
}

/// The demo key values, read from the demo file (the test's inputs, not results).
fn demo_values() -> Vec<(String, String, Vec<u8>)> {
    let text = std::fs::read_to_string(root().join("assets/demo/keys.toml")).expect("keys");
    let t: toml::Table = text.parse().expect("toml");
    let mut out = Vec::new();
    for k in t["key"].as_array().expect("keys") {
        // JWE keys (named by kid, not index) are not imported into the token yet.
        let (Some(value), Some(usage), Some(_)) = (k.get("value"), k.get("usage"), k.get("index"))
        else {
            continue;
        };
        let label = format!("{}/{}", usage.as_str().expect("usage"), k["index"]);
        let alg = k["algorithm"].as_str().expect("algorithm").to_string();
        out.push((
            label,
            alg,
            hex::decode(value.as_str().expect("hex")).expect("hex"),
        ));
    }
    out
}

#[test]
fn a_token_provisioned_by_pkcs11_tool_works_like_the_software_store() {
    let name = "a_token_provisioned_by_pkcs11_tool_works_like_the_software_store";
    if !softhsm_present(name) {
        return;
    }
    if Command::new("pkcs11-tool").arg("--help").output().is_err() {
        eprintln!("\n*** SKIPPED {name}: pkcs11-tool (Debian opensc) is not installed ***\n");
        return;
    }
    let hsm = Hsm::new("provisioned");
    hsm.init("provisioned");
    for (label, alg, v) in demo_values() {
        match (alg.as_str(), v.len()) {
            ("aes", n) => write_secret(&hsm, "provisioned", &label, &format!("AES:{n}"), &v),
            ("tdes", 16) if label.starts_with("cvk/") => {
                for (half, part) in [("a", &v[..8]), ("b", &v[8..])] {
                    let k = [part, part, part].concat();
                    write_secret(
                        &hsm,
                        "provisioned",
                        &format!("{label}/{half}"),
                        "DES3:24",
                        &k,
                    );
                }
            }
            ("tdes", 16) => {
                let k = [&v[..], &v[..8]].concat();
                write_secret(&hsm, "provisioned", &label, "DES3:24", &k);
            }
            ("tdes", 24) => write_secret(&hsm, "provisioned", &label, "DES3:24", &v),
            other => panic!("{label}: {other:?}"),
        }
    }
    hsm.store("provisioned", true, "");
    // As pkcs11-tool wrote them (CKA_DERIVE false), then with CKA_DERIVE set.
    let log = hsm.run_child("child_provisioned_without_derive");
    assert_one_no_derive_warning(&log);
    let log = hsm.run_child("child_provisioned");
    assert!(!log.contains("CKA_DERIVE is missing"), "{log}");
}

/// The IMK objects' `CKA_DERIVE` as the store sees them.
fn imk_derive_flags(p11: &Pkcs11KeyStore) -> Vec<(String, bool)> {
    let flags: Vec<_> = p11
        .objects()
        .into_iter()
        .filter(|(l, _)| l.starts_with("imk-"))
        .map(|(l, o)| (l, o.derive))
        .collect();
    assert!(flags.len() >= 3, "imk objects: {flags:?}");
    flags
}

/// The same objects on a live token (`test = false`) are refused at load, naming an IMK label
/// and CKA_DERIVE (fail closed).
fn assert_live_token_refuses_imks_without_derive(test_path: &Path) {
    let text = std::fs::read_to_string(test_path).expect("store file");
    assert!(text.contains("test = true"), "{text}");
    let live_path = test_path.with_file_name("live-no-derive.toml");
    std::fs::write(&live_path, text.replace("test = true", "test = false")).expect("write");
    let e = load_err(&live_path);
    assert!(
        e.contains("CKA_DERIVE")
            && ["imk-ac/1", "imk-smi/1", "imk-smc/1"]
                .iter()
                .any(|l| e.contains(l)),
        "{e}"
    );
}

/// ICC master keys from IMKs without CKA_DERIVE on a test token: clear (computed with
/// C_Encrypt), byte for byte and KCV for KCV the software store's, for both options.
fn assert_clear_icc_master_keys_match(p11: &Pkcs11KeyStore) {
    let soft = soft_keys();
    for (pan, psn) in [("5413330089012345", 1), ("4761739001010010", 0)] {
        let pan = Pan::parse(pan).expect("pan");
        for option in [MkdOption::A, MkdOption::B] {
            let a = ChipKeys::icc_master_keys(&soft, 1, option, &pan, Psn(psn)).expect("soft");
            let b = ChipKeys::icc_master_keys(p11, 1, option, &pan, Psn(psn)).expect("token");
            assert_eq!(a.kcvs, b.kcvs, "{option:?}");
            match (a.value, b.value) {
                (IccMasterKeyValue::Clear(x), IccMasterKeyValue::Clear(y)) => {
                    assert_eq!(
                        hex::encode_upper(&x[..]),
                        hex::encode_upper(&y[..]),
                        "{option:?}"
                    )
                }
                _ => panic!("without CKA_DERIVE the test token gives the value in clear"),
            }
        }
    }
    assert_eq!(p11.held_counts(), (0, 0), "nothing held without CKA_DERIVE");
    assert_eq!(p11.session_key_objects(), 0);
}

#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_provisioned_without_derive() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let path = dir.join("provisioned.toml");
    log_to_stderr();
    let p11 = open(&path);
    for (label, derive) in imk_derive_flags(&p11) {
        assert!(
            !derive,
            "{label}: pkcs11-tool 0.23 sets no CKA_DERIVE on secret keys"
        );
    }
    assert_clear_icc_master_keys_match(&p11);
    assert_all_locked(&p11);
    drop(p11);
    assert_live_token_refuses_imks_without_derive(&path);
}

#[test]
fn demo_keys_on_a_test_token_without_cka_derive_personalize_like_the_software_store() {
    let Some(log) = token_children(
        "demo_keys_on_a_test_token_without_cka_derive_personalize_like_the_software_store",
        "noderive",
        &["child_import_only", "child_without_derive"],
    ) else {
        return;
    };
    assert_one_no_derive_warning(&log);
}

/// The child's log holds exactly one warning about the IMKs without CKA_DERIVE, naming each
/// label and saying the master keys pass through host memory.
fn assert_one_no_derive_warning(log: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CKA_DERIVE is missing"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(
        line.contains("WARN") && line.contains("host memory"),
        "{line}"
    );
    for label in ["imk-ac/1", "imk-smi/1", "imk-smc/1"] {
        assert!(line.contains(label), "{line}");
    }
}

/// In a child: the log to stderr, which the parent reads.
fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Imports the demo keys with `keys import` (the IMKs get CKA_DERIVE) and appends the issuer
/// tables; a later child clears CKA_DERIVE (the module is initialised once per process).
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_import_only() {
    let (_, path, _rw, (_, issuers)) = child_with_demo_keys();
    assert!(!issuers.is_empty(), "the demo issuer keys");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    std::io::Write::write_all(&mut f, ceremony::issuer_toml(&issuers).as_bytes()).expect("write");
}

/// The demo keys imported, then CKA_DERIVE cleared on the IMKs (as a tool that cannot set it
/// leaves them): the test token loads, Model 1 preparation gives the same KCVs and DGI 8000
/// bytes (clear, encrypted on the host as the GP session does) as the software store, `job::run`
/// personalizes and reads back; the token's objects are unchanged by the store.
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_without_derive() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let path = dir.join(format!("{TOKEN}.toml"));
    set_imk_derive(TOKEN, false);
    log_to_stderr();
    let p11 = open(&path);
    assert!(imk_derive_flags(&p11).iter().all(|(_, d)| !d));
    let demo = demo();
    let soft = demo::keys();
    let icc = FixedIccKeys::default();
    let model1 = ModelChoice::Only(persodesk::domain::chip::ChipModel::Model1);
    let a = prepared(&demo, &soft, &icc, model1);
    let b = prepared(&demo, &p11, &icc, model1);
    assert_eq!(a, b);
    assert!(
        a.iter().any(|l| l.contains(": dgi 8000 sent ")),
        "no DGI 8000 prepared: {a:?}"
    );
    assert!(
        a.iter().any(|l| l.contains(": model Model1 kcvs ")),
        "{a:?}"
    );
    assert_clear_icc_master_keys_match(&p11);
    assert_job_runs_on_the_token(&p11);
    assert_eq!(p11.session_key_objects(), 0);
    assert!(
        imk_derive_flags(&p11).iter().all(|(_, d)| !d),
        "objects unchanged"
    );
    assert_all_locked(&p11);
    drop(p11);
    assert_live_token_refuses_imks_without_derive(&path);
}

#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_provisioned() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    allow_imk_derivation("provisioned");
    log_to_stderr();
    let p11 = open(&dir.join("provisioned.toml"));
    for info in demo::keys()
        .list()
        .into_iter()
        .filter(|i| i.key.usage != KeyUsage::Jwe)
    {
        if info.key.usage == KeyUsage::IssuerRsa {
            continue;
        }
        assert_eq!(
            p11.info(info.key).expect("on token").kcv,
            info.kcv,
            "{}",
            info.key
        );
    }
    // No issuer RSA key on this token: tracks and Model 2 must match; Model 1 needs ODA keys.
    let demo = demo();
    let icc = FixedIccKeys::default();
    let soft = demo::keys();
    let a = prepared(&demo, &soft, &icc, ModelChoice::StripeOnly);
    let b = prepared(&demo, &p11, &icc, ModelChoice::StripeOnly);
    assert_eq!(a, b);
    let model2 = persodesk::domain::chip::ChipModel::Model2;
    let a = prepared(&demo, &soft, &icc, ModelChoice::Only(model2));
    let b = prepared(&demo, &p11, &icc, ModelChoice::Only(model2));
    assert!(
        a.iter().any(|l| l.contains(": dgi ")),
        "no Model 2 DGI: {a:?}"
    );
    // This token holds no issuer key and its store file no [[issuer]] (no CA key): Model 2 data
    // that asks for ODA is refused before any card, fail closed, for every Model 2 order.
    let m2 = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("-M2: "))
            .map(|l| l.split(':').next().unwrap_or_default().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(m2(&a), m2(&b));
    for l in b.iter().filter(|l| l.contains("-M2: ")) {
        assert!(l.contains("error") && l.contains("knows no CA key"), "{l}");
    }
    let pan = Pan::parse("5413330089012345").expect("pan");
    let mk = |k: &dyn persodesk::domain::chip::keys::ChipKeys| {
        k.icc_master_keys(1, MkdOption::A, &pan, Psn(1))
            .expect("mk")
            .kcvs
    };
    assert_eq!(mk(&soft), mk(&p11));
    assert_all_locked(&p11);
}

#[test]
fn store_errors_name_the_module_the_token_the_pin_and_the_label() {
    if !softhsm_present("store_errors_name_the_module_the_token_the_pin_and_the_label") {
        return;
    }
    let hsm = Hsm::new("errors");
    hsm.init(TOKEN);
    hsm.init("leaky");
    write_secret(&hsm, "leaky", "kek/1", "AES:16", &[7u8; 16]);
    let f = hsm.dir.join("value.bin");
    std::fs::write(&f, [9u8; 16]).expect("value");
    pkcs11_tool(
        &hsm,
        "leaky",
        &[
            "--write-object",
            &f.display().to_string(),
            "--type",
            "secrkey",
            "--key-type",
            "AES:16",
            "--label",
            "kek/2",
            "--sensitive",
            "--extractable",
        ],
    );
    hsm.store(TOKEN, true, "");
    hsm.store("leaky", true, "");
    hsm.store("absent", true, "");
    std::fs::write(
        hsm.dir.join("nomodule.toml"),
        format!(
            "[pkcs11]\nmodule = \"{}\"\ntoken = \"t\"\npin_env = \"PERSODESK_TEST_HSM_PIN\"\n",
            hsm.dir.join("missing.so").display()
        ),
    )
    .expect("file");
    hsm.run_child("child_errors");
}

fn load_err(path: &Path) -> String {
    match persodesk::keys::load(path) {
        Ok(_) => panic!("{} loads", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_errors() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let e = load_err(&dir.join("nomodule.toml"));
    assert!(e.contains("module") && e.contains("missing.so"), "{e}");
    let e = load_err(&dir.join("absent.toml"));
    assert!(e.contains("no token labelled absent"), "{e}");
    let e = load_err(&dir.join("leaky.toml"));
    assert!(e.contains("kek/2") && e.contains("extractable"), "{e}");

    // Wrong PIN: the message says so and never shows the PIN tried.
    let text = std::fs::read_to_string(dir.join(format!("{TOKEN}.toml"))).expect("file");
    let unset = text.replace("PERSODESK_TEST_HSM_PIN", "PERSODESK_TEST_UNSET_PIN");
    std::fs::write(dir.join("unset.toml"), unset).expect("file");
    let e = load_err(&dir.join("unset.toml"));
    assert!(e.contains("PERSODESK_TEST_UNSET_PIN is not set"), "{e}");
    let wrong = text.replace("PERSODESK_TEST_HSM_PIN", "PERSODESK_TEST_WRONG_PIN");
    std::fs::write(dir.join("wrong.toml"), wrong).expect("file");
    let e = load_err(&dir.join("wrong.toml"));
    assert!(e.contains("wrong PIN for token persodesk-demo"), "{e}");
    assert!(!e.contains("975310"), "{e}");

    let p11 = open(&dir.join(format!("{TOKEN}.toml")));
    let pan = Pan::parse("5413330089012345").expect("pan");
    let e = p11
        .visa_cvv(KeyRef::new(KeyUsage::Cvk, 9), &pan, "2906", "201")
        .expect_err("no cvk/9");
    assert_eq!(e.to_string(), "cvk/9 is not on token persodesk-demo");
}

/// Runs the persodesk binary against the scenario's token with `stdin` as its input.
fn persodesk(hsm: &Hsm, args: &[&str], stdin: &str) -> std::process::Output {
    let data = hsm.dir.join("data");
    let envs: [(&str, &std::ffi::OsStr); 4] = [
        ("SOFTHSM2_CONF", hsm.conf.as_os_str()),
        ("PERSODESK_TEST_HSM_PIN", PIN.as_ref()),
        ("PERSODESK_DATA_DIR", data.as_os_str()),
        ("USER", "key-officer".as_ref()),
    ];
    support::persodesk_input(args, &envs, stdin)
}

#[test]
fn keys_import_and_list_on_the_command_line_with_an_audit_record() {
    if !softhsm_present("keys_import_and_list_on_the_command_line_with_an_audit_record") {
        return;
    }
    let hsm = Hsm::new("cli");
    hsm.init(TOKEN);
    let store = hsm.store(TOKEN, true, "");
    let store_s = store.display().to_string();
    let demo = root().join("assets/demo/keys.toml").display().to_string();
    let out = persodesk(
        &hsm,
        &["keys", "import", "--keys", &store_s, "--from", &demo],
        "",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // KCVs from the demo key file (published-convention check values declared there).
    assert!(stdout.contains("imported cvk/1  kcv 08D7B4"), "{stdout}");
    assert!(stdout.contains("imported kek/1  kcv C35280"), "{stdout}");
    let text = std::fs::read_to_string(&store).expect("store file");
    assert!(text.contains("[[issuer]]"), "issuer entries appended");

    // A key from two components: the demo CVK split as 11..11 and the XOR of both; the
    // components' KCVs and the combined KCV 08D7B4 come from the demo file's convention.
    let key = hex::decode("0123456789ABCDEFFEDCBA9876543210").expect("hex");
    let c1 = [0x11u8; 16];
    let c2: Vec<u8> = key.iter().zip(c1).map(|(k, c)| k ^ c).collect();
    let kcv = |v: &[u8]| hex::encode_upper(persodesk::domain::crypto::kcv_tdes(v).expect("kcv"));
    let input = format!(
        "{}\n{}\n{}\n{}\n08D7B4\n",
        hex::encode_upper(c1),
        kcv(&c1),
        hex::encode_upper(&c2),
        kcv(&c2)
    );
    let args = [
        "keys",
        "import",
        "--keys",
        &store_s,
        "--label",
        "pvk/7",
        "--algorithm",
        "tdes",
    ];
    let out = persodesk(&hsm, &args, &input);
    assert!(out.status.success(), "{out:?}");
    let all = format!("{out:?}");
    assert!(
        !all.contains(&hex::encode_upper(&c2)),
        "a component was echoed"
    );

    let out = persodesk(&hsm, &["keys", "list", "--keys", &store_s], "");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("pvk/7") && l.contains("kcv 08D7B4")),
        "{list}"
    );
    assert!(list.contains("sensitive non-extractable"), "{list}");
    assert!(
        !list.contains("EXTRACTABLE") && !list.contains("NOT-SENSITIVE"),
        "{list}"
    );

    // The simulated card needs its keys in clear: refused on a token, by name, before serving.
    let out = persodesk(&hsm, &["sim-card", "--keys", &store_s], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the simulated card needs test keys in clear")
            && err.contains(&format!("token {TOKEN}")),
        "{err}"
    );

    let db = hsm.dir.join("data").join(persodesk::store::DB_FILE);
    let audit = persodesk::store::Store::open(&db).expect("store");
    let trail = audit.audit_trail(100).expect("trail");
    let pvk = trail
        .iter()
        .find(|r| r.action == "key import" && r.outcome.contains("pvk/7"))
        .expect("audit record of pvk/7");
    assert_eq!(pvk.user, "key-officer");
    assert!(pvk.outcome.contains("kcv 08D7B4"), "{}", pvk.outcome);
}

// ---------------------------------------------------------------------------------------------
// Issue #15: the card's GlobalPlatform keys stay in the token

/// KDD of the GlobalPlatformPro diversification vectors (TestPlaintextKeys: `00 01 .. 09`).
const GPPRO_KDD: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// The GPPro kdf3 KMCs (AES-128/192/256, `40 41 42 ..`) as `kmc` #12, #13, #14 and the KMC of
/// GPPro TestSCP03::testKDF3 as #15: a software key file of test keys. The KCVs the file must
/// declare are computed from the values here (inputs of the test, not results).
fn gppro_kmcs() -> persodesk::keys::SoftwareKeyStore {
    let aes = |n: usize| {
        (0x40..0x40 + n)
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    };
    let values = [
        (12, aes(16)),
        (13, aes(24)),
        (14, aes(32)),
        (
            15,
            "8C72C72CF908411653018807950D82FBAD947562F0828A0B10B8B9606ABF3BCD".to_string(),
        ),
    ];
    let mut text = String::new();
    for (index, value) in values {
        let kcv =
            persodesk::domain::crypto::kcv_aes(&hex::decode(&value).expect("hex")).expect("kcv");
        text.push_str(&format!(
            "[[key]]\nusage = \"kmc\"\nindex = {index}\nalgorithm = \"aes\"\nvalue = \"{value}\"\n\
             kcv = \"{}\"\ntest = true\n\n",
            hex::encode_upper(kcv)
        ));
    }
    persodesk::keys::SoftwareKeyStore::from_toml("gppro-kmcs", &text).expect("GPPro KMCs")
}

#[test]
fn the_cards_gp_keys_stay_in_the_token_and_the_card_receives_the_same_bytes() {
    let Some(log) = token_children(
        "the_cards_gp_keys_stay_in_the_token_and_the_card_receives_the_same_bytes",
        "card-keys",
        &["child_card_keys_in_the_token", "child_kmc_without_derive"],
    ) else {
        return;
    };
    let warning = "CKA_DERIVE is missing, so the card's GlobalPlatform static keys";
    assert_eq!(log.matches(warning).count(), 1, "{log}");
}

/// The demo keys and the GPPro KMCs imported (`keys import` sets `CKA_DERIVE` on the KMCs); the
/// card's static keys are derived in the token (published KCVs, an independent CMAC over a
/// published static key), a card receives the same APDUs from both stores for SCP02 (EMV CPS
/// 1.1, VISA2) and SCP03 (kdf3), the token makes and destroys the keys as session objects that
/// are sensitive and not extractable, and `job::run` still personalizes and reads back.
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_card_keys_in_the_token() {
    let (_, path, mut rw, (_, issuers)) = child_with_demo_keys();
    ceremony::import_software(&mut rw, &gppro_kmcs()).expect("import GPPro KMCs");
    drop(rw);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    std::io::Write::write_all(&mut f, ceremony::issuer_toml(&issuers).as_bytes()).expect("write");
    let p11 = open(&path);
    assert_gppro_static_kcvs_in_the_token(&p11);
    assert_kdf3_session_key_matches_an_independent_cmac(&p11);
    assert_card_keys_are_locked_session_objects(&p11);
    assert_same_store_data_from_both_stores(&p11);
    assert_job_runs_on_the_token(&p11);
    assert_eq!(p11.session_key_objects(), 0, "session objects left");
    assert_all_locked(&p11);
}

/// The static keys the token derives have the KCVs of GlobalPlatformPro's vectors
/// (TestPlaintextKeys: EMV CPS 1.1, VISA2, kdf3 AES-128/192/256; the same as tests/gp_vectors.rs
/// pins for the software derivation), computed by the token.
fn assert_gppro_static_kcvs_in_the_token(p11: &Pkcs11KeyStore) {
    let before = p11.card_key_use();
    let kcvs = |index: u32, m: Diversification| {
        let keys = p11.open_card_keys(index, m, &GPPRO_KDD).expect("card keys");
        keys.static_kcvs().expect("kcvs").map(hex::encode_upper)
    };
    // kmc/1 of the demo keys is GPPro's TDES master key 40 41 .. 4F.
    let expected = [
        (1, Diversification::EmvCps11, ["C33013", "6F4CA6", "BB8179"]),
        (1, Diversification::Visa2, ["2BE598", "58DA38", "3C328E"]),
        (12, Diversification::Kdf3, ["E79C05", "D1BD77", "3FDE8C"]),
        (13, Diversification::Kdf3, ["1DE8EA", "47C00C", "C04D76"]),
        (14, Diversification::Kdf3, ["2972D2", "036F94", "5D57B8"]),
    ];
    for (index, method, want) in expected {
        assert_eq!(kcvs(index, method), want, "kmc #{index} {method:?}");
    }
    let after = p11.card_key_use();
    assert_eq!(
        after.static_derivations - before.static_derivations,
        15,
        "every static key by C_DeriveKey"
    );
    assert_eq!(p11.session_key_objects(), 0, "destroyed with the card keys");
}

/// GPPro TestSCP03::testKDF3 publishes the kdf3 ENC key of KMC #15 for KDD D9B1..FB. The S-ENC
/// the token computes from its own derivation equals the SCP03 KDF (GP Amd D §4.1.5: CMAC over
/// `00×11 ‖ 04 ‖ 00 ‖ 0100 ‖ i ‖ host ‖ card`) over that published key, computed here with
/// RustCrypto `cmac` (independent of the store and of src/domain/gp).
fn assert_kdf3_session_key_matches_an_independent_cmac(p11: &Pkcs11KeyStore) {
    use cmac::Mac;
    let kdd: [u8; 10] = hex::decode("D9B1DE5D0362DEDCE4FB")
        .expect("hex")
        .try_into()
        .expect("10");
    let enc = hex::decode("9AAC5D0B3601F89438A0D9D0B6B256CFB47E6462DFA5228D3420C4AC7C224781")
        .expect("hex");
    let (host, card) = ([0x11; 8], [0x22; 8]);
    let mut expected = Vec::new();
    for i in 1u8..=2 {
        let mut m = <cmac::Cmac<aes::Aes256> as cmac::KeyInit>::new_from_slice(&enc).expect("key");
        let mut input = vec![0u8; 11];
        input.extend_from_slice(&[0x04, 0x00, 0x01, 0x00, i]);
        input.extend_from_slice(&host);
        input.extend_from_slice(&card);
        m.update(&input);
        expected.extend_from_slice(&m.finalize().into_bytes());
    }
    let mut keys = p11
        .open_card_keys(15, Diversification::Kdf3, &kdd)
        .expect("card keys");
    let session = keys.scp03_session(&host, &card).expect("session keys");
    assert_eq!(
        hex::encode_upper(session.enc.as_bytes()),
        hex::encode_upper(&expected)
    );
}

/// While a card's keys are open they are three token session objects (four with SCP02's
/// session DEK), none readable (sensitive, not extractable); they are destroyed when the keys
/// drop. The session keys come from C_Encrypt / C_Sign under them.
fn assert_card_keys_are_locked_session_objects(p11: &Pkcs11KeyStore) {
    for (index, m, objects) in [
        (1, Diversification::EmvCps11, 4),
        (2, Diversification::Kdf3, 3),
    ] {
        let before = p11.card_key_use();
        let mut keys = p11.open_card_keys(index, m, &[7; 10]).expect("card keys");
        if m.is_aes() {
            keys.scp03_session(&[1; 8], &[2; 8]).expect("scp03");
        } else {
            keys.scp02_session([0, 1]).expect("scp02");
        }
        assert_eq!(p11.session_key_objects(), objects, "{m:?}");
        assert_eq!(p11.readable_session_key_objects(), 0, "{m:?}");
        let after = p11.card_key_use();
        assert_eq!(after.static_derivations - before.static_derivations, 3);
        assert!(after.session_key_operations - before.session_key_operations >= 3);
        drop(keys);
        assert_eq!(p11.session_key_objects(), 0, "{m:?}: destroyed on drop");
    }
}

/// The STORE DATA sequence (and every command before it) a card receives with fixed
/// challenges, from a store: a plain record, a clear sensitive DGI (8010, padded) and the held
/// DGI 8000, through INSTALL [for personalization] with C-MAC + C-DEC. The card's answers are
/// made from the software store's keys (the card side).
fn session_apdus(
    store: &dyn CardKeyStore,
    soft: &persodesk::keys::SoftwareKeyStore,
    kmc_index: u32,
    method: Diversification,
) -> Vec<String> {
    let pan = Pan::parse("5413330089012345").expect("pan");
    let mut held =
        persodesk::domain::dgi::PersoDgi::new(0x8000, vec![0; 48], true, false).expect("dgi");
    held.held = Some(HeldSecret::IccMasterKeys {
        derivation_index: 1,
        option: MkdOption::A,
        pan,
        psn: Psn(1),
    });
    let new = persodesk::domain::dgi::PersoDgi::new;
    let dgis = vec![
        new(0x0101, vec![0x70, 0x03, 0x5F, 0x28, 0x00], false, false).expect("dgi"),
        new(
            0x8010,
            vec![0x24, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            true,
            true,
        )
        .expect("dgi"),
        held,
    ];
    session_apdus_with(store, soft, kmc_index, method, dgis)
}

/// Every command a card receives for `dgis` (fixed challenges, C-MAC + C-DEC), from a store.
fn session_apdus_with(
    store: &dyn CardKeyStore,
    soft: &persodesk::keys::SoftwareKeyStore,
    kmc_index: u32,
    method: Diversification,
    dgis: Vec<persodesk::domain::dgi::PersoDgi>,
) -> Vec<String> {
    session_apdus_try(store, soft, kmc_index, method, dgis)
        .unwrap_or_else(|e| panic!("{method:?}: {e}"))
}

/// [`session_apdus_with`], or the session's failure.
fn session_apdus_try(
    store: &dyn CardKeyStore,
    soft: &persodesk::keys::SoftwareKeyStore,
    kmc_index: u32,
    method: Diversification,
    dgis: Vec<persodesk::domain::dgi::PersoDgi>,
) -> Result<Vec<String>, String> {
    use persodesk::domain::gp::SecurityLevel;
    use persodesk::domain::gp::session::{
        Aid, CardKeys as GpKeys, ChannelPlan, PersoPlan, PersoSession, Protocol, Step,
    };
    let kdd = [0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    let host = [0x48; 8];
    let mut card = soft
        .open_card_keys(kmc_index, method, &kdd)
        .expect("card side");
    let aid = Aid::from_hex("A000000151000000").expect("aid");
    let (protocol, init_update) = if method.is_aes() {
        let seq = [0x00, 0x00, 0x2A];
        let challenge = card
            .scp03_card_challenge(&seq, aid.as_bytes())
            .expect("challenge");
        let s = card.scp03_session(&host, &challenge).expect("card session");
        let draft = [&kdd[..], &[0x30, 0x03, 0x70], &challenge, &[0; 8], &seq].concat();
        let answer = persodesk::domain::gp::scp03::InitUpdateResponse::parse(&draft).expect("IU");
        let cryptogram = s.card_cryptogram(&host, &answer).expect("cryptogram");
        let iu = [&kdd[..], &[0x30, 0x03, 0x70], &challenge, &cryptogram, &seq].concat();
        (Protocol::Scp03 { i: 0x70 }, iu)
    } else {
        let (seq, challenge) = ([0x00, 0x2A], [0x63; 6]);
        let s = card.scp02_session(seq).expect("card session");
        let draft = [&kdd[..], &[0x20, 0x02], &seq, &challenge, &[0; 8]].concat();
        let answer = persodesk::domain::gp::scp02::InitUpdateResponse::parse(&draft).expect("IU");
        let cryptogram = s.card_cryptogram(&host, &answer).expect("cryptogram");
        let iu = [&kdd[..], &[0x20, 0x02], &seq, &challenge, &cryptogram].concat();
        (Protocol::Scp02 { i: 0x55 }, iu)
    };
    let plan = PersoPlan {
        channel: ChannelPlan {
            target_aid: aid,
            install_for_perso: Some(Aid::from_hex("A0000000041010").expect("aid")),
            protocol,
            security_level: SecurityLevel::CMacCDec,
            key_version: 0x30,
            keys: GpKeys::Store { kmc_index, method },
            verify_card_challenge: method.is_aes(),
        },
        host_challenge: host,
        dgis,
    };
    let (mut session, select) = PersoSession::start(plan).map_err(|e| e.to_string())?;
    let mut sent = vec![hex::encode_upper(select.to_bytes())];
    let mut answer = vec![0x90, 0x00];
    loop {
        match session.handle_response_with(&answer, Some(store)) {
            Step::Transmit(c) => {
                sent.push(hex::encode_upper(c.to_bytes()));
                answer = if c.ins == 0x50 {
                    [&init_update[..], &[0x90, 0x00]].concat()
                } else {
                    vec![0x90, 0x00]
                };
            }
            Step::Done(_) => break,
            Step::Failed(e) => return Err(e.to_string()),
        }
    }
    Ok(sent)
}

/// Byte for byte the same commands from the token store as from the software store, for SCP02
/// (EMV CPS 1.1, VISA2: DGI 8000 by the test-token fallback, C_Encrypt under the session DEK
/// object) and SCP03 (kdf3: DGI 8000 by C_WrapKey under the static DEK object); clear
/// sensitive DGIs are C_Encrypt under the DEK object; nothing is left on the token.
fn assert_same_store_data_from_both_stores(p11: &Pkcs11KeyStore) {
    let soft = demo::keys();
    for (kmc, m) in [
        (1, Diversification::EmvCps11),
        (1, Diversification::Visa2),
        (2, Diversification::Kdf3),
    ] {
        let before = p11.card_key_use();
        let (wraps, host) = p11.held_counts();
        let a = session_apdus(&soft, &soft, kmc, m);
        let b = session_apdus(p11, &soft, kmc, m);
        assert_eq!(a.len(), 7, "{m:?}: {a:?}");
        assert_eq!(a, b, "{m:?}");
        let after = p11.card_key_use();
        assert_eq!(after.static_derivations - before.static_derivations, 3);
        // 8010 always, and 8000 too for SCP02 on SoftHSM2 (no DES3 wrapping).
        let dek = after.dek_encryptions - before.dek_encryptions;
        let (wraps2, host2) = p11.held_counts();
        if m.is_aes() {
            assert_eq!((dek, wraps2 - wraps, host2 - host), (1, 1, 0), "{m:?}");
        } else {
            assert_eq!(dek, 2, "{m:?}");
        }
        assert_eq!(p11.session_key_objects(), 0, "{m:?}");
    }
}

#[test]
fn the_reference_pin_block_is_held_under_the_ktk_and_the_card_receives_the_same_bytes() {
    token_children(
        "the_reference_pin_block_is_held_under_the_ktk_and_the_card_receives_the_same_bytes",
        "pin-ktk",
        &[
            "child_pin_block_under_the_ktk",
            "child_pin_block_without_a_ktk",
        ],
    );
}

/// DGI 8010 of the Visa demo order (its ISO 0 PIN under `zpk #1`), prepared for Model 1 by
/// `store`.
fn visa_pin_dgi(store: &dyn KeyStorePort) -> Result<persodesk::domain::dgi::PersoDgi, String> {
    let demo = demo();
    let order = demo
        .orders
        .iter()
        .find(|o| o.card_product_id == "DEMO_VISA_CREDIT" && o.pin.is_some())
        .expect("a Visa demo order with a PIN");
    let product = demo.catalog.get(&order.card_product_id).expect("product");
    let inputs = demo::prep_inputs(&demo.profiles, store);
    let model1 = ModelChoice::Only(persodesk::domain::chip::ChipModel::Model1);
    let data = prepare_card(order, product, model1, &inputs).map_err(|e| format!("{e:?}"))?;
    let chip = data.chip.expect("chip data");
    Ok(chip
        .dgis
        .into_iter()
        .find(|d| d.id() == 0x8010)
        .expect("DGI 8010"))
}

/// The DGIs one card receives in [`session_apdus_with`]: a plain record and DGI 8010, sent
/// padded (`80 00..`, as a profile with `pad = true` says; AES needs it) or not.
fn pin_dgis(
    pin: &persodesk::domain::dgi::PersoDgi,
    pad: bool,
) -> Vec<persodesk::domain::dgi::PersoDgi> {
    let mut pin = pin.clone();
    pin.pad = pad;
    if let Some(HeldSecret::Wrapped { pad: p, .. }) = &mut pin.held {
        *p = pad;
    }
    let record = persodesk::domain::dgi::PersoDgi::new(
        0x0101,
        vec![0x70, 0x03, 0x5F, 0x28, 0x00],
        false,
        false,
    );
    vec![record.expect("dgi"), pin]
}

/// The demo keys (with the bureau transport key `ktk/1`) imported: the Visa demo order's DGI
/// 8010 is prepared held (zeros in the DGI, an RFC 5649 blob under the ktk, no clear byte in
/// `Debug`); a card receives the software store's commands byte for byte over SCP02 (EMV CPS
/// 1.1, VISA2: the test-token fallback, C_Encrypt under the session DEK object) and SCP03 (kdf3:
/// C_UnwrapKey, then C_WrapKey under the static DEK object); no session object is left and the
/// ktk is still sensitive and non-extractable. A live token holds 8010 too, and refuses SCP02
/// without DES3 wrapping.
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_pin_block_under_the_ktk() {
    let (_, path, rw, (_, issuers)) = child_with_demo_keys();
    drop(rw);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    std::io::Write::write_all(&mut f, ceremony::issuer_toml(&issuers).as_bytes()).expect("write");
    let p11 = open(&path);
    let ktk = KeyRef::new(KeyUsage::Ktk, 1);
    // The KCV openssl and Python `cryptography` give for the demo ktk (assets/demo/keys.toml).
    assert_eq!(p11.info(ktk).expect("ktk/1").kcv, "5EAADA");
    let soft = demo::keys();
    let clear = visa_pin_dgi(&soft).expect("software 8010");
    assert!(clear.held.is_none());
    let held = visa_pin_dgi(&p11).expect("token 8010");
    assert_eq!(
        held.dgi.value(),
        &[0u8; 8],
        "no clear block in the prepared DGI"
    );
    let Some(HeldSecret::Wrapped {
        ktk_index,
        blob,
        len,
        ..
    }) = &held.held
    else {
        panic!("DGI 8010 is not held under the ktk: {:?}", held.held);
    };
    // RFC 5649 wraps the 16-byte padded block into 24 bytes.
    assert_eq!((*ktk_index, blob.len(), *len), (1, 24, 8));
    let debug = format!("{:?}", held.held);
    assert!(!debug.contains(&hex::encode_upper(blob)) && !debug.contains(&format!("{blob:?}")));
    assert_eq!(p11.ktk_use().held, 1);
    for (kmc, m, pad) in [
        (1, Diversification::EmvCps11, false),
        (1, Diversification::Visa2, true),
        (2, Diversification::Kdf3, true),
    ] {
        let before = p11.ktk_use();
        let a = session_apdus_with(&soft, &soft, kmc, m, pin_dgis(&clear, pad));
        let b = session_apdus_with(&p11, &soft, kmc, m, pin_dgis(&held, pad));
        assert_eq!(a.len(), 6, "{m:?}: {a:?}");
        assert_eq!(a, b, "{m:?}");
        let after = p11.ktk_use();
        let (in_token, on_host) = (
            after.in_token - before.in_token,
            after.on_host - before.on_host,
        );
        // SoftHSM2 2.6.1 cannot wrap with DES3: SCP02 takes the test-token fallback.
        let expected = if m.is_aes() { (1, 0) } else { (0, 1) };
        assert_eq!((in_token, on_host), expected, "{m:?}");
        assert_eq!(p11.session_key_objects(), 0, "{m:?}");
    }
    // A held value padded otherwise than its DGI says is refused, never sent (fail closed).
    let mut mismatched = pin_dgis(&held, true);
    mismatched[1].pad = false;
    let err = session_apdus_try(&p11, &soft, 1, Diversification::EmvCps11, mismatched)
        .expect_err("a pad mismatch is refused");
    assert!(err.contains("padded only as the held value is"), "{err}");
    assert_eq!(p11.session_key_objects(), 0);
    assert_all_locked(&p11);
    let (_, ktk_object) = p11
        .objects()
        .into_iter()
        .find(|(l, _)| l == "ktk/1")
        .expect("ktk/1 on the token");
    assert!(ktk_object.sensitive && !ktk_object.extractable);
    drop(p11);
    let live_path = path.with_file_name("live-ktk.toml");
    let text = std::fs::read_to_string(&path).expect("store file");
    std::fs::write(&live_path, text.replace("test = true", "test = false")).expect("write");
    let live = open(&live_path);
    let held_live = visa_pin_dgi(&live).expect("a live token holds 8010 under the ktk");
    let err = session_apdus_try(
        &live,
        &soft,
        1,
        Diversification::EmvCps11,
        pin_dgis(&held_live, false),
    )
    .expect_err("SCP02 without DES3 wrapping is refused on a live token");
    assert!(
        err.contains("CKM_DES3_ECB") && err.contains("live token"),
        "{err}"
    );
}

/// The token above with `ktk/1` destroyed: a live token refuses DGI 8010 naming `ktk` (fail
/// closed); a test token prepares it in clear, as the software store does.
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_pin_block_without_a_ktk() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let path = dir.join(format!("{TOKEN}.toml"));
    let live_path = path.with_file_name("live-ktk.toml");
    destroy_labelled(TOKEN, "ktk/1");
    let clear = visa_pin_dgi(&demo::keys()).expect("software 8010");
    let live = open(&live_path);
    let err = visa_pin_dgi(&live).expect_err("a live token without a ktk refuses DGI 8010");
    assert!(
        err.contains("ktk") && err.contains("encryptedData.pin"),
        "{err}"
    );
    drop(live);
    let test_token = open(&path);
    let again = visa_pin_dgi(&test_token).expect("a test token without a ktk");
    assert!(again.held.is_none());
    assert_eq!(
        again.dgi.value(),
        clear.dgi.value(),
        "clear, as the software store"
    );
}

/// Runs `f` on a logged-in read-write session of `token`, with the module opened and finalized
/// here: done while no store has it open.
fn with_user_session(token: &str, f: impl FnOnce(&cryptoki::session::Session)) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    let ctx = Pkcs11::new(MODULE).expect("module");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == token)
        })
        .expect("token slot");
    let session = ctx.open_rw_session(slot).expect("rw session");
    let pin = cryptoki::types::AuthPin::new(PIN.to_string().into());
    session.login(UserType::User, Some(&pin)).expect("login");
    f(&session);
    drop(session);
    ctx.finalize().expect("C_Finalize");
}

/// Destroys the object labelled `label` (`C_DestroyObject`).
fn destroy_labelled(token: &str, label: &str) {
    use cryptoki::object::Attribute;
    with_user_session(token, |session| {
        let found = session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .expect("find");
        assert_eq!(found.len(), 1, "{label}");
        session.destroy_object(found[0]).expect("C_DestroyObject");
    });
}

/// Sets `CKA_DERIVE` of the objects labelled `labels` (`C_SetAttributeValue`).
fn set_derive(token: &str, labels: &[&str], derive: bool) {
    use cryptoki::object::Attribute;
    with_user_session(token, |session| {
        let mut set = 0;
        for label in labels {
            for h in session
                .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                .expect("find")
            {
                session
                    .update_attributes(h, &[Attribute::Derive(derive)])
                    .expect("CKA_DERIVE");
                set += 1;
            }
        }
        assert_eq!(set, labels.len(), "objects {labels:?}");
    });
}

/// The KMCs of the token above with `CKA_DERIVE` cleared (as a tool that cannot set it leaves
/// them): on the test token the card's keys are diversified with C_Encrypt / C_Sign through
/// host memory, one warning, and the card still receives the software store's bytes with no
/// `C_DeriveKey`; the same token opened as a live token refuses, naming the label and
/// `CKA_DERIVE`.
#[test]
#[ignore = "run by its parent test in a process with SOFTHSM2_CONF set"]
fn child_kmc_without_derive() {
    let dir = child_dir().expect("PERSODESK_TEST_HSM_DIR");
    let path = dir.join(format!("{TOKEN}.toml"));
    set_derive(TOKEN, &["kmc/1", "kmc/2"], false);
    log_to_stderr();
    let p11 = open(&path);
    let soft = demo::keys();
    for (kmc, m) in [
        (1, Diversification::EmvCps11),
        (1, Diversification::Visa2),
        (2, Diversification::Kdf3),
    ] {
        let before = p11.card_key_use();
        let a = session_apdus(&soft, &soft, kmc, m);
        assert_eq!(a, session_apdus(&p11, &soft, kmc, m), "{m:?}");
        assert_eq!(
            p11.card_key_use().static_derivations,
            before.static_derivations
        );
    }
    assert_eq!(p11.session_key_objects(), 0);
    assert_all_locked(&p11);
    drop(p11);
    let text = std::fs::read_to_string(&path).expect("store file");
    let live_path = path.with_file_name("live-kmc.toml");
    std::fs::write(&live_path, text.replace("test = true", "test = false")).expect("write");
    let live = open(&live_path);
    let err = live
        .open_card_keys(1, Diversification::EmvCps11, &[0; 10])
        .err()
        .expect("refused on a live token")
        .to_string();
    assert!(
        err.contains("kmc/1") && err.contains("CKA_DERIVE false"),
        "{err}"
    );
}
