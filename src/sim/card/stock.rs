//! The card stock a chip profile expects: its `[channel]` table (SCP and "i", card keys
//! diversified from the KMC with the profile's method, key version, security domain) and its
//! CVN, turned into a [`CardConfig`] so that `sim-card --profile NAME` needs no other flag.

use zeroize::Zeroizing;

use super::channel::{CardKeySource, CardProtocol, KmcMethod};
use super::{CardConfig, CardCvn};
use crate::domain::chip::ChipProfile;
use crate::domain::gp::kdf::Diversification;
use crate::domain::gp::session::Protocol;

/// The configuration of a blank card for `profile`, with card keys diversified from `kmc` (the
/// profile's `kmc_index` key, a test key) and serial number `csn`.
pub fn config_for(
    profile: &ChipProfile,
    kmc: Zeroizing<Vec<u8>>,
    csn: [u8; 4],
) -> Result<CardConfig, String> {
    let channel = &profile.channel;
    let protocol = CardProtocol::from(channel.protocol);
    let method = KmcMethod::from(channel.diversification);
    let cvn = CardCvn::parse(&profile.cvn.to_string()).ok_or_else(|| {
        format!(
            "chip profile {}: CVN {} is not one the virtual card computes",
            profile.name, profile.cvn
        )
    })?;
    let mut config = CardConfig::new(protocol, CardKeySource::Kmc { kmc, method }, csn);
    config.cvn = cvn;
    if channel.key_version != 0 {
        config.key_version = channel.key_version;
    }
    if let Some(sd) = &channel.security_domain {
        config.isd_aid.clone_from(sd);
    }
    if !config.applications.contains(&profile.aid) {
        config.applications.push(profile.aid.clone());
    }
    Ok(config)
}

/// The card's side of the host's secure channel protocol (same SCP, same "i").
impl From<Protocol> for CardProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Scp02 { i } => CardProtocol::Scp02 { i },
            Protocol::Scp03 { i } => CardProtocol::Scp03 { i },
        }
    }
}

/// The card's side of the host's card key diversification.
impl From<Diversification> for KmcMethod {
    fn from(d: Diversification) -> Self {
        match d {
            Diversification::EmvCps11 => KmcMethod::EmvCps11,
            Diversification::Visa2 => KmcMethod::Visa2,
            Diversification::Kdf3 => KmcMethod::Kdf3,
        }
    }
}
