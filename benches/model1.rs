//! Per-card preparation cost: tracks only, Model 1 with a warm ICC key pool, Model 1 with inline
//! ICC key generation, Model 2 (decrypt, MAC, validate the issuer's data: DEMO-VISA-0001-M2). Demo order DEMO-VISA-0001 under vis-1.6.3-vcps-2.2.4 (DDA, 1024-bit ICC
//! key, 1152-bit issuer key), demo keys. Run: `cargo bench --bench model1` (README, "Performance").

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use persodesk::domain::chip::ChipModel;
use persodesk::domain::chip::keys::{IccKeyPair, IccKeySource};
use persodesk::domain::chip::model1::{self, PrepDate};
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::oda::{OdaError, RsaExponent, RsaKeyPair};
use persodesk::domain::order::parse_order_file;
use persodesk::domain::prepare::{ModelChoice, PrepInputs, prepare_card};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::{InlineKeys, generate};

/// A warm pool: pairs generated before the measurement, handed out in turn (a copy each time, so
/// the pool never runs dry while measuring; the real pool refills in the background).
struct Warm {
    pairs: Vec<RsaKeyPair>,
    next: std::cell::Cell<usize>,
}

impl IccKeySource for Warm {
    fn icc_key_pair(&self, _bits: usize, _e: RsaExponent) -> Result<IccKeyPair, OdaError> {
        let i = self.next.get();
        self.next.set((i + 1) % self.pairs.len());
        Ok(IccKeyPair {
            pair: self.pairs[i].clone(),
            from_pool: true,
        })
    }
}

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = persodesk::catalog::load_products(&root.join("profiles")).expect("products");
    let profiles =
        persodesk::catalog::load_chip_profiles(&root.join("profiles")).expect("profiles");
    let keys = SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys");
    let text = std::fs::read_to_string(root.join("assets/demo/orders.json")).expect("orders");
    let order = parse_order_file(&text, &catalog.order_rules())
        .expect("orders")
        .into_iter()
        .find(|e| e.id == "DEMO-VISA-0001")
        .expect("order")
        .outcome
        .expect("valid");
    let product = catalog.get(&order.card_product_id).expect("product");
    let profile = profiles.get("vis-1.6.3-vcps-2.2.4").expect("profile");
    let date = PrepDate::new(25, 1, 15).expect("date");
    let warm = Warm {
        pairs: (0..8)
            .map(|_| generate(profile.oda.icc_key_bits, profile.oda.icc_exponent).expect("key"))
            .collect(),
        next: std::cell::Cell::new(0),
    };

    let mut g = c.benchmark_group("per card");
    g.sample_size(20);
    g.bench_function("tracks only", |b| {
        b.iter(|| {
            persodesk::domain::prepare::prepare_tracks(&order, product, &keys).expect("tracks")
        })
    });
    g.bench_function("model 1, key pool warm", |b| {
        b.iter(|| model1::prepare(&order, product, profile, date, &keys, &warm).expect("chip"))
    });
    g.bench_function("model 1, inline key generation", |b| {
        b.iter(|| {
            model1::prepare(&order, product, profile, date, &keys, &InlineKeys).expect("chip")
        })
    });
    let text2 =
        std::fs::read_to_string(root.join("assets/demo/orders-model2.json")).expect("m2 orders");
    let order2 = parse_order_file(&text2, &catalog.order_rules())
        .expect("orders")
        .into_iter()
        .find(|e| e.id == "DEMO-VISA-0001-M2")
        .expect("order")
        .outcome
        .expect("valid");
    let inputs = PrepInputs {
        profiles: &profiles,
        date,
        keys: &keys,
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    };
    g.bench_function("model 2", |b| {
        b.iter(|| {
            prepare_card(
                &order2,
                product,
                ModelChoice::Only(ChipModel::Model2),
                &inputs,
            )
            .expect("model 2")
        })
    });
    g.finish();
    issuer_signature(c);
}

/// One issuer-key private operation (1152 bits, e = 3, as the demo issuer key): rsa 0.10's
/// `rsa_decrypt_and_check` (`BoxedUint`) against `RsaKeyPair::sign_raw` (the fixed-width CRT of
/// `domain::rsa_crt` with rsa's public operation as the fault check).
fn issuer_signature(c: &mut Criterion) {
    use persodesk::domain::oda::RecoverySigner;
    use rsa::BoxedUint;
    use rsa::traits::PublicKeyParts;
    let pair = generate(1152, RsaExponent::Three).expect("key");
    let crt = pair.crt_components().expect("crt");
    let key = rsa::PrivateKey::from_p_q(
        BoxedUint::from_be_slice_vartime(crt.p.expose()),
        BoxedUint::from_be_slice_vartime(crt.q.expose()),
        BoxedUint::from(3u64),
    )
    .expect("rsa key");
    let mut block = pair.modulus().to_vec();
    block[0] = 0x6A;
    let m = BoxedUint::from_be_slice(&block, key.n_bits_precision()).expect("block");
    let mut g = c.benchmark_group("issuer signature 1152");
    g.bench_function("rsa 0.10 BoxedUint", |b| {
        b.iter(|| {
            let no_rng: Option<
                &mut dyn rsa::rand_core::TryCryptoRng<Error = core::convert::Infallible>,
            > = None;
            rsa::hazmat::rsa_decrypt_and_check(&key, no_rng, &m).expect("sign")
        })
    });
    g.bench_function("fixed-width CRT (sign_raw)", |b| {
        b.iter(|| pair.sign_raw(&block).expect("sign"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
