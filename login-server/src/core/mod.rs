//! The login server's pure decisions: throttling and supernode admission.
//!
//! Sans-IO: nothing here touches a socket, the database or the clock; time comes in as an
//! argument, so every rule is tested on virtual time.

pub mod admission;
pub mod throttle;
