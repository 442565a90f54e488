//! Chip data, Model 2: the issuer prepared the DGIs; here they are decrypted, verified and
//! validated, and only when every check holds handed on as the same [`ChipData`] Model 1 makes.
//!
//! Checks, in the order docs/conventions.md gives (the first failure rejects the order):
//! 1. the KEK is found, the MAC key unwrapped, the ciphertext decrypted, its padding removed
//!    strictly and the MAC verified ([`crate::domain::envelope`], inside the key store);
//! 2. `tlvDataLength` and `appletDataLength` against the plaintext;
//! 3. the DGI stream structure; record DGIs hold template 70 with valid BER-TLV;
//! 4. the profile: `appletAid`, `appletStartCode` (where the profile sets one), no duplicate, no
//!    reserved and no undeclared DGI, every required DGI present;
//! 5. consistency with the order: PAN in 5A and 57, expiry in 5F24 and 57, PSN in 5F34, and 57
//!    against the prepared track 2 (PAN, expiry, service code);
//! 6. the keys in 8000 against their check values in 9000; every AFL record present;
//! 7. (in [`prepare`]) offline data authentication on every interface that asks for it: the
//!    issuer certificate recovered with the CA key the key store knows, each GPO answer's ICC
//!    certificate (or SSAD) over that answer's static data ([`super::oda_check`]).
//!
//! Errors name the rule and the DGI or tag, never clear data.

use super::profile::ChipProfile;
use super::{ChipData, ChipKcvs, ChipModel};
use crate::domain::crypto;
use crate::domain::dgi::{self, Dgi, DgiError, PersoDgi};
use crate::domain::envelope::{EnvelopeError, EnvelopeKeyError, EnvelopeKeys, EnvelopeSettings};
use crate::domain::finding::Finding;
use crate::domain::keystore::{KeyError, KeyRef, KeyUsage};
use crate::domain::order::{Order, TlvEnvelope};
use crate::domain::prepare::Tracks;
use crate::domain::tlv::{self, Tag, Tlv};

