//! The WebSocket reader (frames, unmasking, message assembly, UTF-8, close
//! codes, inflating): no panics on any bytes; the same messages and the
//! same verdict wherever the input is cut; every message within the size
//! limit; every text message valid UTF-8.
#![no_main]

use bytes::BytesMut;
use ferrule_fuzz::ws::{Incoming, PerMessageDeflate, Reader, WsError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

type Outcome = (Vec<(Incoming, Vec<u8>)>, Option<WsError>);

fn run(data: &[u8], deflate: bool, cuts: &[usize]) -> Outcome {
    let pmd = PerMessageDeflate::negotiate(&[b"permessage-deflate"]).expect("valid offer");
    let mut r = Reader::new(MAX, deflate.then(|| pmd.inflater()));
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        buf.extend_from_slice(&data[start..end]);
        start = end;
        loop {
            match r.next(&mut buf) {
                Ok(Some(Incoming::Message { text })) => {
                    let m = r.take_message();
                    assert!(m.len() <= MAX, "message over the limit");
                    if text {
                        assert!(std::str::from_utf8(&m).is_ok(), "text not UTF-8");
                    }
                    got.push((Incoming::Message { text }, m));
                }
                Ok(Some(other)) => got.push((other, Vec::new())),
                Ok(None) => break,
                Err(e) => return (got, Some(e)),
            }
        }
    }
    (got, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let deflate = ctl & 1 == 1;
    let n = data.len() + 1;
    let a = usize::from(ctl >> 1) * 13 % n;
    let b = usize::from(ctl) * 7 % n;
    let (a, b) = (a.min(b), a.max(b));
    // Which rule a broken compressed text message breaks first (its size
    // or its UTF-8) may depend on how much of it was there: compare the
    // messages and whether it failed; the code too when not compressed.
    let summary = |o: Outcome| (o.0, o.1.map(|e| if deflate { 0 } else { e.code() }));
    let whole = summary(run(data, deflate, &[]));
    assert_eq!(whole, summary(run(data, deflate, &[a, b])));
    let bytewise: Vec<usize> = (1..data.len().min(64)).collect();
    assert_eq!(whole, summary(run(data, deflate, &bytewise)));
});
