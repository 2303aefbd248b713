//! Seeded network impairment model (loss, delay, jitter, reordering) and UDP proxy.
