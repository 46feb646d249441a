//! glstream as a library: everything the binary runs, so the integration tests can use the
//! contracts (wire headers, the pattern decoder) without copying code.
//!
//! Dependencies point one way, as the data flows:
//! `cli → cmd → {scene, stream, capture, render} → gl`. `stream/` never sees glow or clap; `gl/`
//! never sees a socket; `pattern_code` and `format` depend on nothing.

pub mod alloc_count;
pub mod capture;
pub mod cli;
pub mod cmd;
pub mod format;
pub mod gl;
pub mod pattern_code;
pub mod render;
pub mod scene;
pub mod stream;
