//! The WebSocket driver over a real socket pair, with no Python: the test
//! plays the bridge (through the [`WsExchange`] seam) and the client (raw
//! frames on the other end).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::super::close::CloseReason;
use super::super::config::{ServerConfig, WsConfig};
use super::super::exchange::{Event, Sent, WsExchange, WsReceived, WsSend};
use super::super::h1::{driver, Conn};
use super::super::shared::Shared;
use crate::net::stream::Stream;
use crate::proto::h1::ResponseDefaults;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

struct Harness {
    shared: Arc<Shared>,
    client: UnixStream,
    driver: tokio::task::JoinHandle<CloseReason>,
}

fn config(ws: WsConfig) -> ServerConfig {
    ServerConfig {
        defaults: ResponseDefaults {
            server_header: false,
            date_header: false,
            extra: Vec::new(),
        },
        ws: Some(ws),
        ..ServerConfig::default()
    }
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1, 2, 3, 4];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

impl Harness {
    fn new(ws: WsConfig) -> Self {
        let shared = Arc::new(Shared::new(config(ws)));
        let (server, client) = UnixStream::pair().expect("socketpair");
        let conn = Conn::new(1, Stream::Unix(server), None, None, shared.clone());
        shared.register(1, conn.clone());
        let driver = tokio::spawn(driver::run(conn, super::driver::upgrade));
        Harness {
            shared,
            client,
            driver,
        }
    }

    /// The next WebSocket event (after a loop iteration's flush and wake).
    async fn event(&mut self) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.shared.flush_deferred();
            self.shared.wake_scheduled();
            let mut batch = Vec::new();
            self.shared.take_events(&mut batch);
            if let Some(ev) = batch
                .into_iter()
                .find(|e| matches!(e, Event::WebSocket(..) | Event::WsWake(_)))
            {
                return ev;
            }
            assert!(Instant::now() < deadline, "no event from the driver");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn accepted(&mut self) -> Arc<dyn WsExchange> {
        self.client.write_all(UPGRADE).await.unwrap();
        let Event::WebSocket(ws, head) = self.event().await else {
            panic!("expected the upgrade");
        };
        assert_eq!(head.bytes(head.path), b"/ws");
        assert_eq!(ws.receive(&mut |_, _| {}), WsReceived::Connect);
        let mut none = std::iter::empty();
        let sent = ws.send(WsSend::Accept {
            subprotocol: None,
            headers: &mut none,
        });
        assert_eq!(sent.unwrap(), Sent::Done);
        // What the loop thread does after the dispatch batch.
        self.shared.wake_scheduled();
        let head = self.read_until(b"\r\n\r\n").await;
        let text = String::from_utf8(head).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        ws
    }

    async fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(end) {
            let n = tokio::time::timeout(Duration::from_secs(5), self.client.read(&mut byte))
                .await
                .expect("client read timed out")
                .unwrap();
            assert_eq!(n, 1, "closed early: {got:?}");
            got.push(byte[0]);
        }
        got
    }

    /// One unmasked server frame: (first byte, payload).
    async fn server_frame(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), self.client.read_exact(&mut h))
            .await
            .expect("no frame")
            .unwrap();
        assert!(h[1] < 126, "small frames only here");
        let mut p = vec![0u8; h[1] as usize];
        self.client.read_exact(&mut p).await.unwrap();
        (h[0], p)
    }

    async fn ended(self) -> CloseReason {
        tokio::time::timeout(Duration::from_secs(5), self.driver)
            .await
            .expect("driver did not end")
            .unwrap()
    }
}

/// What a waiting `receive()` gets at the next wake-up.
async fn next_message(h: &mut Harness, ws: &Arc<dyn WsExchange>) -> (WsReceived, Vec<u8>) {
    let mut data = Vec::new();
    let got = ws.receive(&mut |b, _| data.extend_from_slice(b));
    if got != WsReceived::Wait {
        return (got, data);
    }
    loop {
        let Event::WsWake(ex) = h.event().await else {
            continue;
        };
        let up = ex.wakeup(&mut |b, _| data.extend_from_slice(b));
        if let Some(got) = up.receive {
            return (got, data);
        }
    }
}

