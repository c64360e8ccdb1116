//! ferrule's engine: everything below the ASGI bridge, in plain Rust.
//!
//! Layers, each importing only the ones listed before it:
//!
//! - [`proto`]: sans-IO protocol codecs (HTTP/1.1 today): bytes in, events
//!   out; no sockets, no tokio.
//! - [`runtime`]: the in-loop executor that polls connection futures inside
//!   `select()`, and the level-triggered epoll behind asyncio's selector.
//! - [`net`]: listening sockets, the connection's stream, trusted proxies.
//! - [`server`]: per-protocol connection drivers, the exchange seam the
//!   bridge talks to, shutdown, stats, close reasons.
//! - [`engine`]: the whole engine as one object: runtime, listener, server.
//!
//! This crate does not depend on pyo3: the compiler keeps Python objects
//! out of it, so it is tested over real sockets in Rust alone and could run
//! on a thread of its own.

pub mod engine;
pub mod net;
pub mod proto;
pub mod runtime;
pub mod server;

pub use engine::{Bind, Engine, Wait};
