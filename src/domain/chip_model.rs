//! Which chip data model an order can use.
//!
//! - Model 1: the bureau computes the chip data from the product's chip profile and the key store.
//! - Model 2: the issuer sends the chip data encrypted (`encryptedData.tlvData`); the bureau
//!   decrypts and verifies it.
//!
//! An order may use Model 1 when its product names a chip profile, Model 2 when it carries a
//! `tlvData` envelope; with neither it is a magnetic-stripe-only card.

use std::fmt;

use super::order::Order;
use super::product::Product;

/// A chip data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChipModel {
    /// Computed from the chip profile.
    Model1,
    /// Issuer-prepared and encrypted.
    Model2,
}

impl ChipModel {
    /// `Model 1` / `Model 2`.
    pub fn label(self) -> &'static str {
        match self {
            ChipModel::Model1 => "Model 1",
            ChipModel::Model2 => "Model 2",
        }
    }
}

impl fmt::Display for ChipModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The models an order and its product allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllowedModels {
    /// The product names a chip profile.
    pub model1: bool,
    /// The order carries a `tlvData` envelope.
    pub model2: bool,
}

impl AllowedModels {
    /// What `order` with `product` allows.
    pub fn of(order: &Order, product: &Product) -> Self {
        AllowedModels {
            model1: product.chip_profile.is_some(),
            model2: order.tlv_data.is_some(),
        }
    }

    /// Is `model` allowed?
    pub fn allows(self, model: ChipModel) -> bool {
        match model {
            ChipModel::Model1 => self.model1,
            ChipModel::Model2 => self.model2,
        }
    }

    /// The default choice: the issuer's data (Model 2) when sent, else Model 1, else none
    /// (stripe only).
    pub fn default_choice(self) -> Option<ChipModel> {
        if self.model2 {
            Some(ChipModel::Model2)
        } else if self.model1 {
            Some(ChipModel::Model1)
        } else {
            None
        }
    }
}
