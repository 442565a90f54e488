//! The magnetic stripe step of every card's preparation (and the whole of a stripe-only card).
//!
//! Values are taken from the order when given and computed with the keys it names otherwise; each
//! injected value records where it came from.

use super::{PersoData, Sources};
use crate::domain::fields::{Cvv, PinBlockFormat, Pvv};
use crate::domain::finding::Finding;
use crate::domain::keystore::{self, KeyInfo, KeyRef, KeyStore, KeyUsage, PinBlockRef};
use crate::domain::order::Order;
use crate::domain::product::Product;
use crate::domain::track::{self, BuildError, Injected, Track, TrackNo, Tracks};

/// Lazily obtained values and the bookkeeping of where they came from.
struct Work<'a> {
    order: &'a Order,
    product: &'a Product,
    keys: &'a dyn KeyStore,
    cvv: Option<Cvv>,
    pvv: Option<Pvv>,
    sources: Sources,
    keys_used: Vec<KeyInfo>,
}

impl Work<'_> {
    fn use_key(&mut self, key: KeyRef, path: &str) -> Result<(), Finding> {
        keystore::note_key_use(self.keys, &mut self.keys_used, key, path)
    }

    fn cvv(&mut self) -> Result<&Cvv, Finding> {
        if self.cvv.is_none() {
            let cvv = if let Some(c) = &self.order.cvv1 {
                self.sources
                    .insert("cvv1", "order (encryptedData.cvv1)".into());
                c.clone()
            } else {
                let path = "paymentApplication.cvKeyIndex";
                let index = self.order.payment_application.cv_key_index.ok_or_else(|| {
                    Finding::new(
                        "encryptedData.cvv1, paymentApplication.cvKeyIndex",
                        "the product pattern injects cvv: give cvv1 or a cvKeyIndex to compute it",
                    )
                })?;
                let key = KeyRef::new(KeyUsage::Cvk, index);
                self.use_key(key, path)?;
                let exp = self.order.exp.digits();
                // Always ASCII digits; refused rather than computed over anything else.
                let exp = std::str::from_utf8(&exp).map_err(|_| {
                    Finding::new("encryptedData.exp", "internal: expiry is not four digits")
                })?;
                let cvv = self
                    .keys
                    .visa_cvv(
                        key,
                        &self.order.pan,
                        exp,
                        self.product.service_code.as_str(),
                    )
                    .map_err(|e| Finding::new(path, e.to_string()))?;
                self.sources.insert("cvv1", computed_with(key, 24).into());
                cvv
            };
            self.cvv = Some(cvv);
        }
        self.cvv
            .as_ref()
            .ok_or_else(|| Finding::new("encryptedData.cvv1", "internal: CVV not set"))
    }

    fn pvv(&mut self) -> Result<&Pvv, Finding> {
        if self.pvv.is_none() {
            let pvv = if let Some(p) = &self.order.pvv {
                self.sources
                    .insert("pvv", "order (encryptedData.pvv)".into());
                p.clone()
            } else {
                let index = self.order.payment_application.pv_key_index.ok_or_else(|| {
                    Finding::new(
                        "encryptedData.pvv, paymentApplication.pvKeyIndex",
                        "the product pattern injects pvv: give pvv or a pvKeyIndex and a PIN to compute it",
                    )
                })?;
                let pin = self.order.pin.as_ref().ok_or_else(|| {
                    Finding::new(
                        "encryptedData.pvv, encryptedData.pin",
                        "the product pattern injects pvv: give pvv or an encrypted PIN to compute it",
                    )
                })?;
                let pvki = self.product.pvki.ok_or_else(|| {
                    Finding::new(
                        format!("{}: pvki", self.product.source),
                        "is required to compute a PVV",
                    )
                })?;
                let pvk = KeyRef::new(KeyUsage::Pvk, index);
                let pin_key = KeyRef::new(pin.format.key_usage(), pin.kid);
                self.use_key(pvk, "paymentApplication.pvKeyIndex")?;
                self.use_key(pin_key, "encryptedData.pin.kid")?;
                let pin_ref = PinBlockRef {
                    format: pin.format,
                    key: pin_key,
                    block: &pin.block,
                };
                let pvv = self
                    .keys
                    .visa_pvv(pvk, pvki, &self.order.pan, pin_ref)
                    .map_err(|e| Finding::new("encryptedData.pin", e.to_string()))?;
                self.sources
                    .insert("pvv", pvv_source(pvk, pvki, pin.format, pin_key).into());
                pvv
            };
            self.pvv = Some(pvv);
        }
        self.pvv
            .as_ref()
            .ok_or_else(|| Finding::new("encryptedData.pvv", "internal: PVV not set"))
    }

    /// The values a pattern needs, obtained on demand.
    fn injected(
        &mut self,
        uses_cvv: bool,
        uses_pvv: bool,
    ) -> Result<(Option<Cvv>, Option<Pvv>), Finding> {
        let cvv = if uses_cvv {
            Some(self.cvv()?.clone())
        } else {
            None
        };
        let pvv = if uses_pvv {
            Some(self.pvv()?.clone())
        } else {
            None
        };
        Ok((cvv, pvv))
    }
}

