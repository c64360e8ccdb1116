//! The HTTP/2 driver over a real socket pair, with no Python: the test
//! plays the bridge (events in, answers through [`HttpExchange`]) and the
//! client (the `h2` crate's client, or raw bytes for the h2c upgrade).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::close::CloseReason;
use super::super::config::{HttpMode, ServerConfig};
use super::super::exchange::{Event, HttpExchange, Received, ResponsePart, Sent};
use super::super::h1::{driver, Conn};
use super::super::shared::Shared;
use crate::net::stream::Stream;
use crate::proto::h1::{ResponseDefaults, Version};

struct Harness {
    shared: Arc<Shared>,
    events: VecDeque<Event>,
    closed: oneshot::Receiver<CloseReason>,
    runner: tokio::task::JoinHandle<()>,
}

fn config() -> ServerConfig {
    ServerConfig {
        defaults: ResponseDefaults {
            server_header: false,
            date_header: false,
            extra: Vec::new(),
        },
        ..ServerConfig::default()
    }
}

impl Harness {
    /// The server side of a socket pair, served as the accept loop serves
    /// a connection; returns the client side.
    fn new(cfg: ServerConfig) -> (Self, UnixStream) {
        let shared = Arc::new(Shared::new(cfg));
        let (server, client) = UnixStream::pair().expect("socketpair");
        let conn = Conn::new(1, Stream::Unix(server), None, None, shared.clone());
        let (tx, rx) = oneshot::channel();
        shared.exec.spawn(async move {
            let reason = driver::run_with_h2(
                conn,
                crate::server::ws::driver::upgrade,
                Some(super::driver::serve),
            )
            .await;
            let _ = tx.send(reason);
        });
        // The in-loop executor, polled as `Engine::wait` polls it.
        let exec = shared.clone();
        let runner = tokio::spawn(poll_fn(move |cx| {
            exec.exec.run_ready(cx);
            // `run_ready` stops after a few rounds: what is still ready
            // runs on the next poll.
            if exec.exec.has_ready() {
                cx.waker().wake_by_ref();
            }
            Poll::<()>::Pending
        }));
        let h = Self {
            shared,
            events: VecDeque::new(),
            closed: rx,
            runner,
        };
        (h, client)
    }

    async fn next_event(&mut self) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.shared.flush_deferred();
            self.shared.wake_scheduled();
            let mut batch = Vec::new();
            self.shared.take_events(&mut batch);
            self.events.extend(batch);
            if let Some(ev) = self.events.pop_front() {
                return ev;
            }
            assert!(Instant::now() < deadline, "no event from the driver");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The next request: its exchange, path and version.
    async fn request(&mut self) -> (Arc<dyn HttpExchange>, String, Version) {
        loop {
            if let Event::Request(ex, head) = self.next_event().await {
                let path = String::from_utf8_lossy(head.bytes(head.path)).into_owned();
                return (ex, path, head.version);
            }
        }
    }

    async fn wake(&mut self) -> Arc<dyn HttpExchange> {
        loop {
            if let Event::Wake(ex) = self.next_event().await {
                return ex;
            }
        }
    }

