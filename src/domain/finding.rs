//! A validation finding: the JSON path (or file and key) of a value and the rule it broke.
//!
//! Findings are what operators read, so they name fields and rules and never quote sensitive
//! values.

use std::fmt;

/// One error or warning about an input, e.g. `encryptedData.exp: month 13 is not 01-12`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Where: a JSON path (`encryptedData.pin.kid`) or `file: key`.
    pub path: String,
    /// What rule the value broke, without the value when it is sensitive.
    pub rule: String,
}

impl Finding {
    /// Several findings as one line, `path: rule; path: rule` (stored reasons, messages).
    pub fn join(findings: &[Finding]) -> String {
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Makes a finding from a path and a rule.
    pub fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

impl std::error::Error for Finding {}
