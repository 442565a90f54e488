//! The secure channel a profile's cards are personalized over: the `[channel]` table of a chip
//! profile. It names protocols and key references only, never key values.
//!
//! ```toml
//! [channel]
//! scp = "scp02:55"            # scp02:15|55, scp03:00|10|70
//! level = "cmac-cdec"         # cmac, cmac-cdec, cmac-rmac, cmac-cdec-rmac, full (SCP03)
//! kmc_index = 1               # the `kmc` key the card keys are diversified from
//! diversification = "emv"     # emv (EMV CPS 1.1), visa2 (TDES), kdf3 (AES, SCP03)
//! key_version = "00"          # INITIALIZE UPDATE P1
//! security_domain = "A000000151000000"  # optional: SELECT it, then INSTALL [for perso] the AID
//! ```
//!
//! Without the table: SCP02 i=55, C-MAC + C-DEC, kmc #1 with EMV CPS 1.1, key version 00, the
//! application selected directly. Card keys belong to the card stock; check them with the card
//! vendor before personalizing real cards.

use std::fmt;

use crate::domain::finding::Finding;
use crate::domain::gp::SecurityLevel;
use crate::domain::gp::kdf::Diversification;
use crate::domain::gp::session::Protocol;

/// How cards of a profile are reached: protocol, level and the card keys' reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    /// SCP02 or SCP03 with its "i".
    pub protocol: Protocol,
    /// The EXTERNAL AUTHENTICATE security level.
    pub security_level: SecurityLevel,
    /// INITIALIZE UPDATE key version (00 = the card's default).
    pub key_version: u8,
    /// Index of the `kmc` key in the key store.
    pub kmc_index: u32,
    /// How the KMC is diversified with the card's KDD.
    pub diversification: Diversification,
    /// Select this security domain and INSTALL [for personalization] the application through it.
    pub security_domain: Option<Vec<u8>>,
}

impl Default for ChannelRule {
    fn default() -> Self {
        Self {
            protocol: Protocol::Scp02 { i: 0x55 },
            security_level: SecurityLevel::CMacCDec,
            key_version: 0,
            kmc_index: 1,
            diversification: Diversification::EmvCps11,
            security_domain: None,
        }
    }
}

const KEYS: [&str; 6] = [
    "scp",
    "level",
    "kmc_index",
    "diversification",
    "key_version",
    "security_domain",
];

/// Parses `scp02:55` / `scp03:70` (the "i" in hex).
pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    let (name, i) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not scp02:I or scp03:I (I in hex, e.g. scp02:55)"))?;
    let i = u8::from_str_radix(i, 16).map_err(|_| format!("`{i}` is not a hex byte"))?;
    match name {
        "scp02" if [0x05, 0x15, 0x45, 0x55].contains(&i) => Ok(Protocol::Scp02 { i }),
        // GP Amendment D §5.1: b5 (10) pseudo-random card challenge, b6 (20) R-MAC, b7 (40)
        // R-ENC, which needs R-MAC; the other bits are RFU.
        "scp03" if i & 0x8F == 0 && (i & 0x40 == 0 || i & 0x20 != 0) => Ok(Protocol::Scp03 { i }),
        "scp03" if i & 0x8F == 0 => Err(format!(
            "SCP03 i={i:02X} asks for R-ENC without R-MAC (GP Amendment D: R-ENC needs R-MAC); use 00, 10, 20, 30, 60 or 70"
        )),
        "scp02" => Err(format!("SCP02 i={i:02X} is not 05, 15, 45 or 55")),
        "scp03" => Err(format!("SCP03 i={i:02X} is not 00, 10, 20, 30, 60 or 70")),
        _ => Err(format!("`{name}` is not scp02 or scp03")),
    }
}

