//! The encode outcome log: one JSON object per line, appended per attempt.
//!
//! A record names the order, product, masked PAN, port, outcome, tracks and the error kind/step;
//! it never holds a PAN, track text, CVV/PVV, PIN block or key. The GUI's SQLite store can import
//! these lines as they are (see [`EncodeRecord`] for the fields).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// File name of the log inside the data directory.
pub const RECORDS_FILE: &str = "records.jsonl";

/// Where records go without `--records`, for `encode` and `personalize` alike: `records.jsonl`
/// beside the workstation store ([`crate::store::data_dir`]: `$PERSODESK_DATA_DIR`, else
/// `$XDG_DATA_HOME/persodesk`, else `~/.local/share/persodesk`), else `records.jsonl` in the
/// working directory.
pub fn default_path() -> PathBuf {
    crate::store::data_dir().map_or_else(|_| PathBuf::from(RECORDS_FILE), |d| d.join(RECORDS_FILE))
}

/// How an encode attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Written, read back and equal.
    Written,
    /// Anything else; see the error.
    Failed,
}

/// Why an attempt failed: a stable kind (also printed by the CLI), the flow step where known, and
/// a message that names steps, tracks and rules only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    /// Stable name, e.g. `write-error`, `swipe-timeout`, `read-back-mismatch`.
    pub kind: &'static str,
    /// The flow step (`reset`, `set hi-co`, `write`, `read-back`), when the device was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Human-readable message.
    pub message: String,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EncodeRecord {
    /// UTC time of the end of the attempt, RFC 3339 (`2026-05-01T12:00:00Z`).
    pub at: String,
    /// `encode` (later also `personalize`).
    pub operation: &'static str,
    /// Order id.
    pub order: String,
    /// Product id, when known.
    pub card_product_id: Option<String>,
    /// Masked PAN (first 6, last 4), when known.
    pub masked_pan: Option<String>,
    /// The encoder port.
    pub encoder: String,
    /// Written or failed.
    pub outcome: Outcome,
    /// Track numbers written and verified (empty when failed).
    pub tracks: Vec<u8>,
    /// Bad swipes retried on the way.
    pub bad_swipes: u32,
    /// The failure, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// The order's status in the workstation store after the attempt, once committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// Appends one record as one line (creating the file 0600 and its directory 0700 when missing).
pub fn append<T: Serialize>(path: &Path, record: &T) -> std::io::Result<()> {
    crate::files::private_parent(path)?;
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = crate::files::open_private(path, crate::files::Existing::Append)?;
    // One write call per line: concurrent appenders do not interleave within a line.
    file.write_all(&line)?;
    file.sync_data()
}

/// The current UTC time as RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn rfc3339(unix_secs: u64) -> String {
    let secs = i64::try_from(unix_secs).unwrap_or(i64::MAX);
    format!("{}Z", crate::domain::date::utc_date_time(secs, 'T'))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_known_instants() {
        // Independent reference points: `date -u -d @N +%FT%TZ`.
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
