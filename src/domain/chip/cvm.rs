//! The cardholder verification method list (8E), decoded per EMV Book 3 Annex C3: amount X (4
//! bytes), amount Y (4 bytes), then rules of two bytes, a CVM code (bit 7 = apply the next rule
//! if this one is unsuccessful, bits 6-1 = the method) and a condition code.
//!
//! Preparation uses it to check that the reference PIN (DGI 8010) and the CVM list agree: a
//! card with a reference PIN no rule verifies offline, or a rule asking for offline PIN on a
//! card without one, fails at the terminal.

/// One CVM rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CvmRule {
    /// CVM code (byte 1).
    pub code: u8,
    /// Condition code (byte 2).
    pub condition: u8,
}

impl CvmRule {
    /// The method bits (b6-b1).
    pub fn method(self) -> u8 {
        self.code & 0x3F
    }

    /// Bit 7: apply the succeeding rule if this one is unsuccessful.
    pub fn apply_next(self) -> bool {
        self.code & 0x40 != 0
    }

    /// The method verifies the PIN in the card (offline): plaintext or enciphered PIN by ICC,
    /// with or without signature (01, 03, 04, 05).
    pub fn is_offline_pin(self) -> bool {
        matches!(self.method(), 0x01 | 0x03 | 0x04 | 0x05)
    }

    /// `42 03 = enciphered PIN verified online, apply next if unsuccessful; if terminal supports
    /// the CVM`.
    pub fn describe(self, x: u32, y: u32) -> String {
        format!(
            "{:02X} {:02X} = {}{}; {}",
            self.code,
            self.condition,
            method_name(self.method()),
            if self.apply_next() {
                ", apply next if unsuccessful"
            } else {
                ", fail CVM processing if unsuccessful"
            },
            condition_name(self.condition, x, y)
        )
    }
}

/// A decoded CVM list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvmList {
    /// Amount X (binary, in the application currency, implicit decimal point).
    pub x: u32,
    /// Amount Y.
    pub y: u32,
    /// The rules in order.
    pub rules: Vec<CvmRule>,
}

impl CvmList {
    /// Decodes an 8E value: at least 8 bytes, then whole rules.
    pub fn parse(v: &[u8]) -> Result<Self, String> {
        let Some((amounts, rules)) = v.split_first_chunk::<8>() else {
            return Err(format!(
                "a CVM list starts with amounts X and Y (8 bytes); got {} bytes",
                v.len()
            ));
        };
        if !rules.len().is_multiple_of(2) {
            return Err("CVM rules are 2 bytes each: the list has an odd byte".into());
        }
        let [x0, x1, x2, x3, y0, y1, y2, y3] = *amounts;
        Ok(Self {
            x: u32::from_be_bytes([x0, x1, x2, x3]),
            y: u32::from_be_bytes([y0, y1, y2, y3]),
            rules: rules
                .chunks_exact(2)
                .map(|r| CvmRule {
                    code: r[0],
                    condition: r[1],
                })
                .collect(),
        })
    }

    /// Some rule verifies the PIN offline.
    pub fn uses_offline_pin(&self) -> bool {
        self.rules.iter().any(|r| r.is_offline_pin())
    }

    /// One line per part: `X = 0, Y = 0`, then each rule described.
    pub fn describe(&self) -> Vec<String> {
        let mut out = vec![format!("X = {}, Y = {}", self.x, self.y)];
        out.extend(self.rules.iter().map(|r| r.describe(self.x, self.y)));
        out
    }
}

fn method_name(m: u8) -> &'static str {
    match m {
        0x00 => "fail CVM processing",
        0x01 => "plaintext PIN verified by ICC",
        0x02 => "enciphered PIN verified online",
        0x03 => "plaintext PIN verified by ICC and signature",
        0x04 => "enciphered PIN verified by ICC",
        0x05 => "enciphered PIN verified by ICC and signature",
        0x1E => "signature (paper)",
        0x1F => "no CVM required",
        0x3F => "not available for use",
        0x06..=0x1D => "reserved for future use (EMV)",
        0x20..=0x2F => "reserved for the payment system",
        _ => "reserved for the issuer",
    }
}

fn condition_name(c: u8, x: u32, y: u32) -> String {
    match c {
        0x00 => "always".into(),
        0x01 => "if unattended cash".into(),
        0x02 => "if not unattended cash, not manual cash and not purchase with cashback".into(),
        0x03 => "if terminal supports the CVM".into(),
        0x04 => "if manual cash".into(),
        0x05 => "if purchase with cashback".into(),
        0x06 => format!("if in the application currency and under X ({x})"),
        0x07 => format!("if in the application currency and over X ({x})"),
        0x08 => format!("if in the application currency and under Y ({y})"),
        0x09 => format!("if in the application currency and over Y ({y})"),
        0x80..=0xFF => "condition reserved for the payment system".into(),
        _ => "condition reserved for future use".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_book3_annex_c3_codes() {
        // The demo list: 42 03, 1E 03, 1F 00 (codes from EMV Book 3 Annex C3, Tables 39/40).
        let l = CvmList::parse(&hex::decode("000000000000000042031E031F00").expect("hex"))
            .expect("list");
        assert_eq!((l.x, l.y, l.rules.len()), (0, 0, 3));
        let d = l.describe();
        assert_eq!(
            d[1],
            "42 03 = enciphered PIN verified online, apply next if unsuccessful; if terminal supports the CVM"
        );
        assert_eq!(
            d[2],
            "1E 03 = signature (paper), fail CVM processing if unsuccessful; if terminal supports the CVM"
        );
        assert!(d[3].starts_with("1F 00 = no CVM required"));
        assert!(!l.uses_offline_pin(), "42 is online PIN");
        let l = CvmList::parse(&hex::decode("000003E8000000004103").expect("hex")).expect("list");
        assert!(l.uses_offline_pin(), "41 = plaintext PIN by ICC");
        assert!(l.describe()[0].contains("X = 1000"));
        assert!(CvmList::parse(&[0; 7]).is_err());
        assert!(CvmList::parse(&[0; 9]).is_err());
    }
}
