//! Cards per second through SoftHSM2 beside the software store: tracks only (DEMO-VISA-0001),
//! Model 1 with a warm ICC key pool (DEMO-VISA-0001) and Model 2 (DEMO-VISA-0001-M2), demo keys
//! imported into a SoftHSM2 token in a temp dir. Run: `cargo bench --bench pkcs11` (docs/hsm.md).
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process, so the bench creates the token directory and
//! then runs itself again with the variable set. Without SoftHSM2 it says so and measures nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{Criterion, criterion_group};
use persodesk::domain::chip::ChipModel;
use persodesk::domain::chip::keys::{IccKeyPair, IccKeySource};
use persodesk::domain::chip::model1::PrepDate;
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::oda::{OdaError, RsaExponent, RsaKeyPair};
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::prepare::{CardKeys, ModelChoice, PrepInputs, prepare_card};
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pkcs11::{Pkcs11KeyStore, StoreFile, ceremony};
use persodesk::keys::pool::generate;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "246810";

/// A warm pool: pairs generated before the measurement, handed out in turn.
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

fn order(
    root: &Path,
    file: &str,
    id: &str,
    catalog: &persodesk::domain::product::Catalog,
) -> Order {
    let text = std::fs::read_to_string(root.join(file)).expect("orders");
    parse_order_file(&text, &catalog.order_rules())
        .expect("orders")
        .into_iter()
        .find(|e| e.id == id)
        .expect("order")
        .outcome
        .expect("valid")
}

/// The token with the demo keys, in the directory the parent process made.
fn token(dir: &Path) -> Pkcs11KeyStore {
    let text = format!(
        "[pkcs11]\nmodule = \"{MODULE}\"\ntoken = \"bench\"\npin_env = \"PERSODESK_BENCH_PIN\"\ntest = true\n"
    );
    let file = StoreFile::parse_text("bench", &text).expect("store file");
    let mut rw = Pkcs11KeyStore::open("bench", file.clone(), true).expect("token");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let soft = SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys");
    let (_, issuers) = ceremony::import_software(&mut rw, &soft).expect("import");
    drop(rw);
    let text = format!("{text}{}", ceremony::issuer_toml(&issuers));
    let _ = dir;
    let file = StoreFile::parse_text("bench", &text).expect("store file");
    Pkcs11KeyStore::open("bench", file, false).expect("token")
}

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("PERSODESK_BENCH_HSM_DIR").map(PathBuf::from) else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = persodesk::catalog::load_products(&root.join("profiles")).expect("products");
    let profiles =
        persodesk::catalog::load_chip_profiles(&root.join("profiles")).expect("profiles");
    let soft = SoftwareKeyStore::load(&root.join("assets/demo/keys.toml")).expect("keys");
    let hsm = token(&dir);
    let o1 = order(&root, "assets/demo/orders.json", "DEMO-VISA-0001", &catalog);
    let o2 = order(
        &root,
        "assets/demo/orders-model2.json",
        "DEMO-VISA-0001-M2",
        &catalog,
    );
    let product = catalog.get(&o1.card_product_id).expect("product");
    let product2 = catalog.get(&o2.card_product_id).expect("product");
    let profile = profiles.get("vis-1.6.3-vcps-2.2.4").expect("profile");
    let warm = Warm {
        pairs: (0..8)
            .map(|_| generate(profile.oda.icc_key_bits, profile.oda.icc_exponent).expect("key"))
            .collect(),
        next: std::cell::Cell::new(0),
    };
    let date = PrepDate::new(25, 1, 15).expect("date");
    let mut g = c.benchmark_group("per card");
    g.sample_size(20);
    let stores: [(&str, &dyn CardKeys); 2] = [("software", &soft), ("softhsm2", &hsm)];
    for (name, keys) in stores {
        let inputs = PrepInputs {
            profiles: &profiles,
            date,
            keys,
            icc_keys: &warm,
            envelope: EnvelopeSettings::default(),
        };
        g.bench_function(format!("tracks only, {name}"), |b| {
            b.iter(|| prepare_card(&o1, product, ModelChoice::StripeOnly, &inputs).expect("tracks"))
        });
        g.bench_function(format!("model 1, key pool warm, {name}"), |b| {
            b.iter(|| {
                prepare_card(&o1, product, ModelChoice::Only(ChipModel::Model1), &inputs)
                    .expect("model 1")
            })
        });
        g.bench_function(format!("model 2, {name}"), |b| {
            b.iter(|| {
                prepare_card(&o2, product2, ModelChoice::Only(ChipModel::Model2), &inputs)
                    .expect("model 2")
            })
        });
    }
    g.finish();
}

/// Makes the token directory and runs this bench again with SOFTHSM2_CONF pointing at it.
fn relaunch() -> bool {
    if std::env::var_os("PERSODESK_BENCH_HSM_DIR").is_some() {
        return false;
    }
    if !Path::new(MODULE).exists() {
        eprintln!("*** pkcs11 bench: SoftHSM2 is not installed ({MODULE}); nothing measured ***");
        return true;
    }
    let dir = std::env::temp_dir().join(format!("persodesk-p11-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tokens")).expect("dir");
    let conf = dir.join("softhsm2.conf");
    let tokens = dir.join("tokens");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .expect("conf");
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            PIN,
            "--so-pin",
            "13579111",
        ])
        .status()
        .expect("softhsm2-util");
    assert!(init.success(), "init-token");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = Command::new(std::env::current_exe().expect("exe"))
        .args(args)
        .env("SOFTHSM2_CONF", &conf)
        .env("PERSODESK_BENCH_HSM_DIR", &dir)
        .env("PERSODESK_BENCH_PIN", PIN)
        .status()
        .expect("bench child");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "bench child failed");
    true
}

criterion_group!(benches, bench);

fn main() {
    if relaunch() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
