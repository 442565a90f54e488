//! Adapters to real devices: thin loops moving bytes between domain state machines and the wire.

pub mod connector;
pub mod encoder;
pub mod pcsc;
pub mod transport;
