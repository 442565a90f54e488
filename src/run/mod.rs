//! The run of a card: what happens once its data is prepared ([`crate::domain::prepare`]).
//!
//! - [`job`]: one card's production run over any reader and encoder, recorded in the store; the
//!   one flow the command line and the window share.
//! - [`perso`]: the personalization session over a card transport, with a masked transcript.
//! - [`verify`]: read-back verification of the personalized card.
//!
//! The crate root re-exports the three (`persodesk::job`, `persodesk::perso`,
//! `persodesk::verify`).

pub mod job;
pub mod perso;
pub mod verify;
