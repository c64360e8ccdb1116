//! Sans-IO protocol codecs. Each knows bytes and nothing of sockets, tokio
//! or Python, so each is unit-tested and fuzzed byte by byte.

pub mod h1;
pub mod ws;
