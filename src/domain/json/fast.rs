//! The fast path of [`super::parse`]: a recursive-descent parser over bytes for the subset of
//! JSON that order lines use, answering `None` ("not handled") for anything else so that the
//! `serde_json` path gives the exact value or error.
//!
//! The subset: objects without duplicate keys, arrays, strings without a backslash or a control
//! byte (borrowed from the input), `true`, `false`, `null`, non-negative integers that fit in
//! a `u64` (no sign, fraction, exponent or leading zero), JSON whitespace, and nothing but
//! whitespace after the value. Within it the result is the one `serde_json` gives.

use std::borrow::Cow;

use super::{Json, Obj, Text};

/// Nesting deeper than this is left to `serde_json` (its recursion limit is 128).
const MAX_DEPTH: u32 = 100;

/// `text` as a value when it is within the subset, else `None`.
pub(super) fn parse(text: &str) -> Option<Json<'_>> {
    let mut p = Parser { text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    (p.pos == text.len()).then_some(v)
}

/// The input and the position of the next byte.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// The next byte, if any.
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// Skips JSON whitespace (space, tab, line feed, carriage return).
    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace (every token starts above a space: one comparison when
    /// there is none).
    #[inline]
    fn token(&mut self) -> Option<u8> {
        let b = self.peek()?;
        if b > b' ' {
            return Some(b);
        }
        self.skip_ws();
        self.peek()
    }

    /// Consumes the next byte after whitespace.
    #[inline]
    fn next_token(&mut self) -> Option<u8> {
        let b = self.token()?;
        self.pos += 1;
        Some(b)
    }

    /// A value at nesting `depth` (of its container), after optional whitespace; inline in
    /// the member loops, so a scalar member costs no call.
    #[inline(always)]
    fn value(&mut self, depth: u32) -> Option<Json<'a>> {
        match self.token()? {
            b'{' => self.object(depth + 1).map(Json::Object),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(Json::String),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// `word` spelled out in full, as `v`.
    #[inline]
    fn literal(&mut self, word: &[u8], v: Json<'a>) -> Option<Json<'a>> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end)? != word {
            return None;
        }
        self.pos = end;
        Some(v)
    }

    /// Digits with no leading zero, fitting in a `u64`, not followed by a fraction or exponent.
    #[inline]
    fn integer(&mut self) -> Option<Json<'a>> {
        let start = self.pos;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.pos += 1;
        }
        let leading_zero = self.pos - start > 1 && self.text.as_bytes()[start] == b'0';
        if leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(Json::Number(n.into()))
    }

    /// A string at the current `"` with no backslash or control byte, borrowed from the input.
    #[inline]
    fn string(&mut self) -> Option<Text<'a>> {
        let start = self.pos + 1;
        let rest = self.text.as_bytes().get(start..)?;
        let len = plain_len(rest);
        if *rest.get(len)? != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are next to an ASCII quote, hence on character boundaries.
        Some(Text(Cow::Borrowed(self.text.get(start..start + len)?)))
    }

    /// An array at the current `[` (out of line: `value` is inlined here).
    #[inline(never)]
    fn array(&mut self, depth: u32) -> Option<Json<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.token() == Some(b']') {
            self.pos += 1;
            return Some(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            match self.next_token()? {
                b',' => {}
                b']' => return Some(Json::Array(items)),
                _ => return None,
            }
        }
    }

    /// An object at the current `{`; `None` on a duplicate key (out of line: `value` is
    /// inlined here).
    #[inline(never)]
    fn object(&mut self, depth: u32) -> Option<Obj<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        // Orders have up to a dozen keys per object, as in the serde path.
        let mut members: Vec<(Text<'a>, Json<'a>)> = Vec::with_capacity(8);
        if self.token() == Some(b'}') {
            self.pos += 1;
            return Some(Obj(members));
        }
        loop {
            if self.token()? != b'"' {
                return None;
            }
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) || self.next_token()? != b':' {
                return None;
            }
            members.push((key, self.value(depth)?));
            match self.next_token()? {
                b',' => {}
                b'}' => return Some(Obj(members)),
                _ => return None,
            }
        }
    }
}