/// `computed with {key}`, in a string of `capacity` for what the caller appends.
fn computed_with(key: KeyRef, capacity: usize) -> String {
    let mut text = String::with_capacity(capacity);
    text.push_str("computed with ");
    key.push_to(&mut text);
    text
}

/// `computed with {pvk} (PVKI {pvki}) from the {format} PIN block under {pin_key}`, built by
/// hand (the formatting machinery cost more than the rest of the card's sources).
fn pvv_source(pvk: KeyRef, pvki: u8, format: PinBlockFormat, pin_key: KeyRef) -> String {
    let mut text = computed_with(pvk, 72);
    text.push_str(" (PVKI ");
    keystore::push_decimal(&mut text, u32::from(pvki));
    text.push_str(") from the ");
    text.push_str(format.as_str());
    text.push_str(" PIN block under ");
    pin_key.push_to(&mut text);
    text
}

fn build_error(no: TrackNo, e: BuildError) -> Finding {
    Finding::new(format!("computed {}", no.key()), e.to_string())
}

/// Prepares the magnetic stripe data of one order. Errors name the fields involved. The first
/// step of [`super::prepare_card`]; Model 1 and Model 2 add chip data to what it returns.
pub fn prepare_tracks(
    order: &Order,
    product: &Product,
    keys: &dyn KeyStore,
) -> Result<PersoData, Vec<Finding>> {
    let mut w = Work {
        order,
        product,
        keys,
        cvv: None,
        pvv: None,
        sources: Sources::new(),
        // A card uses up to three keys here (CVK, PVK, PIN key): no regrowth.
        keys_used: Vec::with_capacity(3),
    };
    let mut errors = Vec::new();
    let mut tracks = Tracks::default();

    for no in [TrackNo::T1, TrackNo::T2, TrackNo::T3] {
        match build_one(&mut w, no) {
            Ok(Some(t)) => match no {
                TrackNo::T1 => tracks.track1 = Some(t),
                TrackNo::T2 => tracks.track2 = Some(t),
                TrackNo::T3 => tracks.track3 = Some(t),
            },
            Ok(None) => {}
            Err(f) => errors.push(f),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PersoData {
        order_id: order.id.clone(),
        card_product_id: order.card_product_id.clone(),
        masked_pan: order.pan.masked(),
        name: order.encoded_name.clone(),
        tracks,
        sources: w.sources,
        keys_used: w.keys_used,
        warnings: Vec::new(),
        chip: None,
        cvv1: w.cvv,
        pvv: w.pvv,
    })
}

fn build_one(w: &mut Work<'_>, no: TrackNo) -> Result<Option<Track>, Finding> {
    if let Some(t) = w.order.track_data.get(no) {
        w.sources
            .insert(no.key(), format!("order (trackData.{})", no.key()).into());
        return Ok(Some(t.clone()));
    }
    let order = w.order;
    let product = w.product;
    let track = match no {
        TrackNo::T1 => {
            let name = order.encoded_name.as_ref().ok_or_else(|| {
                Finding::new(
                    "encryptedData.encodedName, trackData.track1",
                    "track 1 must be computed and needs a name: give encodedName or track1",
                )
            })?;
            let p = &product.track1_discretionary;
            let (cvv, pvv) = w.injected(p.uses_cvv(), p.uses_pvv())?;
            let values = Injected {
                cvv: cvv.as_ref(),
                pvv: pvv.as_ref(),
            };
            track::build_track1(&order.pan, name, order.exp, product.service_code, p, values)
                .map_err(|e| build_error(no, e))?
        }
        TrackNo::T2 => {
            let p = &product.track2_discretionary;
            let (cvv, pvv) = w.injected(p.uses_cvv(), p.uses_pvv())?;
            let values = Injected {
                cvv: cvv.as_ref(),
                pvv: pvv.as_ref(),
            };
            track::build_track2(&order.pan, order.exp, product.service_code, p, values)
                .map_err(|e| build_error(no, e))?
        }
        TrackNo::T3 => {
            let Some(body) = &product.track3_body else {
                return Ok(None);
            };
            track::build_track3(&order.pan, body).map_err(|e| build_error(no, e))?
        }
    };
    w.sources.insert(no.key(), "computed".into());
    Ok(Some(track))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keystore::KeyUsage;

    /// The PVV source text built by hand is what the formatting machinery writes.
    #[test]
    fn the_pvv_source_reads_as_formatted() {
        let (pvk, zpk) = (
            KeyRef::new(KeyUsage::Pvk, 12),
            KeyRef::new(KeyUsage::Zpk, 0),
        );
        for (pvki, format) in [(1, PinBlockFormat::Iso0), (6, PinBlockFormat::Iso4)] {
            assert_eq!(
                pvv_source(pvk, pvki, format, zpk),
                format!(
                    "computed with {pvk} (PVKI {pvki}) from the {} PIN block under {zpk}",
                    format.as_str()
                )
            );
        }
    }
}
