//! The demo assets the tests start from: the repository root, the products and chip profiles of
//! `profiles/`, the demo key store (`assets/demo/keys.toml`, test keys) and the demo order files.
//!
//! Part of `support` (`support::demo`); a test binary that needs only this declares it alone:
//! `#[path = "support/demo.rs"] mod demo;`.

#![allow(dead_code)]

use std::path::PathBuf;

use persodesk::domain::chip::model1::PrepDate;
use persodesk::domain::chip::{ChipProfile, ChipProfiles};
use persodesk::domain::envelope::EnvelopeSettings;
use persodesk::domain::order::{Order, parse_order_file};
use persodesk::domain::prepare::{CardKeys, PrepInputs};
use persodesk::domain::product::Catalog;
use persodesk::keys::SoftwareKeyStore;
use persodesk::keys::pool::InlineKeys;

/// The demo order file (Model 1).
pub const ORDERS: &str = "assets/demo/orders.json";
/// The Model 2 demo order file (the issuer's sealed DGIs of `assets/demo/model2/`).
pub const ORDERS_MODEL2: &str = "assets/demo/orders-model2.json";

/// The preparation date the preparation tests use (2025-01-15).
pub const DATE: PrepDate = PrepDate {
    yy: 25,
    mm: 1,
    dd: 15,
};

/// The repository root: the demo paths are relative to it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The text of `file` (relative to the repository root).
pub fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The products of `profiles/products/`.
pub fn catalog() -> Catalog {
    persodesk::catalog::load_products(&root().join("profiles")).expect("products")
}

/// The chip profiles of `profiles/chip/`.
pub fn chip_profiles() -> ChipProfiles {
    persodesk::catalog::load_chip_profiles(&root().join("profiles")).expect("chip profiles")
}

/// A test's variant of the shipped chip profile `name` (`profiles/chip/<name>.toml`): its TOML
/// text through `edit`, loaded as if from file `file` (the name its errors carry).
pub fn edited_profile(name: &str, file: &str, edit: impl FnOnce(String) -> String) -> ChipProfile {
    let text = read(&format!("profiles/chip/{name}.toml"));
    ChipProfile::from_toml(file, name, &edit(text)).expect("edited chip profile")
}

/// The date the personalization tests prepare on (2026-11-22).
pub fn perso_date() -> PrepDate {
    PrepDate::new(26, 11, 22).expect("date")
}

/// What a preparation of the demo orders runs with: `profiles`, `keys`, [`perso_date`], ICC key
/// pairs generated inline and the default Model 2 envelope conventions.
pub fn prep_inputs<'a>(profiles: &'a ChipProfiles, keys: &'a dyn CardKeys) -> PrepInputs<'a> {
    PrepInputs {
        profiles,
        date: perso_date(),
        keys,
        icc_keys: &InlineKeys,
        envelope: EnvelopeSettings::default(),
    }
}

/// The demo key store.
pub fn keys() -> SoftwareKeyStore {
    SoftwareKeyStore::load(&root().join("assets/demo/keys.toml")).expect("demo keys")
}

/// The orders of `file`, every one of them valid.
pub fn orders(catalog: &Catalog, file: &str) -> Vec<Order> {
    parse_order_file(&read(file), &catalog.order_rules())
        .expect("order file")
        .into_iter()
        .map(|e| e.outcome.expect("demo orders are valid"))
        .collect()
}

/// The demo products, chip profiles, key store and the orders of [`ORDERS`].
pub struct Demo {
    /// The products.
    pub catalog: Catalog,
    /// The chip profiles.
    pub profiles: ChipProfiles,
    /// The demo key store.
    pub keys: SoftwareKeyStore,
    /// The demo orders.
    pub orders: Vec<Order>,
}

/// The order `id` of `orders`.
pub fn order<'a>(orders: &'a [Order], id: &str) -> &'a Order {
    orders
        .iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("no order {id}"))
}

impl Demo {
    /// The demo order `id`.
    pub fn order(&self, id: &str) -> &Order {
        order(&self.orders, id)
    }
}

/// The demo assets with the orders of [`ORDERS`].
pub fn demo() -> Demo {
    let catalog = catalog();
    let orders = orders(&catalog, ORDERS);
    Demo {
        catalog,
        profiles: chip_profiles(),
        keys: keys(),
        orders,
    }
}

/// The cards of the demo order file ([`ORDERS`]), as JSON.
pub fn order_cards() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(root().join(ORDERS)).expect("demo orders");
    let demo: serde_json::Value = serde_json::from_str(&text).expect("demo orders are JSON");
    demo["cards"].as_array().expect("cards").clone()
}

/// The card `id` of an order document (`{"cards": [...]}`).
pub fn card_by_id(orders: &serde_json::Value, id: &str) -> serde_json::Value {
    orders["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .find(|o| o["cardId"] == id)
        .unwrap_or_else(|| panic!("no order {id}"))
        .clone()
}
