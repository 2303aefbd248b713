//! Client-side sans-IO protocol cores shared by the app engine and the simulations: supernode homing and the host cache (more to come: call signalling, chat delivery). No IO, no clock, no tokio.
