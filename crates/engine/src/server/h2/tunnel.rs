//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream
//! (`:protocol websocket`) served by the WebSocket driver and session
//! (`server::ws`) unchanged.
//!
//! Those read and write a connection's socket, and answer the handshake in
//! HTTP/1.1. The stream is given to them as one: a connection of its own
//! on one end of a Unix socket pair, which first reads the equivalent
//! HTTP/1.1 upgrade request; this task relays the other end: the answer's
//! head becomes the stream's HEADERS (`101` → `200`, the HTTP/1.1-only
//! fields dropped), then bytes go both ways as DATA, within the windows.
//! The cost is a socket pair and a copy per direction; the WebSocket code
//! (limits, pings, close handshake, deflate, the denial extension) is the
//! same one HTTP/1.1 uses (docs/decisions.md, "HTTP/2").

use std::future::poll_fn;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;

use super::super::h1::{driver, Conn};
use crate::net::stream::Stream;
use crate::proto::h1::ChunkedDecoder;

/// The largest answer head read from the WebSocket side.
const MAX_HEAD: usize = 64 * 1024;
const CHUNK: usize = 16 * 1024;

/// An extended CONNECT for the WebSocket protocol.
pub fn is_websocket<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Fields the HTTP/1.1 upgrade request sets itself.
fn replaced(name: &str) -> bool {
    matches!(
        name,
        "host" | "connection" | "upgrade" | "sec-websocket-key" | "content-length"
    )
}

/// The HTTP/1.1 upgrade request that stands for `req`. The key is a fixed
/// one: the accept value it yields is dropped from the answer (RFC 8441
/// has none).
fn upgrade_request<B>(req: &http::Request<B>) -> Vec<u8> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    let host = uri
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(|h| h.as_bytes().to_vec())
        })
        .unwrap_or_else(|| b"localhost".to_vec());
    out.extend_from_slice(&host);
    out.extend_from_slice(
        b"\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
    );
    if !req.headers().contains_key("sec-websocket-version") {
        out.extend_from_slice(b"sec-websocket-version: 13\r\n");
    }
    for (name, value) in req.headers() {
        if replaced(name.as_str()) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Serves the stream: the WebSocket side as a connection of its own, and
/// the relay (this future).
pub async fn serve(outer: Arc<Conn>, req: http::Request<RecvStream>, respond: SendResponse<Bytes>) {
    let shared = outer.shared.clone();
    let request = upgrade_request(&req);
    let recv = req.into_body();
    let Ok((inner_io, mut relay)) = UnixStream::pair() else {
        let mut respond = respond;
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let inner = Conn::new(
        shared.next_id(),
        Stream::Unix(inner_io),
        outer.peer,
        outer.local,
        shared.clone(),
    );
    inner.inherit(&outer);
    // Counted open as any connection is (its close path counts it closed).
    shared.stats.active_connections.fetch_add(1, Relaxed);
    shared.register(inner.id, inner.clone());
    shared.exec.spawn(async move {
        driver::run(inner, crate::server::ws::driver::upgrade).await;
    });
    if relay.write_all(&request).await.is_err() {
        return;
    }
    relay_stream(&mut relay, recv, respond).await;
}

/// Reads the answer's head; relays the body or the WebSocket's bytes.
async fn relay_stream(
    relay: &mut UnixStream,
    mut recv: RecvStream,
    mut respond: SendResponse<Bytes>,
) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let (status, headers, chunked, len) = loop {
        let mut parsed = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut parsed);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(500);
                let mut map = http::HeaderMap::new();
                let mut chunked = false;
                let mut len = None;
                for h in resp.headers.iter() {
                    let name = h.name.to_ascii_lowercase();
                    match name.as_str() {
                        "connection" | "upgrade" | "sec-websocket-accept" | "keep-alive" => {
                            continue
                        }
                        "transfer-encoding" => {
                            chunked = true;
                            continue;
                        }
                        "content-length" => {
                            len = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        }
                        _ => {}
                    }
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_bytes(h.value),
                    ) {
                        map.append(k, v);
                    }
                }
                let _ = buf.split_to(n);
                break (status, map, chunked, len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        }
        // The client may give up before the app answers: its reset ends
        // the wait (the WebSocket side then sees the socket close).
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(CHUNK);
        }
        let read = poll_fn(|cx| {
            if respond.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            let mut scratch = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(&mut *relay).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Some(rb.filled().to_vec())),
                Poll::Ready(Err(_)) => Poll::Ready(Some(Vec::new())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match read {
            Some(bytes) if !bytes.is_empty() => buf.extend_from_slice(&bytes),
            Some(_) => {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            None => return,
        }
    };
    let mut head = http::Response::new(());
    let accepted = status == 101;
    *head.status_mut() = http::StatusCode::from_u16(if accepted { 200 } else { status })
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *head.headers_mut() = headers;
    let Ok(mut send) = respond.send_response(head, false) else {
        return;
    };
    if !accepted {
        deny(relay, &mut send, buf, chunked, len).await;
        return;
    }
    tunnel(relay, &mut send, &mut recv, buf).await;
}

async fn read_more(relay: &mut UnixStream, buf: &mut BytesMut) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(CHUNK);
    }
    relay.read_buf(buf).await.ok()
}

