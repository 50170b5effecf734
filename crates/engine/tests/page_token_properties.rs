//! Property tests of Clair v2/v3 page tokens (`legacy::PageTokens`): every token round-trips,
//! is bound to its notification, kind and key, has exactly one spelling, and any altered
//! character makes it invalid. Arbitrary text never panics the decoder.
use proptest::prelude::*;
use tocsin_engine::legacy::{Cursor, PageTokens, TokenKind};
use uuid::Uuid;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn cursor() -> impl Strategy<Value = Cursor> {
    prop_oneof![
        4 => any::<u32>().prop_map(Cursor::From),
        1 => Just(Cursor::Done),
    ]
}

fn kind() -> impl Strategy<Value = (TokenKind, usize)> {
    proptest::sample::select(vec![
        (TokenKind::V2, 2),
        (TokenKind::V3Old, 1),
        (TokenKind::V3New, 1),
    ])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tokens_round_trip_and_are_bound(
        key in proptest::collection::vec(any::<u8>(), 1..48),
        other_key in proptest::collection::vec(any::<u8>(), 1..48),
        name in any::<u128>(),
        other_name in any::<u128>(),
        (kind, n) in kind(),
        cursors in proptest::collection::vec(cursor(), 2),
    ) {
        let tokens = PageTokens::new(key.clone());
        let name = Uuid::from_u128(name);
        let cursors = &cursors[..n];
        let token = tokens.encode(kind, name, cursors);
        prop_assert_eq!(tokens.decode(kind, name, n, &token), Ok(cursors.to_vec()));
        if other_name != name.as_u128() {
            prop_assert!(tokens.decode(kind, Uuid::from_u128(other_name), n, &token).is_err());
        }
        if other_key != key {
            prop_assert!(PageTokens::new(other_key).decode(kind, name, n, &token).is_err());
        }
        for (k, m) in [(TokenKind::V2, 2), (TokenKind::V3Old, 1), (TokenKind::V3New, 1)] {
            if k != kind {
                prop_assert!(tokens.decode(k, name, m, &token).is_err());
            }
        }
    }

    #[test]
    fn altered_tokens_are_refused(
        name in any::<u128>(),
        (kind, n) in kind(),
        cursors in proptest::collection::vec(cursor(), 2),
        at in any::<usize>(),
        with in proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()),
    ) {
        let tokens = PageTokens::new(b"key".to_vec());
        let name = Uuid::from_u128(name);
        let token = tokens.encode(kind, name, &cursors[..n]);
        let mut bytes = token.clone().into_bytes();
        let i = at % bytes.len();
        prop_assume!(bytes[i] != with);
        bytes[i] = with;
        let altered = String::from_utf8(bytes).unwrap();
        prop_assert!(tokens.decode(kind, name, n, &altered).is_err(), "{} accepted", altered);
    }

    #[test]
    fn arbitrary_text_never_panics_and_has_one_spelling(text in "\\PC{0,80}|[A-Za-z0-9_-]{50,100}") {
        let tokens = PageTokens::new(b"key".to_vec());
        for (kind, n) in [(TokenKind::V2, 2), (TokenKind::V3Old, 1), (TokenKind::V3New, 1)] {
            if let Ok(c) = tokens.decode(kind, Uuid::nil(), n, &text) {
                prop_assert_eq!(tokens.encode(kind, Uuid::nil(), &c), text.clone());
            }
        }
    }
}
