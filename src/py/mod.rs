//! The extension module's face: the `Engine` class Python builds from one
//! options dict.

pub mod engine;
