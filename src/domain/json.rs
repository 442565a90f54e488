//! A JSON value for order intake that borrows its strings from the text it was parsed from
//! (zero-copy: a string without escapes is a slice of the input), and refuses duplicate keys.
//!
//! Objects keep their members in input order in a vector (orders have a dozen keys: a linear
//! search is cheaper than a tree); [`Obj::keys`] lists them sorted as `serde_json::Map` does,
//! so messages come out in the same order as before. A string that had to be unescaped is owned
//! and wiped when dropped (order fields carry card data).
//!
//! [`parse`] first tries a hand-written parser (module `fast`) for the subset order lines use
//! (strings without escapes, non-negative integers, no duplicate keys) at a fraction of
//! `serde_json`'s cost; on anything else it falls back to `serde_json`, which gives the exact
//! value or error (messages, positions), so the fast path never changes an answer.

use std::borrow::Cow;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use zeroize::Zeroize;

mod fast;

/// A JSON string: borrowed from the input, or owned (unescaped) and wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for Text<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(s) = &mut self.0 {
            s.zeroize();
        }
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A JSON value whose strings borrow from `'a` where they can.
#[derive(Clone)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` keeps it.
    Number(Number),
    /// A string.
    String(Text<'a>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object (no duplicate keys).
    Object(Obj<'a>),
}

/// A JSON object: members in input order, keys unique.
#[derive(Clone, Default)]
pub struct Obj<'a>(Vec<(Text<'a>, Json<'a>)>);

impl<'a> Obj<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether every key is one of `known` (no allocation: the common case of a valid order).
    pub fn has_only(&self, known: &[&str]) -> bool {
        self.0.iter().all(|(k, _)| known.contains(&k.as_str()))
    }

    /// The keys, sorted (byte order, as `serde_json::Map` iterates).
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A view of a `serde_json` object (strings borrowed from it).
    pub fn from_map(map: &'a Map<String, Value>) -> Obj<'a> {
        Obj(map
            .iter()
            .map(|(k, v)| (Text(Cow::Borrowed(k)), Json::from_value(v)))
            .collect())
    }
}

impl<'a> Json<'a> {
    /// A view of a `serde_json` value (strings borrowed from it).
    pub fn from_value(v: &'a Value) -> Json<'a> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Text(Cow::Borrowed(s))),
            Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            Value::Object(m) => Json::Object(Obj::from_map(m)),
        }
    }
}

/// Parses `text` (one JSON value and nothing else but whitespace), refusing duplicate keys.
pub fn parse(text: &str) -> Result<Json<'_>, serde_json::Error> {
    match fast::parse(text) {
        Some(v) => Ok(v),
        None => parse_serde(text),
    }
}

/// [`parse`] by `serde_json`: any JSON, exact errors.
fn parse_serde(text: &str) -> Result<Json<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Json::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Object keys: the same visitor as values, so a key borrows from the input exactly when a
/// string value would (no escapes).
impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(JsonVisitor)? {
            Json::String(text) => Ok(text),
            _ => Err(de::Error::custom("expected a string")),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value::from(f64)`: a non-finite number is null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Text(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Text(Cow::Owned(v.to_string()))))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Text(Cow::Owned(v))))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        // Orders have up to a dozen keys per object: no regrowth from 4 to 8 to 16.
        let mut out: Vec<(Text<'de>, Json<'de>)> = Vec::with_capacity(8);
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let v: Json<'de> = map.next_value()?;
            if out.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(duplicate_key(&key)));
            }
            out.push((key, v));
        }
        Ok(Json::Object(Obj(out)))
    }
}

/// The duplicate key message: the key is named only when it is one of the order format's
/// (keys are input too, and could be anything).
fn duplicate_key(key: &str) -> String {
    if super::order::is_known_key(key) {
        format!("duplicate key `{key}`")
    } else {
        "duplicate key".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_borrow_from_the_input_and_escaped_ones_are_unescaped() {
        let text = r#"{"a":"plain","b":"tab\there","c":[1,-2,3.5,null,true]}"#;
        let Json::Object(o) = parse(text).expect("parses") else {
            panic!("an object")
        };
        let Some(Json::String(a)) = o.get("a") else {
            panic!("a string")
        };
        assert!(matches!(a.0, Cow::Borrowed(_)));
        assert_eq!(a.as_str(), "plain");
        let Some(Json::String(b)) = o.get("b") else {
            panic!("a string")
        };
        assert!(matches!(b.0, Cow::Owned(_)));
        assert_eq!(b.as_str(), "tab\there");
        let Some(Json::Array(c)) = o.get("c") else {
            panic!("an array")
        };
        assert!(matches!(&c[0], Json::Number(n) if n.as_u64() == Some(1)));
        assert!(matches!(&c[1], Json::Number(n) if n.as_i64() == Some(-2)));
        assert!(matches!(&c[2], Json::Number(n) if n.as_u64().is_none()));
        assert!(matches!(c[3], Json::Null));
        assert!(matches!(c[4], Json::Bool(true)));
    }

    #[test]
    fn keys_are_listed_sorted_as_serde_json_does() {
        let text = r#"{"zeta":1,"Alpha":2,"beta":3,"a":4}"#;
        let Json::Object(o) = parse(text).expect("parses") else {
            panic!("an object")
        };
        let v: Value = serde_json::from_str(text).expect("serde_json");
        let expected: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(o.keys(), expected);
        assert_eq!(o.keys(), ["Alpha", "a", "beta", "zeta"]);
    }

    #[test]
    fn duplicate_keys_are_refused_naming_only_known_keys() {
        let e = parse(r#"{"pan":"1","pan":"2"}"#).err().expect("refused");
        assert!(e.is_data());
        assert!(e.to_string().starts_with("duplicate key `pan`"), "{e}");
        let e = parse(r#"{"x":{"secret-4761":1,"secret-4761":2}}"#)
            .err()
            .expect("refused");
        assert!(e.to_string().starts_with("duplicate key at"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        // An escaped key equal to a plain one is the same key.
        assert!(parse(r#"{"pan":1,"p\u0061n":2}"#).is_err());
    }

    #[test]
    fn trailing_text_is_refused() {
        assert!(parse("{} x").is_err());
        assert!(parse("{} ").is_ok());
    }
}
