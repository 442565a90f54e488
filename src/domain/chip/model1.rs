//! Model 1: the EMV chip dataset computed from the order's minimal inputs, the product's payment
//! application configuration, the chip profile and the keys the order names by index.
//!
//! Order of work: tag values (order, configuration, profile), records without certificates, the
//! static data to be authenticated over the records and AIP actually produced, the ODA
//! signatures (issuer key in the key store; ICC key pair from the key source), the remaining
//! records, the FCI/GPO DGIs, then keys and PIN. The result is [`ChipData`] with the DGIs in the
//! profile's send order. Pure: the preparation date and every key operation come from outside.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::keys::{
    ChipKeys, IccKeySource, IccMasterKeyValue, IssuerOda, IssuerSigner, ReferencePinBlock,
};
use super::profile::{
    ChipProfile, DgiContent, DgiRule, GpoAnswer, IcvvPosition, Interface, OdaMethod, TagSlot,
    aip_asks_for_oda, signature_tag,
};
use super::{ChipData, ChipKcvs, ChipModel, OdaSummary};
use crate::domain::cvv::ICVV_SERVICE_CODE;
use crate::domain::dgi::{Dgi, PersoDgi};
use crate::domain::fields::{Cvv, Yymm};
use crate::domain::finding::Finding;
use crate::domain::keystore::{HeldSecret, KeyInfo, KeyRef, KeyUsage, PinBlockRef};
use crate::domain::oda::{self, CertExpiry, IccCertFields};
use crate::domain::order::Order;
use crate::domain::prepare::PersoData;
use crate::domain::product::{Product, Segment};
use crate::domain::tlv::{self, Tag};
use crate::tag;

/// A calendar date (the preparation date, passed in: the domain has no clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepDate {
    /// Two-digit year.
    pub yy: u8,
    /// Month 1-12.
    pub mm: u8,
    /// Day 1-31.
    pub dd: u8,
}

impl PrepDate {
    /// A checked date (20YY).
    pub fn new(yy: u8, mm: u8, dd: u8) -> Option<Self> {
        ((1..=12).contains(&mm) && yy <= 99 && dd >= 1 && dd <= days_in_month(yy, mm))
            .then_some(Self { yy, mm, dd })
    }

    /// The UTC date of a Unix time (the caller reads the clock; the domain has none).
    pub fn from_unix_secs(secs: u64) -> Self {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let (y, m, d) = crate::domain::date::civil_from_days(days);
        let yy = u8::try_from(y.rem_euclid(100)).unwrap_or(0);
        let (mm, dd) = (u8::try_from(m).unwrap_or(1), u8::try_from(d).unwrap_or(1));
        Self::new(yy, mm, dd).unwrap_or(Self { yy, mm: 1, dd: 1 })
    }
}

/// Days in month `mm` of year 20`yy`.
pub fn days_in_month(yy: u8, mm: u8) -> u8 {
    match mm {
        2 if yy.is_multiple_of(4) => 29, // 2000-2099: every fourth year, 2000 included
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// Packs digits (ASCII) as compressed numeric, `F`-padded to whole bytes.
fn pack_cn(digits: &[u8], out: &mut Vec<u8>) {
    for pair in digits.chunks(2) {
        let hi = nibble(pair.first().copied().unwrap_or(b'F'));
        let lo = nibble(pair.get(1).copied().unwrap_or(b'F'));
        out.push((hi << 4) | lo);
    }
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'D' | b'=' => 0x0D,
        _ => 0x0F,
    }
}

/// Appends one primitive TLV.
fn put(out: &mut Vec<u8>, tag: Tag, value: &[u8], dgi: u16) -> Result<(), Finding> {
    let len = u16::try_from(value.len()).map_err(|_| {
        Finding::new(
            format!("DGI {dgi:04X}: tag {tag}"),
            "value is longer than 65535 bytes",
        )
    })?;
    tag.encode(out);
    tlv::encode_length(len, out);
    out.extend_from_slice(value);
    Ok(())
}

/// Offset of the `cvv` token in a discretionary data pattern, in characters.
fn cvv_offset(segments: &[Segment]) -> Option<usize> {
    let mut pos = 0;
    for s in segments {
        match s {
            Segment::Cvv => return Some(pos),
            Segment::Pvv => pos += 4,
            Segment::Literal(l) => pos += l.len(),
        }
    }
    None
}

/// Replaces 3 characters at `offset` with the iCVV.
fn put_icvv(dd: &str, offset: usize, icvv: &Cvv, what: &str) -> Result<Zeroizing<String>, Finding> {
    let mut s = Zeroizing::new(dd.to_string());
    let end = offset + 3;
    if end > s.len() || !s.is_char_boundary(offset) || !s.is_char_boundary(end) {
        return Err(Finding::new(
            what,
            format!(
                "the iCVV position {offset} does not fit the {}-character discretionary data",
                s.len()
            ),
        ));
    }
    s.replace_range(offset..end, icvv.reveal());
    Ok(s)
}

/// The order data Model 1 needs beyond the order itself.
struct Work<'a> {
    order: &'a Order,
    product: &'a Product,
    profile: &'a ChipProfile,
    keys: &'a dyn ChipKeys,
    date: PrepDate,
    values: BTreeMap<Tag, Zeroizing<Vec<u8>>>,
    keys_used: Vec<KeyInfo>,
    sources: crate::domain::prepare::Sources,
}

