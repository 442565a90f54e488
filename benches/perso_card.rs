//! Personalization of one card on the in-process virtual card, through the one flow the window
//! runs (`job::run` with the window's `VirtualConnector`): a fresh card of the profile's stock,
//! the secure channel, every STORE DATA, and the read-back verification (the card as a payment
//! application, ARQC checked). The card data is prepared once, outside the measurement (Model 1,
//! demo keys, assets/demo/orders.json). Prints the APDUs one card takes; criterion gives the
//! time per card. Run: `cargo bench --bench perso_card` (docs/performance.md).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use persodesk::domain::chip::model1::PrepDate;
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::order::parse_order_file;
use persodesk::domain::prepare::{ModelChoice, PrepInputs, prepare_card, profile_of};
use persodesk::gui::devices::{CardFault, VirtualConnector, VirtualReader, VirtualSlot};
use persodesk::job::{CardJob, ChannelOverride};
use persodesk::keys::pool::InlineKeys;
use persodesk::keys::{LoadedKeys, SoftwareKeyStore};

/// The demo orders benchmarked: one per chip profile (DDA VIS 1.6.3, SDA VIS 1.5.4, CDA M/Chip).
const ORDERS: [&str; 3] = ["DEMO-VISA-0001", "DEMO-US-0001", "DEMO-MC-0001"];

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = persodesk::catalog::load_products(&root.join("profiles")).expect("products");
    let chip = persodesk::catalog::load_chip_profiles(&root.join("profiles")).expect("profiles");
    let keys = Arc::new(LoadedKeys::Software(
        SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys"),
    ));
    let text = std::fs::read_to_string(root.join("assets/demo/orders.json")).expect("orders");
    let entries = parse_order_file(&text, &catalog.order_rules()).expect("order file");
    let mut g = c.benchmark_group("personalize one card (virtual card, job::run)");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for id in ORDERS {
        let entry = entries.iter().find(|e| e.id == id).expect("demo order");
        let order = entry.outcome.as_ref().expect("valid order");
        let product = catalog.get(&order.card_product_id).expect("product");
        let inputs = PrepInputs {
            profiles: &chip,
            date: PrepDate::new(25, 1, 15).expect("date"),
            keys: keys.port(),
            icc_keys: &InlineKeys,
            envelope: EnvelopeSettings::default(),
        };
        let model = ModelChoice::parse("1").expect("model");
        let data = prepare_card(order, product, model, &inputs).expect("prepared");
        let profile = profile_of(product, &chip).expect("chip profile");
        let job = CardJob {
            order,
            data: &data,
            keys: keys.port(),
            chip: Some((profile, ChannelOverride::default().apply(profile))),
        };
        let one_card = || {
            let reader = Arc::new(Mutex::new(VirtualReader {
                slot: VirtualSlot::Fresh,
                fault: CardFault::None,
                card_keys: Arc::clone(&keys),
            }));
            let mut connector = VirtualConnector::new(reader, profile.clone(), Arc::clone(&keys));
            let report = persodesk::job::run(&job, Some(&mut connector), None, &mut |_| {});
            assert!(report.succeeded(), "{id}: {:?}", report.failure);
            report.transcript.map_or(0, |t| t.apdu_count())
        };
        eprintln!(
            "{id} ({}): {} APDUs per card (personalization session)",
            profile.name,
            one_card()
        );
        g.bench_function(format!("{id} ({})", profile.name), |b| b.iter(one_card));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
