//! The opaque `next_cursor`: versioned, base64url, HMAC-SHA256-signed, bound to the integrated
//! account and to a fingerprint of the query's filters.
//!
//! Layout: `v1.<base64url(JSON payload)>.<base64url(HMAC(secret, "v1." + payload))>`. The payload
//! names the account and the query fingerprint so that a cursor replayed elsewhere is refused
//! with a message that says why, after its signature has been checked.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::strategy::Position;

const VERSION: &str = "v1";
/// Cursors longer than this are refused before any decoding work.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;

/// What a cursor carries between two calls of one walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    #[serde(rename = "p")]
    pub position: Position,
    /// Digest of the page that produced this cursor (identical-page guard).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub last_digest: Option<String>,
    /// Pages walked so far (endless-walk guard), over every pass.
    #[serde(rename = "n")]
    pub pages: u32,
    /// Which pass of a list served in parts the position is in (0 for a list walked once;
    /// absent from cursors issued before passes existed, and then 0).
    #[serde(rename = "s", default, skip_serializing_if = "is_zero")]
    pub pass: u32,
    /// In a pass walked over a catalog (`over`), which catalog record's list the position is
    /// in; `None` in every other pass.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub item: Option<CatalogAt>,
}

/// A catalog record a pass is walked over: its place in the catalog and its id, which finds it
/// again in a catalog read anew (a record added or removed before it moves it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogAt {
    #[serde(rename = "i")]
    pub index: u32,
    #[serde(rename = "k")]
    pub id: String,
}

fn is_zero(pass: &u32) -> bool {
    *pass == 0
}

impl CursorState {
    /// Where every walk starts: the first page of its first pass.
    pub fn start() -> Self {
        CursorState {
            position: Position::First,
            last_digest: None,
            pages: 0,
            pass: 0,
            item: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "a")]
    account: String,
    #[serde(rename = "q")]
    query: String,
    #[serde(rename = "s")]
    state: CursorState,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("`next_cursor` is not a cursor this gateway issued")]
    Malformed,
    #[error("`next_cursor` has an unsupported version; start again without a cursor")]
    Version,
    #[error("`next_cursor` failed its integrity check (was it edited?)")]
    Signature,
    #[error("`next_cursor` belongs to another integrated account")]
    OtherAccount,
    #[error(
        "`next_cursor` was issued for different filters; send the same query with it, or start again without a cursor"
    )]
    OtherQuery,
}

/// Encodes and checks cursors with one server secret.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec { key: [redacted] }")
    }
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> Self {
        CursorCodec {
            key: secret.to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    pub fn encode(&self, account: &str, query_fingerprint: &str, state: &CursorState) -> String {
        let payload = Payload {
            account: account.to_owned(),
            query: query_fingerprint.to_owned(),
            state: state.clone(),
        };
        let json = serde_json::to_vec(&payload).expect("a cursor payload always serialises");
        let signed = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(json));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    pub fn decode(
        &self,
        cursor: &str,
        account: &str,
        query_fingerprint: &str,
    ) -> Result<CursorState, CursorError> {
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(CursorError::Malformed);
        }
        let (signed, tag) = cursor.rsplit_once('.').ok_or(CursorError::Malformed)?;
        let (version, body) = signed.split_once('.').ok_or(CursorError::Malformed)?;
        if version != VERSION {
            return Err(if version.starts_with('v') {
                CursorError::Version
            } else {
                CursorError::Malformed
            });
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&tag).map_err(|_| CursorError::Signature)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CursorError::Malformed)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| CursorError::Malformed)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            payload.account.as_bytes(),
            account.as_bytes(),
        )) {
            return Err(CursorError::OtherAccount);
        }
        if payload.query != query_fingerprint {
            return Err(CursorError::OtherQuery);
        }
        Ok(payload.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CursorState {
        CursorState {
            position: Position::Url("https://acme.okta.com/api/v1/users?after=00u2".into()),
            last_digest: Some("abc".into()),
            pages: 3,
            pass: 1,
            item: Some(CatalogAt {
                index: 2,
                id: "N_24".into(),
            }),
        }
    }

    #[test]
    fn round_trips() {
        let codec = CursorCodec::new(b"secret");
        let cursor = codec.encode("acc-1", "q1", &state());
        assert!(cursor.starts_with("v1."));
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_eq!(codec.decode(&cursor, "acc-1", "q1"), Ok(state()));
    }

    #[test]
    fn refuses_tampering_replay_and_garbage() {
        let codec = CursorCodec::new(b"secret");
        let cursor = codec.encode("acc-1", "q1", &state());
        assert_eq!(
            codec.decode(&cursor, "acc-2", "q1"),
            Err(CursorError::OtherAccount)
        );
        assert_eq!(
            codec.decode(&cursor, "acc-1", "q2"),
            Err(CursorError::OtherQuery)
        );
        assert_eq!(
            CursorCodec::new(b"other").decode(&cursor, "acc-1", "q1"),
            Err(CursorError::Signature)
        );
        // Flip one character of the payload: the signature no longer matches.
        let mut bytes = cursor.clone().into_bytes();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(bytes).unwrap();
        assert_eq!(
            codec.decode(&edited, "acc-1", "q1"),
            Err(CursorError::Signature)
        );
        assert_eq!(
            codec.decode("hello", "acc-1", "q1"),
            Err(CursorError::Malformed)
        );
        assert_eq!(
            codec.decode(&cursor.replacen("v1", "v9", 1), "acc-1", "q1"),
            Err(CursorError::Version)
        );
        assert_eq!(
            codec.decode(&"x".repeat(MAX_CURSOR_LEN + 1), "a", "q"),
            Err(CursorError::Malformed)
        );
    }
}
