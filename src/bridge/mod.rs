//! The ASGI bridge: the only layer that holds Python objects.
//!
//! Each module imports only those listed before it:
//! - [`errors`]: `ClientDisconnected`, tracebacks to `ferrule.error`;
//! - [`task`]: [`task::RequestTask`], which steps an app coroutine without
//!   an asyncio Task and reports to a [`task::TaskOwner`];
//! - [`scope`]: the `http` scope, from a request head;
//! - [`context`]: what the bridge keeps: the app, the loop's callables,
//!   and per connection the waiting futures and address tuples;
//! - [`http`]: `receive()` and `send()` over an engine
//!   [`ferrule_engine::server::exchange::HttpExchange`], and the start of
//!   an app;
//! - [`websocket`]: the same for ASGI `websocket`, over an engine
//!   [`ferrule_engine::server::exchange::WsExchange`];
//! - [`wsgi`]: WSGI apps on a pool of threads, over the same exchange;
//! - [`dispatch`]: the engine's events, handled in batches.

pub mod context;
pub mod dispatch;
pub mod errors;
pub mod http;
pub mod scope;
pub mod task;
pub mod websocket;
pub mod wsgi;
