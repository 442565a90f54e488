//! Data at rest in a store, sealed under a key store's `store` key (AES-256-GCM).
//!
//! A sealed blob is `"PDS1" ‖ key index (4 bytes, big-endian) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
//! The additional authenticated data is the blob's first 8 bytes followed by the *purpose*
//! (`queue-order:<id>`, `icc-key:<bits>:<n>`), so a blob cannot be moved to another row or use
//! unnoticed. Key stores do the AES-GCM with their own key (the software store here, a PKCS#11
//! token with `CKM_AES_GCM`); this module only frames, parses and, for the software store,
//! computes. AES-GCM: NIST SP 800-38D; the known answer in the tests is Test Case 16 of
//! McGrew & Viega, "The Galois/Counter Mode of Operation" (2005).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

/// The format tag at the start of every sealed blob.
pub const MAGIC: &[u8; 4] = b"PDS1";
/// Bytes of the GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag.
pub const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 8;

/// A sealed blob could not be made or opened. Never names the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed data is not in the PDS1 format ({0})")]
    Format(&'static str),
    #[error("sealed data does not open: wrong key, wrong purpose or altered")]
    Open,
    #[error("the store key must be 32 bytes (AES-256)")]
    KeyLength,
}

/// The parts of a sealed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// Index of the `store` key that sealed it.
    pub key_index: u32,
    /// The GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub ciphertext_and_tag: &'a [u8],
}

/// The additional authenticated data of a blob sealed by key `key_index` for `purpose`.
pub fn aad(key_index: u32, purpose: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER_LEN + purpose.len());
    a.extend_from_slice(MAGIC);
    a.extend_from_slice(&key_index.to_be_bytes());
    a.extend_from_slice(purpose.as_bytes());
    a
}

/// Frames a blob from the key index, nonce and the AES-GCM output (ciphertext ‖ tag).
pub fn frame(key_index: u32, nonce: &[u8; NONCE_LEN], ciphertext_and_tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ciphertext_and_tag.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key_index.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(ciphertext_and_tag);
    out
}

/// Splits a blob into its parts.
pub fn parse(blob: &[u8]) -> Result<Sealed<'_>, SealError> {
    if blob.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(SealError::Format("too short"));
    }
    if &blob[..4] != MAGIC {
        return Err(SealError::Format("unknown format tag"));
    }
    let mut index = [0u8; 4];
    index.copy_from_slice(&blob[4..8]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[8..8 + NONCE_LEN]);
    Ok(Sealed {
        key_index: u32::from_be_bytes(index),
        nonce,
        ciphertext_and_tag: &blob[HEADER_LEN + NONCE_LEN..],
    })
}

/// AES-256-GCM encryption: ciphertext ‖ tag.
pub fn gcm_encrypt(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::KeyLength)?;
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(*nonce),
            aad,
            buf.as_mut_slice().into(),
        )
        .map_err(|_| SealError::Open)?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// AES-256-GCM decryption of ciphertext ‖ tag; the plaintext exists only once the tag is checked.
pub fn gcm_decrypt(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| SealError::KeyLength)?;
    let split = ciphertext_and_tag
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(SealError::Format("too short"))?;
    let (ct, tag) = ciphertext_and_tag.split_at(split);
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut buf = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_inout_detached(
            &Nonce::<Aes256Gcm>::from(*nonce),
            aad,
            buf.as_mut_slice().into(),
            &Tag::<Aes256Gcm>::from(tag_bytes),
        )
        .map_err(|_| SealError::Open)?;
    Ok(buf)
}

/// Seals `plaintext` for `purpose` with a 32-byte key known in clear (the software store).
pub fn seal_with(
    key: &[u8],
    key_index: u32,
    nonce: &[u8; NONCE_LEN],
    purpose: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let ct = gcm_encrypt(key, nonce, &aad(key_index, purpose), plaintext)?;
    Ok(frame(key_index, nonce, &ct))
}

/// Opens a parsed blob for `purpose` with a 32-byte key known in clear (the software store).
pub fn open_with(
    key: &[u8],
    sealed: &Sealed<'_>,
    purpose: &str,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    gcm_decrypt(
        key,
        &sealed.nonce,
        &aad(sealed.key_index, purpose),
        sealed.ciphertext_and_tag,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_hex as h;

    /// McGrew & Viega, GCM specification, Test Case 16 (AES-256, 96-bit IV, with AAD).
    #[test]
    fn gcm_matches_the_published_test_case_16() {
        let key = h("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let p = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                   1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let a = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&h("cafebabefacedbaddecaf888"));
        let c = h(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                   8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        );
        let t = h("76fc6ece0f4e1768cddf8853bb2d551b");
        let out = gcm_encrypt(&key, &iv, &a, &p).expect("encrypt");
        assert_eq!(out, [c.clone(), t.clone()].concat());
        let back = gcm_decrypt(&key, &iv, &a, &out).expect("decrypt");
        assert_eq!(back.as_slice(), p.as_slice());
    }

    #[test]
    fn a_blob_opens_only_for_its_purpose_key_and_bytes() {
        let key = [7u8; 32];
        let nonce = [9u8; 12];
        let blob = seal_with(&key, 3, &nonce, "queue-order:A1", b"secret").expect("seal");
        let parsed = parse(&blob).expect("parse");
        assert_eq!(parsed.key_index, 3);
        assert_eq!(
            open_with(&key, &parsed, "queue-order:A1")
                .expect("open")
                .as_slice(),
            b"secret"
        );
        assert_eq!(
            open_with(&key, &parsed, "queue-order:A2"),
            Err(SealError::Open)
        );
        assert_eq!(
            open_with(&[8u8; 32], &parsed, "queue-order:A1"),
            Err(SealError::Open)
        );
        let mut moved = blob.clone();
        moved[7] ^= 1; // another key index in the header is authenticated too
        let p2 = parse(&moved).expect("parse");
        assert_eq!(open_with(&key, &p2, "queue-order:A1"), Err(SealError::Open));
        let mut flipped = blob;
        let last = flipped.len() - 1;
        flipped[last] ^= 0x80;
        let p3 = parse(&flipped).expect("parse");
        assert_eq!(open_with(&key, &p3, "queue-order:A1"), Err(SealError::Open));
    }

    #[test]
    fn malformed_blobs_are_named_not_opened() {
        assert_eq!(parse(b"PDS1"), Err(SealError::Format("too short")));
        let mut b = vec![0u8; 40];
        b[..4].copy_from_slice(b"XXXX");
        assert_eq!(parse(&b), Err(SealError::Format("unknown format tag")));
        assert_eq!(
            gcm_encrypt(&[1u8; 16], &[0; 12], b"", b"x"),
            Err(SealError::KeyLength)
        );
    }
}
