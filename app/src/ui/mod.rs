//! The desktop app (being written).
