//! Where the lifecycle's callers found `Connections` before it moved to `transport/hosts.rs`
//! (connections are a transport concern: engines below the lifecycle use them too).

pub use crate::transport::hosts::{Connections, default_agent_binary};
