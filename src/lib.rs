//! ferrule's Rust engine, built as the extension module `ferrule._ferrule`.
//!
//! Layers (one-way): `http1` (sans-IO codec) -> `engine` (tokio connection
//! driver + the asyncio selector bridge) -> `asgi` (scope, receive, send).

pub mod http1;
