//! The workstation's operating mode, and what production refuses.
//!
//! - **Test** (the default without configuration): demo orders, demo keys, simulated devices;
//!   testers may reveal clear values made with test keys.
//! - **Production** (set by the machine's configuration, not by an operator): key stores holding
//!   any test key, demo orders and test products are refused entirely, and nothing is revealed.
//!
//! The rules are pure; reading the configuration is the adapter's job (`crate::config`).

use std::fmt;

use super::finding::Finding;
use super::keystore::KeyInfo;

/// The operating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Demo and test work.
    #[default]
    Test,
    /// Live cards.
    Production,
}

impl Mode {
    /// `test` or `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Production => "production",
        }
    }

    /// Parses `test` or `production`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "test" => Some(Mode::Test),
            "production" => Some(Mode::Production),
            _ => None,
        }
    }

    /// A key store may be used: in production it must hold no test key at all.
    pub fn check_key_store(self, keys: &[KeyInfo]) -> Result<(), Finding> {
        if self == Mode::Production
            && let Some(k) = keys.iter().find(|k| k.test)
        {
            return Err(Finding::new(
                k.key.to_string(),
                "is a test key: production refuses key stores holding test keys",
            ));
        }
        Ok(())
    }

    /// An order may be produced: in production no demo order and no test product.
    pub fn check_order(self, order_id: &str, product_is_test: bool) -> Result<(), Finding> {
        if self != Mode::Production {
            return Ok(());
        }
        if is_demo_order(order_id) {
            return Err(Finding::new(
                "cardId",
                "is a demo order: production refuses demo orders",
            ));
        }
        if product_is_test {
            return Err(Finding::new(
                "cardProductId",
                "is a test product: production refuses test products",
            ));
        }
        Ok(())
    }

    /// Clear values may be shown only outside production.
    pub fn allows_reveal(self) -> bool {
        self == Mode::Test
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Demo orders carry ids starting with `DEMO-` (the embedded and shipped demo files).
pub fn is_demo_order(order_id: &str) -> bool {
    order_id.starts_with("DEMO-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::keystore::{KeyAlgorithm, KeyRef, KeyUsage};

    fn key(test: bool) -> KeyInfo {
        KeyInfo {
            key: KeyRef::new(KeyUsage::Cvk, 1),
            algorithm: KeyAlgorithm::Tdes,
            kcv: "000000".into(),
            test,
        }
    }

    #[test]
    fn production_refuses_test_keys_demo_orders_test_products_and_reveal() {
        let p = Mode::Production;
        assert!(p.check_key_store(&[key(false)]).is_ok());
        let e = p
            .check_key_store(&[key(false), key(true)])
            .expect_err("test key");
        assert!(e.rule.contains("test key"), "{e}");
        assert!(p.check_order("DEMO-VISA-0001", false).is_err());
        assert!(p.check_order("C-1", true).is_err());
        assert!(p.check_order("C-1", false).is_ok());
        assert!(!p.allows_reveal());
    }

    #[test]
    fn test_mode_allows_demo_work() {
        let t = Mode::Test;
        assert!(t.check_key_store(&[key(true)]).is_ok());
        assert!(t.check_order("DEMO-VISA-0001", true).is_ok());
        assert!(t.allows_reveal());
        assert_eq!(Mode::parse("production"), Some(Mode::Production));
        assert_eq!(Mode::parse("prod"), None);
    }
}