impl Work<'_> {
    fn profile_path(&self, key: impl std::fmt::Display) -> String {
        format!("{}: {key}", self.profile.source)
    }

    fn use_key(&mut self, key: KeyRef, path: &str) -> Result<(), Finding> {
        crate::domain::keystore::note_key_use(self.keys, &mut self.keys_used, key, path)
    }

    fn set(&mut self, tag: Tag, value: Vec<u8>) {
        self.values.insert(tag, Zeroizing::new(value));
    }

    /// The product configuration's tag values, checked against the profile's `config_tags`.
    fn config(&mut self) -> Result<(), Finding> {
        let name = self
            .order
            .payment_application
            .config
            .as_deref()
            .unwrap_or("default");
        let needs = !self.profile.config_tags.is_empty();
        let config = match self.product.configs.get(name) {
            Some(c) => c,
            None if !needs => return Ok(()),
            None => {
                return Err(Finding::new(
                    "paymentApplication.config",
                    format!(
                        "configuration `{name}` is not in product {} ({}); chip profile {} needs one",
                        self.product.card_product_id, self.product.source, self.profile.name
                    ),
                ));
            }
        };
        for tag in &self.profile.config_tags {
            if !config.contains_key(tag) {
                return Err(Finding::new(
                    format!("{}: config.{name}", self.product.source),
                    format!(
                        "lacks tag {tag}, which chip profile {} requires",
                        self.profile.name
                    ),
                ));
            }
        }
        for (tag, v) in config {
            if super::profile::is_computed(*tag) {
                return Err(Finding::new(
                    format!("{}: config.{name}.{tag}", self.product.source),
                    "is computed by Model 1 and cannot be configured",
                ));
            }
            self.set(*tag, v.clone());
        }
        if let Some(cdol1) = config.get(&tag!(0x8C)) {
            check_cdol1(
                cdol1,
                self.profile,
                format!("{}: config.{name}.8C", self.product.source),
            )?;
        } else if let Some(cdol1) = self.profile.tags.get(&tag!(0x8C)) {
            check_cdol1(cdol1, self.profile, self.profile_path("tags.8C"))?;
        }
        Ok(())
    }

    fn icvv(&mut self) -> Result<Cvv, Finding> {
        if let Some(c) = &self.order.icvv {
            self.sources
                .insert("icvv", "order (encryptedData.icvv)".into());
            return Ok(c.clone());
        }
        let index = self.order.payment_application.cv_key_index.ok_or_else(|| {
            Finding::new(
                "encryptedData.icvv, paymentApplication.cvKeyIndex",
                format!(
                    "chip profile {} places an iCVV in the track 2 equivalent data: give icvv or a cvKeyIndex to compute it",
                    self.profile.name
                ),
            )
        })?;
        let key = KeyRef::new(KeyUsage::Cvk, index);
        self.use_key(key, "paymentApplication.cvKeyIndex")?;
        let exp = self.order.exp.to_string();
        let cvv = self
            .keys
            .visa_cvv(key, &self.order.pan, &exp, ICVV_SERVICE_CODE)
            .map_err(|e| Finding::new("paymentApplication.cvKeyIndex", e.to_string()))?;
        self.sources.insert(
            "icvv",
            format!("computed with {key} (service code 999)").into(),
        );
        Ok(cvv)
    }

    /// The values taken or computed from the order: 5A, 5F24, 5F25, 5F34, 5F20, 5F30, 9F24,
    /// 57, 9F1F, 56, 9F6B, and the profile's 4F/84/50/9F4A.
    fn order_values(&mut self, tracks: &crate::domain::prepare::Tracks) -> Result<(), Finding> {
        self.card_values(tracks);
        let profile = self.profile;
        let uses = |t: u32| profile_uses(profile, t);
        let track_tags = [0x57, 0x9F1F, 0x56, 0x9F6B]
            .into_iter()
            .any(|t| uses(t) && !(t == 0x9F6B && profile.tags.contains_key(&tag!(0x9F6B))));
        if !track_tags {
            return Ok(());
        }
        let (off1, icvv) = self.track2_values(tracks)?;
        if uses(0x9F1F) || uses(0x56) {
            self.track1_values(tracks, off1, icvv.as_ref())?;
        }
        Ok(())
    }

    /// 5A, 5F24, 5F25, 5F34, 5F30, 5F20, 9F24 from the order; 4F, 84, 50, 9F4A from the profile.
    fn card_values(&mut self, tracks: &crate::domain::prepare::Tracks) {
        let order = self.order;
        let pan = order.pan.reveal().as_bytes();
        let mut v = Vec::with_capacity(10);
        pack_cn(pan, &mut v);
        self.set(tag!(0x5A), v);
        let Yymm { yy, mm } = order.exp;
        self.set(
            tag!(0x5F24),
            vec![bcd(yy), bcd(mm), bcd(days_in_month(yy, mm))],
        );
        let eff = match order.effective_date {
            Some(Yymm { yy, mm }) => [bcd(yy), bcd(mm), 0x01],
            None => {
                self.sources.insert("5F25", "preparation date".into());
                [bcd(self.date.yy), bcd(self.date.mm), bcd(self.date.dd)]
            }
        };
        self.set(tag!(0x5F25), eff.to_vec());
        self.set(tag!(0x5F34), vec![bcd(order.psn.0)]);
        let sc = self.product.service_code.as_str().as_bytes();
        let sc_n = [
            sc.first().map_or(0, |d| d - b'0'),
            bcd((sc.get(1).map_or(0, |d| d - b'0')) * 10 + sc.get(2).map_or(0, |d| d - b'0')),
        ];
        self.set(tag!(0x5F30), sc_n.to_vec());
        let name = match (
            &order.encoded_name,
            tracks.track1.as_ref().and_then(|t| t.name_field()),
        ) {
            (Some(n), _) => Some(n.as_str().to_string()),
            (None, Some(n)) => Some(n.to_string()),
            (None, None) => None,
        };
        if let Some(n) = name {
            self.set(tag!(0x5F20), n.into_bytes());
        }
        if let Some(par) = &order.par {
            self.set(tag!(0x9F24), par.as_bytes().to_vec());
        }
        self.set(tag!(0x4F), self.profile.aid.clone());
        self.set(tag!(0x84), self.profile.aid.clone());
        self.set(tag!(0x50), self.profile.label.as_bytes().to_vec());
        if let Some(list) = &self.profile.oda.sda_tag_list {
            self.set(tag!(0x9F4A), list.clone());
        }
    }

    /// 57 (and 9F6B unless the profile sets it) from track 2, with the iCVV in place of the
    /// CVV; returns the track 1 iCVV offset and the iCVV for [`Self::track1_values`].
    fn track2_values(
        &mut self,
        tracks: &crate::domain::prepare::Tracks,
    ) -> Result<(Option<usize>, Option<Cvv>), Finding> {
        let order = self.order;
        let pan = order.pan.reveal().as_bytes();
        let t2 = needed(
            tracks.track2.as_ref(),
            2,
            "to build the track 2 equivalent data (57)",
        )?;
        // Track 2 body: PAN=YYMMSCDD.
        let body = t2.body();
        let dd2 = body
            .split_once('=')
            .and_then(|(_, rest)| rest.get(7..))
            .ok_or_else(|| {
                Finding::new(
                    "computed track2",
                    "has no expiry and service code after the separator",
                )
            })?;
        let t2_sc = body
            .split_once('=')
            .and_then(|(_, rest)| rest.get(4..7))
            .unwrap_or("");
        let product_sc = self.product.service_code.as_str();
        if t2_sc != product_sc {
            return Err(Finding::new(
                "trackData.track2",
                format!(
                    "service code {t2_sc} differs from {product_sc} ({}: service_code), which the chip carries in 5F30",
                    self.product.source
                ),
            ));
        }
        let p2 = &self.product.track2_discretionary.segments;
        let p1 = &self.product.track1_discretionary.segments;
        let (off2, off1) = match self.profile.icvv {
            IcvvPosition::None => (None, None),
            IcvvPosition::Offset(n) => (Some(n), Some(n)),
            IcvvPosition::PerTrack { track2, track1 } => (track2, track1),
            IcvvPosition::CvvToken => (cvv_offset(p2), cvv_offset(p1)),
        };
        let icvv = if off2.is_some() || off1.is_some() {
            Some(self.icvv()?)
        } else {
            None
        };
        let dd2 = match (off2, &icvv) {
            (Some(o), Some(c)) => put_icvv(dd2, o, c, "computed 57 (track 2 equivalent data)")?,
            _ => Zeroizing::new(dd2.to_string()),
        };
        let exp = order.exp.to_string();
        let mut digits = Zeroizing::new(Vec::with_capacity(40));
        digits.extend_from_slice(pan);
        digits.push(b'D');
        digits.extend_from_slice(exp.as_bytes());
        digits.extend_from_slice(t2_sc.as_bytes());
        digits.extend_from_slice(dd2.as_bytes());
        let mut v57 = Vec::with_capacity(20);
        pack_cn(&digits, &mut v57);
        if !self.profile.tags.contains_key(&tag!(0x9F6B)) {
            self.set(tag!(0x9F6B), v57.clone());
        }
        self.set(tag!(0x57), v57);
        Ok((off1, icvv))
    }

    /// 9F1F and 56 from track 1, with the iCVV at `off1`.
    fn track1_values(
        &mut self,
        tracks: &crate::domain::prepare::Tracks,
        off1: Option<usize>,
        icvv: Option<&Cvv>,
    ) -> Result<(), Finding> {
        let t1 = needed(tracks.track1.as_ref(), 1, "for 9F1F / 56")?;
        // Track 1 body: B PAN ^ NAME ^ YYMM SC DD.
        let body = t1.body();
        let mut parts = body.splitn(3, '^');
        let (head, name, rest) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let dd1 = rest.get(7..).ok_or_else(|| {
            Finding::new(
                "computed track1",
                "has no expiry and service code after the name",
            )
        })?;
        let dd1 = match (off1, icvv) {
            (Some(o), Some(c)) => {
                put_icvv(dd1, o, c, "computed 9F1F (track 1 discretionary data)")?
            }
            _ => Zeroizing::new(dd1.to_string()),
        };
        self.set(tag!(0x9F1F), dd1.as_bytes().to_vec());
        let mut t56 = Zeroizing::new(String::with_capacity(body.len()));
        t56.push_str(head);
        t56.push('^');
        t56.push_str(name);
        t56.push('^');
        t56.push_str(rest.get(..7).unwrap_or(""));
        t56.push_str(&dd1);
        self.set(tag!(0x56), t56.as_bytes().to_vec());
        Ok(())
    }

    /// 9F10 when the profile places it: the CVN's layout with the order's Derivation Key Index.
    fn issuer_application_data(&mut self) -> Result<(), Finding> {
        let profile = self.profile;
        if !profile_uses(profile, 0x9F10) {
            return Ok(());
        }
        let path = "paymentApplication.derivationKeyIndex";
        let index = self
            .order
            .payment_application
            .derivation_key_index
            .ok_or_else(|| {
                Finding::new(
                    path,
                    format!(
                        "chip profile {} places 9F10, whose Derivation Key Index comes from the derivationKeyIndex: give one",
                        profile.name
                    ),
                )
            })?;
        let dki = u8::try_from(index).map_err(|_| {
            Finding::new(
                path,
                format!("{index} does not fit the one-byte Derivation Key Index of 9F10 (0-255)"),
            )
        })?;
        self.set(tag!(0x9F10), profile.iad.build(profile.cvn, dki));
        self.sources.insert(
            "9F10",
            format!(
                "{} layout, DKI {dki:02X} (derivationKeyIndex), CVN {}",
                profile.cvn,
                profile.cvn.name()
            )
            .into(),
        );
        Ok(())
    }

    /// The value of `tag` for a DGI: local override, computed/configured value, profile value.
    fn value<'v>(
        &'v self,
        slot: TagSlot,
        interface: Interface,
        local: Option<&'v BTreeMap<Tag, Vec<u8>>>,
        afl: &'v BTreeMap<Interface, Vec<u8>>,
        aip: &'v BTreeMap<Interface, [u8; 2]>,
        dgi: u16,
    ) -> Result<Option<&'v [u8]>, Finding> {
        let tag = slot.tag;
        if tag.raw() == 0x5F20
            && interface == Interface::Contactless
            && !self.profile.contactless_name
        {
            return Ok(None);
        }
        let found: Option<&[u8]> = if let Some(v) = local.and_then(|l| l.get(&tag)) {
            Some(v)
        } else if tag.raw() == 0x82 {
            aip.get(&interface).map(|a| a.as_slice())
        } else if tag.raw() == 0x94 {
            afl.get(&interface).map(Vec::as_slice)
        } else if let Some(v) = self.values.get(&tag) {
            Some(v.as_slice())
        } else {
            self.profile.tags.get(&tag).map(Vec::as_slice)
        };
        match found {
            Some(v) if !(v.is_empty() && matches!(tag.raw(), 0x92 | 0x9F48)) => Ok(Some(v)),
            _ if slot.optional || matches!(tag.raw(), 0x92 | 0x9F48) => Ok(None),
            _ => Err(Finding::new(
                self.profile_path(format!("dgi.{dgi:04X}")),
                format!(
                    "tag {tag}{} has no value for this order{}",
                    tags_name(tag),
                    missing_hint(tag)
                ),
            )),
        }
    }
}

