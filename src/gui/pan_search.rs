//! Finding an order by its full PAN without keeping clear PANs in the table: at load the worker
//! computes a [`PanTag`] for each order (HMAC-SHA256 of the PAN under a key drawn at random for
//! this process), and a search text of 12-19 digits is tagged the same way and compared. The tag
//! reveals nothing without the process key, which never leaves memory; the clear PAN is never
//! shown or stored by the window.

use std::sync::OnceLock;

use crate::store::audit::hmac_sha256;

/// The keyed digest of one PAN.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PanTag([u8; 32]);

impl std::fmt::Debug for PanTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanTag(..)")
    }
}

/// This process's tag key; None when the system gave no random bytes (then full-PAN search is
/// off: failing closed, never a fixed key).
fn key() -> Option<&'static [u8; 32]> {
    static KEY: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).ok().map(|()| k)
    })
    .as_ref()
}

impl PanTag {
    /// The tag of `pan` (clear digits), if the process key exists.
    pub fn of(pan: &str) -> Option<PanTag> {
        let k = key()?;
        Some(PanTag(hmac_sha256(k, pan.as_bytes())))
    }

    /// The tag of a search text that is a full PAN (12-19 digits, spaces allowed), else None.
    pub fn of_search(text: &str) -> Option<PanTag> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let full = (12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        if full { PanTag::of(&digits) } else { None }
    }
}
