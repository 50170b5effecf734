//! Property tests of the STOMP 1.2 codec: every frame the encoder accepts decodes back to
//! itself, whole or delivered in arbitrary pieces, with heart-beats between frames; arbitrary
//! bytes never panic the decoder.
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tocsin_deliver::stomp::frame::{Frame, Incoming, Outgoing, StompCodec};
use tokio_util::codec::{Decoder, Encoder};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Header text including every character STOMP escapes, NULs excepted (the encoder refuses
/// them).
fn header_text() -> impl Strategy<Value = String> {
    "[a-z0-9:\\\\\r\n é-]{0,10}"
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        proptest::sample::select(vec![
            "SEND",
            "MESSAGE",
            "RECEIPT",
            "ERROR",
            "BEGIN",
            "COMMIT",
            "CONNECT",
            "CONNECTED",
        ]),
        proptest::collection::vec((header_text(), header_text()), 0..5),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(command, headers, body)| Frame {
            command: command.to_string(),
            headers: headers
                .into_iter()
                .filter(|(k, _)| k != "content-length")
                .collect(),
            body: Bytes::from(body),
        })
}

fn decode_all(bytes: &[u8], piece: usize) -> Result<Vec<Incoming>, String> {
    let mut codec = StompCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec.decode(&mut buf).map_err(|e| e.to_string())? {
            out.push(item);
        }
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes left over", buf.len()));
    }
    Ok(out)
}

fn strip_length(i: Incoming) -> Incoming {
    match i {
        Incoming::Frame(mut f) => {
            f.headers.retain(|(k, _)| k != "content-length");
            Incoming::Frame(f)
        }
        other => other,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_frames_decode_to_themselves(
        items in proptest::collection::vec(prop_oneof![
            4 => frame().prop_map(Outgoing::Frame),
            1 => Just(Outgoing::Heartbeat),
        ], 1..5),
        piece in 1usize..40,
    ) {
        let mut codec = StompCodec::new();
        let mut wire = BytesMut::new();
        let mut sent = Vec::new();
        for item in items {
            let mut one = BytesMut::new();
            // CONNECT-style frames cannot carry line breaks or ':' in names: refused, skipped.
            if codec.encode(item.clone(), &mut one).is_ok() {
                wire.extend_from_slice(&one);
                sent.push(match item {
                    Outgoing::Frame(f) => Incoming::Frame(f),
                    Outgoing::Heartbeat => Incoming::Heartbeat,
                });
            }
        }
        let whole = decode_all(&wire, wire.len()).map_err(TestCaseError::fail)?;
        let pieces = decode_all(&wire, piece).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&whole, &pieces);
        let whole: Vec<Incoming> = whole.into_iter().map(strip_length).collect();
        prop_assert_eq!(whole, sent);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), piece in 1usize..20) {
        let whole = decode_all(&bytes, bytes.len().max(1));
        let pieces = decode_all(&bytes, piece);
        prop_assert_eq!(whole.is_ok(), pieces.is_ok());
    }
}
