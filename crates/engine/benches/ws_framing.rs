//! Frames per second through each framing candidate, server side: parse a
//! masked client frame, unmask it, take its payload, and encode it back as
//! a server frame (an echo without the sockets). `cargo bench -p
//! ferrule-engine --bench ws_framing`; the figures are in
//! docs/decisions.md ("WebSocket framing").
//!
//! - ferrule: tungstenite's `FrameHeader` under ferrule's `Reader` (which
//!   also checks every protocol rule) and `encode_frame`;
//! - fastwebsockets: `WebSocket::read_frame` / `write_frame` over an
//!   in-memory stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use ferrule_engine::proto::ws::{encode_frame, Incoming, OpCode, Reader};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `n` masked binary client frames of `size` bytes each.
fn client_frames(n: usize, size: usize) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut one = vec![0x82];
    match size {
        s if s < 126 => one.push(0x80 | s as u8),
        s if s < 65536 => {
            one.push(0x80 | 126);
            one.extend_from_slice(&(s as u16).to_be_bytes());
        }
        s => {
            one.push(0x80 | 127);
            one.extend_from_slice(&(s as u64).to_be_bytes());
        }
    }
    one.extend_from_slice(&mask);
    one.extend((0..size).map(|i| (i as u8) ^ mask[i % 4]));
    one.repeat(n)
}

fn ferrule(input: &[u8], n: usize) -> f64 {
    let mut buf = BytesMut::from(input);
    let mut reader = Reader::new(1 << 20, None);
    let mut out = Vec::with_capacity(1 << 20);
    let t = Instant::now();
    let mut count = 0;
    while let Some(got) = reader.next(&mut buf).expect("valid frames") {
        assert_eq!(got, Incoming::Message { text: false });
        let msg = reader.take_message();
        encode_frame(&mut out, OpCode::Binary, false, &msg);
        if out.len() > 1 << 20 {
            out.clear();
        }
        count += 1;
    }
    assert_eq!(count, n);
    n as f64 / t.elapsed().as_secs_f64()
}

/// Reads from a buffer, writes into a bounded sink.
struct Mem {
    input: Vec<u8>,
    at: usize,
    written: usize,
}

impl AsyncRead for Mem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.input.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn fastwebsockets(input: Vec<u8>, n: usize) -> f64 {
    use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mem = Mem {
            input,
            at: 0,
            written: 0,
        };
        let mut ws = WebSocket::after_handshake(mem, Role::Server);
        ws.set_auto_pong(false);
        ws.set_auto_close(false);
        ws.set_max_message_size(1 << 20);
        let t = Instant::now();
        for _ in 0..n {
            let f = ws.read_frame().await.expect("valid frames");
            assert_eq!(f.opcode, OpCode::Binary);
            let data = f.payload.to_vec();
            ws.write_frame(Frame::binary(Payload::Owned(data)))
                .await
                .unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    })
}

fn main() {
    for (size, n) in [(64usize, 2_000_000usize), (64 * 1024, 20_000)] {
        let input = client_frames(n, size);
        // Best of three runs each.
        let f = (0..3).map(|_| ferrule(&input, n)).fold(0.0, f64::max);
        let w = (0..3)
            .map(|_| fastwebsockets(input.clone(), n))
            .fold(0.0, f64::max);
        println!(
            "{size:>6} B frames: ferrule (tungstenite headers) {:>12.0}/s   fastwebsockets {:>12.0}/s",
            f, w
        );
    }
}
