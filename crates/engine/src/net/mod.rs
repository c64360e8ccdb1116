//! What the engine knows of the network: listening sockets and the accept
//! loop's socket set-up, a connection's stream (TCP or Unix), which peers
//! are trusted proxies, the PROXY protocol header they may send, and TLS.

pub mod listener;
pub mod proxy;
pub mod proxy_protocol;
pub mod stream;
pub mod tls;
