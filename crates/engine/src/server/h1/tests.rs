//! The HTTP/1.1 driver over a real socket pair, with no Python: the test
//! plays the bridge (it takes the events and answers through the
//! [`HttpExchange`] seam) and the client (raw bytes on the other end).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::super::close::CloseReason;
use super::super::config::ServerConfig;
use super::super::exchange::{AppEnd, Event, HttpExchange, Received, ResponsePart, Sent};
use super::super::shared::Shared;
use super::{driver, Conn};
use crate::net::stream::Stream;
use crate::proto::h1::{Limits, ResponseDefaults};

struct Harness {
    shared: Arc<Shared>,
    client: UnixStream,
    events: VecDeque<Event>,
    driver: tokio::task::JoinHandle<CloseReason>,
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
    fn new(cfg: ServerConfig) -> Self {
        let shared = Arc::new(Shared::new(cfg));
        let (server, client) = UnixStream::pair().expect("socketpair");
        let conn = Conn::new(1, Stream::Unix(server), None, None, shared.clone());
        let driver = tokio::spawn(driver::run(conn, crate::server::ws::driver::upgrade));
        Self {
            shared,
            client,
            events: VecDeque::new(),
            driver,
        }
    }

    /// What the engine does between two loop iterations on the loop thread.
    fn iteration(&self) {
        self.shared.flush_deferred();
        self.shared.wake_scheduled();
    }

    async fn next_event(&mut self) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.iteration();
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

    async fn request(&mut self) -> (Arc<dyn HttpExchange>, String) {
        loop {
            match self.next_event().await {
                Event::Request(ex, head) => {
                    let path = String::from_utf8_lossy(head.bytes(head.path)).into_owned();
                    return (ex, path);
                }
                Event::Log(_) => continue,
                Event::Wake(_) => panic!("expected a request, got a wake-up"),
                Event::Closed(_) => panic!("expected a request, got a close"),
                Event::WebSocket(..) | Event::WsWake(_) => panic!("unexpected WebSocket event"),
            }
        }
    }

    async fn wake(&mut self) -> Arc<dyn HttpExchange> {
        loop {
            match self.next_event().await {
                Event::Wake(ex) => return ex,
                Event::Closed(_) | Event::Log(_) => continue,
                Event::Request(..) => panic!("expected a wake-up, got a request"),
                Event::WebSocket(..) | Event::WsWake(_) => panic!("unexpected WebSocket event"),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).await.expect("client write");
    }

    /// Reads until `n` bytes arrived (or EOF).
    async fn read_exactly(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        let mut have = 0;
        while have < n {
            let k =
                tokio::time::timeout(Duration::from_secs(5), self.client.read(&mut got[have..]))
                    .await
                    .expect("client read timed out")
                    .expect("client read");
            if k == 0 {
                break;
            }
            have += k;
        }
        got.truncate(have);
        got
    }

    /// Reads until the server closes the connection.
    async fn read_to_eof(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), self.client.read_to_end(&mut all))
            .await
            .expect("server did not close")
            .expect("client read");
        all
    }

    async fn closed_with(self) -> CloseReason {
        let Harness { shared, driver, .. } = self;
        let reason = tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("driver did not end")
            .expect("driver panicked");
        let key = format!("closed_{}", reason.name());
        let counted = shared
            .stats
            .snapshot()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v);
        assert_eq!(counted, Some(1), "the close is counted in stats");
        reason
    }
}

/// Sends `http.response.start` with status 200 and `headers`.
fn start(ex: &dyn HttpExchange, headers: &[(&[u8], &[u8])]) {
    let mut it = headers.iter().copied();
    let part = ResponsePart::Start {
        status: 200,
        headers: &mut it,
        trailers: false,
    };
    ex.send(ex.seq(), part).expect("start");
}

/// The debug lines queued (and not yet taken by the harness).
fn debug_lines(shared: &Shared) -> Vec<String> {
    let mut batch = Vec::new();
    shared.take_events(&mut batch);
    batch
        .into_iter()
        .filter_map(|ev| match ev {
            Event::Log(line) => Some(line),
            _ => None,
        })
        .collect()
}

