//! Proof of possession (DPoP, RFC 9449) and private-key client assertions (RFC 7523 §2.2): the
//! signing a token request and the calls made with a sender-constrained token need. Owns the
//! per-token ES256 key (generated with the token, stored with it so that another replica or a
//! restart signs with the key the token is bound to) and the proofs signed with it; it does not
//! decide when a provider wants them (the mapping's `auth.dpop` does) nor retry on a nonce.

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use unigate_unified::Secret;
use url::Url;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The key a DPoP-bound token is bound to: a P-256 key pair (ES256, which RFC 9449 names and
/// Okta's authorization servers list among `dpop_signing_alg_values_supported`).
pub struct DpopKey {
    pair: EcdsaKeyPair,
    /// The PKCS#8 document, as stored beside the token.
    stored: Secret,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpopKey([redacted])")
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &DpopKey) -> bool {
        self.stored == other.stored
    }
}

impl Eq for DpopKey {}

impl DpopKey {
    /// A new key pair, for a new token.
    pub fn generate() -> Result<DpopKey, String> {
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "could not generate a DPoP key".to_owned())?;
        DpopKey::from_stored(&Secret::new(B64.encode(document.as_ref())))
    }

    /// The key stored beside a token (base64url PKCS#8, as [`DpopKey::stored`] writes it).
    pub fn from_stored(stored: &Secret) -> Result<DpopKey, String> {
        let document = B64
            .decode(stored.expose())
            .map_err(|_| "the stored DPoP key is not base64url".to_owned())?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &document,
            &SystemRandom::new(),
        )
        .map_err(|_| "the stored DPoP key is not a P-256 PKCS#8 key".to_owned())?;
        Ok(DpopKey {
            pair,
            stored: stored.clone(),
        })
    }

    /// The text to store beside the token.
    pub fn stored(&self) -> &Secret {
        &self.stored
    }

    /// The public key as a JWK (RFC 7518 §6.2.1): the uncompressed point is 0x04 ‖ x ‖ y.
    pub fn public_jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        })
    }

    /// A proof for one request (RFC 9449 §4.2): `htm` its method, `htu` its URL without query
    /// and fragment, a fresh `jti`, `ath` the hash of the access token it carries (none on the
    /// token request), and the server's `nonce` when it asked for one.
    pub fn proof(
        &self,
        method: &str,
        url: &Url,
        access_token: Option<&Secret>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<Secret, String> {
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let mut claims = json!({
            "jti": random_id()?,
            "htm": method,
            "htu": htu.as_str(),
            "iat": now,
        });
        if let Some(token) = access_token {
            let digest = ring::digest::digest(&ring::digest::SHA256, token.expose().as_bytes());
            claims["ath"] = json!(B64.encode(digest.as_ref()));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()});
        self.sign(&header, &claims)
    }

    /// A compact JWS, ES256: the signature is r ‖ s, as ring's fixed encoding gives it.
    fn sign(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<Secret, String> {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| "could not sign a DPoP proof".to_owned())?;
        Ok(Secret::new(format!(
            "{input}.{}",
            B64.encode(signature.as_ref())
        )))
    }
}

/// 128 random bits, base64url: a `jti` no other proof or assertion repeats.
pub(crate) fn random_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness for a JWT id".to_owned())?;
    Ok(B64.encode(bytes))
}

/// What a request made with a DPoP-bound token (or a DPoP token request) carries: the key, the
/// token whose hash goes in `ath`, and a nonce the server gave. The proof itself is signed at
/// each send, so a retried request gets a new `jti`.
#[derive(Debug, Clone)]
pub struct Proof {
    pub key: std::sync::Arc<DpopKey>,
    pub access_token: Option<Secret>,
    pub nonce: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_names_the_request_and_verifies_with_the_key_in_its_header() {
        let key = DpopKey::generate().unwrap();
        let url = Url::parse("https://acme.okta.com/api/v1/users?limit=2#x").unwrap();
        let token = Secret::new("tok");
        let proof = key
            .proof("GET", &url, Some(&token), Some("n-1"), 1_700_000_000)
            .unwrap();
        let parts: Vec<&str> = proof.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            (&header["typ"], &header["alg"], &header["jwk"]["crv"]),
            (&json!("dpop+jwt"), &json!("ES256"), &json!("P-256"))
        );
        assert!(
            header["jwk"].get("d").is_none(),
            "no private part: {header}"
        );
        let ath = B64.encode(ring::digest::digest(&ring::digest::SHA256, b"tok").as_ref());
        assert_eq!(
            (
                &claims["htm"],
                &claims["htu"],
                &claims["iat"],
                &claims["ath"],
                &claims["nonce"]
            ),
            (
                &json!("GET"),
                &json!("https://acme.okta.com/api/v1/users"),
                &json!(1_700_000_000),
                &json!(ath),
                &json!("n-1")
            )
        );
        let x = B64.decode(header["jwk"]["x"].as_str().unwrap()).unwrap();
        let y = B64.decode(header["jwk"]["y"].as_str().unwrap()).unwrap();
        let point = [&[4u8][..], &x, &y].concat();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &B64.decode(parts[2]).unwrap(),
            )
            .expect("the proof verifies with its own jwk");
        // A second proof is another jti; the stored key signs as the first did.
        let again = DpopKey::from_stored(key.stored()).unwrap();
        let second = again.proof("GET", &url, None, None, 1_700_000_000).unwrap();
        let second_claims: serde_json::Value = serde_json::from_slice(
            &B64.decode(second.expose().split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_ne!(second_claims["jti"], claims["jti"]);
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert!(second_claims.get("ath").is_none());
    }
}
