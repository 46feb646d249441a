//! Everything between a finished frame and a consumer: the wire headers ([`protocol`]), the
//! shared frame slots the writers read from ([`hub`]) and the TCP listener and per-client writers
//! ([`server`]). Nothing here calls GL; frames arrive as values that implement [`hub::Frame`].

pub mod hub;
pub mod protocol;
pub mod server;
