//! Simulated devices for tests and demos. They share no code with the preparation side beyond
//! generic codecs, so a bug on one side cannot hide on the other.

pub mod card;
pub mod encoder;
pub mod vpcd;