/// Parses a security level name.
pub fn parse_level(s: &str) -> Option<SecurityLevel> {
    Some(match s {
        "cmac" => SecurityLevel::CMac,
        "cmac-cdec" => SecurityLevel::CMacCDec,
        "cmac-rmac" => SecurityLevel::CMacRMac,
        "cmac-cdec-rmac" => SecurityLevel::CMacCDecRMac,
        "full" => SecurityLevel::Full,
        _ => return None,
    })
}

/// Parses a diversification method name.
pub fn parse_diversification(s: &str) -> Option<Diversification> {
    Some(match s {
        "emv" => Diversification::EmvCps11,
        "visa2" => Diversification::Visa2,
        "kdf3" => Diversification::Kdf3,
        _ => return None,
    })
}

/// `scp02:55` style name of a protocol.
pub fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::Scp02 { i } => format!("scp02:{i:02x}"),
        Protocol::Scp03 { i } => format!("scp03:{i:02x}"),
    }
}

impl fmt::Display for ChannelRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} level {:02X}, kmc #{} ({:?}), key version {:02X}",
            protocol_name(self.protocol),
            self.security_level.p1(),
            self.kmc_index,
            self.diversification,
            self.key_version
        )
    }
}

/// `parsed`, the value `s` names, or the rule that it is not one of `choices`.
fn one_of<T>(s: &str, parsed: Option<T>, choices: &str) -> Result<T, String> {
    parsed.ok_or_else(|| format!("`{s}` is not {choices}"))
}

