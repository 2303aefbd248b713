//! A test-only hook that turns this supernode into a malicious one: it sees, and may rewrite
//! or drop, every message between the core and its clients. Tests use it to check that the
//! clients' end-to-end checks catch a supernode that swaps keys, forges credentials or
//! replays messages.
//!
//! Compiled only with the `test-tamper` cargo feature, which the `app` crate's tests enable
//! through their dev-dependency; no flag or configuration file key reaches it, so a
//! production `supernode` or `peerphone` binary (built without the feature) cannot become
//! malicious by configuration.

use proto::PublicKey;
use proto::supernode::{ClientToSupernode, SupernodeToClient};
use std::sync::Arc;

/// What a malicious supernode does with client traffic.
pub trait Tamper: Send + Sync {
    /// A message about to go to the client whose device is `device`; rewrite it in place, or
    /// return `false` to drop it.
    fn to_client(&self, device: &PublicKey, message: &mut SupernodeToClient) -> bool {
        let _ = (device, message);
        true
    }

    /// A message that came from the client whose device is `device`, before the core
    /// handles it; rewrite it in place, or return `false` to drop it.
    fn client_sent(&self, device: &PublicKey, message: &mut ClientToSupernode) -> bool {
        let _ = (device, message);
        true
    }

    /// Messages the hook wants sent to a client on its own (replays, forgeries), by device;
    /// polled after every message the hook saw.
    fn inject(&self) -> Vec<(PublicKey, SupernodeToClient)> {
        Vec::new()
    }
}

/// The hook as [`super::Config`] holds it.
#[derive(Clone)]
pub struct TamperHook(pub Arc<dyn Tamper>);

impl std::fmt::Debug for TamperHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TamperHook")
    }
}