/// CDOL1 must ask for every terminal data element the profile's CVN MACs.
fn check_cdol1(dol: &[u8], profile: &ChipProfile, path: String) -> Result<(), Finding> {
    let mut r = tlv::Reader::new(dol);
    let mut tags = Vec::new();
    while !r.is_empty() {
        let t = Tag::read(&mut r)
            .map_err(|e| Finding::new(&path, format!("CDOL1 is not a data object list: {e}")))?;
        r.read_u8().ok_or_else(|| {
            Finding::new(&path, format!("CDOL1 ends without the length of tag {t}"))
        })?;
        tags.push(t.raw());
    }
    let missing: Vec<String> = crate::domain::emv_keys::AC_TERMINAL_DATA
        .iter()
        .filter(|t| !tags.contains(t))
        .map(|t| format!("{t:X}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Finding::new(
        path,
        format!(
            "CDOL1 lacks {}, which {} MACs into the application cryptogram (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37)",
            missing.join(", "),
            profile.cvn
        ),
    ))
}

fn profile_uses(profile: &ChipProfile, raw: u32) -> bool {
    profile.dgis().iter().any(|d| match &d.content {
        DgiContent::Record { tags, .. } | DgiContent::Tags { tags, .. } => {
            tags.iter().any(|s| s.tag.raw() == raw)
        }
        _ => false,
    })
}

