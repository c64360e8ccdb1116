//! The server: connection drivers per protocol (HTTP/1, and WebSocket
//! after an upgrade), the
//! [`exchange`] seam they share with the bridge, and what every driver
//! shares: settings, shutdown, stats, close reasons.

pub mod accept;
pub mod close;
pub mod config;
pub mod date;
pub mod exchange;
pub mod h1;
pub mod h2;
pub mod shared;
pub mod shutdown;
pub mod stats;
pub mod ws;