    /// Lets the drivers run what the bridge scheduled.
    async fn settle(&mut self) {
        for _ in 0..20 {
            self.shared.wake_scheduled();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn closed_with(self) -> CloseReason {
        let reason = tokio::time::timeout(Duration::from_secs(5), self.closed)
            .await
            .expect("driver did not end")
            .expect("driver gone");
        self.runner.abort();
        reason
    }
}

fn respond(ex: &dyn HttpExchange, body: &[u8]) -> Sent {
    let mut it = [(&b"x-test"[..], &b"1"[..])].into_iter();
    ex.send(
        1,
        ResponsePart::Start {
            status: 200,
            headers: &mut it,
            trailers: false,
        },
    )
    .expect("start");
    ex.send(
        1,
        ResponsePart::Body {
            data: body,
            more: false,
        },
    )
    .expect("body")
}

type Client = h2::client::SendRequest<Bytes>;

async fn h2_client(io: UnixStream) -> Client {
    let (client, conn) = h2::client::handshake(io).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn get(path: &str) -> http::Request<()> {
    http::Request::builder()
        .uri(format!("http://example.test{path}"))
        .body(())
        .expect("request")
}

async fn body_of(resp: http::Response<h2::RecvStream>) -> Vec<u8> {
    let mut body = resp.into_body();
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

#[tokio::test]
async fn each_stream_is_its_own_exchange_and_head() {
    let (mut h, io) = Harness::new(config());
    let mut client = h2_client(io).await;
    let (a, _) = client.send_request(get("/a?x=1"), true).expect("send a");
    client = client.ready().await.expect("ready");
    let (b, _) = client.send_request(get("/b"), true).expect("send b");
    let (ex1, p1, v1) = h.request().await;
    let (ex2, p2, _) = h.request().await;
    assert_eq!(v1, Version::Http2);
    assert_ne!(ex1.id(), ex2.id(), "one bridge id per stream");
    let mut paths = [p1.clone(), p2.clone()];
    paths.sort();
    assert_eq!(paths, ["/a".to_string(), "/b".to_string()]);
    // Answer the second first: responses do not depend on order.
    assert!(matches!(respond(&*ex2, p2.as_bytes()), Sent::Complete(c) if c.status == 200));
    assert!(matches!(respond(&*ex1, p1.as_bytes()), Sent::Complete(_)));
    h.settle().await;
    let (ra, rb) = (a.await.expect("a"), b.await.expect("b"));
    assert_eq!(ra.status(), 200);
    assert_eq!(ra.headers()["x-test"], "1");
    assert_eq!(body_of(ra).await, b"/a");
    assert_eq!(body_of(rb).await, b"/b");
    let stats: std::collections::HashMap<_, _> = h.shared.stats.snapshot().into_iter().collect();
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["responses"], 2);
    drop(client);
    assert_eq!(h.closed_with().await, CloseReason::ClientEof);
}

#[tokio::test]
async fn the_body_window_reopens_only_as_the_app_reads() {
    let mut cfg = config();
    cfg.h2.initial_window_size = 16 * 1024;
    let (mut h, io) = Harness::new(cfg);
    let client = h2_client(io).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("http://example.test/up")
        .body(())
        .expect("request");
    let mut client = client.ready().await.expect("ready");
    let (resp, mut send) = client.send_request(req, false).expect("send");
    let (ex, _, _) = h.request().await;
    let total = 200 * 1024;
    send.reserve_capacity(total);
    // Without reads from the app, the client gets one window's worth.
    let mut granted = 0;
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        let cap = tokio::time::timeout(
            Duration::from_millis(50),
            poll_fn(|cx| send.poll_capacity(cx)),
        )
        .await;
        if let Ok(Some(Ok(n))) = cap {
            granted += n;
            send.send_data(Bytes::from(vec![7u8; n]), false)
                .expect("data");
        }
        h.settle().await;
    }
    assert!(granted <= 16 * 1024, "granted {granted} before any read");
    // The app reads: the rest flows, window by window.
    let mut got = 0;
    let sender = tokio::spawn(async move {
        let mut sent = granted;
        while sent < total {
            send.reserve_capacity(total - sent);
            match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) => {
                    let n = n.min(total - sent);
                    send.send_data(Bytes::from(vec![7u8; n]), sent + n == total)
                        .expect("data");
                    sent += n;
                }
                _ => break,
            }
        }
    });
    loop {
        let mut more = true;
        let r = ex.receive(1, &mut |b| got += b.len());
        match r {
            Received::Body { more: m } => more = m,
            Received::Wait => {
                let w = h.wake().await;
                if let Some(Received::Body { more: m }) = w.wakeup(&mut |b| got += b.len()).receive
                {
                    more = m;
                }
            }
            Received::Disconnect => panic!("disconnect"),
        }
        h.settle().await;
        if !more {
            break;
        }
    }
    sender.await.expect("sender");
    assert_eq!(got, total);
    respond(&*ex, b"ok");
    h.settle().await;
    assert_eq!(resp.await.expect("resp").status(), 200);
}

