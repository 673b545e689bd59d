//! The cursor codec. The first input byte picks a mode:
//! 0. decode the rest as a cursor: never panics, never accepted (it was not signed by us);
//! 1. sign the rest as a payload, as the codec would, and decode it: the JSON payload parser
//!    never panics, and a payload it accepts re-encodes to the same state;
//! 2. build a state from the rest, encode, decode (must round-trip), then change one byte of the
//!    cursor (must be refused).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use unigate_pagination::{CursorCodec, CursorState, Position};

const SECRET: &[u8] = b"fuzz-secret";

fn forge(body: &[u8]) -> String {
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(signed.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{tag}")
}

fn number(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let codec = CursorCodec::new(SECRET);
    match mode % 3 {
        0 => {
            if let Ok(cursor) = std::str::from_utf8(rest) {
                assert!(codec.decode(cursor, "acc", "q").is_err());
            }
        }
        1 => {
            let cursor = forge(rest);
            if let Ok(state) = codec.decode(&cursor, "acc", "q") {
                let again = codec.encode("acc", "q", &state);
                assert_eq!(codec.decode(&again, "acc", "q"), Ok(state));
            }
        }
        _ => {
            let Some((&variant, rest)) = rest.split_first() else {
                return;
            };
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.split('\u{1}');
            let account = parts.next().unwrap_or_default();
            let fingerprint = parts.next().unwrap_or_default();
            let token = parts.next().unwrap_or_default().to_owned();
            let digest = parts.next().map(str::to_owned);
            let n = number(rest);
            let position = match variant % 6 {
                0 => Position::First,
                1 => Position::Token(token),
                2 => Position::Url(token),
                3 => Position::Offset(n),
                4 => Position::Page(n),
                _ => Position::StartIndex(n),
            };
            let state = CursorState {
                position,
                last_digest: digest,
                pages: n as u32,
            };
            let cursor = codec.encode(account, fingerprint, &state);
            assert_eq!(codec.decode(&cursor, account, fingerprint), Ok(state));
            let mut bytes = cursor.into_bytes();
            let at = (n as usize) % bytes.len();
            let replacement = variant & 0x7f;
            if bytes[at] != replacement {
                bytes[at] = replacement;
                let edited = String::from_utf8(bytes).expect("ASCII stays UTF-8");
                assert!(codec.decode(&edited, account, fingerprint).is_err());
            }
        }
    }
});
