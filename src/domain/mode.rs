//! The workstation's operating mode, and what production refuses.
//!
//! - **Test** (the default without configuration): demo orders, demo keys, simulated devices;
//!   testers may reveal clear values made with test keys.
//! - **Production** (set by the machine's configuration, not by an operator): key stores holding
//!   any test key, demo orders and test products are refused entirely, and nothing is revealed.
//!   Demo data is recognised by what it is, not by how its id is spelt: the demo products' ids,
//!   the demo PANs, and either order id starting with `DEMO` once case, spaces and punctuation
//!   are ignored (published and demo key values are refused by the key store,
//!   `SoftwareKeyStore::production_findings`).
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
        self.check_order_data(&OrderSigns {
            ids: &[order_id],
            product_id: None,
            product_is_test,
            pan: None,
        })
    }

    /// An order may be produced: in production nothing of it may be demo data (ids, product,
    /// PAN) and its product must not be a test product.
    pub fn check_order_data(self, o: &OrderSigns<'_>) -> Result<(), Finding> {
        if self != Mode::Production {
            return Ok(());
        }
        if o.ids.iter().any(|id| is_demo_order(id)) || o.pan.is_some_and(|p| DEMO_PANS.contains(&p))
        {
            return Err(Finding::new(
                "cardId",
                "is a demo order: production refuses demo orders",
            ));
        }
        if o.product_id.is_some_and(is_demo_product) {
            return Err(Finding::new(
                "cardProductId",
                "is a demo product: production refuses demo products",
            ));
        }
        if o.product_is_test {
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

/// What production looks at to recognise demo data in an order.
#[derive(Debug, Clone, Copy)]
pub struct OrderSigns<'a> {
    /// `cardId` and `issuerRequestId` (whichever are given).
    pub ids: &'a [&'a str],
    /// `cardProductId`.
    pub product_id: Option<&'a str>,
    /// The product is marked `test = true`.
    pub product_is_test: bool,
    /// The PAN (compared with the demo PANs only).
    pub pan: Option<&'a str>,
}

/// The demo products' ids (profiles/products/demo_*.toml), recognised even when copied into a
/// production profiles directory without `test = true`.
pub const DEMO_PRODUCTS: [&str; 3] = ["DEMO_MC_DEBIT", "DEMO_VISA_CREDIT", "DEMO_VISA_US"];
/// The PANs of the shipped demo orders (assets/demo/orders*.json).
pub const DEMO_PANS: [&str; 2] = ["5413330089012345", "4761739001010010"];

/// Letters and digits only, upper case: how ids are compared with demo names.
fn folded(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A demo order id: starts with `DEMO` once case, spaces, punctuation and non-ASCII characters
/// (zero-width spaces, Unicode hyphens) are ignored.
pub fn is_demo_order(order_id: &str) -> bool {
    folded(order_id).starts_with("DEMO")
}

/// A demo product id (spelling folded as for [`is_demo_order`]).
pub fn is_demo_product(product_id: &str) -> bool {
    let f = folded(product_id);
    DEMO_PRODUCTS.iter().any(|d| folded(d) == f)
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

    /// Issue 13 finding 6: the spelling of an id does not get demo data past production.
    #[test]
    fn demo_data_is_recognised_whatever_the_spelling() {
        let p = Mode::Production;
        for id in [
            " DEMO-VISA-0001",
            "demo-visa-0001",
            "DEMO\u{200B}-VISA",
            "DEMO\u{2010}VISA",
            "De.Mo_1",
        ] {
            assert!(p.check_order(id, false).is_err(), "{id:?}");
        }
        let signs = |ids: &'static [&'static str], product, pan| OrderSigns {
            ids,
            product_id: product,
            product_is_test: false,
            pan,
        };
        assert!(
            p.check_order_data(&signs(&["C-1", "DEMO-1"], None, None))
                .is_err()
        );
        assert!(
            p.check_order_data(&signs(&["C-1"], Some("demo_mc_debit"), None))
                .is_err()
        );
        assert!(
            p.check_order_data(&signs(&["C-1"], Some("LIVE"), Some("5413330089012345")))
                .is_err()
        );
        assert!(
            p.check_order_data(&signs(&["C-1"], Some("LIVE"), Some("4000000000000002")))
                .is_ok()
        );
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
