//! The JSON output line of a prepared order, written by hand into the order's buffer: the
//! bytes `serde_json` writes for the same object (keys sorted, its string escaping: `"`, `\`
//! and control characters, `\u00xx` in lower-case hex, nothing else), without building the
//! masked tracks as strings of their own. The chip part, rare and nested, still goes through
//! `serde_json`.

use crate::domain::finding::Finding;
use crate::domain::prepare::PersoData;
use crate::domain::track::Track;

/// Whether any byte of `x` is below 0x20, `"` or `\` (eight bytes at a time: the usual
/// string needs no escape and is copied whole). A false alarm only sends a word to the
/// byte-by-byte path.
fn any_special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
    (below | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')))) != 0
}

/// Whether any byte of `bytes` must be escaped.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let special = words
        .by_ref()
        .any(|w| <[u8; 8]>::try_from(w).is_ok_and(|w| any_special(u64::from_le_bytes(w))));
    special
        || words
            .remainder()
            .iter()
            .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends the contents of a JSON string (no quotes) for `s`, escaped as `serde_json` does.
pub(super) fn push_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            && !any_special(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        i += 1;
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i - 1]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xF)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `s` as a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

/// Appends a track (masked unless `reveal`) as a JSON string, or `null`.
fn push_track(out: &mut Vec<u8>, t: Option<&Track>, reveal: bool) {
    match t {
        None => out.extend_from_slice(b"null"),
        Some(t) if reveal => push_str(out, t.reveal()),
        Some(t) => {
            out.push(b'"');
            // Masking only puts `*` in place of characters: a clear text without a character
            // to escape masks into one without either, copied whole.
            if needs_escape(t.reveal().as_bytes()) {
                t.masked_pieces(&mut |piece| push_escaped(out, piece));
            } else {
                t.push_masked_bytes(out);
            }
            out.push(b'"');
        }
    }
}

/// Appends the output line of a prepared order: `{"cardProductId", "chip" (when given),
/// "id", "sources", "tracks", "warnings"}` and a line end.
pub(super) fn data_line(
    out: &mut Vec<u8>,
    data: &PersoData,
    chip: Option<&serde_json::Value>,
    reveal: bool,
    warnings: &[Finding],
) {
    out.extend_from_slice(b"{\"cardProductId\":");
    push_str(out, &data.card_product_id);
    if let Some(chip) = chip {
        out.extend_from_slice(b",\"chip\":");
        if serde_json::to_writer(&mut *out, chip).is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.extend_from_slice(b",\"id\":");
    push_str(out, &data.order_id);
    out.extend_from_slice(b",\"sources\":{");
    for (i, (k, v)) in data.sources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, k);
        out.push(b':');
        push_str(out, v);
    }
    let t = &data.tracks;
    out.extend_from_slice(b"},\"tracks\":{\"track1\":");
    push_track(out, t.track1.as_ref(), reveal);
    out.extend_from_slice(b",\"track2\":");
    push_track(out, t.track2.as_ref(), reveal);
    out.extend_from_slice(b",\"track3\":");
    push_track(out, t.track3.as_ref(), reveal);
    out.extend_from_slice(b"},\"warnings\":[");
    for (i, w) in warnings.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"path\":");
        push_str(out, &w.path);
        out.extend_from_slice(b",\"rule\":");
        push_str(out, &w.rule);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ASCII byte, quotes and backslashes, and non-ASCII text, against `serde_json`.
    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
        samples.push("TEST/CARD\"HOLDER\\".into());
        samples.push("Zoë – 東京 \u{7f}\u{2028} \u{1F600}".into());
        samples.push(String::new());
        samples.push("\u{0}\u{1f}\r\n\t\u{8}\u{c}".into());
        // Every ASCII byte at each place of an 8-byte word, in strings longer than a word.
        for b in 0u8..0x80 {
            for at in [0, 3, 7, 8, 12, 15, 16, 19] {
                let mut s: Vec<char> = "ABCDEFGHIJKLMNOPQRST".chars().collect();
                s[at] = b as char;
                samples.push(s.into_iter().collect());
            }
        }
        for s in samples {
            let mut ours = Vec::new();
            push_str(&mut ours, &s);
            let theirs = serde_json::to_vec(&s).expect("serializes");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{s:?}"
            );
        }
    }
}
