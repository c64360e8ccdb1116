//! What the engine knows of the network: listening sockets and the accept
//! loop's socket set-up, a connection's stream (TCP or Unix), and which
//! peers are trusted proxies.

pub mod listener;
pub mod proxy;
pub mod stream;
