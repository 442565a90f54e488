//! Card products (`profiles/products/*.toml`): service code, discretionary data patterns, track 3
//! body, PVKI and the chip profile. Parsed from text here; the directory walk is an adapter's job.
//!
//! Pattern grammar: `|`-separated segments; `cvv` and `pvv` are tokens, any other segment is a
//! literal (digits only on track 2, the track 1 character set on track 1). A lower-case word that
//! is not a known token is an unknown token.

use std::collections::BTreeMap;

use super::fields::{ServiceCode, is_track1_char};
use super::finding::Finding;
use super::order::OrderRules;

/// One segment of a discretionary data pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Written as is.
    Literal(String),
    /// CVV1: given in the order or computed with the CVK.
    Cvv,
    /// PVV: given in the order or computed with the PVK.
    Pvv,
}

/// A discretionary data pattern such as `000000|cvv|000000`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    /// The segments in order.
    pub segments: Vec<Segment>,
}

/// Which track a pattern is for (decides the literal character set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternTrack {
    /// Track 1: ISO 7813 track 1 set.
    Track1,
    /// Track 2: digits only.
    Track2,
}

impl Pattern {
    /// Parses a pattern; the error names the offending segment.
    pub fn parse(s: &str, track: PatternTrack) -> Result<Self, String> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        let mut segments = Vec::new();
        for (i, seg) in s.split('|').enumerate() {
            let n = i + 1;
            if seg.is_empty() {
                return Err(format!("segment {n} is empty"));
            }
            if seg.bytes().all(|b| b.is_ascii_lowercase()) {
                segments.push(match seg {
                    "cvv" => Segment::Cvv,
                    "pvv" => Segment::Pvv,
                    _ => {
                        return Err(format!(
                            "segment {n} `{seg}` is an unknown token (known: cvv, pvv)"
                        ));
                    }
                });
                continue;
            }
            let ok = match track {
                PatternTrack::Track2 => seg.bytes().all(|b| b.is_ascii_digit()),
                PatternTrack::Track1 => seg
                    .chars()
                    .all(|c| is_track1_char(c) && !matches!(c, '^' | '%' | '?')),
            };
            if !ok {
                let set = match track {
                    PatternTrack::Track2 => "digits only on track 2",
                    PatternTrack::Track1 => "the track 1 character set without ^ % ?",
                };
                return Err(format!("segment {n} `{seg}` is not a literal of {set}"));
            }
            segments.push(Segment::Literal(seg.into()));
        }
        Ok(Self { segments })
    }

    /// True when the pattern injects the CVV.
    pub fn uses_cvv(&self) -> bool {
        self.segments.contains(&Segment::Cvv)
    }

    /// True when the pattern injects the PVV.
    pub fn uses_pvv(&self) -> bool {
        self.segments.contains(&Segment::Pvv)
    }

    /// When the pattern injects the PVV: the character just before it (the PVKI position of
    /// the Visa PVV layout, PVKI then PVV), `None` inside when nothing precedes `pvv`.
    fn char_before_pvv(&self) -> Option<Option<u8>> {
        let i = self.segments.iter().position(|s| *s == Segment::Pvv)?;
        Some(match i.checked_sub(1).and_then(|j| self.segments.get(j)) {
            Some(Segment::Literal(l)) => l.bytes().last(),
            _ => None,
        })
    }
}

/// A card product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Matches the order's `cardProductId`.
    pub card_product_id: String,
    /// Chip profile name (`profiles/chip/<name>.toml`), used by Model 1.
    pub chip_profile: Option<String>,
    /// Magnetic stripe service code.
    pub service_code: ServiceCode,
    /// Track 1 discretionary data pattern.
    pub track1_discretionary: Pattern,
    /// Track 2 discretionary data pattern.
    pub track2_discretionary: Pattern,
    /// Track 3 body after `PAN=`; no track 3 without it.
    pub track3_body: Option<String>,
    /// PVV key index digit.
    pub pvki: Option<u8>,
    /// A PAN with a wrong Luhn check digit is only a warning (test products only).
    pub luhn_warning_only: bool,
    /// The file it came from, for messages.
    pub source: String,
    /// Payment application configurations (`[config.NAME]`): predefined chip tag values (IACs,
    /// CVM list, CDOL1/2, currency and country codes, AUC...), by name; orders pick one with
    /// `paymentApplication.config` (default `default`).
    pub configs: BTreeMap<String, BTreeMap<super::tlv::Tag, Vec<u8>>>,
    /// A random reference PIN may be generated when an order carries none (never shown).
    pub random_pin: bool,
    /// Digits of a generated PIN (4-12, default 4).
    pub random_pin_digits: u8,
    /// Chip data models the product allows (`models = [1, 2]`, the default; `[1]` or `[2]` to
    /// allow only one).
    pub models: Vec<u8>,
    /// A test product (`test = true`): refused in production mode.
    pub test: bool,
}

