//! Peerphone supernode: client homing, presence, search, STUN and TURN relay.