#[tokio::test]
async fn an_accepted_websocket_echoes_and_closes_with_the_client() {
    let mut h = Harness::new(WsConfig::default());
    let ws = h.accepted().await;
    h.client.write_all(&frame(0x81, b"hello")).await.unwrap();
    let (got, data) = next_message(&mut h, &ws).await;
    assert_eq!(got, WsReceived::Message { text: true });
    assert_eq!(data, b"hello");
    ws.send(WsSend::Message {
        data: b"back",
        text: true,
    })
    .unwrap();
    h.shared.flush_deferred();
    assert_eq!(h.server_frame().await, (0x81, b"back".to_vec()));
    // A ping is answered with the same payload.
    h.client.write_all(&frame(0x89, b"p1")).await.unwrap();
    assert_eq!(h.server_frame().await, (0x8a, b"p1".to_vec()));
    // The client's close is echoed and the app hears its code.
    let close = [&3001u16.to_be_bytes()[..], b"done"].concat();
    h.client.write_all(&frame(0x88, &close)).await.unwrap();
    assert_eq!(
        h.server_frame().await,
        (0x88, 3001u16.to_be_bytes().to_vec())
    );
    let (got, _) = next_message(&mut h, &ws).await;
    assert_eq!(
        got,
        WsReceived::Disconnect {
            code: 3001,
            reason: "done".into()
        }
    );
    assert_eq!(h.ended().await, CloseReason::WebSocketClosed);
}

#[tokio::test]
async fn a_protocol_error_closes_with_1002_and_sends_then_fail() {
    let mut h = Harness::new(WsConfig::default());
    let ws = h.accepted().await;
    // Unmasked.
    h.client.write_all(&[0x81, 0x01, b'a']).await.unwrap();
    let (first, payload) = h.server_frame().await;
    assert_eq!(first, 0x88);
    assert_eq!(&payload[..2], &1002u16.to_be_bytes());
    let (got, _) = next_message(&mut h, &ws).await;
    assert!(matches!(got, WsReceived::Disconnect { code: 1002, .. }));
    assert!(ws
        .send(WsSend::Message {
            data: b"x",
            text: false
        })
        .is_err());
    drop(h.client.shutdown().await);
    assert_eq!(h.ended().await, CloseReason::ProtocolError);
}

#[tokio::test]
async fn shutdown_closes_an_open_websocket_with_1012() {
    let mut h = Harness::new(WsConfig::default());
    let ws = h.accepted().await;
    assert_eq!(ws.receive(&mut |_, _| {}), WsReceived::Wait);
    h.shared.begin_shutdown();
    h.shared.wake_scheduled();
    let (first, payload) = h.server_frame().await;
    assert_eq!((first, &payload[..]), (0x88, &1012u16.to_be_bytes()[..]));
    let (got, _) = next_message(&mut h, &ws).await;
    assert!(matches!(got, WsReceived::Disconnect { code: 1012, .. }));
    h.client
        .write_all(&frame(0x88, &1012u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(h.ended().await, CloseReason::WebSocketClosed);
}

#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_closed_with_1011() {
    let mut h = Harness::new(WsConfig {
        ping_interval: Some(Duration::from_millis(50)),
        ping_timeout: Some(Duration::from_millis(50)),
        ..WsConfig::default()
    });
    let _ws = h.accepted().await;
    let (first, _) = h.server_frame().await;
    assert_eq!(first, 0x89, "a ping");
    let (first, payload) = h.server_frame().await;
    assert_eq!((first, &payload[..2]), (0x88, &1011u16.to_be_bytes()[..]));
    assert_eq!(h.ended().await, CloseReason::PingTimeout);
}

#[tokio::test]
async fn pongs_for_a_peer_that_pings_and_never_reads_stay_bounded() {
    let mut h = Harness::new(WsConfig::default());
    let _ws = h.accepted().await;
    // 8 MiB of pings while the client reads nothing: the server keeps at
    // most one unsent pong once its socket is full, not one per ping.
    let one = frame(0x89, &[b'p'; 125]);
    let count = (8 << 20) / one.len();
    let flood: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * count)
        .collect();
    tokio::time::timeout(Duration::from_secs(5), h.client.write_all(&flood))
        .await
        .expect("the server stopped reading pings")
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), h.client.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total > 0, "no pong at all");
    assert!(
        total < 2 << 20,
        "{total} bytes of pongs queued for {count} pings"
    );
}

/// Reads server frames until a close comes or `within` passes, sending
/// `bogus` as a pong every 20 ms; returns the close's payload.
async fn close_while_sending_pongs(
    h: &mut Harness,
    within: Duration,
    bogus: &[u8],
) -> Option<Vec<u8>> {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        h.client.write_all(&frame(0x8a, bogus)).await.unwrap();
        if let Ok(n) =
            tokio::time::timeout(Duration::from_millis(20), h.client.read(&mut buf)).await
        {
            let n = n.unwrap();
            if n == 0 {
                return None;
            }
            got.extend_from_slice(&buf[..n]);
        }
        while got.len() >= 2 && got.len() >= 2 + got[1] as usize {
            let len = got[1] as usize;
            let (first, payload) = (got[0], got[2..2 + len].to_vec());
            got.drain(..2 + len);
            if first == 0x88 {
                return Some(payload);
            }
        }
    }
    None
}