fn tags_name(tag: Tag) -> String {
    crate::domain::tags::name(tag)
        .map(|n| format!(" ({n})"))
        .unwrap_or_default()
}

fn missing_hint(tag: Tag) -> &'static str {
    match tag.raw() {
        0x5F20 => ": give encryptedData.encodedName or trackData.track1",
        0x9F24 => ": give encryptedData.paymentAccountReference (or mark the tag optional with ?)",
        _ => "",
    }
}

/// Where the ICC key pair came from.
#[derive(Debug)]
struct OdaOut {
    summary: OdaSummary,
    crt: Option<oda::CrtComponents>,
    /// The signature (93 or 9F46) each record carries.
    signatures: BTreeMap<u16, (Tag, Vec<u8>)>,
}

/// What [`compute`] returns: the chip data, the keys used and where chip values came from.
pub type Computed = (ChipData, Vec<KeyInfo>, crate::domain::prepare::Sources);

/// The AFL and AIP of each interface, as records and GPO DGIs carry them.
struct Gpo {
    afl: BTreeMap<Interface, Vec<u8>>,
    aip: BTreeMap<Interface, [u8; 2]>,
}

/// The secret DGI values one card gets: ICC master keys, their check values, the PIN block and
/// the ICC private key (CRT) of DDA/CDA.
struct Secrets<'a> {
    master: Option<IccMasterKeyValue>,
    kcvs: Option<ChipKcvs>,
    pin_block: Option<ReferencePinBlock>,
    crt: Option<&'a oda::CrtComponents>,
}

/// Computes the chip data of one order under `profile` (Model 1). `tracks` are the order's
/// prepared tracks (57, 9F1F and 56 follow them, with iCVV in place of the CVV). Returns the
/// chip data, the keys used and the sources of chip values.
///
/// Steps: order values and IAD; the issuer certificate (ODA); the records without signatures;
/// the ODA signatures over them; the signed records; master keys and PIN; every DGI in send
/// order.
pub fn compute(
    order: &Order,
    product: &Product,
    profile: &ChipProfile,
    tracks: &crate::domain::prepare::Tracks,
    date: PrepDate,
    keys: &dyn ChipKeys,
    icc_keys: &dyn IccKeySource,
) -> Result<Computed, Finding> {
    let mut w = Work {
        order,
        product,
        profile,
        keys,
        date,
        values: BTreeMap::new(),
        keys_used: Vec::new(),
        sources: crate::domain::prepare::Sources::new(),
    };
    w.config()?;
    w.order_values(tracks)?;
    w.issuer_application_data()?;
    let gpo = Gpo {
        afl: [Interface::Contact, Interface::Contactless]
            .into_iter()
            .map(|i| (i, profile.afl(i)))
            .collect(),
        aip: profile.aip.clone(),
    };
    let issuer = issuer_certificate(&mut w)?;
    let mut built = build_records(&w, &gpo, false, None)?;
    let oda_out = match &issuer {
        Some((index, iss)) => Some(sign_oda(&mut w, profile, *index, iss, &built, icc_keys)?),
        None => None,
    };
    built.extend(build_records(&w, &gpo, true, oda_out.as_ref())?);
    let (kcvs, master) = master_keys(&mut w)?;
    let (pin_block, pin_generated) = pin_block(&mut w)?;
    let secrets = Secrets {
        master,
        kcvs,
        pin_block,
        crt: oda_out.as_ref().and_then(|o| o.crt.as_ref()),
    };
    let mut dgis = Vec::with_capacity(profile.dgis().len());
    for rule in profile.dgis() {
        let value = dgi_value(&w, rule, &mut built, &gpo, &secrets)?;
        if let Some(mut dgi) = perso_dgi(&w, rule, value)? {
            dgi.held = held_secret(rule, &secrets);
            dgis.push(dgi);
        }
    }
    w.sources.insert(
        "chip",
        format!("Model 1, chip profile {}", profile.name).into(),
    );
    let chip = ChipData {
        model: ChipModel::Model1,
        profile: profile.name.clone(),
        aid: profile.aid.clone(),
        dgis,
        kcvs,
        oda: oda_out.map(|o| o.summary),
        pin_generated,
    };
    Ok((chip, w.keys_used, w.sources))
}

