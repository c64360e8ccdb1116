//! The WebSocket driver, beside the HTTP/1 driver and behind the same kind
//! of seam ([`super::exchange::WsExchange`]).
//!
//! The HTTP/1 driver parses the upgrade request like any other; a valid
//! one is handed here ([`driver::serve`]) with the bytes already read. The
//! connection keeps its socket and its close path (FIN, linger, stats);
//! this driver owns what happens between:
//!
//! - [`session`]: one WebSocket's state, shared by the driver and the
//!   bridge: the handshake's answer (101, denial, 403, 500), the messages
//!   waiting for the app, the output and its backpressure;
//! - [`driver`]: the future: reads frames (stopping when `ws_max_queue`
//!   messages wait), answers pings, pings the peer, runs the close
//!   handshake, closes with 1012 at shutdown.

pub mod driver;
pub mod session;

#[cfg(test)]
mod tests;

pub use session::WsSession;