#[tokio::test]
async fn a_client_reset_tells_the_app_and_fails_its_sends() {
    let (mut h, io) = Harness::new(config());
    let client = h2_client(io).await;
    let mut client = client.ready().await.expect("ready");
    let req = http::Request::builder()
        .method("POST")
        .uri("http://example.test/r")
        .body(())
        .expect("request");
    let (_resp, mut send) = client.send_request(req, false).expect("send");
    let (ex, _, _) = h.request().await;
    assert_eq!(ex.receive(1, &mut |_| {}), Received::Wait);
    send.send_reset(h2::Reason::CANCEL);
    let woken = h.wake().await;
    assert_eq!(woken.id(), ex.id());
    assert_eq!(ex.wakeup(&mut |_| {}).receive, Some(Received::Disconnect));
    assert!(ex.is_closed());
    let mut none = std::iter::empty();
    let err = ex.send(
        1,
        ResponsePart::Start {
            status: 200,
            headers: &mut none,
            trailers: false,
        },
    );
    assert!(matches!(
        err,
        Err(super::super::exchange::SendError::Disconnected)
    ));
}

#[tokio::test]
async fn trailers_end_the_stream() {
    let (mut h, io) = Harness::new(config());
    let client = h2_client(io).await;
    let mut client = client.ready().await.expect("ready");
    let (resp, _) = client.send_request(get("/t"), true).expect("send");
    let (ex, _, _) = h.request().await;
    let mut none = std::iter::empty();
    ex.send(
        1,
        ResponsePart::Start {
            status: 200,
            headers: &mut none,
            trailers: true,
        },
    )
    .expect("start");
    ex.send(
        1,
        ResponsePart::Body {
            data: b"grpc",
            more: false,
        },
    )
    .expect("body");
    let mut t = [(&b"grpc-status"[..], &b"0"[..])].into_iter();
    let sent = ex
        .send(
            1,
            ResponsePart::Trailers {
                headers: &mut t,
                more: false,
            },
        )
        .expect("trailers");
    assert!(matches!(sent, Sent::Complete(_)));
    h.settle().await;
    let resp = resp.await.expect("resp");
    let mut body = resp.into_body();
    let data = body.data().await.expect("data").expect("chunk");
    assert_eq!(&data[..], b"grpc");
    let trailers = body.trailers().await.expect("trailers").expect("some");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn shutdown_sends_goaway_and_lets_the_open_stream_finish() {
    let (mut h, io) = Harness::new(config());
    let client = h2_client(io).await;
    let mut client = client.ready().await.expect("ready");
    let (resp, _) = client.send_request(get("/slow"), true).expect("send");
    let (ex, _, _) = h.request().await;
    h.shared.begin_shutdown();
    h.settle().await;
    // New streams are refused once the GOAWAY arrived.
    tokio::time::sleep(Duration::from_millis(50)).await;
    respond(&*ex, b"done");
    h.settle().await;
    let resp = resp.await.expect("resp");
    assert_eq!(body_of(resp).await, b"done");
    h.settle().await;
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
}

#[tokio::test]
async fn h1_only_mode_answers_the_preface_as_http_1() {
    let mut cfg = config();
    cfg.http = HttpMode::H1;
    let (h, mut io) = Harness::new(cfg);
    io.write_all(super::PREFACE).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut buf)).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(h.closed_with().await, CloseReason::ProtocolError);
}

/// Reads raw frames until one of `kind` on stream 1 arrives; returns its payload.
async fn frame_on_stream_1(io: &mut UnixStream, buf: &mut Vec<u8>, kind: u8) -> Vec<u8> {
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..9 + len).collect();
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            if frame[3] == kind && stream == 1 {
                return frame[9..].to_vec();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
            .await
            .expect("read timed out")
            .expect("read");
        assert!(n > 0, "EOF before the frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn an_h2c_upgrade_answers_the_request_as_stream_1() {
    let (mut h, mut io) = Harness::new(config());
    io.write_all(
        b"GET /up?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Mine: yes\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await.expect("read");
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let mut rest = buf.split_off(end);
    // The client's preface and SETTINGS, as a client sends them after 101.
    io.write_all(super::PREFACE).await.expect("preface");
    io.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    let (ex, path, version) = h.request().await;
    assert_eq!((path.as_str(), version), ("/up", Version::Http2));
    respond(&*ex, b"upgraded");
    h.settle().await;
    let headers = frame_on_stream_1(&mut io, &mut rest, 0x1).await;
    // :status 200 is index 8 of the static table.
    assert_eq!(headers[0], 0x88);
    let data = frame_on_stream_1(&mut io, &mut rest, 0x0).await;
    assert_eq!(data, b"upgraded");
}