/// The issuer's ODA certificate material (8F, 90, 92, 9F32) when the profile uses ODA.
fn issuer_certificate(w: &mut Work<'_>) -> Result<Option<(u32, IssuerOda)>, Finding> {
    let (order, profile) = (w.order, w.profile);
    if profile.oda.method == OdaMethod::None {
        return Ok(None);
    }
    let index = order.payment_application.oda_key_index.ok_or_else(|| {
        Finding::new(
            "paymentApplication.odaKeyIndex",
            format!(
                "chip profile {} uses {} and needs an odaKeyIndex",
                profile.name,
                profile.oda.method.as_str().to_uppercase()
            ),
        )
    })?;
    let key = KeyRef::new(KeyUsage::IssuerRsa, index);
    w.use_key(key, "paymentApplication.odaKeyIndex")?;
    let iss = w
        .keys
        .issuer_oda(index)
        .map_err(|e| Finding::new("paymentApplication.odaKeyIndex", e.to_string()))?;
    check_issuer_certificate(&iss, index, order, profile)?;
    w.set(tag!(0x8F), vec![iss.ca_index]);
    w.set(tag!(0x90), iss.certificate.certificate.clone());
    w.set(tag!(0x92), iss.certificate.remainder.clone());
    w.set(tag!(0x9F32), iss.certificate.exponent.clone());
    Ok(Some((index, iss)))
}

/// The record DGIs that carry ODA signatures (`signed`), or those that do not. Signed records
/// get the signature `oda` made for them.
fn build_records(
    w: &Work<'_>,
    gpo: &Gpo,
    signed: bool,
    oda: Option<&OdaOut>,
) -> Result<BTreeMap<u16, Vec<u8>>, Finding> {
    let carries_signature = |tags: &[TagSlot]| {
        tags.iter()
            .any(|s| matches!(s.tag.raw(), 0x93 | 0x9F46 | 0x9F47 | 0x9F48))
    };
    let mut built = BTreeMap::new();
    for rule in w.profile.records() {
        if let DgiContent::Record {
            tags, interfaces, ..
        } = &rule.content
            && carries_signature(tags) == signed
        {
            let i = interfaces.first().copied().unwrap_or(Interface::Contact);
            let mut local = BTreeMap::new();
            if let Some((t, v)) = oda.and_then(|o| o.signatures.get(&rule.id)) {
                local.insert(*t, v.clone());
            }
            let record = build_record(w, rule.id, tags, i, &gpo.afl, &gpo.aip, &local)?;
            built.insert(rule.id, record);
        }
    }
    Ok(built)
}

/// The ICC master keys of DGI 8000 and their check values, when the profile has DGI 8000.
type MasterKeys = (Option<ChipKcvs>, Option<IccMasterKeyValue>);

fn master_keys(w: &mut Work<'_>) -> Result<MasterKeys, Finding> {
    let (order, profile) = (w.order, w.profile);
    if profile.dgi_rule(0x8000).is_none() {
        return Ok((None, None));
    }
    let index = order.payment_application.derivation_key_index.ok_or_else(|| {
        Finding::new(
            "paymentApplication.derivationKeyIndex",
            format!("chip profile {} needs the ICC master keys (DGI 8000): give a derivationKeyIndex", profile.name),
        )
    })?;
    for usage in [KeyUsage::ImkAc, KeyUsage::ImkSmi, KeyUsage::ImkSmc] {
        w.use_key(
            KeyRef::new(usage, index),
            "paymentApplication.derivationKeyIndex",
        )?;
    }
    let set = w
        .keys
        .icc_master_keys(index, profile.mkd, &order.pan, order.psn)
        .map_err(|e| Finding::new("paymentApplication.derivationKeyIndex", e.to_string()))?;
    Ok((Some(set.kcvs), Some(set.value)))
}

