//! One card's GlobalPlatform keys on the host ([`HostCardKeys`]): the static keys a plan carries,
//! diversified from a plan's KMC, or by the software key store. The session keys and the
//! sensitive-data encryption are the functions of [`super::scp02`] and [`super::scp03`], so the
//! card receives the same bytes whichever store opened its keys.

use zeroize::Zeroizing;

use super::{GpError, SecretKey, StaticKeys, scp02, scp03};
use crate::domain::crypto::{kcv_aes, kcv_tdes};
use crate::domain::keystore::{CardDek, CardKeySet, KeyError, KeyRef};

/// Which session was opened, with the DEK sensitive data is encrypted under.
enum Opened {
    None,
    Scp02 { session_dek: SecretKey },
    Scp03,
}

/// Static card keys in host memory (zeroized on drop) for one session.
pub struct HostCardKeys {
    keys: StaticKeys,
    /// The key the static keys come from, for errors (`kmc #N`).
    kmc: KeyRef,
    /// AES keys (SCP03) rather than TDES (SCP02).
    aes: bool,
    opened: Opened,
}

impl std::fmt::Debug for HostCardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCardKeys")
            .field("kmc", &self.kmc)
            .finish_non_exhaustive()
    }
}

impl HostCardKeys {
    /// The card keys `keys` (AES for SCP03 when `aes`, else TDES), which come from `kmc`
    /// (named in errors).
    pub fn new(keys: StaticKeys, kmc: KeyRef, aes: bool) -> Self {
        Self {
            keys,
            kmc,
            aes,
            opened: Opened::None,
        }
    }

    fn err(&self, e: GpError) -> KeyError {
        KeyError::Rule {
            key: self.kmc,
            rule: format!("card keys: {e}"),
        }
    }

    fn not_opened(&self) -> KeyError {
        KeyError::Rule {
            key: self.kmc,
            rule: "card keys: no secure channel session was opened yet".into(),
        }
    }
}

impl CardKeySet for HostCardKeys {
    fn scp02_session(&mut self, sequence_counter: [u8; 2]) -> Result<scp02::ChannelKeys, KeyError> {
        let mut session =
            scp02::SessionKeys::derive(&self.keys, sequence_counter).map_err(|e| self.err(e))?;
        let session_dek = std::mem::replace(&mut session.dek, self.keys.dek.clone());
        self.opened = Opened::Scp02 { session_dek };
        Ok(session.into())
    }

    fn scp03_session(
        &mut self,
        host_challenge: &[u8; 8],
        card_challenge: &[u8; 8],
    ) -> Result<scp03::SessionKeys, KeyError> {
        let session = scp03::SessionKeys::derive(&self.keys, host_challenge, card_challenge)
            .map_err(|e| self.err(e))?;
        self.opened = Opened::Scp03;
        Ok(session)
    }

    fn scp03_card_challenge(
        &self,
        sequence_counter: &[u8; 3],
        sd_aid: &[u8],
    ) -> Result<[u8; 8], KeyError> {
        scp03::pseudo_random_card_challenge(&self.keys.enc, sequence_counter, sd_aid)
            .map_err(|e| self.err(e))
    }

    fn encrypt_sensitive(&self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.dek()?
            .encrypt_on_host(data)
            .map(Zeroizing::new)
            .map_err(|e| self.err(e))
    }

    fn dek(&self) -> Result<CardDek<'_>, KeyError> {
        match &self.opened {
            Opened::None => Err(self.not_opened()),
            Opened::Scp02 { session_dek } => Ok(CardDek::Scp02Session(session_dek)),
            Opened::Scp03 => Ok(CardDek::Scp03Static(&self.keys.dek)),
        }
    }

    fn static_kcvs(&self) -> Result<[[u8; 3]; 3], KeyError> {
        let kcv = |k: &SecretKey| {
            if self.aes {
                kcv_aes(k.as_bytes())
            } else {
                kcv_tdes(k.as_bytes())
            }
            .map_err(|e| self.err(e.into()))
        };
        Ok([
            kcv(&self.keys.enc)?,
            kcv(&self.keys.mac)?,
            kcv(&self.keys.dek)?,
        ])
    }
}
