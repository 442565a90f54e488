//! Data preparation, the one entry point: a validated order, its product and the key store in;
//! [`PersoData`] out ([`prepare_card`]). Everything downstream (previews, encoder, card) reads
//! `PersoData` only.
//!
//! - [`tracks`]: the magnetic stripe tracks, the first step of every card.
//! - Chip data by model ([`ChipModel`]), after the tracks:
//!   - Model 1: the bureau computes the chip data from the product's chip profile and the key store.
//!   - Model 2: the issuer sends the chip data encrypted (`encryptedData.tlvData`); the bureau
//!     decrypts and verifies it.
//!
//! An order may use Model 1 when its product names a chip profile, Model 2 when it carries a
//! `tlvData` envelope; with neither it is a magnetic-stripe-only card.

pub mod tracks;

use std::borrow::Cow;

use super::chip::keys::{ChipKeys, IccKeySource};
use super::chip::model1::PrepDate;
use super::chip::{ChipData, ChipModel, ChipProfile, ChipProfiles};
use super::envelope::{EnvelopeKeys, EnvelopeSettings};
use super::fields::{Cvv, EncodedName, Pvv};
use super::finding::Finding;
use super::keystore::{KeyInfo, KeyRef};
use super::order::Order;
use super::product::Product;
pub use super::track::Tracks;
pub use tracks::prepare_tracks;

/// Where each value of a card came from, by name (`track2`, `cvv1`, `pin`, ...), iterated in
/// name order: texts that are the same for every card are static, only those naming a key or
/// a profile are built. A card has a handful: a sorted vector, not a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources(Vec<(&'static str, Cow<'static, str>)>);

impl Sources {
    /// No sources yet.
    pub fn new() -> Self {
        Self(Vec::with_capacity(8))
    }

    /// Sets the source of `name`, returning the one it replaces.
    pub fn insert(
        &mut self,
        name: &'static str,
        text: Cow<'static, str>,
    ) -> Option<Cow<'static, str>> {
        match self.0.binary_search_by(|(k, _)| (*k).cmp(name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, text)),
            Err(i) => {
                self.0.insert(i, (name, text));
                None
            }
        }
    }

    /// The source of `name`.
    pub fn get(&self, name: &str) -> Option<&Cow<'static, str>> {
        let i = self.0.binary_search_by(|(k, _)| (*k).cmp(name)).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    /// Every source, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Cow<'static, str>)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No sources.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Extend<(&'static str, Cow<'static, str>)> for Sources {
    fn extend<I: IntoIterator<Item = (&'static str, Cow<'static, str>)>>(&mut self, items: I) {
        for (name, text) in items {
            self.insert(name, text);
        }
    }
}

impl IntoIterator for Sources {
    type Item = (&'static str, Cow<'static, str>);
    type IntoIter = std::vec::IntoIter<Self::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Everything prepared for one card.
#[derive(Debug, Clone)]
pub struct PersoData {
    /// Order id.
    pub order_id: String,
    /// Product id.
    pub card_product_id: String,
    /// Masked PAN, for listings.
    pub masked_pan: String,
    /// Cardholder name (visible).
    pub name: Option<EncodedName>,
    /// Magnetic stripe tracks.
    pub tracks: Tracks,
    /// Where each track and injected value came from (`cvv1` → `computed with cvk #1`).
    pub sources: Sources,
    /// Every key the preparation used, with its test flag.
    pub keys_used: Vec<KeyInfo>,
    /// Warnings from the order and the preparation.
    pub warnings: Vec<Finding>,
    /// Chip data (Model 1 or Model 2), when the card has a chip and it was prepared.
    pub chip: Option<ChipData>,
    /// The CVV1 injected into the tracks, if any (kept for a tester's reveal; masked in Debug).
    pub cvv1: Option<Cvv>,
    /// The PVV injected into the tracks, if any (kept for a tester's reveal; masked in Debug).
    pub pvv: Option<Pvv>,
}

impl PersoData {
    /// Keys used that are not test keys; clear values may be revealed only when this is empty.
    pub fn non_test_keys(&self) -> Vec<KeyRef> {
        self.keys_used
            .iter()
            .filter(|k| !k.test)
            .map(|k| k.key)
            .collect()
    }
}

/// The models an order and its product allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllowedModels {
    /// The product names a chip profile.
    pub model1: bool,
    /// The order carries a `tlvData` envelope.
    pub model2: bool,
}

impl AllowedModels {
    /// What `order` with `product` allows.
    pub fn of(order: &Order, product: &Product) -> Self {
        AllowedModels {
            model1: product.chip_profile.is_some() && product.allows_model(1),
            model2: order.tlv_data.is_some() && product.allows_model(2),
        }
    }

    /// Is `model` allowed?
    pub fn allows(self, model: ChipModel) -> bool {
        match model {
            ChipModel::Model1 => self.model1,
            ChipModel::Model2 => self.model2,
        }
    }

    /// The default choice: the issuer's data (Model 2) when sent, else Model 1, else none
    /// (stripe only).
    pub fn default_choice(self) -> Option<ChipModel> {
        if self.model2 {
            Some(ChipModel::Model2)
        } else if self.model1 {
            Some(ChipModel::Model1)
        } else {
            None
        }
    }
}