/// The value of one DGI of the profile, `None` when this order yields none.
fn dgi_value(
    w: &Work<'_>,
    rule: &DgiRule,
    built: &mut BTreeMap<u16, Vec<u8>>,
    gpo: &Gpo,
    secrets: &Secrets<'_>,
) -> Result<Option<Vec<u8>>, Finding> {
    let id = rule.id;
    Ok(match &rule.content {
        DgiContent::Record { .. } => built.remove(&id),
        DgiContent::Tags {
            template,
            tags,
            interface,
            values,
            raw,
        } => {
            let mut inner = Vec::with_capacity(64);
            for slot in tags {
                let value = w.value(*slot, *interface, Some(values), &gpo.afl, &gpo.aip, id)?;
                if let Some(v) = value {
                    if *raw {
                        inner.extend_from_slice(v);
                    } else {
                        put(&mut inner, slot.tag, v, id)?;
                    }
                }
            }
            match template {
                Some(t) => {
                    let mut out = Vec::with_capacity(inner.len() + 4);
                    put(&mut out, *t, &inner, id)?;
                    Some(out)
                }
                None => Some(inner),
            }
        }
        DgiContent::Verbatim(v) => Some(v.clone()),
        // A held value is sent by the store at STORE DATA: the DGI carries zeros of the
        // length the card receives, and the reference (`PersoDgi::held`).
        DgiContent::MasterKeys => secrets.master.as_ref().map(|m| match m {
            IccMasterKeyValue::Clear(v) => v.to_vec(),
            IccMasterKeyValue::Held(h) => vec![0; h.len()],
        }),
        DgiContent::KeyCheckValues => secrets.kcvs.map(|k| k.dgi_value().to_vec()),
        DgiContent::PinBlock => secrets.pin_block.as_ref().map(|p| match p {
            ReferencePinBlock::Clear(v) => v.to_vec(),
            ReferencePinBlock::Held(h) => vec![0; h.len()],
        }),
        DgiContent::PinTry => secrets
            .pin_block
            .as_ref()
            .map(|_| vec![w.profile.pin.try_limit, w.profile.pin.try_limit]),
        DgiContent::IccCrt(n) => secrets.crt.and_then(|c| {
            c.dgis()
                .into_iter()
                .find(|(cid, _)| *cid == 0x8200 | u16::from(*n))
                .map(|(_, v)| v.expose().to_vec())
        }),
    })
}

/// The store's reference for a DGI whose value the store holds (8000, and 8010 wrapped under a
/// `ktk`); a wrapped value is sent padded as the profile's `pad` says.
fn held_secret(rule: &DgiRule, secrets: &Secrets<'_>) -> Option<HeldSecret> {
    match (&rule.content, &secrets.master, &secrets.pin_block) {
        (DgiContent::MasterKeys, Some(IccMasterKeyValue::Held(h)), _) => Some(h.clone()),
        (DgiContent::PinBlock, _, Some(ReferencePinBlock::Held(h))) => Some(match h.clone() {
            HeldSecret::Wrapped {
                ktk_index,
                blob,
                len,
                ..
            } => HeldSecret::Wrapped {
                ktk_index,
                blob,
                len,
                pad: rule.pad,
            },
            other => other,
        }),
        _ => None,
    }
}

/// The DGI with the profile's flags; a required DGI without a value and a record longer than
/// READ RECORD returns are refused.
fn perso_dgi(
    w: &Work<'_>,
    rule: &DgiRule,
    value: Option<Vec<u8>>,
) -> Result<Option<PersoDgi>, Finding> {
    let id = rule.id;
    let Some(value) = value else {
        if !rule.required {
            return Ok(None);
        }
        return Err(Finding::new(
            w.profile_path(format!("dgi.{id:04X}")),
            match rule.content {
                DgiContent::PinBlock | DgiContent::PinTry => format!(
                    "DGI {id:04X} is required: give encryptedData.pin, or allow a random PIN in product {}",
                    w.product.card_product_id
                ),
                _ => format!("DGI {id:04X} is required but this order yields no value for it"),
            },
        ));
    };
    if tlv_record(id) && value.len() > MAX_RECORD_LEN {
        return Err(Finding::new(
            w.profile_path(format!("dgi.{id:04X}")),
            format!(
                "record DGI {id:04X} is {} bytes: READ RECORD returns at most {MAX_RECORD_LEN} data bytes; split its tags over more records",
                value.len()
            ),
        ));
    }
    let dgi = if tlv_record(id) {
        let [sfi, rec] = id.to_be_bytes();
        Dgi::record(sfi, rec, value)
    } else {
        Dgi::new(id, value)
    }
    .map_err(|e| Finding::new(w.profile_path(format!("dgi.{id:04X}")), e.to_string()))?;
    Ok(Some(PersoDgi {
        dgi,
        encrypt: rule.encrypt,
        pad: rule.pad,
        held: None,
    }))
}

/// The most data a READ RECORD answer carries (short APDU, Le = 00): the whole `70 L V`.
pub const MAX_RECORD_LEN: usize = 256;

fn tlv_record(id: u16) -> bool {
    crate::domain::tags::is_record_id(id)
}

fn build_record(
    w: &Work<'_>,
    id: u16,
    tags: &[TagSlot],
    interface: Interface,
    afl: &BTreeMap<Interface, Vec<u8>>,
    aip: &BTreeMap<Interface, [u8; 2]>,
    local: &BTreeMap<Tag, Vec<u8>>,
) -> Result<Vec<u8>, Finding> {
    let mut inner = Vec::with_capacity(128);
    for slot in tags {
        if let Some(v) = w.value(*slot, interface, Some(local), afl, aip, id)? {
            put(&mut inner, slot.tag, v, id)?;
        }
    }
    let mut out = Vec::with_capacity(inner.len() + 4);
    put(&mut out, tag!(0x70), &inner, id)?;
    Ok(out)
}

/// The issuer certificate must fit the card (EMV Book 2 §5.3, §6.3): its issuer identifier
/// the PAN's leading digits, its CA the AID's RID, its expiry not before the card's (the ICC
/// certificate expires with the card, so never after the issuer's).
pub fn check_issuer_certificate(
    iss: &IssuerOda,
    index: u32,
    order: &Order,
    profile: &ChipProfile,
) -> Result<(), Finding> {
    let path = "paymentApplication.odaKeyIndex";
    let key = format!("the issuer key at odaKeyIndex {index}");
    if !iss.fields.issuer_id_matches_pan(order.pan.reveal()) {
        return Err(Finding::new(
            path,
            format!(
                "{key} has a certificate for another issuer identifier than the PAN's leading digits: a terminal rejects it (EMV Book 2 §5.3 step 8)"
            ),
        ));
    }
    if profile.aid.get(..5) != Some(iss.rid.as_slice()) {
        return Err(Finding::new(
            path,
            format!(
                "{key} is certified by a CA of RID {}, but the application {} has RID {}: a terminal looks the CA key up by the AID's RID",
                hex::encode_upper(iss.rid),
                hex::encode_upper(&profile.aid),
                hex::encode_upper(profile.aid.get(..5).unwrap_or(&[]))
            ),
        ));
    }
    let card = u16::from(order.exp.yy) * 100 + u16::from(order.exp.mm);
    let cert = iss.fields.expiry;
    if cert.yymm() < card {
        return Err(Finding::new(
            path,
            format!(
                "{key} has a certificate expiring {:02}/{:02}, before the card ({:02}/{:02}): the ICC certificate may not outlive it (EMV Book 2 §6.3)",
                cert.month(),
                cert.year(),
                order.exp.mm,
                order.exp.yy
            ),
        ));
    }
    Ok(())
}

