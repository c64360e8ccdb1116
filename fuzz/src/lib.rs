//! The sans-IO codec, compiled on its own for fuzzing.

#[path = "../../src/http1/mod.rs"]
pub mod http1;
