//! Issuer application data (9F10) as a card is personalized with it, built from the layout its
//! cryptogram version number documents (docs/domain.md §2.3, §10):
//!
//! - Visa IAD format 0/1/3 (CVN 10, 18): `06 DKI CVN CVR(4, starting 03) [IDD]`.
//! - Visa IAD format 2 (CVN 22): 32 bytes, `1F CVN DKI CVR(5) IDD(24: option ID, data)`.
//! - Mastercard M/Chip (CVN 16, 17, 20, 21): `DKI CVN CVR(6) DAC/IDN(2) ...`, 18, 20, 26 or 28
//!   bytes in all.
//!
//! Sources: openemv/emv-utils `src/emv_fields.h` and `src/emv_strings.c` (VSDC formats per the
//! VCPS Supplemental Requirements, Appendix M; M/Chip per M/Chip Requirements, Appendix B); jPOS
//! `VISACryptogram` (CVN bytes 0A, 12, 22). The DKI is the order's `derivationKeyIndex` (the
//! issuer host picks its IMK by it); the CVN byte is the profile's CVN. The initial CVR and the
//! issuer discretionary data are profile values (`[iad]`): scheme and applet vendor guides fix
//! them.
//!
//! ```toml
//! [iad]
//! cvr = "03A00000"      # initial CVR: 4 bytes (Visa 0/1/3), 5 (Visa 2), 6 (Mastercard)
//! idd = ""              # bytes after the CVR (Visa: IDD; Mastercard: DAC/IDN, counters ...)
//! ```

use crate::domain::emv_keys::Cvn;
use crate::domain::finding::Finding;

/// The IAD layout family of a CVN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IadFormat {
    /// Visa IAD format 0, 1 or 3 (`06 DKI CVN CVR`).
    Visa013,
    /// Visa IAD format 2 (`1F CVN DKI CVR IDD`, 32 bytes).
    Visa2,
    /// Mastercard M/Chip (`DKI CVN CVR DAC/IDN ...`).
    MChip,
}

impl IadFormat {
    /// The format a CVN's IAD uses.
    pub fn of(cvn: Cvn) -> Self {
        match cvn {
            Cvn::Visa10 | Cvn::Visa18 => Self::Visa013,
            Cvn::Visa22 => Self::Visa2,
            Cvn::Mastercard16 | Cvn::Mastercard17 | Cvn::Mastercard20 | Cvn::Mastercard21 => {
                Self::MChip
            }
        }
    }

    fn cvr_len(self) -> usize {
        match self {
            Self::Visa013 => 4,
            Self::Visa2 => 5,
            Self::MChip => 6,
        }
    }

    /// Bytes before the CVR (length/format byte, DKI, CVN).
    fn header_len(self) -> usize {
        match self {
            Self::Visa013 | Self::Visa2 => 3,
            Self::MChip => 2,
        }
    }
}

/// The profile's IAD settings: initial CVR and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IadRule {
    /// The IAD layout (from the CVN).
    pub format: IadFormat,
    /// Initial card verification results.
    pub cvr: Vec<u8>,
    /// The bytes after the CVR.
    pub idd: Vec<u8>,
}

impl IadRule {
    /// Parses the `[iad]` table (absent: a zero CVR and no further data) for `cvn`; `file`
    /// prefixes the paths of errors.
    pub fn from_table(file: &str, t: Option<&toml::Table>, cvn: Cvn) -> Result<Self, Finding> {
        let err = |k: &str, rule: String| Finding::new(format!("{file}: iad.{k}"), rule);
        let format = IadFormat::of(cvn);
        let empty = toml::Table::new();
        let t = t.unwrap_or(&empty);
        if let Some(k) = t.keys().find(|k| !["cvr", "idd"].contains(&k.as_str())) {
            return Err(err(k, "unknown key (known: cvr, idd)".into()));
        }
        let bytes = |k: &str| -> Result<Option<Vec<u8>>, Finding> {
            match t.get(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => hex::decode(s)
                    .map(Some)
                    .map_err(|_| err(k, "must be an even number of hex digits".into())),
                Some(_) => Err(err(k, "must be a hex string".into())),
            }
        };
        let cvr = match bytes("cvr")? {
            Some(c) => c,
            None if format == IadFormat::Visa013 => vec![0x03, 0, 0, 0],
            None => vec![0; format.cvr_len()],
        };
        if cvr.len() != format.cvr_len() {
            return Err(err(
                "cvr",
                format!(
                    "must be {} bytes for {cvn} ({format:?} IAD layout)",
                    format.cvr_len()
                ),
            ));
        }
        if format == IadFormat::Visa013 && cvr.first() != Some(&0x03) {
            return Err(err(
                "cvr",
                "the Visa format 0/1/3 CVR starts with its length 03".into(),
            ));
        }
        let idd = match bytes("idd")? {
            Some(i) => i,
            None if format == IadFormat::MChip => vec![0; 10],
            None => Vec::new(),
        };
        let total = format.header_len() + cvr.len() + idd.len();
        let ok = match format {
            IadFormat::Visa013 => total <= 32,
            IadFormat::Visa2 => idd.len() <= 24,
            IadFormat::MChip => [18, 20, 26, 28].contains(&total),
        };
        if !ok {
            return Err(err(
                "idd",
                match format {
                    IadFormat::Visa013 => "makes the IAD longer than 32 bytes".to_string(),
                    IadFormat::Visa2 => {
                        "must be at most 24 bytes (option ID and data; zero-padded to 24)"
                            .to_string()
                    }
                    IadFormat::MChip => format!(
                        "gives an M/Chip IAD of {total} bytes; it must be 18, 20, 26 or 28 (DKI, CVN, CVR(6), then 10, 12, 18 or 20 bytes)"
                    ),
                },
            ));
        }
        Ok(Self { format, cvr, idd })
    }

