//! Adapters to real devices: thin loops moving bytes between domain state machines and the wire.

pub mod encoder;
