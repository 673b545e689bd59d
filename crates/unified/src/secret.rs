//! A string that must never be printed: provider credentials, tokens, rendered auth headers;
//! and how a JWT made with one (an account's private key) is signed.
//!
//! `Debug` and `Display` print `[redacted]`; the only way to the text is [`Secret::expose`],
//! which the HTTP client calls when it writes the request and nothing else should.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_text() {
        let secret = Secret::new("SSWS 00abc");
        assert_eq!(
            format!("{secret} {secret:?} {:?}", Some(&secret)),
            "[redacted] [redacted] Some([redacted])"
        );
        assert_eq!(secret.expose(), "SSWS 00abc");
    }
}

/// How a JWT the gateway makes with an account's PEM private key is signed: RSA for RS256
/// (PKCS#1 v1.5) and PS256 (PSS), a P-256 key for ES256. Shared by the file format, which
/// names it, and the token client, which signs with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
pub enum JwtAlgorithm {
    #[default]
    RS256,
    PS256,
    ES256,
}