/// Answers `body` as one start and one final body message.
fn respond(ex: &dyn HttpExchange, body: &[u8]) -> Sent {
    let seq = ex.seq();
    let len = body.len().to_string();
    start(ex, &[(b"content-length", len.as_bytes())]);
    ex.send(
        seq,
        ResponsePart::Body {
            data: body,
            more: false,
        },
    )
    .expect("body")
}

fn response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let mut h = Harness::new(config());
    for path in ["/a", "/b"] {
        h.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let (ex, got) = h.request().await;
        assert_eq!(got, path);
        assert!(matches!(respond(&*ex, b"hi"), Sent::Complete(c) if c.status == 200));
        assert_eq!(h.read_exactly(response("hi").len()).await, response("hi"));
    }
    let stats: std::collections::HashMap<_, _> = h.shared.stats.snapshot().into_iter().collect();
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["responses"], 2);
    assert_eq!(stats["write_syscalls"], 2, "one write per response");
    assert_eq!(
        h.shared
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(h.client.shutdown().await);
    assert_eq!(h.closed_with().await, CloseReason::ClientEof);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new(config());
    h.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (first, path) = h.request().await;
    assert_eq!(path, "/1");
    assert!(
        h.events.is_empty(),
        "the second waits for the first response"
    );
    respond(&*first, b"one");
    let (second, path) = h.request().await;
    assert_eq!(path, "/2");
    respond(&*second, b"two");
    let want = [response("one"), response("two")].concat();
    assert_eq!(h.read_exactly(want.len()).await, want);
}

#[tokio::test]
async fn a_head_written_byte_by_byte_is_parsed_once_complete() {
    let mut h = Harness::new(config());
    for b in GET {
        h.send(&[*b]).await;
        tokio::task::yield_now().await;
    }
    let (ex, path) = h.request().await;
    assert_eq!(path, "/a");
    respond(&*ex, b"ok");
    assert_eq!(h.read_exactly(response("ok").len()).await, response("ok"));
}

