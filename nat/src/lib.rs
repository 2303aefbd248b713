//! STUN, NAT behaviour discovery, hole punching, TURN client and server cores (sans-IO).
