//! Chunked bodies: no panics, and the result never depends on where the input
//! was cut.
#![no_main]

use ferrule_fuzz::http1::{ChunkedDecoder, ChunkedError};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
    let mut d = ChunkedDecoder::with_limits(64, 128);
    let mut out = Vec::new();
    let (mut used, mut start) = (0, 0);
    for &end in cuts.iter().chain(std::iter::once(&data.len())) {
        let end = end.clamp(start, data.len());
        let r = d.decode(&data[start..end], &mut out)?;
        used += r.consumed;
        if r.done {
            assert!(used <= data.len());
            return Ok((out, used, true));
        }
        assert_eq!(r.consumed, end - start);
        start = end;
    }
    Ok((out, used, false))
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let n = data.len() + 1;
    let a = usize::from(ctl) % n;
    let b = (usize::from(ctl) * 7) % n;
    let (a, b) = (a.min(b), a.max(b));
    let whole = run(data, &[]);
    let split = run(data, &[a, b]);
    assert_eq!(whole, split);
});
