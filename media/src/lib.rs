//! Opus audio pipeline: codec, jitter buffer, FEC/concealment, mixing, devices.