impl ChannelRule {
    /// Parses the `[channel]` table; `file` prefixes the paths of errors.
    pub fn from_table(file: &str, t: &toml::Table) -> Result<Self, Finding> {
        let err = |k: &str, rule: String| Finding::new(format!("{file}: channel.{k}"), rule);
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(err(k, format!("unknown key (known: {})", KEYS.join(", "))));
        }
        let string = |k: &str| -> Result<Option<&str>, Finding> {
            match t.get(k) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(err(k, "must be a string".into())),
            }
        };
        let mut rule = Self::default();
        if let Some(s) = string("scp")? {
            rule.protocol = parse_protocol(s).map_err(|e| err("scp", e))?;
        }
        if let Some(s) = string("level")? {
            let levels = "cmac, cmac-cdec, cmac-rmac, cmac-cdec-rmac or full";
            rule.security_level = one_of(s, parse_level(s), levels).map_err(|e| err("level", e))?;
        }
        if let Some(s) = string("diversification")? {
            rule.diversification = one_of(s, parse_diversification(s), "emv, visa2 or kdf3")
                .map_err(|e| err("diversification", e))?;
        } else if matches!(rule.protocol, Protocol::Scp03 { .. }) {
            rule.diversification = Diversification::Kdf3;
        }
        if let Some(s) = string("key_version")? {
            rule.key_version = u8::from_str_radix(s, 16)
                .ok()
                .filter(|_| s.len() == 2)
                .ok_or_else(|| err("key_version", format!("`{s}` is not one hex byte")))?;
        }
        match t.get("kmc_index") {
            None => {}
            Some(toml::Value::Integer(i)) => {
                rule.kmc_index = u32::try_from(*i)
                    .ok()
                    .filter(|i| *i > 0)
                    .ok_or_else(|| err("kmc_index", format!("{i} is not a positive index")))?;
            }
            Some(_) => return Err(err("kmc_index", "must be an integer".into())),
        }
        if let Some(s) = string("security_domain")? {
            let aid = hex::decode(s)
                .ok()
                .filter(|a| (5..=16).contains(&a.len()))
                .ok_or_else(|| err("security_domain", "must be an AID of 5 to 16 bytes".into()))?;
            rule.security_domain = Some(aid);
        }
        rule.check().map_err(|(k, e)| err(k, e))?;
        Ok(rule)
    }

    /// Cross-field rules: the key family must fit the protocol, the level the protocol.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let scp03 = matches!(self.protocol, Protocol::Scp03 { .. });
        if scp03 != self.diversification.is_aes() {
            return Err((
                "diversification",
                format!(
                    "{:?} does not give {} keys for {}",
                    self.diversification,
                    if scp03 { "AES" } else { "TDES" },
                    protocol_name(self.protocol)
                ),
            ));
        }
        if !scp03
            && !matches!(
                self.security_level,
                SecurityLevel::CMac | SecurityLevel::CMacCDec
            )
        {
            return Err((
                "level",
                "SCP02 supports cmac and cmac-cdec here".to_string(),
            ));
        }
        Ok(())
    }

    /// The same rule over another protocol (a tester's override): the diversification follows
    /// the key family (EMV CPS 1.1 for SCP02, kdf3 for SCP03) unless it already fits.
    pub fn with_protocol(&self, protocol: Protocol) -> Self {
        let mut r = self.clone();
        r.protocol = protocol;
        let scp03 = matches!(protocol, Protocol::Scp03 { .. });
        if scp03 != r.diversification.is_aes() {
            r.diversification = if scp03 {
                Diversification::Kdf3
            } else {
                Diversification::EmvCps11
            };
        }
        if !scp03
            && !matches!(
                r.security_level,
                SecurityLevel::CMac | SecurityLevel::CMacCDec
            )
        {
            r.security_level = SecurityLevel::CMacCDec;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChannelRule, Finding> {
        let t: toml::Table = text.parse().expect("toml");
        ChannelRule::from_table("p.toml", &t)
    }

    #[test]
    fn parses_every_key_and_defaults_the_rest() {
        let r = parse(
            "scp = \"scp03:70\"\nlevel = \"cmac-cdec-rmac\"\nkmc_index = 2\nkey_version = \"30\"\n\
             security_domain = \"A000000151000000\"",
        )
        .expect("rule");
        assert_eq!(r.protocol, Protocol::Scp03 { i: 0x70 });
        assert_eq!(r.security_level, SecurityLevel::CMacCDecRMac);
        assert_eq!(r.kmc_index, 2);
        assert_eq!(r.key_version, 0x30);
        assert_eq!(r.diversification, Diversification::Kdf3);
        assert_eq!(r.security_domain.as_deref().map(<[u8]>::len), Some(8));
        assert_eq!(parse("").expect("default"), ChannelRule::default());
    }

    #[test]
    fn errors_name_the_key_and_the_rule() {
        let cases = [
            ("scp = \"scp04:00\"", "channel.scp", "not scp02 or scp03"),
            ("scp = \"scp02:10\"", "channel.scp", "not 05, 15, 45 or 55"),
            ("scp = \"scp03:40\"", "channel.scp", "R-ENC without R-MAC"),
            ("scp = \"scp03:50\"", "channel.scp", "R-ENC without R-MAC"),
            ("level = \"max\"", "channel.level", "is not cmac"),
            ("kmc_index = 0", "channel.kmc_index", "not a positive index"),
            (
                "key_version = \"1\"",
                "channel.key_version",
                "not one hex byte",
            ),
            (
                "security_domain = \"A0\"",
                "channel.security_domain",
                "5 to 16 bytes",
            ),
            ("colour = 1", "channel.colour", "unknown key"),
            (
                "scp = \"scp02:55\"\ndiversification = \"kdf3\"",
                "channel.diversification",
                "TDES keys",
            ),
            (
                "scp = \"scp02:55\"\nlevel = \"full\"",
                "channel.level",
                "SCP02",
            ),
        ];
        for (text, path, rule) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.path, format!("p.toml: {path}"), "{text}");
            assert!(e.rule.contains(rule), "{text}: {}", e.rule);
        }
    }

    #[test]
    fn an_override_keeps_the_key_family_consistent() {
        let r = ChannelRule::default().with_protocol(Protocol::Scp03 { i: 0x70 });
        assert_eq!(r.diversification, Diversification::Kdf3);
        assert!(r.check().is_ok());
        let back = r.with_protocol(Protocol::Scp02 { i: 0x15 });
        assert_eq!(back.diversification, Diversification::EmvCps11);
        assert!(back.check().is_ok());
    }
}