/// Why a Model 2 dataset was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Model2Error {
    #[error("the order has no Model 2 data (tlvData); use Model 1")]
    NoEnvelope,
    #[error("{0}")]
    Key(KeyError),
    #[error("{0}")]
    Envelope(EnvelopeError),
    #[error("says {declared} bytes, the decrypted data holds {actual}")]
    TlvDataLength { declared: u32, actual: usize },
    #[error("says {declared} bytes, the DGI values add up to {actual}")]
    AppletDataLength { declared: u32, actual: usize },
    #[error("DGI stream: {0}")]
    Structure(DgiError),
    #[error("{0}")]
    Record(DgiError),
    #[error("{found} is not the application AID {expected} of chip profile {profile}")]
    Aid {
        found: String,
        expected: String,
        profile: String,
    },
    #[error("does not match the applet start code of chip profile {0}")]
    StartCode(String),
    #[error("DGI {0:04X}: appears twice")]
    Duplicate(u16),
    #[error("DGI {0:04X}: reserved by CPS, must not be sent")]
    Reserved(u16),
    #[error("DGI {dgi:04X}: not declared by chip profile {profile}")]
    Undeclared { dgi: u16, profile: String },
    #[error("DGI {dgi:04X}: required by chip profile {profile} but missing")]
    Missing { dgi: u16, profile: String },
    #[error("tag {tag}: not found in any DGI, needed to check the data against the order")]
    MissingTag { tag: Tag },
    #[error("tag {tag} in DGI {dgi:04X}: {rule}")]
    Inconsistent {
        tag: Tag,
        dgi: u16,
        rule: &'static str,
    },
    #[error("DGI {dgi:04X}: {rule}")]
    KeyDgi { dgi: u16, rule: &'static str },
    #[error("DGI 8000: {which} does not match its check value in DGI 9000")]
    Kcv { which: &'static str },
    #[error("tag 94 (AFL) in DGI {dgi:04X}: record SFI {sfi} number {record} has no record DGI")]
    AflRecord { dgi: u16, sfi: u8, record: u8 },
    #[error("tag 94 (AFL) in DGI {dgi:04X}: {rule}")]
    Afl { dgi: u16, rule: &'static str },
}

impl Model2Error {
    /// The order field the error is about.
    pub fn path(&self) -> &'static str {
        match self {
            Self::Key(_) => "encryptedData.tlvData.kekId",
            Self::TlvDataLength { .. } => "encryptedData.tlvData.tlvDataLength",
            Self::AppletDataLength { .. } => "encryptedData.tlvData.appletDataLength",
            Self::Aid { .. } => "encryptedData.tlvData.appletAid",
            Self::StartCode(_) => "encryptedData.tlvData.appletStartCode",
            _ => "encryptedData.tlvData",
        }
    }

    /// As a finding (path and rule).
    pub fn finding(&self) -> Finding {
        Finding::new(self.path(), self.to_string())
    }
}

impl From<EnvelopeKeyError> for Model2Error {
    fn from(e: EnvelopeKeyError) -> Self {
        match e {
            EnvelopeKeyError::Key(k) => Self::Key(k),
            EnvelopeKeyError::Envelope(e) => Self::Envelope(e),
        }
    }
}

const T_PAN: Tag = crate::tag!(0x5A);
const T_TRACK2: Tag = crate::tag!(0x57);
const T_EXPIRY: Tag = crate::tag!(0x5F24);
const T_PSN: Tag = crate::tag!(0x5F34);
const T_AFL: Tag = crate::tag!(0x94);

/// Imports the Model 2 dataset of `order` for `profile`. `tracks` are the order's prepared
/// tracks (cross-checked against tag 57).
pub fn import(
    order: &Order,
    profile: &ChipProfile,
    tracks: &Tracks,
    keys: &dyn EnvelopeKeys,
    settings: EnvelopeSettings,
) -> Result<ChipData, Model2Error> {
    let env = order.tlv_data.as_ref().ok_or(Model2Error::NoEnvelope)?;
    let plain = open(env, keys, settings)?;
    let dgis = structure(env, &plain)?;
    check_profile(env, profile, &dgis)?;
    let tlvs = parsed_tlvs(&dgis)?;
    check_order(order, tracks, &tlvs)?;
    let kcvs = check_keys(&dgis)?;
    check_afl(&dgis, &tlvs)?;
    Ok(ChipData {
        model: ChipModel::Model2,
        profile: profile.name.clone(),
        aid: profile.aid.clone(),
        dgis: in_send_order(profile, dgis),
        kcvs,
        oda: None,
        pin_generated: false,
    })
}

fn open(
    env: &TlvEnvelope,
    keys: &dyn EnvelopeKeys,
    settings: EnvelopeSettings,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Model2Error> {
    let kek = KeyRef::new(KeyUsage::Kek, env.kek_id);
    Ok(keys.open_envelope(kek, &env.mac_key, &env.tlv_data, &env.mac, settings)?)
}

fn structure(env: &TlvEnvelope, plain: &[u8]) -> Result<Vec<Dgi>, Model2Error> {
    if usize::try_from(env.tlv_data_length).ok() != Some(plain.len()) {
        return Err(Model2Error::TlvDataLength {
            declared: env.tlv_data_length,
            actual: plain.len(),
        });
    }
    let dgis = dgi::parse_stream(plain).map_err(Model2Error::Structure)?;
    let sum = dgi::value_len_sum(&dgis);
    if usize::try_from(env.applet_data_length).ok() != Some(sum) {
        return Err(Model2Error::AppletDataLength {
            declared: env.applet_data_length,
            actual: sum,
        });
    }
    for d in &dgis {
        if d.is_record() {
            d.validate_record().map_err(Model2Error::Record)?;
        }
    }
    Ok(dgis)
}

fn check_profile(
    env: &TlvEnvelope,
    profile: &ChipProfile,
    dgis: &[Dgi],
) -> Result<(), Model2Error> {
    if env.applet_aid != profile.aid {
        return Err(Model2Error::Aid {
            found: hex::encode_upper(&env.applet_aid),
            expected: hex::encode_upper(&profile.aid),
            profile: profile.name.clone(),
        });
    }
    if let Some(code) = &profile.applet_start_code
        && env.applet_start_code.as_deref() != Some(code.as_str())
    {
        return Err(Model2Error::StartCode(profile.name.clone()));
    }
    for (i, d) in dgis.iter().enumerate() {
        let id = d.id();
        if dgis[..i].iter().any(|e| e.id() == id) {
            return Err(Model2Error::Duplicate(id));
        }
        if profile.is_reserved(id) {
            return Err(Model2Error::Reserved(id));
        }
        if profile.dgi_rule(id).is_none() {
            return Err(Model2Error::Undeclared {
                dgi: id,
                profile: profile.name.clone(),
            });
        }
    }
    if let Some(id) = profile
        .required_dgis()
        .find(|id| !dgis.iter().any(|d| d.id() == *id))
    {
        return Err(Model2Error::Missing {
            dgi: id,
            profile: profile.name.clone(),
        });
    }
    Ok(())
}

/// The BER-TLV content of every DGI that holds TLV: records (inside template 70) and the clear
/// TLV DGIs (FCI, GPO responses). Key and PIN DGIs and fixed-position binary DGIs are skipped.
fn parsed_tlvs(dgis: &[Dgi]) -> Result<Vec<(u16, Vec<Tlv>)>, Model2Error> {
    let mut out = Vec::with_capacity(dgis.len());
    for d in dgis {
        if d.is_secret() {
            continue;
        }
        if d.is_record() {
            let tlvs = tlv::parse_all(d.value())
                .map_err(|error| Model2Error::Record(DgiError::RecordTlv { dgi: d.id(), error }))?;
            out.push((d.id(), tlvs));
        } else if let Ok(tlvs) = tlv::parse_all(d.value()) {
            out.push((d.id(), tlvs));
        }
    }
    Ok(out)
}

fn find(tlvs: &[(u16, Vec<Tlv>)], tag: Tag) -> Option<(u16, &Tlv)> {
    tlvs.iter()
        .find_map(|(id, t)| tlv::find(t, tag).map(|found| (*id, found)))
}

fn primitive(tlvs: &[(u16, Vec<Tlv>)], tag: Tag) -> Result<(u16, &[u8]), Model2Error> {
    let (dgi, t) = find(tlvs, tag).ok_or(Model2Error::MissingTag { tag })?;
    let v = t.value().ok_or(Model2Error::Inconsistent {
        tag,
        dgi,
        rule: "must be a primitive data object",
    })?;
    Ok((dgi, v))
}

/// Hex digits of a BCD/compressed numeric value, trailing `F` padding removed.
fn digits(v: &[u8]) -> String {
    let mut s = hex::encode_upper(v);
    while s.ends_with('F') {
        s.pop();
    }
    s
}

fn check_order(
    order: &Order,
    tracks: &Tracks,
    tlvs: &[(u16, Vec<Tlv>)],
) -> Result<(), Model2Error> {
    let pan = order.pan.reveal();
    let exp = order.exp.to_string();

    let (dgi, v) = primitive(tlvs, T_PAN)?;
    if digits(v) != pan {
        return Err(Model2Error::Inconsistent {
            tag: T_PAN,
            dgi,
            rule: "PAN does not match encryptedData.pan",
        });
    }

    let (dgi, v) = primitive(tlvs, T_TRACK2)?;
    let t2 = digits(v);
    let bad = |rule| Model2Error::Inconsistent {
        tag: T_TRACK2,
        dgi,
        rule,
    };
    let (t2_pan, rest) = t2
        .split_once('D')
        .ok_or(bad("no field separator D after the PAN"))?;
    if t2_pan != pan {
        return Err(bad("PAN does not match encryptedData.pan"));
    }
    if rest.get(..4) != Some(exp.as_str()) {
        return Err(bad("expiry does not match encryptedData.exp"));
    }
    let sc = rest
        .get(4..7)
        .ok_or(bad("no service code after the expiry"))?;
    if let Some(track2) = &tracks.track2 {
        let body = track2.body();
        let after = body.split_once('=').map_or("", |(_, a)| a);
        if body.split('=').next() != Some(t2_pan) {
            return Err(bad("PAN does not match track 2"));
        }
        if after.get(..4) != Some(exp.as_str()) {
            return Err(bad("expiry does not match track 2"));
        }
        if after.get(4..7) != Some(sc) {
            return Err(bad("service code does not match track 2"));
        }
    }

    let (dgi, v) = primitive(tlvs, T_EXPIRY)?;
    if hex::encode_upper(v).get(..4) != Some(exp.as_str()) {
        return Err(Model2Error::Inconsistent {
            tag: T_EXPIRY,
            dgi,
            rule: "expiry does not match encryptedData.exp",
        });
    }

    if let Some((dgi, t)) = find(tlvs, T_PSN)
        && t.value().map(hex::encode_upper) != Some(order.psn.to_string())
    {
        return Err(Model2Error::Inconsistent {
            tag: T_PSN,
            dgi,
            rule: "PAN sequence number does not match encryptedData.panSequenceNumber",
        });
    }
    Ok(())
}

fn check_keys(dgis: &[Dgi]) -> Result<Option<ChipKcvs>, Model2Error> {
    let keys = dgis.iter().find(|d| d.id() == 0x8000);
    let kcvs = dgis.iter().find(|d| d.id() == 0x9000);
    let (keys, kcvs) = match (keys, kcvs) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(Model2Error::KeyDgi {
                dgi: 0x9000,
                rule: "missing: the keys in DGI 8000 need their check values",
            });
        }
        (None, Some(_)) => {
            return Err(Model2Error::KeyDgi {
                dgi: 0x8000,
                rule: "missing: DGI 9000 holds check values of keys that are not there",
            });
        }
        (Some(k), Some(c)) => (k.value(), c.value()),
    };
    if keys.len() != 48 {
        return Err(Model2Error::KeyDgi {
            dgi: 0x8000,
            rule: "must hold three 16-byte keys (MK-AC, MK-SMI, MK-SMC)",
        });
    }
    if kcvs.len() != 9 {
        return Err(Model2Error::KeyDgi {
            dgi: 0x9000,
            rule: "must hold three 3-byte check values",
        });
    }
    let mut out = [[0u8; 3]; 3];
    for (i, which) in ["MK-AC", "MK-SMI", "MK-SMC"].into_iter().enumerate() {
        let kcv =
            crypto::kcv_tdes(&keys[i * 16..i * 16 + 16]).map_err(|_| Model2Error::KeyDgi {
                dgi: 0x8000,
                rule: "holds a key that is not a TDES key",
            })?;
        if !crypto::ct_eq(&kcv, &kcvs[i * 3..i * 3 + 3]) {
            return Err(Model2Error::Kcv { which });
        }
        out[i] = kcv;
    }
    Ok(Some(ChipKcvs {
        ac: out[0],
        smi: out[1],
        smc: out[2],
    }))
}

