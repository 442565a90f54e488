//! The PPSE (`2PAY.SYS.DDF01`) of a dual-interface card: the `[ppse]` table of a chip profile
//! and the FCI it is personalized with (EMV Book B §3.3; VSDC notes in the domain reference
//! §2.1: the PPSE is a separate instance whose FCI is data of the card, DGI 9102).
//!
//! ```toml
//! [ppse]
//! priority = "01"     # 87, application priority indicator
//! kernel_id = "03"    # 9F2A, kernel identifier (02 Mastercard Kernel 2, 03 Visa Kernel 3)
//! ```
//!
//! The FCI proprietary template: `A5 { BF0C { 61 { 4F AID, 50 label, 87 priority, 9F2A kernel } } }`.

use crate::domain::finding::Finding;
use crate::domain::tlv::{Tag, Tlv};

/// `2PAY.SYS.DDF01`.
pub const PPSE_AID: &[u8] = b"2PAY.SYS.DDF01";

/// The DGI of the PPSE instance holding its FCI proprietary template.
pub const PPSE_FCI_DGI: u16 = 0x9102;

/// How the profile's application is listed in the PPSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PpseRule {
    /// Application priority indicator (87).
    pub priority: u8,
    /// Kernel identifier (9F2A), when the profile gives one.
    pub kernel_id: Option<Vec<u8>>,
}

const KEYS: [&str; 2] = ["priority", "kernel_id"];

fn hex_field(file: &str, t: &toml::Table, key: &str) -> Result<Option<Vec<u8>>, Finding> {
    let err = |rule: &str| Finding::new(format!("{file}: ppse.{key}"), rule);
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => hex::decode(s)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Some)
            .ok_or_else(|| err("must be hex bytes")),
        Some(_) => Err(err("must be a string of hex")),
    }
}

impl PpseRule {
    /// Parses the `[ppse]` table; `file` prefixes the paths of errors.
    pub fn from_table(file: &str, t: &toml::Table) -> Result<Self, Finding> {
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Finding::new(
                format!("{file}: ppse.{k}"),
                format!("unknown key (known: {})", KEYS.join(", ")),
            ));
        }
        let priority = match hex_field(file, t, "priority")? {
            None => 0x01,
            Some(v) => match v.as_slice() {
                [p] => *p,
                _ => {
                    return Err(Finding::new(
                        format!("{file}: ppse.priority"),
                        "must be one byte",
                    ));
                }
            },
        };
        let kernel_id = hex_field(file, t, "kernel_id")?;
        if kernel_id.as_ref().is_some_and(|k| k.len() > 8) {
            return Err(Finding::new(
                format!("{file}: ppse.kernel_id"),
                "must be 1 to 8 bytes",
            ));
        }
        Ok(Self {
            priority,
            kernel_id,
        })
    }

    /// The value of the PPSE instance's DGI 9102 for the application `aid` labelled `label`.
    pub fn fci(&self, aid: &[u8], label: &str) -> Result<Vec<u8>, Finding> {
        let err = |e: String| Finding::new("ppse", e);
        let leaf = |tag: u32, v: &[u8]| {
            Tag::new(tag)
                .ok_or_else(|| err(format!("tag {tag:X}")))
                .and_then(|t| Tlv::primitive(t, v.to_vec()).map_err(|e| err(e.to_string())))
        };
        let mut entry = vec![leaf(0x4F, aid)?];
        if !label.is_empty() {
            entry.push(leaf(0x50, label.as_bytes())?);
        }
        entry.push(leaf(0x87, &[self.priority])?);
        if let Some(k) = &self.kernel_id {
            entry.push(leaf(0x9F2A, k)?);
        }
        let node = |tag: u32, children: Vec<Tlv>| {
            Tag::new(tag)
                .ok_or_else(|| err(format!("tag {tag:X}")))
                .and_then(|t| Tlv::constructed(t, children).map_err(|e| err(e.to_string())))
        };
        let a5 = node(0xA5, vec![node(0xBF0C, vec![node(0x61, entry)?])?])?;
        Ok(a5.to_bytes())
    }
}
