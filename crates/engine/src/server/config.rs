//! The server's settings, fixed when the engine is built.

use std::time::Duration;

use std::sync::Arc;

use crate::net::proxy::TrustedProxies;
use crate::net::tls::TlsAcceptor;
use crate::proto::h1::{Limits, ResponseDefaults};

pub struct ServerConfig {
    pub limits: Limits,
    pub defaults: ResponseDefaults,
    pub keep_alive_timeout: Duration,
    pub header_timeout: Duration,
    /// Idle time allowed while the app waits for request body bytes.
    pub body_timeout: Duration,
    /// Time allowed without write progress to a client that stops reading.
    pub send_timeout: Duration,
    /// Largest request body accepted (413 beyond); None = unlimited.
    pub max_body: Option<u64>,
    /// In-flight requests beyond which new ones get 503.
    pub limit_concurrency: Option<usize>,
    /// Peers whose X-Forwarded-For/-Proto set the scope's client/scheme.
    pub proxies: TrustedProxies,
    /// `--proxy-protocol`: each connection from one of these peers starts
    /// with a PROXY protocol header naming the client; other peers are
    /// refused. None = off.
    pub proxy_protocol: Option<TrustedProxies>,
    /// Bytes of request body buffered for an app that has not read them yet
    /// before ferrule stops reading the socket.
    pub body_buffer: usize,
    /// Unsent response bytes above which `send()` suspends.
    pub write_high_water: usize,
    /// TLS (`--ssl-*`): None = plain HTTP only.
    pub tls: Option<Arc<TlsAcceptor>>,
    /// WebSocket upgrades are served; None (`--ws none`): they reach the
    /// app as plain HTTP requests.
    pub ws: Option<WsConfig>,
    /// The app runs on threads of its own (WSGI), not on the loop thread:
    /// its writes go out at once (there is no batch to end), and what it
    /// schedules for a driver also wakes the loop's `select()`.
    pub app_threads: bool,
    /// `--http`: which protocols are spoken.
    pub http: HttpMode,
    /// The HTTP/2 limits (`--h2-*`).
    pub h2: H2Config,
}

/// `--http`: the protocols a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMode {
    /// HTTP/2 by ALPN over TLS, and h2c (prior knowledge or `Upgrade: h2c`)
    /// on plain connections; HTTP/1.1 otherwise.
    Auto,
    /// HTTP/1.1 only.
    H1,
    /// HTTP/2 only.
    H2,
}

impl HttpMode {
    pub fn h2(self) -> bool {
        self != HttpMode::H1
    }

    pub fn h1(self) -> bool {
        self != HttpMode::H2
    }
}

/// The HTTP/2 settings (`--h2-*`), as SETTINGS values.
#[derive(Debug, Clone)]
pub struct H2Config {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    pub max_frame_size: u32,
    /// A stream's receive window; the connection's is four of them.
    pub initial_window_size: u32,
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            max_frame_size: 16 * 1024,
            initial_window_size: 1024 * 1024,
        }
    }
}

/// The WebSocket settings (`--ws-*`).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message (and frame) accepted; beyond, close 1009.
    pub max_size: usize,
    /// Messages waiting for the app beyond which the socket is not read.
    pub max_queue: usize,
    /// Ping the peer this often (None: never).
    pub ping_interval: Option<Duration>,
    /// A ping unanswered this long closes with 1011 (None: wait forever).
    pub ping_timeout: Option<Duration>,
    /// Offer permessage-deflate when the client asks for it.
    pub per_message_deflate: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_size: 16 * 1024 * 1024,
            max_queue: 32,
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            per_message_deflate: true,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            defaults: ResponseDefaults {
                server_header: true,
                date_header: true,
                extra: Vec::new(),
            },
            keep_alive_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_body: None,
            limit_concurrency: None,
            proxies: TrustedProxies::default(),
            proxy_protocol: None,
            body_buffer: 64 * 1024,
            write_high_water: 64 * 1024,
            ws: Some(WsConfig::default()),
            tls: None,
            app_threads: false,
            http: HttpMode::Auto,
            h2: H2Config::default(),
        }
    }
}
