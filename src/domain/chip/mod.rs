//! EMV chip data: what a card's payment application receives, whichever model produced it.
//!
//! - [`profile`]: chip profiles (`profiles/chip/*.toml`) as data: AIDs, records, AIPs, FCI and
//!   GPO DGIs, encryption and padding per DGI, verbatim DGIs, send order, CVN, ODA, PIN rules.
//! - [`cvm`]: the CVM list (8E) decoded per EMV Book 3 Annex C3.
//! - [`gpo_size`]: every GPO answer fits one short response (256 bytes), with what the card
//!   adds per transaction.
//! - [`iad`]: issuer application data (9F10) built per the CVN's documented layout.
//! - [`keys`]: the key operations chip preparation needs ([`keys::ChipKeys`]), values never
//!   leave the key store.
//! - [`model1`]: Model 1, the EMV dataset computed from the order's minimal inputs.
//! - [`model2`]: Model 2, the issuer's encrypted dataset decrypted, verified and validated.
//! - [`oda_check`]: ODA of prepared chip data checked per interface, as a terminal would.
//! - [`preview`]: the DGI → TLV tree shown to humans, masked per tag.
//!
//! Both chip models end in [`ChipData`]: DGIs in the profile's send order with their encryption
//! and padding flags. Previews and the card session do not care which model produced it.

pub mod channel;
pub mod cvm;
pub mod gpo_size;
pub mod iad;
pub mod keys;
pub mod model1;
pub mod model2;
pub mod oda_check;
pub mod ppse;
pub mod preview;
pub mod profile;

use std::fmt;

use crate::domain::dgi::PersoDgi;

pub use profile::{CertificateLayout, ChipProfile, ChipProfiles, DgiRule, Interface, OdaMethod};

/// A chip data model: which one an order uses ([`crate::domain::prepare`]) and which one
/// produced a card's [`ChipData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChipModel {
    /// Computed here from the order's minimal inputs and the keys it names.
    Model1,
    /// Prepared by the issuer, decrypted and verified here.
    Model2,
}

impl ChipModel {
    /// `1` or `2`, as the command line and JSON output spell it.
    pub fn number(self) -> u8 {
        match self {
            Self::Model1 => 1,
            Self::Model2 => 2,
        }
    }

    /// `Model 1` / `Model 2`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Model1 => "Model 1",
            Self::Model2 => "Model 2",
        }
    }
}

impl fmt::Display for ChipModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Key check values of the ICC master keys in DGI 8000 (3 bytes each, TDES convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipKcvs {
    /// MK-AC.
    pub ac: [u8; 3],
    /// MK-SMI.
    pub smi: [u8; 3],
    /// MK-SMC.
    pub smc: [u8; 3],
}

impl ChipKcvs {
    /// The DGI 9000 value: AC || SMI || SMC.
    pub fn dgi_value(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[..3].copy_from_slice(&self.ac);
        out[3..6].copy_from_slice(&self.smi);
        out[6..].copy_from_slice(&self.smc);
        out
    }
}

/// What the offline data authentication of a card used (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdaSummary {
    /// SDA, DDA or CDA.
    pub method: OdaMethod,
    /// Registered application provider identifier of the CA.
    pub rid: [u8; 5],
    /// CA public key index (8F).
    pub ca_index: u8,
    /// Issuer key size in bits.
    pub issuer_key_bits: usize,
    /// ICC key size in bits (DDA/CDA).
    pub icc_key_bits: Option<usize>,
    /// The ICC key pair came from the key pool (false: generated inline).
    pub icc_key_from_pool: bool,
    /// The serial number of each ICC public key certificate (one per signature record).
    pub icc_certificate_serials: Vec<[u8; 3]>,
}

/// The chip data of one card: DGIs in send order and what may be known about them.
#[derive(Clone, PartialEq, Eq)]
pub struct ChipData {
    /// The model that produced it.
    pub model: ChipModel,
    /// Chip profile name.
    pub profile: String,
    /// Application AID (the instance personalized).
    pub aid: Vec<u8>,
    /// DGIs in the profile's send order.
    pub dgis: Vec<PersoDgi>,
    /// Key check values of DGI 8000, when present.
    pub kcvs: Option<ChipKcvs>,
    /// Offline data authentication, when the profile uses it.
    pub oda: Option<OdaSummary>,
    /// The reference PIN (8010) was generated at random, not taken from the order.
    pub pin_generated: bool,
}

impl ChipData {
    /// The DGI with this id, if present.
    pub fn dgi(&self, id: u16) -> Option<&PersoDgi> {
        self.dgis.iter().find(|d| d.dgi.id() == id)
    }

    /// `Model 1 (profile), AID A0000000031010[, PIN generated]`, for previews and reports.
    pub fn title(&self) -> String {
        format!(
            "Model {} ({}), AID {}{}",
            self.model.number(),
            self.profile,
            hex::encode_upper(&self.aid),
            if self.pin_generated {
                ", PIN generated"
            } else {
                ""
            }
        )
    }

    /// The DGI ids in send order.
    pub fn ids(&self) -> Vec<u16> {
        self.dgis.iter().map(|d| d.dgi.id()).collect()
    }
}

impl fmt::Debug for ChipData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dgis: Vec<String> = self
            .dgis
            .iter()
            .map(|d| {
                format!(
                    "{:04X}({} bytes{})",
                    d.dgi.id(),
                    d.dgi.value().len(),
                    if d.encrypt { ", encrypt" } else { "" }
                )
            })
            .collect();
        f.debug_struct("ChipData")
            .field("model", &self.model)
            .field("profile", &self.profile)
            .field("aid", &hex::encode_upper(&self.aid))
            .field("dgis", &dgis)
            .field("kcvs", &self.kcvs)
            .field("oda", &self.oda)
            .field("pin_generated", &self.pin_generated)
            .finish()
    }
}
