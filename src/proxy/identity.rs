//! Identity for upstreams that do not verify IdP tokens themselves: plain
//! headers from the caller's claims, and a signed identity assertion (a
//! short-lived ES256 JWT) whose public key the gateway publishes at
//! `<auth_prefix>/jwks.json`. Groups are read by the one rule of
//! [`crate::claims`]: the assertion carries the names authorization judged;
//! the comma-joined header leaves out a name it cannot carry faithfully.

use crate::claims::{groups, header_groups};
use crate::oidc::jwt::Claims;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// How long an assertion is valid: long enough for one upstream call.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the assertion key {0} is not a PKCS#8 PEM P-256 private key")]
    Key(String),
}

/// Signs identity assertions with the gateway's P-256 key.
pub struct AssertionSigner {
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
    issuer: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AssertionSigner({})", self.kid)
    }
}

impl AssertionSigner {
    /// From a PKCS#8 PEM file, or a fresh key when `path` is `None`.
    /// `key` is the configured key as (file name, PEM text), read by loading
    /// the config; without one a key is generated.
    pub fn new(key: Option<(String, &str)>, issuer: String) -> Result<Self, IdentityError> {
        let pkcs8 = match &key {
            Some((name, pem)) => {
                let body: String = pem
                    .lines()
                    .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
                    .skip(1)
                    .take_while(|l| !l.starts_with("-----END"))
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .map_err(|_| IdentityError::Key(name.clone()))?
            }
            None => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                    .map_err(|_| IdentityError::Key("(generated)".into()))?
                    .as_ref()
                    .to_vec()
            }
        };
        let name = key.map_or_else(|| "(generated)".into(), |(name, _)| name);
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| IdentityError::Key(name))?;
        // Uncompressed point: 0x04 || X || Y.
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        let kid = B64.encode(&Sha256::digest(point)[..12]);
        let jwk = json!({ "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": B64.encode(x), "y": B64.encode(y) });
        Ok(AssertionSigner {
            kid,
            key: jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
            jwk,
            issuer,
        })
    }

    /// The public key set for `<auth_prefix>/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// An assertion about `claims` for `audience`, valid for a minute.
    pub fn sign(
        &self,
        claims: &Claims,
        groups_claim: &str,
        audience: &str,
        now: i64,
    ) -> Option<String> {
        let mut out = Map::new();
        out.insert("iss".into(), self.issuer.clone().into());
        out.insert("aud".into(), audience.into());
        out.insert("iat".into(), now.into());
        out.insert("exp".into(), (now + ASSERTION_LIFETIME_SECS).into());
        out.insert("sub".into(), claims.get("sub")?.clone());
        for k in [
            "email",
            "name",
            "preferred_username",
            "cognito:username",
            "username",
        ] {
            if let Some(v) = claims.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
        out.insert(
            "groups".into(),
            Value::Array(
                groups(claims, groups_claim)
                    .into_iter()
                    .map(Value::from)
                    .collect(),
            ),
        );
        // Cognito custom attributes are the pool's own identity data.
        for (k, v) in claims.iter().filter(|(k, _)| k.starts_with("custom:")) {
            out.insert(k.clone(), v.clone());
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &Value::Object(out), &self.key).ok()
    }
}

/// The configured identity headers and their values for this caller.
/// Values that cannot be header text (control characters) are left out.
pub fn identity_headers(
    spec: &crate::config::IdentityHeaders,
    claims: &Claims,
    groups_claim: &str,
) -> Vec<(HeaderName, HeaderValue)> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let pairs = [
        (&spec.user, text("sub")),
        (&spec.email, text("email")),
        (&spec.groups, header_groups(claims, groups_claim)),
    ];
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            let value = HeaderValue::from_str(&value?).ok()?;
            Some((name.as_ref()?.0.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Header, IdentityHeaders};

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn identity_header_values() {
        let spec = IdentityHeaders {
            user: Some(Header::from_static("x-forwarded-user")),
            email: Some(Header::from_static("x-forwarded-email")),
            groups: Some(Header::from_static("x-forwarded-groups")),
        };
        let cases = [
            (
                json!({"sub": "u1", "email": "a@b.c", "groups": ["x", "y"]}),
                vec![
                    ("x-forwarded-user", "u1"),
                    ("x-forwarded-email", "a@b.c"),
                    ("x-forwarded-groups", "x,y"),
                ],
            ),
            (json!({"sub": "u1"}), vec![("x-forwarded-user", "u1")]),
            (
                json!({"sub": "u1", "groups": "a b"}),
                vec![("x-forwarded-user", "u1"), ("x-forwarded-groups", "a b")],
            ),
            (json!({"sub": "bad\nvalue", "email": 5}), vec![]),
        ];
        for (c, want) in cases {
            let got: Vec<(String, String)> = identity_headers(&spec, &claims(c.clone()), "groups")
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{c}");
        }
    }

    #[test]
    fn assertions_verify_with_the_published_key() {
        let s = AssertionSigner::new(None, "https://app.example.com".into()).unwrap();
        let c = claims(
            json!({"sub": "u1", "cognito:groups": ["admins"], "custom:tenant": "acme", "access_token": "never"}),
        );
        let jwt = s
            .sign(&c, "cognito:groups", "https://orders.internal", 1_000)
            .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(s.jwks()["keys"][0].clone()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["https://orders.internal"]);
        v.validate_exp = false;
        let got = jsonwebtoken::decode::<Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .unwrap()
        .claims;
        assert_eq!(got["sub"], "u1");
        assert_eq!(got["groups"], json!(["admins"]));
        assert_eq!(got["custom:tenant"], "acme");
        assert_eq!(
            got["exp"].as_i64().unwrap() - got["iat"].as_i64().unwrap(),
            60
        );
        assert!(got.get("access_token").is_none());
    }

    /// The shared groups table, through the identity header and the assertion.
    #[test]
    fn identity_headers_and_assertion_follow_the_shared_groups_table() {
        let spec = IdentityHeaders {
            user: None,
            email: None,
            groups: Some(Header::from_static("x-forwarded-groups")),
        };
        let s = AssertionSigner::new(None, "https://app.example.com".into()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(s.jwks()["keys"][0].clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["up"]);
        v.validate_exp = false;
        for case in crate::claims::GROUP_CASES {
            let c = claims(json!({"sub": "u1", "g": (case.claim)()}));
            let got: Vec<String> = identity_headers(&spec, &c, "g")
                .into_iter()
                .map(|(_, v)| String::from_utf8(v.as_bytes().to_vec()).unwrap())
                .collect();
            let want: Vec<String> = case.header.map(str::to_string).into_iter().collect();
            assert_eq!(got, want, "{}", case.name);
            let jwt = s.sign(&c, "g", "up", 1_000).unwrap();
            let got = jsonwebtoken::decode::<Value>(&jwt, &key, &v)
                .unwrap()
                .claims;
            assert_eq!(got["groups"], json!(case.judged), "{}", case.name);
        }
    }
}
