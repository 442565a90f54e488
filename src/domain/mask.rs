//! The one masking policy for everything a human may see.
//!
//! - PAN: first 6 and last 4 digits (`541333******2345`), wherever it appears.
//! - CVV1, iCVV, PVV: every digit as `*`.
//! - PIN blocks and keys: never shown; keys by KCV only.
//! - Name and expiry: visible (supervisors check them).

/// Masks a PAN to its first 6 and last 4 digits; shorter inputs are masked entirely.
pub fn mask_pan(pan: &str) -> String {
    let n = pan.chars().count();
    if n < 12 {
        return "*".repeat(n);
    }
    pan.chars()
        .enumerate()
        .map(|(i, c)| if i < 6 || i >= n - 4 { c } else { '*' })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pan_keeps_first_six_and_last_four() {
        assert_eq!(mask_pan("5413330089012345"), "541333******2345");
        assert_eq!(mask_pan("4123456789012345678"), "412345*********5678");
        assert_eq!(mask_pan("12345"), "*****");
    }

    #[test]
    fn scrub_masks_long_digit_runs_only() {
        assert_eq!(
            scrub_digit_runs("pan=5413330089012345, exp 2906"),
            "pan=541333******2345, exp 2906"
        );
    }
}
