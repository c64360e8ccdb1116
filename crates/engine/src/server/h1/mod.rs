//! The HTTP/1.1 connection driver.
//!
//! - [`state`]: what one connection's request and response are doing, as
//!   explicit states;
//! - [`conn`]: the connection (socket, state, reads and writes);
//! - [`exchange`]: the bridge's side of a request ([`super::exchange::HttpExchange`]),
//!   and the one place where a response ends;
//! - [`driver`]: the future that serves the connection: request heads,
//!   bodies, timeouts, keep-alive, the close.

pub mod conn;
pub mod driver;
pub mod exchange;
pub mod state;

#[cfg(test)]
mod tests;

pub use conn::Conn;
