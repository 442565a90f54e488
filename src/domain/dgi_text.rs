//! The plain DGI text form GlobalPlatform tools use: one `DGI=hex` per line (`0101=7010...`),
//! blank lines and `#` comments allowed. Used by the Model 2 packer. Errors name the line and the
//! rule, never the value.

use super::dgi::Dgi;
use super::finding::Finding;

/// Parses a DGI text file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Dgi>, Finding> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{file}: line {}", i + 1);
        let (id, value) = line
            .split_once('=')
            .ok_or_else(|| Finding::new(at(), "must be DGI=hex"))?;
        let id = id.trim();
        if id.len() != 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Finding::new(at(), "the DGI must be 4 hex digits"));
        }
        let id = u16::from_str_radix(id, 16)
            .map_err(|_| Finding::new(at(), "the DGI must be 4 hex digits"))?;
        let value = value.trim();
        if !value.len().is_multiple_of(2) || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Finding::new(
                at(),
                format!("DGI {id:04X}: the value must be an even number of hex digits"),
            ));
        }
        let bytes = hex::decode(value).map_err(|_| Finding::new(at(), "the value must be hex"))?;
        let dgi = Dgi::new(id, bytes).map_err(|e| Finding::new(at(), e.to_string()))?;
        if out.iter().any(|d: &Dgi| d.id() == id) {
            return Err(Finding::new(at(), format!("DGI {id:04X} appears twice")));
        }
        out.push(dgi);
    }
    if out.is_empty() {
        return Err(Finding::new(file, "holds no DGI"));
    }
    Ok(out)
}

/// Writes DGIs in the text form, one per line.
pub fn write(dgis: &[Dgi]) -> String {
    let mut s = String::new();
    for d in dgis {
        s.push_str(&format!(
            "{:04X}={}\n",
            d.id(),
            hex::encode_upper(d.value())
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = parse("f", "# c\n0101=700357 01 00\n\n9010=0303 # try\n").map(|v| v.len());
        assert!(d.is_err(), "spaces inside hex are not allowed");
        let d = parse("f", "# c\n0101=7003570100\n\n9010=0303 # try\n").expect("valid");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].id(), 0x9010);
        assert_eq!(write(&d), "0101=7003570100\n9010=0303\n");
        assert_eq!(parse("f", "01=00").expect_err("id").path, "f: line 1");
        assert!(
            parse("f", "0101=0")
                .expect_err("odd")
                .rule
                .contains("DGI 0101")
        );
        assert!(
            parse("f", "0101=00\n0101=00")
                .expect_err("dup")
                .rule
                .contains("twice")
        );
        assert!(parse("f", "# nothing").is_err());
    }
}
