//! Wiping secrets from memory, a word at a time: `zeroize` writes a `[u8]` one volatile byte
//! at a time, which on the batch path cost more than the work done with the bytes. Here the
//! aligned middle is written as `u64` words (still volatile, so never optimised away) and only
//! the unaligned ends byte by byte.

use zeroize::Zeroize;

/// Overwrites `bytes` with zeros.
pub fn wipe(bytes: &mut [u8]) {
    let (head, words, tail) = bytemuck::pod_align_to_mut::<u8, u64>(bytes);
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

/// Wipes the whole buffer of `s` (its spare capacity too) and leaves `s` empty.
pub fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    bytes.resize(bytes.capacity(), 0);
    wipe(&mut bytes);
}

/// A `String` wiped (buffer and spare capacity) when dropped: [`zeroize::Zeroizing`] for
/// text, a word at a time.
pub struct WipedString(String);

impl WipedString {
    /// Takes ownership of `s`.
    pub fn new(s: String) -> Self {
        Self(s)
    }
}

impl std::ops::Deref for WipedString {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl Drop for WipedString {
    fn drop(&mut self) {
        wipe_string(&mut self.0);
    }
}

/// Never the text: it holds card data.
impl std::fmt::Debug for WipedString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WipedString(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every start and length inside a buffer: exactly the range becomes zero, whatever the
    /// alignment of its ends.
    #[test]
    fn exactly_the_range_is_wiped_at_every_alignment() {
        for start in 0..17 {
            for len in 0..40 {
                let mut buf = [0xA5u8; 64];
                wipe(&mut buf[start..start + len]);
                for (i, b) in buf.iter().enumerate() {
                    let inside = (start..start + len).contains(&i);
                    assert_eq!(*b, if inside { 0 } else { 0xA5 }, "{start} {len} {i}");
                }
            }
        }
    }

    #[test]
    fn a_wiped_string_is_left_empty_and_debug_hides_the_text() {
        let mut s = String::with_capacity(100);
        s.push_str("4761739001010010");
        wipe_string(&mut s);
        assert!(s.is_empty());
        let w = WipedString::new("4761739001010010".into());
        assert_eq!(w.as_str(), "4761739001010010");
        assert_eq!(format!("{w:?}"), "WipedString(<16 bytes>)");
    }
}