    /// The IAD for `cvn` with Derivation Key Index `dki`.
    pub fn build(&self, cvn: Cvn, dki: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self.format {
            IadFormat::Visa013 => {
                let len = 2 + self.cvr.len();
                out.extend_from_slice(&[u8::try_from(len).unwrap_or(6), dki, cvn.byte()]);
                out.extend_from_slice(&self.cvr);
                out.extend_from_slice(&self.idd);
            }
            IadFormat::Visa2 => {
                out.extend_from_slice(&[0x1F, cvn.byte(), dki]);
                out.extend_from_slice(&self.cvr);
                out.extend_from_slice(&self.idd);
                out.resize(32, 0);
            }
            IadFormat::MChip => {
                out.extend_from_slice(&[dki, cvn.byte()]);
                out.extend_from_slice(&self.cvr);
                out.extend_from_slice(&self.idd);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cvn: Cvn, text: &str) -> Result<IadRule, Finding> {
        let t: toml::Table = text.parse().expect("toml");
        IadRule::from_table("p.toml", Some(&t), cvn)
    }

    #[test]
    fn layouts_follow_the_cvn() {
        // Visa CVN 18, format 0: jPOS CVN18DataBuilderTest's IAD 06 01 12 03 000000 (DKI 01).
        let r = rule(Cvn::Visa18, "cvr = \"03000000\"").expect("cvn18");
        assert_eq!(hex::encode_upper(r.build(Cvn::Visa18, 1)), "06011203000000");
        // DKI follows the order.
        assert_eq!(hex::encode_upper(r.build(Cvn::Visa18, 2)), "06021203000000");
        // Visa CVN 22, format 2: 32 bytes, 1F, CVN 22, DKI (emv-utils emv_strings.c).
        let r = rule(Cvn::Visa22, "").expect("cvn22");
        let iad = r.build(Cvn::Visa22, 7);
        assert_eq!(iad.len(), 32);
        assert_eq!(&iad[..3], &[0x1F, 0x22, 0x07]);
        // Mastercard: DKI, CVN 0001 0 ss c: 16 = 10, 17 = 11, 20 = 14, 21 = 15.
        for (cvn, byte) in [
            (Cvn::Mastercard16, 0x10),
            (Cvn::Mastercard17, 0x11),
            (Cvn::Mastercard20, 0x14),
            (Cvn::Mastercard21, 0x15),
        ] {
            let iad = rule(cvn, "").expect("mc").build(cvn, 3);
            assert_eq!(iad.len(), 18);
            assert_eq!(&iad[..2], &[0x03, byte]);
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        let e = rule(Cvn::Visa10, "cvr = \"A00000\"").expect_err("short");
        assert!(e.to_string().contains("iad.cvr"), "{e}");
        let e = rule(Cvn::Visa10, "cvr = \"04000000\"").expect_err("length byte");
        assert!(e.to_string().contains("starts with its length 03"), "{e}");
        let e = rule(Cvn::Mastercard20, "idd = \"0000\"").expect_err("mc length");
        assert!(e.to_string().contains("18, 20, 26 or 28"), "{e}");
        let e = rule(
            Cvn::Visa22,
            "idd = \"{}\"".replace("{}", &"00".repeat(25)).as_str(),
        )
        .expect_err("visa2 idd");
        assert!(e.to_string().contains("iad.idd"), "{e}");
    }
}
