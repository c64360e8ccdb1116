//! Request heads: no panics on any bytes, and feeding the same bytes in two
//! pieces (plain and through HeadParser) gives the same heads and verdict.
#![no_main]

use bytes::BytesMut;
use ferrule_fuzz::http1::{parse_request_head, HeadError, HeadParser, Limits, RequestHead};
use libfuzzer_sys::fuzz_target;

type Heads = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

fn summary(h: &RequestHead) -> (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>) {
    let hs = h
        .headers
        .iter()
        .map(|(n, v)| (h.bytes(*n).to_vec(), h.bytes(*v).to_vec()))
        .collect();
    (h.raw.to_vec(), hs)
}

fn run(
    data: &[u8],
    cut: usize,
    limits: &Limits,
    incremental: bool,
) -> Result<(Heads, Vec<u8>), u16> {
    let mut p = HeadParser::new();
    let mut buf = BytesMut::new();
    let mut heads = Vec::new();
    let step = |buf: &mut BytesMut, p: &mut HeadParser| -> Result<Option<RequestHead>, HeadError> {
        if incremental {
            p.parse(buf, limits)
        } else {
            parse_request_head(buf, limits)
        }
    };
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        while let Some(h) = step(&mut buf, &mut p).map_err(|e| e.status())? {
            heads.push(summary(&h));
        }
    }
    p.reset();
    while let Some(h) = step(&mut buf, &mut p).map_err(|e| e.status())? {
        heads.push(summary(&h));
    }
    Ok((heads, buf.to_vec()))
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let limits = if ctl & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head_bytes: 256,
            max_headers: 4,
            max_target_bytes: 32,
        }
    };
    let cut = if data.is_empty() {
        0
    } else {
        usize::from(ctl >> 1) % (data.len() + 1)
    };
    let plain = run(data, cut, &limits, false);
    let inc = run(data, cut, &limits, true);
    assert_eq!(plain, inc);
    // A successful parse of everything at once agrees with the split feed.
    if let (Ok(whole), Ok(split)) = (run(data, 0, &limits, false), &plain) {
        assert_eq!(&whole, split);
    }
});
