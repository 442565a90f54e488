//! The terminal side's own knowledge of the card's data, written from the specifications and
//! independent of the preparation (`domain::chip`) and of the virtual card (`sim::card`):
//! [`cvn`] decodes the issuer application data (9F10) and builds the AC input per cryptogram
//! version. The read-back session ([`crate::domain::readback`]) uses it.

pub mod cvn;
