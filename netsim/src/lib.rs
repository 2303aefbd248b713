//! Seeded, sans-IO network impairment model for simulations and end-to-end tests.
//!
//! [`Impairment`] models one direction of a link on virtual time: loss (Bernoulli or
//! Gilbert-Elliott bursts), fixed delay, jitter, reordering, duplication and an optional
//! rate-limited bottleneck. It never reads the clock or touches a socket, and all of its
//! randomness comes from a seed, so simulations in `nat` and `media` replay exactly.
//! [`ImpairmentConfig`] also parses from (and prints as) a compact spec such as
//! `loss=5%,burst=3,delay=40ms,jitter=30ms,reorder=1%,dup=0.5%` (see [`spec`]).
//!
//! The `impair-proxy` binary (feature `proxy`, on by default) runs two of these models
//! (client→upstream and back) in a UDP proxy, for tests of real processes; the Linux
//! kernel here has no netem.
//!
//! What it does not model: corruption, MTU limits, NAT behaviour (that is `nat`'s
//! business), or congestion shared between several flows beyond one bottleneck queue per
//! `Impairment`.

mod config;
mod impairment;
pub mod spec;

pub use config::{ImpairmentConfig, LossModel, REORDER_EXTRA_DELAY_MAX, REORDER_EXTRA_DELAY_MIN};
pub use impairment::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE_DELAY, DEFAULT_PACKET_SIZE_BYTES, Impairment,
    ImpairmentStats, MAX_CONFIG_DELAY,
};
pub use spec::SpecError;
