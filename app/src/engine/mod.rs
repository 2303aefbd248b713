//! The client engine shared by the CLI and the desktop app (being written).

pub mod commands;
