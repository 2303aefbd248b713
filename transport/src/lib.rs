//! QUIC and TLS endpoints bound to Peerphone identities, framed streams.