impl Product {
    /// True when the product allows chip data model `model` (1 or 2).
    pub fn allows_model(&self, model: u8) -> bool {
        self.models.contains(&model)
    }
}

/// Parses `[config.NAME]` tables of `"TAG" = "HEX"` entries.
fn parse_configs(
    f: &Fields<'_>,
) -> Result<BTreeMap<String, BTreeMap<super::tlv::Tag, Vec<u8>>>, Finding> {
    let mut out = BTreeMap::new();
    let Some(v) = f.table.get("config") else {
        return Ok(out);
    };
    let toml::Value::Table(t) = v else {
        return Err(f.err("config", "must be tables [config.NAME]"));
    };
    for (name, c) in t {
        let toml::Value::Table(c) = c else {
            return Err(f.err(
                &format!("config.{name}"),
                "must be a table of \"TAG\" = \"HEX\"",
            ));
        };
        let mut tags = BTreeMap::new();
        for (k, v) in c {
            let path = format!("config.{name}.{k}");
            let tag = hex::decode(k)
                .ok()
                .and_then(|b| super::tlv::Tag::from_bytes(&b))
                .ok_or_else(|| f.err(&path, "is not a BER-TLV tag in hex"))?;
            let value = v
                .as_str()
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| f.err(&path, "must be a string of hex digits"))?;
            tags.insert(tag, value);
        }
        out.insert(name.clone(), tags);
    }
    Ok(out)
}

const KNOWN_KEYS: [&str; 13] = [
    "test",
    "models",
    "config",
    "random_pin",
    "random_pin_digits",
    "card_product_id",
    "chip_profile",
    "service_code",
    "track1_discretionary",
    "track2_discretionary",
    "track3_body",
    "pvki",
    "pan_luhn",
];

struct Fields<'a> {
    file: &'a str,
    table: &'a toml::Table,
}

impl Fields<'_> {
    fn err(&self, key: &str, rule: impl Into<String>) -> Finding {
        Finding::new(format!("{}: {key}", self.file), rule)
    }

    fn string(&self, key: &str) -> Result<Option<&str>, Finding> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, "must be a string")),
        }
    }

    fn required(&self, key: &str) -> Result<&str, Finding> {
        self.string(key)?
            .ok_or_else(|| self.err(key, "is required"))
    }
}

/// `track3_body`: digits and `=` separators.
fn parse_track3_body(f: &Fields<'_>) -> Result<Option<String>, Finding> {
    Ok(match f.string("track3_body")? {
        None => None,
        Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit() || c == b'=') => {
            Some(b.to_string())
        }
        Some(_) => {
            return Err(f.err("track3_body", "must be digits and '=' separators only"));
        }
    })
}

/// `pvki`: the PVV key index, one digit.
fn parse_pvki(f: &Fields<'_>) -> Result<Option<u8>, Finding> {
    Ok(match f.table.get("pvki") {
        None => None,
        Some(toml::Value::String(s)) if s.len() == 1 && s.as_bytes()[0].is_ascii_digit() => {
            Some(s.as_bytes()[0] - b'0')
        }
        Some(toml::Value::Integer(i)) if (0..=9).contains(i) => Some(*i as u8),
        Some(_) => return Err(f.err("pvki", "must be one digit 0-9")),
    })
}

