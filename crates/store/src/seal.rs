//! Sealing account contexts at rest: the key (`UNIGATE_STORE_KEY`), and ChaCha20-Poly1305 with
//! the row's id, integration and base URL as associated data, so a sealed context opens only in
//! the row it was written for. Shared by the SQLite and PostgreSQL stores; does no I/O.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde_json::Value;

use crate::StoreError;

/// The at-rest key: 32 bytes, given as 64 hex characters or base64.
pub struct StoreKey(pub(crate) Key);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey([redacted])")
    }
}

impl StoreKey {
    pub fn parse(text: &str) -> Result<StoreKey, StoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| StoreError::Key)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| StoreError::Key)?
        };
        if bytes.len() != 32 {
            return Err(StoreError::Key);
        }
        Ok(StoreKey(*Key::from_slice(&bytes)))
    }
}

impl StoreKey {
    pub(crate) fn cipher(&self) -> CipherBox {
        CipherBox(ChaCha20Poly1305::new(&self.0))
    }
}

pub(crate) struct CipherBox(pub(crate) ChaCha20Poly1305);

impl std::fmt::Debug for CipherBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

/// What a sealed context is bound to: the row's id, integration and base URL, each
/// length-prefixed so no two rows can share an encoding.
pub(crate) fn associated_data(id: &str, integration: &str, base_url: Option<&str>) -> Vec<u8> {
    let mut data = Vec::new();
    for part in [Some(id), Some(integration), base_url] {
        match part {
            Some(text) => {
                data.extend_from_slice(&(text.len() as u64).to_be_bytes());
                data.extend_from_slice(text.as_bytes());
            }
            None => data.extend_from_slice(&u64::MAX.to_be_bytes()),
        }
    }
    data
}

impl CipherBox {
    /// nonce (12 bytes) ‖ ciphertext+tag, bound to `aad`.
    pub(crate) fn seal(&self, context: &Value, aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(context).map_err(|e| StoreError::Database(e.to_string()))?;
        let sealed = self
            .0
            .encrypt(&nonce, Payload { msg: &plain, aad })
            .map_err(|_| StoreError::Crypto)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub(crate) fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Value, StoreError> {
        if blob.len() < 12 {
            return Err(StoreError::Crypto);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| StoreError::Crypto)?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Crypto)
    }
}

/// The payload sealing a row writes (since sealing 3): the context and the mapping override.
pub(crate) const SEALING_WITH_MAPPING: i64 = 3;

impl CipherBox {
    /// A row's sealed payload: `{"context", "mapping"}`.
    pub(crate) fn seal_account(
        &self,
        context: &Value,
        mapping: Option<&str>,
        aad: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.seal(
            &serde_json::json!({"context": context, "mapping": mapping}),
            aad,
        )
    }

    /// A row's context and mapping override, by the row's `sealing`: before 3 the payload was
    /// the context alone.
    pub(crate) fn open_account(
        &self,
        blob: &[u8],
        aad: &[u8],
        sealing: i64,
    ) -> Result<(Value, Option<String>), StoreError> {
        let payload = self.open(blob, aad)?;
        if sealing < SEALING_WITH_MAPPING {
            return Ok((payload, None));
        }
        let Value::Object(mut parts) = payload else {
            return Err(StoreError::Crypto);
        };
        let context = parts.remove("context").ok_or(StoreError::Crypto)?;
        let mapping = match parts.remove("mapping") {
            Some(Value::String(text)) => Some(text),
            _ => None,
        };
        Ok((context, mapping))
    }
}