fn check_afl(dgis: &[Dgi], tlvs: &[(u16, Vec<Tlv>)]) -> Result<(), Model2Error> {
    for (dgi, list) in tlvs {
        let Some(afl) = tlv::find(list, T_AFL) else {
            continue;
        };
        let dgi = *dgi;
        let v = afl.value().unwrap_or(&[]);
        if v.is_empty() || !v.len().is_multiple_of(4) {
            return Err(Model2Error::Afl {
                dgi,
                rule: "must be a non-empty multiple of 4 bytes",
            });
        }
        for entry in v.chunks_exact(4) {
            let sfi = entry[0] >> 3;
            let (first, last) = (entry[1], entry[2]);
            if first == 0 || last < first {
                return Err(Model2Error::Afl {
                    dgi,
                    rule: "record range is empty or starts at 0",
                });
            }
            for record in first..=last {
                let id = u16::from_be_bytes([sfi, record]);
                if !dgis.iter().any(|d| d.id() == id) {
                    return Err(Model2Error::AflRecord { dgi, sfi, record });
                }
            }
        }
    }
    Ok(())
}

fn in_send_order(profile: &ChipProfile, mut dgis: Vec<Dgi>) -> Vec<PersoDgi> {
    let mut out = Vec::with_capacity(dgis.len());
    for rule in profile.dgis() {
        if let Some(pos) = dgis.iter().position(|d| d.id() == rule.id) {
            out.push(PersoDgi {
                dgi: dgis.swap_remove(pos),
                encrypt: rule.encrypt,
                pad: rule.pad,
                held: None,
            });
        }
    }
    out
}

