//! The one masking policy for everything a human may see.
//!
//! - PAN: first 6 and last 4 digits (`541333******2345`) for PANs of 16 or more digits,
//!   wherever it appears. Shorter PANs show fewer leading digits so that at least 6 digits stay
//!   hidden: `n - 10` leading digits and the last 4 for 12-15 digits (a 12-digit PAN shows 2 + 4,
//!   never 6 + 4 = 10 of 12); fewer than 12 digits are masked entirely. PCI DSS (requirement
//!   3.4.1) sets the first 6 / last 4 as the most that may be shown; hiding at least 6 keeps
//!   short PANs from being guessed from a few Luhn-checked candidates.
//! - CVV1, iCVV, PVV: every digit as `*`.
//! - PIN blocks and keys: never shown; keys by KCV only.
//! - Name and expiry: visible (supervisors check them).

/// Digits always hidden by [`mask_pan`].
pub const MIN_HIDDEN: usize = 6;

/// Masks a PAN: the first `min(6, n - 10)` and the last 4 of `n` digits stay (see the module
/// documentation); fewer than 12 characters are masked entirely.
pub fn mask_pan(pan: &str) -> String {
    let mut out = String::with_capacity(pan.len());
    push_masked_pan(&mut out, pan);
    out
}

/// How many leading digits of an `n`-digit PAN (`n` ≥ 12) stay shown: at most 6, and never
/// so many that fewer than [`MIN_HIDDEN`] are hidden.
fn shown_head(n: usize) -> usize {
    (n - 4 - MIN_HIDDEN).min(6)
}

/// [`mask_pan`] appended to `out` (no allocation of its own: the per-card output path).
pub fn push_masked_pan(out: &mut String, pan: &str) {
    if pan.is_ascii() && pan.len() >= 12 {
        let n = pan.len();
        let first = shown_head(n);
        out.push_str(&pan[..first]);
        push_stars(out, n - 4 - first);
        out.push_str(&pan[n - 4..]);
        return;
    }
    masked_pan_pieces(pan, &mut |s| out.push_str(s));
}

/// Masks the ASCII bytes of a PAN in place as [`mask_pan`] does (same length: one `*` per
/// hidden digit).
pub fn mask_pan_in_place(pan: &mut [u8]) {
    let n = pan.len();
    let hidden = if n < 12 { 0..n } else { shown_head(n)..n - 4 };
    pan[hidden].fill(b'*');
}

/// [`mask_pan`] piece by piece: `push` gets the shown head, runs of `*`, the shown tail (for
/// writers that escape into their own buffer).
pub fn masked_pan_pieces(pan: &str, push: &mut dyn FnMut(&str)) {
    let n = pan.chars().count();
    if n < 12 {
        stars_pieces(n, push);
        return;
    }
    let first = shown_head(n);
    let ascii = pan.is_ascii();
    let at = |k: usize| {
        if ascii {
            k
        } else {
            pan.char_indices().nth(k).map_or(pan.len(), |(i, _)| i)
        }
    };
    push(&pan[..at(first)]);
    stars_pieces(n - 4 - first, push);
    push(&pan[at(n - 4)..]);
}

/// `n` asterisks appended to `out`.
pub fn push_stars(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('*', n));
}

/// `n` asterisks in runs of at most 32, each given to `push`.
pub fn stars_pieces(mut n: usize, push: &mut dyn FnMut(&str)) {
    const STARS: &str = "********************************";
    while n > 0 {
        let k = n.min(STARS.len());
        push(&STARS[..k]);
        n -= k;
    }
}

/// A run of `n` asterisks, the masked form of a secret value of that length.
pub fn stars(n: usize) -> String {
    "*".repeat(n)
}

/// Scrubs free text (log lines, messages): every run of 12 or more digits is masked as a PAN.
/// A last line of defence; sensitive values should never reach free text in the first place.
pub fn scrub_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.push_str(&mask_pan(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A `Debug` naming only the fields given (the caller's non-secret ones) and marking the rest
/// as left out: `Name { a: 1, .. }`. For the types that hold keys, card data or device handles.
pub fn debug_fields(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    fields: &[(&str, &dyn std::fmt::Debug)],
) -> std::fmt::Result {
    let mut d = f.debug_struct(name);
    for (field, value) in fields {
        d.field(field, value);
    }
    d.finish_non_exhaustive()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In place, hand-built and piece by piece, every length masks as the policy says.
    #[test]
    fn every_way_of_masking_a_pan_agrees_at_every_length() {
        let digits = "4761739001010010123";
        for n in 0..=digits.len() {
            let pan = &digits[..n];
            let mut in_place = pan.as_bytes().to_vec();
            mask_pan_in_place(&mut in_place);
            let mut pushed = String::from(">");
            push_masked_pan(&mut pushed, pan);
            let mut pieces = String::new();
            masked_pan_pieces(pan, &mut |s| pieces.push_str(s));
            let want = mask_pan(pan);
            assert_eq!(String::from_utf8(in_place).expect("ascii"), want, "{n}");
            assert_eq!(pushed, format!(">{want}"), "{n}");
            assert_eq!(pieces, want, "{n}");
        }
        assert_eq!(mask_pan(&digits[..16]), "476173******0010");
        assert_eq!(mask_pan(&digits[..12]), "47******0101");
    }

    #[test]
    fn pan_keeps_first_six_and_last_four() {
        assert_eq!(mask_pan("5413330089012345"), "541333******2345");
        assert_eq!(mask_pan("4123456789012345678"), "412345*********5678");
        assert_eq!(mask_pan("12345"), "*****");
    }

    /// Issue 13 finding 16: short PANs keep at least 6 digits hidden.
    #[test]
    fn short_pans_show_fewer_digits() {
        assert_eq!(mask_pan("100000000008"), "10******0008");
        assert_eq!(mask_pan("4000000000006"), "400******0006");
        assert_eq!(mask_pan("371449635398431"), "37144******8431");
        for n in 12..=19 {
            let pan: String = "1234567890123456789".chars().take(n).collect();
            let hidden = mask_pan(&pan).chars().filter(|c| *c == '*').count();
            assert!(hidden >= MIN_HIDDEN, "{n} digits: {hidden} hidden");
        }
    }

    #[test]
    fn scrub_masks_long_digit_runs_only() {
        assert_eq!(
            scrub_digit_runs("pan=5413330089012345, exp 2906"),
            "pan=541333******2345, exp 2906"
        );
    }

    /// The format is std's `DebugStruct::finish_non_exhaustive` (its documentation's example:
    /// `Bar { bar: 10, .. }`): named fields, then `..` for the ones left out.
    #[test]
    fn debug_fields_names_only_the_fields_given() {
        struct Holder {
            id: u32,
            _key: [u8; 2],
        }
        impl std::fmt::Debug for Holder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                debug_fields(f, "Holder", &[("id", &self.id)])
            }
        }
        let h = Holder {
            id: 10,
            _key: [0x5A, 0xA5],
        };
        assert_eq!(format!("{h:?}"), "Holder { id: 10, .. }");
        struct Opaque;
        impl std::fmt::Debug for Opaque {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                debug_fields(f, "Opaque", &[])
            }
        }
        assert_eq!(format!("{:?}", Opaque), "Opaque { .. }");
    }
}