/// A pattern with the pvv token needs `pvki`, and the digit before the token is the PVKI.
fn check_pvki(
    f: &Fields<'_>,
    pvki: Option<u8>,
    track1_discretionary: &Pattern,
    track2_discretionary: &Pattern,
) -> Result<(), Finding> {
    if pvki.is_none() && (track1_discretionary.uses_pvv() || track2_discretionary.uses_pvv()) {
        return Err(f.err("pvki", "is required because a pattern uses the pvv token"));
    }
    for (key, p) in [
        ("track1_discretionary", track1_discretionary),
        ("track2_discretionary", track2_discretionary),
    ] {
        if let (Some(k), Some(rule)) = (pvki, p.char_before_pvv()) {
            let before = rule.map(char::from);
            if before != Some(char::from(b'0' + k)) {
                return Err(f.err(
                    key,
                    format!(
                        "the digit before pvv is the PVV key index and must be pvki ({k}){}",
                        before.map_or(" (nothing precedes pvv)".to_string(), |c| format!(
                            ", not {c}"
                        ))
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `random_pin` and `random_pin_digits` (4 to 12, default 4).
fn parse_random_pin(f: &Fields<'_>) -> Result<(bool, u8), Finding> {
    let random_pin = match f.table.get("random_pin") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(f.err("random_pin", "must be true or false")),
    };
    let random_pin_digits = match f.table.get("random_pin_digits") {
        None => 4,
        Some(toml::Value::Integer(i)) if (4..=12).contains(i) => *i as u8,
        Some(_) => return Err(f.err("random_pin_digits", "must be 4 to 12")),
    };
    Ok((random_pin, random_pin_digits))
}

/// `models`: the chip models the product allows, distinct 1 and 2 (default both).
fn parse_models(f: &Fields<'_>) -> Result<Vec<u8>, Finding> {
    Ok(match f.table.get("models") {
        None => vec![1, 2],
        Some(toml::Value::Array(a)) => {
            let mut m = Vec::with_capacity(a.len());
            for v in a {
                match v {
                    toml::Value::Integer(i @ (1 | 2)) if !m.contains(&(*i as u8)) => {
                        m.push(*i as u8);
                    }
                    _ => return Err(f.err("models", "must be a list of distinct 1 and 2")),
                }
            }
            if m.is_empty() {
                return Err(f.err("models", "must allow at least one model"));
            }
            m
        }
        Some(_) => return Err(f.err("models", "must be a list such as [1, 2]")),
    })
}

impl Product {
    /// Parses a product file's text; `file` names it in errors. Unknown keys are errors (they are
    /// usually typos that would otherwise silently change a card).
    pub fn from_toml(file: &str, text: &str) -> Result<Self, Finding> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Finding::new(file, format!("not valid TOML: {}", e.message()))
        })?;
        let f = Fields {
            file,
            table: &table,
        };
        if let Some(k) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(f.err(k, format!("unknown key (known: {})", KNOWN_KEYS.join(", "))));
        }
        let card_product_id = f.required("card_product_id")?;
        if card_product_id.trim().is_empty() {
            return Err(f.err("card_product_id", "must not be empty"));
        }
        let service_code = ServiceCode::parse(f.required("service_code")?)
            .map_err(|r| f.err("service_code", r))?;
        // ISO/IEC 7813: the first digit 2 or 6 tells a terminal there is a chip; 1xx sends the
        // card down the magnetic stripe path.
        if let Some(chip) = f.string("chip_profile")?
            && !matches!(service_code.as_str().as_bytes().first(), Some(b'2' | b'6'))
        {
            return Err(f.err(
                "service_code",
                format!(
                    "{} does not start with 2 or 6, but the product has chip profile {chip}: a chip card's service code says so (ISO/IEC 7813, e.g. 201)",
                    service_code.as_str()
                ),
            ));
        }
        let pattern = |key, track| -> Result<Pattern, Finding> {
            Pattern::parse(f.string(key)?.unwrap_or(""), track).map_err(|r| f.err(key, r))
        };
        let track1_discretionary = pattern("track1_discretionary", PatternTrack::Track1)?;
        let track2_discretionary = pattern("track2_discretionary", PatternTrack::Track2)?;
        let track3_body = parse_track3_body(&f)?;
        let pvki = parse_pvki(&f)?;
        check_pvki(&f, pvki, &track1_discretionary, &track2_discretionary)?;
        let luhn_warning_only = match f.string("pan_luhn")? {
            None | Some("error") => false,
            Some("warn") => true,
            Some(_) => return Err(f.err("pan_luhn", "must be \"error\" or \"warn\"")),
        };
        let configs = parse_configs(&f)?;
        let (random_pin, random_pin_digits) = parse_random_pin(&f)?;
        let models = parse_models(&f)?;
        let test = match table.get("test") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(f.err("test", "must be true or false")),
        };
        if luhn_warning_only && !test {
            return Err(f.err(
                "pan_luhn",
                "\"warn\" is for test products only (add test = true)",
            ));
        }
        Ok(Self {
            test,
            models,
            configs,
            random_pin,
            random_pin_digits,
            card_product_id: card_product_id.to_string(),
            luhn_warning_only,
            chip_profile: f.string("chip_profile")?.map(str::to_string),
            service_code,
            track1_discretionary,
            track2_discretionary,
            track3_body,
            pvki,
            source: file.to_string(),
        })
    }
}

/// All products by id. Duplicate ids are an error naming both files.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    products: Vec<Product>,
}