/// The number of bytes before the first `"`, `\\` or control byte of `s` (`s.len()` if
/// none), eight at a time as `serde_json` scans.
#[inline]
fn plain_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let mut i = 0;
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte's top bit is set where it is below 0x20 or (xored) zero; the lowest such
        // byte is exact (borrows only run towards higher bytes).
        let hits = ((x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & (ONES << 7);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let tail = s.get(i..).unwrap_or_default();
    i + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

#[cfg(test)]
mod tests {
    use super::super::parse_serde;
    use super::*;

    /// A tracks-only order line as the generator writes it.
    const SAMPLE: &str = r#"{"cardId":"GEN-000000000","cardProductId":"DEMO_VISA_CREDIT","encryptedData":{"pan":"4761739000000004","exp":"2812","encodedName":"TEST/CARDHOLDER","pin":{"type":"ISO0","encryptedPin":"0A38967BAAA3054F","kid":1}},"paymentApplication":{"config":"default","odaKeyIndex":2,"derivationKeyIndex":1,"cvKeyIndex":1,"pvKeyIndex":1}}"#;

    /// The bytes the mutations delete, insert and replace.
    const INTERESTING: &[u8] = b"\"\\,:{}[]-01 \te.\x01x";

    /// Same variants, member order, strings and numbers.
    fn same(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Null, Json::Null) => true,
            (Json::Bool(x), Json::Bool(y)) => x == y,
            (Json::Number(x), Json::Number(y)) => x == y,
            (Json::String(x), Json::String(y)) => x.as_str() == y.as_str(),
            (Json::Array(x), Json::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
            }
            (Json::Object(x), Json::Object(y)) => {
                x.0.len() == y.0.len()
                    && x.0
                        .iter()
                        .zip(&y.0)
                        .all(|((k, v), (l, w))| k.as_str() == l.as_str() && same(v, w))
            }
            _ => false,
        }
    }

    /// Every string (keys included) is a slice of the input.
    fn all_borrowed(v: &Json) -> bool {
        let borrowed = |t: &Text| matches!(t.0, Cow::Borrowed(_));
        match v {
            Json::String(t) => borrowed(t),
            Json::Array(a) => a.iter().all(all_borrowed),
            Json::Object(o) => o.0.iter().all(|(k, v)| borrowed(k) && all_borrowed(v)),
            _ => true,
        }
    }

    /// The invariant for one input; whether the fast path took it.
    fn check(text: &str) -> bool {
        let Some(v) = parse(text) else {
            return false;
        };
        let w = parse_serde(text);
        assert!(
            w.is_ok(),
            "fast path took an input serde_json refuses: {text:?}"
        );
        assert!(
            w.is_ok_and(|w| same(&v, &w)),
            "differs from serde_json: {text:?}"
        );
        assert!(all_borrowed(&v), "a string not borrowed: {text:?}");
        true
    }

    /// Each single-byte deletion, insertion and replacement of `text`, and each truncation.
    fn mutations(text: &str) -> Vec<String> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        for i in 0..=b.len() {
            out.push([&b[..i]].concat());
            for &x in INTERESTING {
                out.push([&b[..i], &[x], &b[i..]].concat());
                if i < b.len() {
                    out.push([&b[..i], &[x], &b[i + 1..]].concat());
                }
            }
            if i < b.len() {
                out.push([&b[..i], &b[i + 1..]].concat());
            }
        }
        out.into_iter()
            .filter_map(|m| String::from_utf8(m).ok())
            .collect()
    }

    #[test]
    fn plain_len_stops_where_a_byte_by_byte_scan_does() {
        let naive = |s: &[u8]| {
            s.iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(s.len())
        };
        let bytes = [
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', 0x23, b'\\', 0x5b, 0x5d, 0x7f, 0x80, 0xff,
        ];
        for len in 0..40 {
            for at in 0..len {
                for &b in &bytes {
                    for &fill in &[b'a', 0x20, 0x21, 0xe9] {
                        let mut s = vec![fill; len];
                        s[at] = b;
                        // A second stop byte later must not move the first.
                        if at + 3 < len {
                            s[at + 3] = b'"';
                        }
                        assert_eq!(plain_len(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_sample_line_takes_the_fast_path_borrowing_its_strings() {
        let v = parse(SAMPLE).expect("fast path");
        assert!(all_borrowed(&v));
        assert!(check(SAMPLE));
        let Json::Object(o) = &v else {
            panic!("an object")
        };
        assert_eq!(
            o.0.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            [
                "cardId",
                "cardProductId",
                "encryptedData",
                "paymentApplication"
            ]
        );
        let Some(Json::Object(data)) = o.get("encryptedData") else {
            panic!("an object")
        };
        assert!(matches!(data.get("exp"), Some(Json::String(t)) if t.as_str() == "2812"));
        let Some(Json::Object(pin)) = data.get("pin") else {
            panic!("an object")
        };
        assert!(matches!(pin.get("kid"), Some(Json::Number(n)) if n.as_u64() == Some(1)));
    }

    #[test]
    fn the_subset_agrees_with_serde_json() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let corpus = [
            r#"{"s":"x","t":true,"f":false,"n":null,"i":42,"z":0,"a":[1,"b",{}],"o":{"k":[]}}"#,
            "[[1,[2,[3,[]]]],[[],[[]]]]",
            "{}",
            "[]",
            " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \n",
            "\"\"",
            "\"caf\u{e9} \u{20ac} \u{1f600} \u{7f}\"",
            "0",
            "7",
            "18446744073709551615",
            "true",
            "null",
            &deep(MAX_DEPTH as usize),
            SAMPLE,
        ];
        for text in corpus {
            assert!(check(text), "fast path declined {text:?}");
        }
    }

    #[test]
    fn everything_else_is_left_to_serde_json() {
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_DEPTH as usize + 1),
            "]".repeat(MAX_DEPTH as usize + 1)
        );
        let declined = [
            "",
            " ",
            "-1",
            "1.5",
            "1e3",
            "1E3",
            "01",
            "00",
            "18446744073709551616",
            r#""a\nb""#,
            "\"tab\there\"",
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,}"#,
            "[1,]",
            "{} x",
            "{}{}",
            "tru",
            "nul",
            "[1 2]",
            &deep,
        ];
        for text in declined {
            assert!(parse(text).is_none(), "fast path took {text:?}");
        }
        // The serde_json path still answers: these are valid JSON.
        for text in [
            "-1",
            "1.5",
            "1e3",
            "18446744073709551616",
            r#""a\nb""#,
            &deep,
        ] {
            assert!(parse_serde(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn mutations_of_the_sample_line_never_disagree_with_serde_json() {
        let all = mutations(SAMPLE);
        let taken = all.iter().filter(|m| check(m)).count();
        // Most changes inside a string keep the line valid, most elsewhere break it: the
        // fast path must take many and decline many.
        assert!(taken > all.len() / 4, "{taken} of {}", all.len());
        assert!(taken < all.len() * 3 / 4, "{taken} of {}", all.len());
    }

    #[test]
    fn mutations_of_the_corpus_never_disagree_with_serde_json() {
        let texts = [
            r#"{"s":"x","t":true,"f":false,"n":null,"i":42,"z":0,"a":[1,"b",{}],"o":{"k":[]}}"#,
            " [ 10 , [ ] , { \"\u{e9}\" : null } ] ",
        ];
        for text in texts {
            let all = mutations(text);
            let taken = all.iter().filter(|m| check(m)).count();
            assert!(taken > 0, "{text:?}");
        }
    }
}
