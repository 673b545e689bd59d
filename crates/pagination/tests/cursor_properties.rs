//! Property tests for the signed cursor: what is encoded decodes back, any one-byte edit is
//! refused, garbage never panics, and a cursor only works for its own account and query.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::Sha256;
use unigate_pagination::cursor::MAX_CURSOR_LEN;
use unigate_pagination::{CatalogAt, CursorCodec, CursorError, CursorState, Position};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._~:/?#=&-]{0,40}",
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}é漢😀.]{0,12}",
    ]
}

fn position() -> impl Strategy<Value = Position> {
    prop_oneof![
        Just(Position::First),
        text().prop_map(Position::Token),
        text().prop_map(Position::Url),
        any::<u64>().prop_map(Position::Offset),
        any::<u64>().prop_map(Position::Page),
        any::<u64>().prop_map(Position::StartIndex),
    ]
}

fn state() -> impl Strategy<Value = CursorState> {
    (
        position(),
        prop::option::of(prop_oneof!["[0-9a-f]{64}", text()]),
        any::<u32>(),
        prop_oneof![Just(0u32), any::<u32>()],
        prop::option::of((any::<u32>(), text())),
    )
        .prop_map(|(position, last_digest, pages, pass, item)| CursorState {
            position,
            last_digest,
            pages,
            pass,
            item: item.map(|(index, id)| CatalogAt { index, id }),
        })
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..80)
}