/// A denial (the WebSocket denial extension, 403, 500): its body, then the end.
async fn deny(
    relay: &mut UnixStream,
    send: &mut SendStream<Bytes>,
    mut buf: BytesMut,
    chunked: bool,
    len: Option<usize>,
) {
    // The WebSocket side closes its connection after a denial: the body is
    // what comes before the EOF.
    loop {
        if len.is_some_and(|n| buf.len() >= n) {
            break;
        }
        match read_more(relay, &mut buf).await {
            Some(n) if n > 0 => {}
            _ => break,
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        let _ = ChunkedDecoder::new().decode(&buf, &mut out);
        Bytes::from(out)
    } else {
        let n = len.unwrap_or(buf.len()).min(buf.len());
        buf.split_to(n).freeze()
    };
    let _ = send.send_data(body, true);
}

/// The WebSocket's bytes both ways until either side ends.
async fn tunnel(
    relay: &mut UnixStream,
    send: &mut SendStream<Bytes>,
    recv: &mut RecvStream,
    mut pending: BytesMut,
) {
    let mut peer_done = false;
    let mut inbound: Option<Bytes> = None;
    let mut scratch = vec![0u8; CHUNK];
    loop {
        // Out: what the WebSocket side wrote goes as DATA, within the
        // peer's window.
        if !pending.is_empty() {
            send.reserve_capacity(pending.len());
        }
        enum Step {
            Out(usize),
            OutEnd,
            In(Bytes),
            InEnd,
            Capacity,
            Written(usize),
            Gone,
        }
        let step = poll_fn(|cx| {
            if let Poll::Ready(r) = send.poll_reset(cx) {
                let _ = r;
                return Poll::Ready(Step::Gone);
            }
            if !pending.is_empty() {
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(_))) => return Poll::Ready(Step::Capacity),
                    Poll::Ready(_) => return Poll::Ready(Step::Gone),
                    Poll::Pending => {}
                }
            } else {
                let mut rb = ReadBuf::new(&mut scratch);
                if let Poll::Ready(r) = std::pin::Pin::new(&mut *relay).poll_read(cx, &mut rb) {
                    return Poll::Ready(match r {
                        Ok(()) if rb.filled().is_empty() => Step::OutEnd,
                        Ok(()) => Step::Out(rb.filled().len()),
                        Err(_) => Step::Gone,
                    });
                }
            }
            match inbound.as_ref() {
                Some(data) => match std::pin::Pin::new(&mut *relay).poll_write(cx, data) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(Step::Written(n)),
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::Gone),
                    Poll::Pending => {}
                },
                None if !peer_done => {
                    if let Poll::Ready(d) = recv.poll_data(cx) {
                        return Poll::Ready(match d {
                            Some(Ok(b)) => Step::In(b),
                            Some(Err(_)) => Step::Gone,
                            None => Step::InEnd,
                        });
                    }
                }
                None => {}
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Out(n) => pending.extend_from_slice(&scratch[..n]),
            Step::Capacity => {
                let n = send.capacity().min(pending.len());
                if n > 0 && send.send_data(pending.split_to(n).freeze(), false).is_err() {
                    return;
                }
            }
            Step::OutEnd => {
                // The WebSocket side closed (after its close handshake).
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Step::In(b) => {
                if !b.is_empty() {
                    inbound = Some(b);
                }
            }
            Step::Written(n) => {
                let _ = recv.flow_control().release_capacity(n);
                if let Some(b) = inbound.as_mut() {
                    let _ = b.split_to(n);
                    if b.is_empty() {
                        inbound = None;
                    }
                }
            }
            Step::InEnd => {
                peer_done = true;
                let _ = relay.shutdown().await;
            }
            Step::Gone => {
                send.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}