#[tokio::test]
async fn an_unsolicited_pong_does_not_answer_our_ping() {
    let mut h = Harness::new(WsConfig {
        ping_interval: Some(Duration::from_millis(50)),
        ping_timeout: Some(Duration::from_millis(100)),
        ..WsConfig::default()
    });
    let _ws = h.accepted().await;
    let close = close_while_sending_pongs(&mut h, Duration::from_secs(2), b"not ours").await;
    let close = close.expect("no close: a stray pong cleared the ping deadline");
    assert_eq!(&close[..2], &1011u16.to_be_bytes());
}

/// Plays a client that answers every ping for `within`; returns the pings
/// seen and the close's payload if one came.
async fn answer_pings(h: &mut Harness, within: Duration) -> (usize, Option<Vec<u8>>) {
    let end = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pings = 0;
    while Instant::now() < end {
        if let Ok(n) =
            tokio::time::timeout(Duration::from_millis(10), h.client.read(&mut buf)).await
        {
            let n = n.unwrap();
            if n == 0 {
                return (pings, None);
            }
            got.extend_from_slice(&buf[..n]);
        }
        while got.len() >= 2 && got.len() >= 2 + got[1] as usize {
            let len = got[1] as usize;
            let (first, payload) = (got[0], got[2..2 + len].to_vec());
            got.drain(..2 + len);
            match first {
                0x88 => return (pings, Some(payload)),
                0x89 => {
                    pings += 1;
                    h.client.write_all(&frame(0x8a, &payload)).await.unwrap();
                }
                _ => {}
            }
        }
    }
    (pings, None)
}

#[tokio::test]
async fn a_slow_app_does_not_get_a_healthy_client_closed_for_its_pongs() {
    let mut h = Harness::new(WsConfig {
        max_queue: 2,
        ping_interval: Some(Duration::from_millis(50)),
        ping_timeout: Some(Duration::from_millis(100)),
        ..WsConfig::default()
    });
    let ws = h.accepted().await;
    for i in 0..4u8 {
        h.client.write_all(&frame(0x82, &[i])).await.unwrap();
    }
    // The app takes nothing: the queue is full and the client's pongs
    // wait behind the unread messages.
    let (pings, close) = answer_pings(&mut h, Duration::from_millis(500)).await;
    assert_eq!(close, None, "closed while the app was slow");
    assert!(pings >= 1);
    for i in 0..4u8 {
        let (got, data) = next_message(&mut h, &ws).await;
        assert_eq!((got, data), (WsReceived::Message { text: false }, vec![i]));
    }
    let (_, close) = answer_pings(&mut h, Duration::from_millis(400)).await;
    assert_eq!(close, None, "closed after the app caught up");
}

#[tokio::test]
async fn a_zero_ping_interval_sends_no_pings() {
    let mut h = Harness::new(WsConfig {
        ping_interval: Some(Duration::ZERO),
        ..WsConfig::default()
    });
    let _ws = h.accepted().await;
    let (pings, close) = answer_pings(&mut h, Duration::from_millis(200)).await;
    assert_eq!((pings, close), (0, None));
}

#[tokio::test]
async fn a_zero_ping_timeout_never_closes_and_pings_wait_for_their_pong() {
    let mut h = Harness::new(WsConfig {
        ping_interval: Some(Duration::from_millis(20)),
        ping_timeout: Some(Duration::ZERO),
        ..WsConfig::default()
    });
    let _ws = h.accepted().await;
    // A client that answers: with no timeout, nothing closes.
    let (pings, close) = answer_pings(&mut h, Duration::from_millis(200)).await;
    assert_eq!(close, None);
    assert!(pings >= 2, "{pings} pings");
    // A client that stops answering gets no second ping.
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_millis(300);
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, h.client.read(&mut buf)).await {
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let pings = seen.iter().filter(|&&b| b == 0x89).count();
    assert!(
        pings <= 1,
        "{pings} pings while one was unanswered: {seen:?}"
    );
}

#[tokio::test]
async fn a_client_that_closes_and_half_closes_still_gets_our_last_bytes() {
    let mut h = Harness::new(WsConfig::default());
    let ws = h.accepted().await;
    // More than the socket pair buffers: the rest waits in our output.
    let big = vec![7u8; 4 << 20];
    ws.send(WsSend::Message {
        data: &big,
        text: false,
    })
    .unwrap();
    h.shared.flush_deferred();
    h.shared.wake_scheduled();
    // The client says goodbye and half-closes without reading.
    h.client
        .write_all(&frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    h.client.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), h.client.read_to_end(&mut got))
        .await
        .expect("the server did not finish")
        .unwrap();
    let header = [&[0x82, 127][..], &(big.len() as u64).to_be_bytes()].concat();
    assert_eq!(
        got.len(),
        header.len() + big.len() + 4,
        "our output was cut"
    );
    assert_eq!(&got[..header.len()], &header[..]);
    assert_eq!(&got[got.len() - 4..], &[0x88, 2, 0x03, 0xe8]);
    assert_eq!(h.ended().await, CloseReason::WebSocketClosed);
}
