//! Peerphone icons, sounds and fonts.
