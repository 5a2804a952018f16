//! Signing keys: RSA-2048 generated at start (nothing is written to disk),
//! published as a JWKS, used to sign RS256 tokens and to check the IdP's own
//! access tokens at `/oauth2/userInfo`.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::DevIdpError;

pub(super) struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub decoding: DecodingKey,
    pub jwk: Value,
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, DevIdpError> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| DevIdpError::Key("RSA key generation failed"))?;
        let pkcs8: Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|_| DevIdpError::Key("RSA key export failed"))?;
        // jsonwebtoken's aws-lc backend loads RSA keys with
        // `RsaKeyPair::from_der`, which takes PKCS#1 `RSAPrivateKey`
        // (RFC 8017), while aws-lc-rs exports PKCS#8: unwrap it.
        let pkcs1 =
            pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or(DevIdpError::Key("unexpected PKCS#8 layout"))?;
        let public = pair.public_key();
        let n = B64.encode(public.modulus().big_endian_without_leading_zero());
        let e = B64.encode(public.exponent().big_endian_without_leading_zero());
        // RFC 7638 thumbprint: a fresh kid per start, so relying parties that
        // cached the previous run's JWKS see an unknown kid and refetch.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = B64.encode(Sha256::digest(canonical.as_bytes()));
        let decoding = DecodingKey::from_rsa_components(&n, &e)
            .map_err(|_| DevIdpError::Key("RSA public key"))?;
        let jwk = json!({ "alg": "RS256", "e": e, "kid": kid, "kty": "RSA", "n": n, "use": "sig" });
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_rsa_der(pkcs1),
            decoding,
            jwk,
        })
    }

    pub fn sign(&self, claims: &Value) -> Result<String, DevIdpError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|_| DevIdpError::Key("signing failed"))
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (RFC 5208 §5):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, … }`.
fn pkcs1_from_pkcs8(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, _, rest) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, key, _) = der_element(rest)?;
    (tag == 0x04).then_some(key)
}

/// One DER element: (tag, contents, what follows).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of the SHA-256 of
/// the access token, base64url.
pub(super) fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    B64.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Validation;

    #[test]
    fn signs_tokens_that_verify_with_the_published_key() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign(&json!({ "sub": "x", "exp": 4_000_000_000u64 }))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &v).unwrap();
        assert_eq!(data.claims["sub"], "x");
        assert!(
            !key.jwk["n"].as_str().unwrap().starts_with("AA"),
            "no leading zero"
        );
        assert_eq!(key.jwk["e"], "AQAB");
    }

    #[test]
    fn der_walker_rejects_garbage() {
        assert!(pkcs1_from_pkcs8(&[]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x10, 0x02]).is_none());
    }
}