impl Catalog {
    /// Builds a catalog, rejecting duplicate ids.
    pub fn new(products: Vec<Product>) -> Result<Self, Finding> {
        for (i, p) in products.iter().enumerate() {
            if let Some(q) = products[..i]
                .iter()
                .find(|q| q.card_product_id == p.card_product_id)
            {
                return Err(Finding::new(
                    format!("{}: card_product_id", p.source),
                    format!(
                        "product {} is already defined in {}",
                        p.card_product_id, q.source
                    ),
                ));
            }
        }
        Ok(Self { products })
    }

    /// Looks a product up by `cardProductId`.
    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.card_product_id == id)
    }

    /// All products.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The order rules these products imply.
    pub fn order_rules(&self) -> OrderRules {
        OrderRules {
            luhn_warning_only: self
                .products
                .iter()
                .filter(|p| p.luhn_warning_only)
                .map(|p| p.card_product_id.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_tokens_and_literals() {
        let p = Pattern::parse("000000|cvv|000000", PatternTrack::Track2).expect("valid");
        assert_eq!(p.segments.len(), 3);
        assert!(p.uses_cvv() && !p.uses_pvv());
        assert!(
            Pattern::parse("00|cvc", PatternTrack::Track2)
                .expect_err("unknown")
                .contains("unknown token")
        );
        assert!(Pattern::parse("00A|cvv", PatternTrack::Track2).is_err());
        assert!(Pattern::parse("00 A|cvv", PatternTrack::Track1).is_ok());
        assert!(Pattern::parse("00||cvv", PatternTrack::Track1).is_err());
    }

    const BASE: &str = "card_product_id = \"P\"\nservice_code = \"201\"\n\
        track1_discretionary = \"1|pvv|cvv\"\ntrack2_discretionary = \"1|pvv|cvv\"\npvki = \"1\"\n";

    #[test]
    fn a_chip_product_needs_a_chip_service_code() {
        assert!(Product::from_toml("p.toml", BASE).is_ok());
        let chip = format!("{BASE}chip_profile = \"x\"\n");
        assert!(Product::from_toml("p.toml", &chip).is_ok());
        // ISO/IEC 7813: 1xx = no chip.
        let e = Product::from_toml("p.toml", &chip.replace("\"201\"", "\"101\""))
            .expect_err("101 on a chip card");
        assert_eq!(e.path, "p.toml: service_code");
        assert!(e.rule.contains("2 or 6"), "{e}");
        assert!(Product::from_toml("p.toml", &chip.replace("\"201\"", "\"601\"")).is_ok());
        // A stripe-only product may keep 101.
        assert!(Product::from_toml("p.toml", &BASE.replace("\"201\"", "\"101\"")).is_ok());
    }

    #[test]
    fn the_digit_before_pvv_is_the_products_pvki() {
        let e = Product::from_toml("p.toml", &BASE.replace("pvki = \"1\"", "pvki = \"2\""))
            .expect_err("pvki 2, pattern 1");
        assert_eq!(e.path, "p.toml: track1_discretionary");
        assert!(e.rule.contains("must be pvki (2), not 1"), "{e}");
        let e = Product::from_toml(
            "p.toml",
            &BASE.replace(
                "track2_discretionary = \"1|pvv|cvv\"",
                "track2_discretionary = \"pvv|cvv\"",
            ),
        )
        .expect_err("nothing before pvv");
        assert_eq!(e.path, "p.toml: track2_discretionary");
    }
}