/// What the operator (or the command line) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelChoice {
    /// The default of [`AllowedModels::default_choice`].
    #[default]
    Auto,
    /// This model, refused when the order or product does not allow it.
    Only(ChipModel),
    /// Tracks only, no chip data.
    StripeOnly,
}

impl ModelChoice {
    /// The model this choice names, `auto` standing for the automatic one.
    fn resolve(self, auto: Option<ChipModel>) -> Option<ChipModel> {
        match self {
            Self::Auto => auto,
            Self::Only(m) => Some(m),
            Self::StripeOnly => None,
        }
    }

    /// Parses `1`, `2`, `auto` or `none` (the command line's spelling).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "1" => Self::Only(ChipModel::Model1),
            "2" => Self::Only(ChipModel::Model2),
            "auto" => Self::Auto,
            "none" => Self::StripeOnly,
            _ => return None,
        })
    }
}

/// The keys a whole card's preparation may use: tracks, Model 1 chip keys, Model 2 KEKs.
pub trait CardKeys: ChipKeys + EnvelopeKeys {}

impl<T: ChipKeys + EnvelopeKeys + ?Sized> CardKeys for T {}

/// Everything [`prepare_card`] reads besides the order.
pub struct PrepInputs<'a> {
    /// The chip profiles products name.
    pub profiles: &'a ChipProfiles,
    /// Model 1's date (5F25 when the order has no effective date).
    pub date: PrepDate,
    /// The key store.
    pub keys: &'a dyn CardKeys,
    /// ICC key pairs for DDA/CDA profiles.
    pub icc_keys: &'a dyn IccKeySource,
    /// Model 2 envelope conventions.
    pub envelope: EnvelopeSettings,
}

/// The chip profile `product` names, or a finding naming the product file.
pub fn profile_of<'p>(
    product: &Product,
    profiles: &'p ChipProfiles,
) -> Result<&'p ChipProfile, Finding> {
    let name = product.chip_profile.as_deref().ok_or_else(|| {
        Finding::new(
            format!("{}: chip_profile", product.source),
            "chip data needs a chip profile in the product",
        )
    })?;
    profiles.get(name).ok_or_else(|| {
        Finding::new(
            format!("{}: chip_profile", product.source),
            format!("chip profile {name} is not loaded (profiles/chip/{name}.toml)"),
        )
    })
}

/// The chip model `choice` resolves to for `order` (`None`: tracks only). Auto: the issuer's
/// data when it was sent (refused by [`prepare_card`] when the product does not take Model 2 —
/// issuer data is never silently ignored), else Model 1 for chip products.
fn chip_model(order: &Order, product: &Product, choice: ModelChoice) -> Option<ChipModel> {
    let auto = if order.tlv_data.is_some() {
        Some(ChipModel::Model2)
    } else if product.chip_profile.is_some() {
        Some(ChipModel::Model1)
    } else {
        None
    };
    choice.resolve(auto)
}

/// The ICC key pair (size, exponent) [`prepare_card`] will ask `icc_keys` for when it prepares
/// `order` on `product`: Model 1 on a DDA/CDA profile the product allows; `None` otherwise.
/// Lets a batch take exactly the pairs it has cards for, ahead of preparing them.
pub fn icc_key_need(
    order: &Order,
    product: &Product,
    choice: ModelChoice,
    profiles: &ChipProfiles,
) -> Option<(usize, super::oda::RsaExponent)> {
    let model = chip_model(order, product, choice)?;
    if model != ChipModel::Model1 || !product.allows_model(model.number()) {
        return None;
    }
    let profile = profile_of(product, profiles).ok()?;
    profile
        .oda
        .method
        .needs_icc_key()
        .then_some((profile.oda.icc_key_bits, profile.oda.icc_exponent))
}

/// Prepares one card: tracks, and chip data by the chosen model. One entry point for the
/// command line, the workstation and the benchmarks.
pub fn prepare_card(
    order: &Order,
    product: &Product,
    choice: ModelChoice,
    inputs: &PrepInputs<'_>,
) -> Result<PersoData, Vec<Finding>> {
    let model = match chip_model(order, product, choice) {
        None => None,
        Some(m) => {
            if !product.allows_model(m.number()) {
                return Err(vec![Finding::new(
                    format!("{}: models", product.source),
                    format!(
                        "product {} does not allow chip {m}",
                        product.card_product_id
                    ),
                )]);
            }
            Some(m)
        }
    };
    let Some(model) = model else {
        return prepare_tracks(order, product, inputs.keys);
    };
    let profile = profile_of(product, inputs.profiles).map_err(|f| vec![f])?;
    match model {
        ChipModel::Model1 => super::chip::model1::prepare(
            order,
            product,
            profile,
            inputs.date,
            inputs.keys,
            inputs.icc_keys,
        ),
        ChipModel::Model2 => super::chip::model2::prepare(
            order,
            product,
            profile,
            inputs.keys,
            inputs.keys,
            inputs.envelope,
        ),
    }
}
