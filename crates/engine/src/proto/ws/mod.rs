//! Sans-IO WebSocket (RFC 6455) with permessage-deflate (RFC 7692).
//!
//! - [`handshake`]: is a request an upgrade, is it valid, the accept key,
//!   the `101` response;
//! - [`frame`]: frame headers (tungstenite's protocol layer), unmasking,
//!   encoding a message into one buffer;
//! - [`deflate`]: the extension's negotiation, and inflating under a size
//!   bound checked while inflating;
//! - [`message`]: the reader: frames in, messages and control frames out,
//!   with every protocol rule (fragments, control frames, UTF-8, close
//!   codes, limits) checked here.

pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod message;

pub use deflate::{Deflater, Inflater, PerMessageDeflate};
pub use frame::{encode_close, encode_frame, OpCode};
pub use handshake::{check_upgrade, Upgrade};
pub use message::{Incoming, Reader, WsError};

/// Close codes ferrule sends.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const NO_STATUS: u16 = 1005;
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const RESTART: u16 = 1012;
}