#[tokio::test]
async fn a_body_in_two_pieces_reaches_a_waiting_receive() {
    let mut h = Harness::new(config());
    h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        .await;
    let (ex, _) = h.request().await;
    let seq = ex.seq();
    let mut got = Vec::new();
    // The first piece may or may not be here yet; read until told to wait.
    loop {
        match ex.receive(seq, &mut |b| got.extend_from_slice(b)) {
            Received::Body { more: true } => continue,
            Received::Wait => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    h.send(b"56789").await;
    let woken = h.wake().await;
    let up = woken.wakeup(&mut |b| got.extend_from_slice(b));
    let mut last = up.receive.expect("the waiting receive() is answered");
    while last == (Received::Body { more: true }) {
        last = ex.receive(seq, &mut |b| got.extend_from_slice(b));
        if last == Received::Wait {
            let w = h.wake().await;
            last = w
                .wakeup(&mut |b| got.extend_from_slice(b))
                .receive
                .expect("answered");
        }
    }
    assert_eq!(last, Received::Body { more: false });
    assert_eq!(got, b"0123456789");
    respond(&*ex, b"");
    assert_eq!(h.read_exactly(response("").len()).await, response(""));
}

#[tokio::test]
async fn a_malformed_head_gets_400_and_a_close() {
    let mut h = Harness::new(config());
    h.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        .await;
    let all = h.read_to_eof().await;
    assert!(all.starts_with(b"HTTP/1.1 400 "), "{all:?}");
    assert_eq!(h.closed_with().await, CloseReason::ProtocolError);
}

#[tokio::test]
async fn an_idle_connection_closes_after_the_keep_alive_timeout() {
    let mut h = Harness::new(ServerConfig {
        keep_alive_timeout: Duration::from_millis(100),
        ..config()
    });
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    let started = Instant::now();
    let all = h.read_to_eof().await;
    assert_eq!(all, response("hi"));
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert_eq!(h.closed_with().await, CloseReason::KeepAliveTimeout);
}

#[tokio::test]
async fn a_partial_head_closes_after_the_header_timeout() {
    let mut h = Harness::new(ServerConfig {
        header_timeout: Duration::from_millis(100),
        ..config()
    });
    h.send(b"GET / HTT").await;
    assert_eq!(h.read_to_eof().await, b"");
    assert_eq!(h.closed_with().await, CloseReason::HeaderTimeout);
}

#[tokio::test]
async fn debug_lines_say_why_a_request_was_refused_and_why_the_connection_closed() {
    let mut h = Harness::new(ServerConfig {
        max_body: Some(4),
        ..config()
    });
    h.shared.set_debug(true);
    let shared = h.shared.clone();
    h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await;
    assert!(h.read_to_eof().await.starts_with(b"HTTP/1.1 413"));
    assert_eq!(h.closed_with().await, CloseReason::LimitExceeded);
    let lines = debug_lines(&shared);
    assert!(
        lines.iter().any(|l| l.contains("refused with 413")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("closed: limit_exceeded after 0 request(s)")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn no_debug_lines_are_queued_unless_asked_for() {
    let mut h = Harness::new(config());
    let shared = h.shared.clone();
    h.send(b"GET / HTT").await;
    h.client.shutdown().await.expect("shutdown");
    assert_eq!(h.closed_with().await, CloseReason::ClientEof);
    assert!(debug_lines(&shared).is_empty());
}

#[tokio::test]
async fn a_stream_told_of_the_shutdown_that_returns_is_abandoned_not_aborted() {
    let mut h = Harness::new(config());
    h.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (ex, _) = h.request().await;
    start(&*ex, &[]);
    assert_eq!(
        ex.send(
            ex.seq(),
            ResponsePart::Body {
                data: b"data: 1",
                more: true
            }
        )
        .expect("body"),
        Sent::Done
    );
    h.iteration();
    // The (empty) body first, then the app waits for a disconnect.
    assert_eq!(
        ex.receive(ex.seq(), &mut |_| {}),
        Received::Body { more: false }
    );
    assert_eq!(ex.receive(ex.seq(), &mut |_| {}), Received::Wait);
    h.shared.begin_shutdown();
    assert_eq!(ex.receive(ex.seq(), &mut |_| {}), Received::Disconnect);
    assert!(matches!(
        ex.app_done(ex.seq(), false),
        AppEnd::Abandoned(c) if c.status == 200 && c.body_bytes == 7
    ));
    h.iteration();
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_request_wakes_the_waiting_receive() {
    let mut h = Harness::new(config());
    h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .await;
    let (ex, _) = h.request().await;
    assert_eq!(ex.receive(ex.seq(), &mut |_| {}), Received::Wait);
    h.client.shutdown().await.expect("shutdown");
    let woken = h.wake().await;
    assert_eq!(
        woken.wakeup(&mut |_| {}).receive,
        Some(Received::Disconnect)
    );
    assert!(ex.is_closed());
    assert!(matches!(
        ex.app_done(ex.seq(), false),
        AppEnd::ClientGone(_)
    ));
    assert_eq!(h.closed_with().await, CloseReason::ClientEof);
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_back_send_until_it_reads() {
    let mut h = Harness::new(ServerConfig {
        write_high_water: 64 * 1024,
        ..config()
    });
    h.send(GET).await;
    let (ex, _) = h.request().await;
    let seq = ex.seq();
    start(&*ex, &[]);
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let r = ex
            .send(
                seq,
                ResponsePart::Body {
                    data: &chunk,
                    more: true,
                },
            )
            .expect("body");
        h.iteration();
        sent += chunk.len();
        if r == Sent::Wait {
            break;
        }
        assert!(sent < 64 << 20, "send() never waited");
    }
    // The client reads everything written so far: the driver drains the
    // rest and tells the waiting send() to go on.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while let Ok(n) = h.client.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n;
            if total >= sent {
                break;
            }
        }
        (h, total)
    });
    let (mut h, total) = reader.await.expect("reader");
    assert!(
        total >= sent,
        "all {sent} body bytes arrived ({total} with framing)"
    );
    let woken = h.wake().await;
    assert_eq!(woken.wakeup(&mut |_| {}).send, Some(Ok(())));
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_by_the_send_timeout() {
    let mut h = Harness::new(ServerConfig {
        send_timeout: Duration::from_millis(100),
        ..config()
    });
    h.send(GET).await;
    let (ex, _) = h.request().await;
    let seq = ex.seq();
    let body = vec![b'x'; 8 << 20];
    start(&*ex, &[]);
    let _ = ex.send(
        seq,
        ResponsePart::Body {
            data: &body,
            more: false,
        },
    );
    h.iteration();
    assert_eq!(h.closed_with().await, CloseReason::SendTimeout);
}

#[tokio::test]
async fn an_app_that_fails_before_responding_gets_a_500_and_keeps_the_connection() {
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    assert!(matches!(ex.app_done(ex.seq(), true), AppEnd::Answered(c) if c.status == 500));
    let want = b"HTTP/1.1 500 Internal Server Error\r\n";
    assert_eq!(&h.read_exactly(want.len()).await, want);
    let stats: std::collections::HashMap<_, _> = h.shared.stats.snapshot().into_iter().collect();
    assert_eq!(stats["app_errors"], 1);
}

#[tokio::test]
async fn shutdown_closes_an_idle_connection() {
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    assert_eq!(h.read_exactly(response("hi").len()).await, response("hi"));
    h.shared.begin_shutdown();
    h.iteration();
    assert_eq!(h.read_to_eof().await, b"");
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
}

#[tokio::test]
async fn a_request_within_the_drain_window_after_shutdown_is_served_with_close() {
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    assert_eq!(h.read_exactly(response("hi").len()).await, response("hi"));
    // The stop begins as the client, which was told nothing, sends again.
    h.shared.begin_shutdown();
    h.iteration();
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    let rest = h.read_to_eof().await;
    assert!(rest.starts_with(b"HTTP/1.1 200 OK\r\n"), "{rest:?}");
    assert!(
        String::from_utf8_lossy(&rest).contains("Connection: close\r\n"),
        "{rest:?}"
    );
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
}

#[tokio::test]
async fn a_fresh_connection_at_shutdown_still_gets_its_first_request_served() {
    let mut h = Harness::new(config());
    h.shared.begin_shutdown();
    h.iteration();
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    assert!(h.read_to_eof().await.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
}

#[tokio::test]
async fn an_idle_connection_closes_when_the_drain_window_ends() {
    let h = Harness::new(config());
    let started = Instant::now();
    h.shared.begin_shutdown();
    h.iteration();
    assert_eq!(h.closed_with().await, CloseReason::Shutdown);
    let took = started.elapsed();
    assert!(
        took >= crate::server::shutdown::DRAIN && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_refused_second_request_on_a_kept_connection_still_gets_its_status() {
    let mut h = Harness::new(ServerConfig {
        max_body: Some(10),
        ..config()
    });
    h.send(GET).await;
    let (ex, _) = h.request().await;
    respond(&*ex, b"hi");
    assert_eq!(h.read_exactly(response("hi").len()).await, response("hi"));
    h.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        .await;
    let all = h.read_to_eof().await;
    assert!(all.starts_with(b"HTTP/1.1 413 "), "{all:?}");
    assert_eq!(h.closed_with().await, CloseReason::LimitExceeded);
}

#[test]
fn limits_default_matches_the_documented_defaults() {
    let l = Limits::default();
    assert_eq!(
        (l.max_head_bytes, l.max_headers, l.max_target_bytes),
        (65536, 100, 8192)
    );
}

fn temp_file(name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ferrule-{}-{name}", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    path
}

#[tokio::test]
async fn pathsend_puts_the_file_after_its_head_small_or_large() {
    for size in [10usize, 300 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let path = temp_file(&format!("pathsend-{size}"), &data);
        let mut h = Harness::new(config());
        h.send(GET).await;
        let (ex, _) = h.request().await;
        start(&*ex, &[]);
        let sent = ex
            .send(ex.seq(), ResponsePart::PathSend { path: &path })
            .expect("pathsend");
        assert!(matches!(sent, Sent::Complete(c) if c.body_bytes == size as u64));
        h.iteration();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        let got = h.read_exactly(head.len() + size).await;
        assert_eq!(&got[..head.len()], head.as_bytes());
        assert!(
            got[head.len()..] == data[..],
            "body of {size} bytes differs"
        );
        std::fs::remove_file(&path).ok();
        // The connection goes on after a file.
        h.send(GET).await;
        let (ex, _) = h.request().await;
        respond(&*ex, b"next");
        assert_eq!(
            h.read_exactly(response("next").len()).await,
            response("next")
        );
    }
}

#[tokio::test]
async fn pathsend_of_a_directory_is_refused_before_anything_is_written() {
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    start(&*ex, &[]);
    let dir = std::env::temp_dir();
    let err = ex
        .send(ex.seq(), ResponsePart::PathSend { path: &dir })
        .expect_err("a directory is not a file");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(matches!(ex.app_done(ex.seq(), true), AppEnd::Answered(c) if c.status == 500));
}

#[tokio::test]
async fn a_file_that_shrinks_mid_send_ends_the_connection_short() {
    let size = 8 << 20;
    let path = temp_file("shrinks", &vec![b'x'; size]);
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    start(&*ex, &[]);
    ex.send(ex.seq(), ResponsePart::PathSend { path: &path })
        .expect("pathsend");
    h.iteration();
    // The socket pair's buffers hold far less than 8 MiB: the rest waits.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(1024))
        .expect("truncate");
    let all = h.read_to_eof().await;
    std::fs::remove_file(&path).ok();
    assert!(all.len() < size, "got {} bytes of {size}", all.len());
    assert_eq!(h.closed_with().await, CloseReason::FileError);
}

#[tokio::test]
async fn early_hints_leave_before_the_response() {
    let mut h = Harness::new(config());
    h.send(GET).await;
    let (ex, _) = h.request().await;
    start(&*ex, &[]);
    let links: [&[u8]; 1] = [b"</a.css>; rel=preload"];
    let mut it = links.iter().copied();
    ex.send(ex.seq(), ResponsePart::EarlyHint { links: &mut it })
        .expect("early hint");
    let hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    assert_eq!(h.read_exactly(hint.len()).await, hint);
    ex.send(
        ex.seq(),
        ResponsePart::Body {
            data: b"ok",
            more: false,
        },
    )
    .expect("body");
    let want = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    assert_eq!(h.read_exactly(want.len()).await, want);
}

fn proxy_protocol(trusted: &[&str]) -> ServerConfig {
    let items: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
    ServerConfig {
        proxy_protocol: Some(crate::net::proxy::TrustedProxies::parse(&items)),
        header_timeout: Duration::from_millis(200),
        ..config()
    }
}

#[tokio::test]
async fn a_proxy_header_byte_by_byte_names_the_client_of_every_request() {
    let mut h = Harness::new(proxy_protocol(&["unix:"]));
    for b in b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n" {
        h.send(&[*b]).await;
        tokio::task::yield_now().await;
    }
    for path in ["/a", "/b"] {
        h.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await;
        let (ex, got) = h.request().await;
        assert_eq!(got, path);
        assert_eq!(ex.peer(), Some("192.0.2.7:51234".parse().unwrap()));
        respond(&*ex, b"hi");
        assert_eq!(h.read_exactly(response("hi").len()).await, response("hi"));
    }
}

#[tokio::test]
async fn a_v2_local_header_and_the_request_in_one_write_keep_the_socket_peer() {
    let mut h = Harness::new(proxy_protocol(&["unix:"]));
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    bytes.extend_from_slice(GET);
    h.send(&bytes).await;
    let (ex, path) = h.request().await;
    assert_eq!(path, "/a");
    assert_eq!(ex.peer(), None, "the Unix socket's own peer");
    respond(&*ex, b"up");
    assert_eq!(h.read_exactly(response("up").len()).await, response("up"));
}

#[tokio::test]
async fn http_where_the_proxy_header_must_be_closes_without_a_response() {
    let mut h = Harness::new(proxy_protocol(&["unix:"]));
    h.send(GET).await;
    assert_eq!(h.read_to_eof().await, b"");
    assert!(h.events.is_empty());
    assert_eq!(h.closed_with().await, CloseReason::ProxyHeader);
}

#[tokio::test]
async fn a_partial_proxy_header_closes_after_the_header_timeout() {
    let mut h = Harness::new(proxy_protocol(&["unix:"]));
    h.send(b"PROXY TCP4 192.0.2.7 ").await;
    assert_eq!(h.read_to_eof().await, b"");
    assert_eq!(h.closed_with().await, CloseReason::HeaderTimeout);
}

#[tokio::test]
async fn a_peer_that_is_not_a_trusted_proxy_is_refused() {
    // Refused before anything is read (bytes it sent would turn the close
    // into a reset).
    let mut h = Harness::new(proxy_protocol(&["127.0.0.1"]));
    assert_eq!(h.read_to_eof().await, b"");
    assert_eq!(h.closed_with().await, CloseReason::ProxyUntrusted);
}