/// The static data each signature must cover: one entry per record carrying the signature
/// (93 or 9F46), over the records and AIP of the GPO answers whose AFL lists that record.
/// Refuses when two GPO answers reading one signature present different static data.
fn static_data_per_signature(
    w: &Work<'_>,
    profile: &ChipProfile,
    built: &BTreeMap<u16, Vec<u8>>,
) -> Result<BTreeMap<u16, (Vec<u8>, GpoAnswer)>, Finding> {
    let Some(sig) = signature_tag(profile.oda.method) else {
        return Ok(BTreeMap::new());
    };
    let holders = profile.records_with(sig);
    let mut out: BTreeMap<u16, (Vec<u8>, GpoAnswer)> = BTreeMap::new();
    for g in profile.gpo_answers() {
        if !aip_asks_for_oda(g.aip) {
            continue;
        }
        let Some((holder, _)) = holders.iter().find(|(_, ifs)| ifs.contains(&g.interface)) else {
            return Err(Finding::new(
                w.profile_path(format!("dgi.{:04X}", g.dgi)),
                format!("asks for ODA but no record its AFL lists carries tag {sig:X}"),
            ));
        };
        let data = oda::static_data_to_authenticate(
            &g.afl,
            |sfi, rec| {
                built
                    .get(&u16::from_be_bytes([sfi, rec]))
                    .map(Vec::as_slice)
            },
            profile.oda.sda_tag_list.as_deref(),
            g.aip,
        )
        .map_err(|e| {
            Finding::new(
                w.profile_path(format!("dgi.{:04X}", g.dgi)),
                format!("static data to authenticate: {e}"),
            )
        })?;
        match out.get(holder) {
            None => {
                out.insert(*holder, (data, g));
            }
            Some((prev, p)) if *prev != data => {
                return Err(Finding::new(
                    w.profile_path("oda.certificates"),
                    format!(
                        "the {} GPO answer {:04X} (AIP {}) and the {} GPO answer {:04X} (AIP {}) read the signature in record {holder:04X} but authenticate different static data: give each interface its own signature record (oda.certificates = \"per-interface\") or the same AIP and ODA records",
                        p.interface.as_str(),
                        p.dgi,
                        hex::encode_upper(p.aip),
                        g.interface.as_str(),
                        g.dgi,
                        hex::encode_upper(g.aip)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(out)
}

fn sign_oda(
    w: &mut Work<'_>,
    profile: &ChipProfile,
    index: u32,
    iss: &IssuerOda,
    built: &BTreeMap<u16, Vec<u8>>,
    icc_keys: &dyn IccKeySource,
) -> Result<OdaOut, Finding> {
    let rule = &profile.oda;
    let oda_path = "paymentApplication.odaKeyIndex";
    let err =
        |e: oda::OdaError| Finding::new(oda_path, format!("offline data authentication: {e}"));
    let per_signature = static_data_per_signature(w, profile, built)?;
    let signer = IssuerSigner::new(w.keys, index, iss.public_key.clone());
    let mut out = OdaOut {
        summary: OdaSummary {
            method: rule.method,
            rid: iss.rid,
            ca_index: iss.ca_index,
            issuer_key_bits: iss.public_key.bits(),
            icc_key_bits: None,
            icc_key_from_pool: false,
            icc_certificate_serials: Vec::new(),
        },
        crt: None,
        signatures: BTreeMap::new(),
    };
    match rule.method {
        OdaMethod::None => {}
        OdaMethod::Sda => {
            for (record, (data, _)) in &per_signature {
                let ssad =
                    oda::sign_static_application_data(&signer, rule.dac, data).map_err(err)?;
                out.signatures.insert(*record, (tag!(0x93), ssad));
            }
        }
        OdaMethod::Dda | OdaMethod::Cda => {
            let issuer_bits = iss.public_key.bits();
            if rule.icc_key_bits > issuer_bits {
                return Err(Finding::new(
                    w.profile_path("oda.icc_key_bits"),
                    format!(
                        "ICC key of {} bits is too large for its certificate: the issuer key at odaKeyIndex {index} has {issuer_bits} bits",
                        rule.icc_key_bits
                    ),
                ));
            }
            let pair = icc_keys
                .icc_key_pair(rule.icc_key_bits, rule.icc_exponent)
                .map_err(err)?;
            out.summary.icc_key_bits = Some(pair.pair.public_key().bits());
            out.summary.icc_key_from_pool = pair.from_pool;
            let order = w.order;
            for (n, (record, (data, _))) in per_signature.iter().enumerate() {
                let serial = icc_keys
                    .certificate_serial(&pair, u8::try_from(n).unwrap_or(u8::MAX))
                    .map_err(err)?;
                let fields = IccCertFields {
                    pan: oda::pan_field(order.pan.reveal()).map_err(err)?,
                    expiry: CertExpiry::new(order.exp.mm, order.exp.yy).map_err(err)?,
                    serial,
                };
                let cert =
                    oda::sign_icc_certificate(&signer, &fields, pair.pair.public_key(), data)
                        .map_err(err)?;
                out.summary.icc_certificate_serials.push(serial);
                out.signatures
                    .insert(*record, (tag!(0x9F46), cert.certificate));
                w.set(tag!(0x9F47), cert.exponent);
                w.set(tag!(0x9F48), cert.remainder);
            }
            out.crt = Some(pair.pair.crt_components().map_err(err)?);
        }
    }
    Ok(out)
}

/// The reference PIN block, if any, and whether it was generated.
type PinOutcome = (Option<ReferencePinBlock>, bool);

fn pin_block(w: &mut Work<'_>) -> Result<PinOutcome, Finding> {
    let profile = w.profile;
    if profile.dgi_rule(0x8010).is_none() {
        return Ok((None, false));
    }
    let control = profile.pin.control;
    if let Some(pin) = &w.order.pin {
        let key = KeyRef::new(pin.format.key_usage(), pin.kid);
        w.use_key(key, "encryptedData.pin.kid")?;
        let r = PinBlockRef {
            format: pin.format,
            key,
            block: &pin.block,
        };
        let block = w
            .keys
            .reference_pin_block(r, &w.order.pan, control)
            .map_err(|e| Finding::new("encryptedData.pin", e.to_string()))?;
        w.sources.insert(
            "pin",
            format!("order ({} PIN block under {key})", pin.format.as_str()).into(),
        );
        return Ok((Some(block), false));
    }
    if w.product.random_pin {
        let block = w
            .keys
            .random_reference_pin_block(w.product.random_pin_digits, control)
            .map_err(|e| {
                Finding::new(format!("{}: random_pin", w.product.source), e.to_string())
            })?;
        w.sources
            .insert("pin", "generated at random (never shown)".into());
        return Ok((Some(block), true));
    }
    Ok((None, false))
}

/// Prepares tracks and Model 1 chip data for one order: [`crate::domain::prepare::prepare_tracks`],
/// then [`compute`] under the product's chip profile.
pub fn prepare(
    order: &Order,
    product: &Product,
    profile: &ChipProfile,
    date: PrepDate,
    keys: &dyn ChipKeys,
    icc_keys: &dyn IccKeySource,
) -> Result<PersoData, Vec<Finding>> {
    let mut data = crate::domain::prepare::prepare_tracks(order, product, keys)?;
    let (chip, used, sources) =
        compute(order, product, profile, &data.tracks, date, keys, icc_keys)
            .map_err(|f| vec![f])?;
    for k in used {
        if !data.keys_used.iter().any(|u| u.key == k.key) {
            data.keys_used.push(k);
        }
    }
    data.sources.extend(sources);
    // Fail closed: every interface that asks for ODA verifies, as a terminal reads the data.
    super::oda_check::check(&chip, profile, order, &|rid, index| {
        keys.ca_public_key(rid, index)
    })
    .map_err(|e| {
        vec![Finding::new(
            "paymentApplication.odaKeyIndex",
            format!("offline data authentication of the prepared data: {e}"),
        )]
    })?;
    // Every GPO answer fits one short response, with what the card adds (SDAD, ARQC).
    super::gpo_size::check(&chip, profile).map_err(|f| vec![f])?;
    if let Some(f) = cvm_pin_mismatch(&chip, order, product, profile) {
        if profile.pin.refuse_cvm_mismatch {
            return Err(vec![f]);
        }
        data.warnings.push(f);
    }
    data.chip = Some(chip);
    Ok(data)
}

/// The reference PIN (8010) and the CVM list (8E) must agree: a reference PIN no rule verifies
/// offline, or an offline PIN rule without a reference PIN, fails at the terminal.
pub fn cvm_pin_mismatch(
    chip: &ChipData,
    order: &Order,
    product: &Product,
    profile: &ChipProfile,
) -> Option<Finding> {
    let list = chip
        .dgis
        .iter()
        .filter(|d| d.dgi.is_record())
        .find_map(|d| {
            tlv::parse_all(d.dgi.value()).ok()?.iter().find_map(|t| {
                t.children()?
                    .iter()
                    .find(|c| c.tag() == tag!(0x8E))
                    .and_then(|c| c.value().map(<[u8]>::to_vec))
            })
        })?;
    let config = order
        .payment_application
        .config
        .as_deref()
        .unwrap_or("default");
    let path = format!("{}: config.{config}.8E", product.source);
    let list = match super::cvm::CvmList::parse(&list) {
        Ok(l) => l,
        Err(e) => return Some(Finding::new(path, e)),
    };
    let has_pin = chip.dgi(0x8010).is_some();
    match (has_pin, list.uses_offline_pin()) {
        (true, false) => Some(Finding::new(
            path,
            format!(
                "the card carries a reference PIN (DGI 8010) but no CVM rule verifies a PIN offline (01, 03, 04, 05): the PIN is never checked by the card (pin.cvm_check in {})",
                profile.source
            ),
        )),
        (false, true) => Some(Finding::new(
            path,
            format!(
                "a CVM rule asks for offline PIN but the card carries no reference PIN (DGI 8010): give encryptedData.pin (pin.cvm_check in {})",
                profile.source
            ),
        )),
        _ => None,
    }
}

/// Track `n`, which the chip profile needs (`why`), or a finding at `trackData.track<n>`.
fn needed<'t, T>(track: Option<&'t T>, n: u8, why: &str) -> Result<&'t T, Finding> {
    track.ok_or_else(|| {
        Finding::new(
            format!("trackData.track{n}"),
            format!("the chip profile needs track {n} {why}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::PrepDate;

    #[test]
    fn dates_from_unix_time() {
        // Independent reference points: `date -u -d @N +%y%m%d`.
        let d = |s| {
            let p = PrepDate::from_unix_secs(s);
            (p.yy, p.mm, p.dd)
        };
        assert_eq!(d(951_782_400), (0, 2, 29));
        assert_eq!(d(1_709_251_199), (24, 2, 29));
        assert_eq!(d(1_795_305_600), (26, 11, 22));
        assert_eq!(d(4_102_444_799), (99, 12, 31));
    }
}