/// Prepares an order with Model 2 chip data: tracks as usual, then the issuer's dataset imported
/// and checked against them. The KEK counts as a key the order used (reveal policy).
pub fn prepare(
    order: &Order,
    product: &crate::domain::product::Product,
    profile: &ChipProfile,
    keys: &dyn super::keys::ChipKeys,
    envelope_keys: &dyn EnvelopeKeys,
    settings: EnvelopeSettings,
) -> Result<crate::domain::prepare::PersoData, Vec<Finding>> {
    let mut data = crate::domain::prepare::prepare_tracks(order, product, keys)?;
    let chip = import(order, profile, &data.tracks, envelope_keys, settings)
        .map_err(|e| vec![e.finding()])?;
    // 7. ODA per interface with the CA key the key store knows, before any card is touched.
    super::oda_check::check(&chip, profile, order, &|rid, index| {
        keys.ca_public_key(rid, index)
    })
    .map_err(|e| {
        vec![Finding::new(
            "encryptedData.tlvData",
            format!("offline data authentication: {e}"),
        )]
    })?;
    super::gpo_size::check(&chip, profile).map_err(|f| vec![f])?;
    if let Some(env) = &order.tlv_data {
        let kek = KeyRef::new(KeyUsage::Kek, env.kek_id);
        let info = keys
            .info(kek)
            .map_err(|e| vec![Model2Error::Key(e).finding()])?;
        if !data.keys_used.iter().any(|k| k.key == kek) {
            data.keys_used.push(info);
        }
        data.sources.insert(
            "chip",
            format!("Model 2: issuer data under {kek}, MAC verified").into(),
        );
    }
    data.chip = Some(chip);
    Ok(data)
}
