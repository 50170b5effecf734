//! STOMP 1.2 frames from a broker, through the client's codec.
//! Laws: decoding the input whole and decoding it in chunks (as a socket delivers it) yield the
//! same frames and the same error; a decoded frame that can be encoded decodes back to itself
//! (headers other than `content-length`, which the encoder writes from the body).
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tocsin_deliver::stomp::frame::{Incoming, Outgoing, StompCodec};
use tokio_util::codec::{Decoder, Encoder};

/// Decodes `chunks` fed one after another; returns the items and whether decoding failed.
fn decode_chunks<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Incoming>, bool) {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_string();
                    return (out, true);
                }
            }
        }
    }
    (out, false)
}

fn without_length(mut i: Incoming) -> Incoming {
    if let Incoming::Frame(f) = &mut i {
        f.headers.retain(|(k, _)| k != "content-length");
    }
    i
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = decode_chunks(std::iter::once(data));
    let step = usize::from(split % 16) + 1;
    let chunked = decode_chunks(data.chunks(step));
    assert_eq!(whole, chunked, "chunked decoding (by {step}) agrees");

    for item in whole.0 {
        let Incoming::Frame(frame) = item else {
            continue;
        };
        let mut codec = StompCodec::new();
        let mut buf = BytesMut::new();
        if codec
            .encode(Outgoing::Frame(frame.clone()), &mut buf)
            .is_err()
        {
            continue;
        }
        let back = codec
            .decode(&mut buf)
            .expect("an encoded frame decodes")
            .expect("an encoded frame is complete");
        assert!(buf.is_empty(), "one frame, no trailing bytes");
        assert_eq!(
            without_length(back),
            without_length(Incoming::Frame(frame)),
            "decode(encode(frame)) == frame"
        );
    }
});
