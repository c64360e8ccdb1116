//! The HTTP/2 connection driver, beside the HTTP/1 one, on the `h2` crate
//! (framing, HPACK, flow control; docs/decisions.md, "HTTP/2").
//!
//! The HTTP/1 driver reads a connection's first bytes; the connection
//! preface (TLS with ALPN `h2`, or h2c with prior knowledge), or a valid
//! `Upgrade: h2c` request, hands the connection here ([`driver::serve`]),
//! which keeps its socket and its close path (FIN, linger, stats):
//!
//! - [`io`]: the byte stream `h2` reads and writes: the bytes already
//!   read first, the upgrade's splice, writes coalesced into one syscall
//!   per poll of the connection;
//! - [`request`]: a stream's request as a [`crate::proto::h1::RequestHead`]
//!   for the bridge, and an upgrading request as stream 1's HEADERS;
//! - [`stream`]: one stream's [`super::exchange::HttpExchange`];
//! - [`driver`]: the connection's future and a task per stream;
//! - [`tunnel`]: WebSockets over HTTP/2 (RFC 8441), served by the
//!   WebSocket driver through a socket pair.

pub mod driver;
pub mod io;
pub mod request;
pub mod stream;
pub mod tunnel;

#[cfg(test)]
mod tests;

pub use io::PREFACE;