/// One single-byte edit of a cursor.
#[derive(Debug, Clone)]
enum Mutation {
    Change(Index, u8),
    Delete(Index),
    Insert(Index, u8),
    /// Replace one byte with a (possibly multi-byte) character.
    ChangeToChar(Index, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // A cursor is ASCII; a lone byte >= 0x80 would not be a `&str`.
    let byte = 0u8..0x80;
    prop_oneof![
        3 => (any::<Index>(), byte.clone()).prop_map(|(at, b)| Mutation::Change(at, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        2 => (any::<Index>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<Index>(), any::<char>()).prop_map(|(at, c)| Mutation::ChangeToChar(at, c)),
    ]
}

/// Applies the edit; `None` when it would leave the cursor unchanged.
fn apply(cursor: &str, mutation: &Mutation) -> Option<String> {
    let mut bytes = cursor.as_bytes().to_vec();
    match mutation {
        Mutation::Change(at, byte) => {
            let at = at.index(bytes.len());
            if bytes[at] == *byte {
                return None;
            }
            bytes[at] = *byte;
        }
        Mutation::Delete(at) => {
            bytes.remove(at.index(bytes.len()));
        }
        Mutation::Insert(at, byte) => {
            bytes.insert(at.index(bytes.len() + 1), *byte);
        }
        Mutation::ChangeToChar(at, c) => {
            let at = at.index(bytes.len());
            let mut buffer = [0u8; 4];
            let encoded = c.encode_utf8(&mut buffer).as_bytes();
            if encoded == [bytes[at]] {
                return None;
            }
            bytes.splice(at..=at, encoded.iter().copied());
        }
    }
    Some(String::from_utf8(bytes).expect("the cursor is ASCII, the edit keeps it UTF-8"))
}

/// Signs an arbitrary body as the codec would, to reach the payload parser.
fn forge(secret: &[u8], body: &[u8]) -> String {
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signed.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{tag}")
}

fn cursor_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "v[0-9]?\\.[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,60}",
        "[v1.A-Za-z0-9_=+/-]{0,100}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_round_trips(
        secret in secret(),
        account in text(),
        fingerprint in text(),
        state in state(),
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = codec.encode(&account, &fingerprint, &state);
        prop_assert!(cursor.starts_with("v1."));
        prop_assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        prop_assert_eq!(codec.decode(&cursor, &account, &fingerprint), Ok(state));
    }

    #[test]
    fn any_single_byte_edit_is_refused(
        secret in secret(),
        account in text(),
        fingerprint in text(),
        state in state(),
        mutation in mutation(),
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = codec.encode(&account, &fingerprint, &state);
        let Some(edited) = apply(&cursor, &mutation) else {
            return Ok(());
        };
        let decoded = codec.decode(&edited, &account, &fingerprint);
        prop_assert!(
            decoded.is_err(),
            "accepted edited cursor {:?} (from {:?} by {:?}): {:?}",
            edited,
            cursor,
            mutation,
            decoded
        );
    }

    #[test]
    fn decoding_garbage_never_panics(
        secret in secret(),
        cursor in cursor_like(),
        account in text(),
        fingerprint in text(),
    ) {
        let codec = CursorCodec::new(&secret);
        // Anything not issued by this codec is refused.
        prop_assert!(codec.decode(&cursor, &account, &fingerprint).is_err());
    }

    #[test]
    fn decoding_signed_garbage_never_panics(
        secret in secret(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            r#"\{"a":"[a-z]{0,3}","q":"[a-z]{0,3}","s":\{"p":\{"k":"[a-z_]{0,12}"(,"v":(-?[0-9]{1,22}|"[a-z]{0,3}"|null|\[\]))?\},"n":-?[0-9]{1,12}\}\}"#
                .prop_map(String::into_bytes),
        ],
        account in "[a-z]{0,3}",
        fingerprint in "[a-z]{0,3}",
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = forge(&secret, &body);
        match codec.decode(&cursor, &account, &fingerprint) {
            // A well-formed payload may decode; then it must re-encode to the same state.
            Ok(state) => {
                let again = codec.encode(&account, &fingerprint, &state);
                prop_assert_eq!(codec.decode(&again, &account, &fingerprint), Ok(state));
            }
            Err(error) => prop_assert!(matches!(
                error,
                CursorError::Malformed | CursorError::OtherAccount | CursorError::OtherQuery
            ), "{:?}", error),
        }
    }

    #[test]
    fn another_account_or_query_is_refused(
        secret in secret(),
        account in text(),
        other_account in text(),
        fingerprint in text(),
        other_fingerprint in text(),
        state in state(),
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = codec.encode(&account, &fingerprint, &state);
        if other_account != account {
            prop_assert_eq!(
                codec.decode(&cursor, &other_account, &fingerprint),
                Err(CursorError::OtherAccount)
            );
            prop_assert!(codec.decode(&cursor, &other_account, &other_fingerprint).is_err());
        }
        if other_fingerprint != fingerprint {
            prop_assert_eq!(
                codec.decode(&cursor, &account, &other_fingerprint),
                Err(CursorError::OtherQuery)
            );
        }
    }

    #[test]
    fn another_secret_is_refused(
        secret in secret(),
        other_secret in secret(),
        account in text(),
        fingerprint in text(),
        state in state(),
    ) {
        // HMAC pads short keys with zeros, so `k` and `k\0` are the same key; compare padded.
        let padded = |key: &[u8]| {
            let mut key = key.to_vec();
            while key.last() == Some(&0) {
                key.pop();
            }
            key
        };
        prop_assume!(secret != other_secret);
        if secret.len() <= 64 && other_secret.len() <= 64 {
            prop_assume!(padded(&secret) != padded(&other_secret));
        }
        let cursor = CursorCodec::new(&secret).encode(&account, &fingerprint, &state);
        prop_assert_eq!(
            CursorCodec::new(&other_secret).decode(&cursor, &account, &fingerprint),
            Err(CursorError::Signature)
        );
    }

    #[test]
    fn overlong_cursors_are_refused(extra in 1..4096usize, byte in "[A-Za-z0-9._-]") {
        let codec = CursorCodec::new(b"secret");
        let cursor = byte.repeat(MAX_CURSOR_LEN + extra);
        prop_assert_eq!(codec.decode(&cursor, "a", "q"), Err(CursorError::Malformed));
    }
}

proptest! {
    // Each case tries every edit of one cursor: a few cases are plenty.
    #![proptest_config(ProptestConfig::with_cases(2))]

    #[test]
    fn every_single_byte_edit_of_one_cursor_is_refused(
        secret in secret(),
        account in text(),
        fingerprint in text(),
        state in state(),
    ) {
        let codec = CursorCodec::new(&secret);
        let cursor = codec.encode(&account, &fingerprint, &state);
        let len = cursor.len();
        let mut edits = Vec::new();
        for at in 0..=len {
            for byte in 0u8..0x80 {
                edits.push(insert_at(&cursor, at, byte));
                if at < len {
                    edits.push(change_at(&cursor, at, byte));
                }
            }
            if at < len {
                let mut bytes = cursor.clone().into_bytes();
                bytes.remove(at);
                edits.push(Some(String::from_utf8(bytes).unwrap()));
            }
        }
        for edited in edits.into_iter().flatten() {
            prop_assert!(
                codec.decode(&edited, &account, &fingerprint).is_err(),
                "accepted edited cursor {:?} (from {:?})",
                edited,
                cursor
            );
        }
    }
}

fn insert_at(cursor: &str, at: usize, byte: u8) -> Option<String> {
    let mut bytes = cursor.as_bytes().to_vec();
    bytes.insert(at, byte);
    String::from_utf8(bytes).ok()
}

fn change_at(cursor: &str, at: usize, byte: u8) -> Option<String> {
    let mut bytes = cursor.as_bytes().to_vec();
    if bytes[at] == byte {
        return None;
    }
    bytes[at] = byte;
    String::from_utf8(bytes).ok()
}
