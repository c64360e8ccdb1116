//! permessage-deflate: negotiating any offer never panics and answers
//! only what the offer allows; inflating any bytes never grows past the
//! limit plus one byte; whatever we compress inflates back.
#![no_main]

use ferrule_fuzz::ws::deflate::InflateError;
use ferrule_fuzz::ws::PerMessageDeflate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let cut = usize::from(ctl) % (data.len() + 1);
    let (offer, rest) = data.split_at(cut);
    if let Some(p) = PerMessageDeflate::negotiate(&[offer]) {
        let answer = p.response();
        assert!(answer.starts_with("permessage-deflate"));
        if let Some(bits) = p.server_max_window_bits {
            assert!((9..=15).contains(&bits));
        }
    }
    let p = PerMessageDeflate::negotiate(&[b"permessage-deflate"]).expect("valid offer");
    let limit = usize::from(ctl) * 64;
    let mut out = Vec::new();
    match p.inflater().inflate(rest, true, &mut out, limit) {
        Ok(()) => assert!(out.len() <= limit),
        Err(InflateError::TooBig) => assert!(out.capacity() <= limit + 1),
        Err(InflateError::Corrupt) => {}
    }
    let mut z = Vec::new();
    let mut d = p.deflater();
    let mut i = p.inflater();
    for piece in [rest, &rest[..rest.len() / 2], b""] {
        z.clear();
        d.compress(piece, &mut z);
        let mut back = Vec::new();
        i.inflate(&z, true, &mut back, piece.len())
            .expect("our own output inflates");
        assert_eq!(back, piece);
    }
});
