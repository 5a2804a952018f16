//! JWT verification on jsonwebtoken for what `openidconnect` does not cover:
//! bearer access tokens and back-channel logout tokens. The header first (no
//! `crit` extension we do not understand, RFC 7515 §4.1.11), the signature
//! with a key from the JWKS cache and an algorithm that key allows (never
//! `none`, never HMAC), then the claims: `iss`, `exp`/`nbf` with leeway and
//! `iat` no further ahead than the leeway (all three at the caller's `now`, the
//! gateway's clock), audience (`aud`, or for Cognito access tokens, which
//! carry no `aud`, `client_id`) and `token_use`. The header, time and
//! `sub`/`azp` rules here also run after the crate's ID-token verifier
//! (`id_token`), where they are stricter than it.

use super::jwks::JwksCache;
use super::OidcError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, Validation};
use serde_json::{Map, Value};
use std::time::Duration;

pub type Claims = Map<String, Value>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is malformed")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key in the provider's JWKS matches the token")]
    UnknownKey,
    #[error("signature does not verify")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token header marks an extension critical that is not understood")]
    Critical,
    #[error("token type (typ) is not one this token may have")]
    Type,
    #[error("token was issued by another issuer")]
    Issuer,
    #[error("token is meant for another audience")]
    Audience,
    #[error("token_use is not {0:?}")]
    TokenUse(&'static str),
    #[error("claim {0} is missing or malformed")]
    Claim(&'static str),
    #[error("nonce does not match the login")]
    Nonce,
    #[error("at_hash does not match the access token")]
    AccessTokenHash,
    #[error("keys unavailable: {0}")]
    Keys(String),
}

/// Which audience check applies.
#[derive(Debug, Clone)]
pub enum Audience<'a> {
    /// `aud` must contain one of these.
    Any(&'a [String]),
    /// `aud` must contain one of these, or, for a token without `aud`,
    /// `client_id` must be one of them (generic providers' access tokens).
    AnyOrClientId(&'a [String]),
    /// Cognito access tokens: `client_id` must be one of these. Cognito never
    /// puts `aud` in an access token, so an `aud` cannot stand in for
    /// `client_id`; if one is there all the same, it must name one of these too.
    ClientId(&'a [String]),
}

#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: Audience<'a>,
    /// Cognito's `token_use` claim, checked when `Some`.
    pub token_use: Option<&'static str>,
    pub leeway: Duration,
    /// Unix seconds that `exp`, `nbf` and `iat` are judged at: the
    /// gateway's clock, not jsonwebtoken's reading of the system time.
    pub now: i64,
}

/// Verifies signature and standard claims; returns the claims.
pub async fn verify(
    jwks: &JwksCache,
    token: &str,
    expect: &Expect<'_>,
) -> Result<Claims, JwtError> {
    let header = checked_header(token)?;
    let keys = jwks
        .keys_for(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| JwtError::Keys(e.to_string()))?;
    if keys.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let mut v = Validation::new(header.alg);
    // jsonwebtoken reads the system time; `exp` and `nbf` are checked below
    // at `expect.now`. It still insists that `exp` is there and numeric.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false; // checked below: Cognito access tokens have none
    v.set_issuer(&[expect.issuer]);
    v.set_required_spec_claims(&["exp", "iss"]);
    for key in keys {
        match decode::<Claims>(token, &key.key, &v) {
            Ok(data) => {
                check_time(&data.claims, expect.now, expect.leeway)?;
                return check_claims(data.claims, expect, expect.now);
            }
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::InvalidIssuer => JwtError::Issuer,
                    ErrorKind::MissingRequiredClaim(c) if c == "iss" => JwtError::Issuer,
                    ErrorKind::MissingRequiredClaim(_) => JwtError::Claim("exp"),
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        JwtError::Algorithm(format!("{:?}", header.alg))
                    }
                    _ => JwtError::Malformed,
                });
            }
        }
    }
    Err(JwtError::Signature)
}

/// Only asymmetric signatures: an HMAC "signed" with the public key is forgeable.
fn is_asymmetric(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

/// The header rules every JWT meets before anything else, ID tokens on the
/// crate's verifier included: a JSON header with no `crit` (see
/// [`check_critical`]) and an asymmetric algorithm. Returns the header.
pub fn checked_header(token: &str) -> Result<jsonwebtoken::Header, JwtError> {
    check_critical(&header_json(token)?)?;
    let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
    if !is_asymmetric(header.alg) {
        return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
    }
    Ok(header)
}

/// The JOSE header as JSON, read here rather than from jsonwebtoken's
/// `Header`, which takes `"crit": null` for no `crit` at all and drops any
/// parameter it does not know into a catch-all.
fn header_json(token: &str) -> Result<Map<String, Value>, JwtError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The JOSE `typ` values a logout token may carry (OIDC Back-Channel Logout
/// 1.0 §2.4: `logout+jwt` is recommended; plain `JWT` and no `typ` remain
/// valid). Anything else (`at+jwt`, an access token of RFC 9068) is another
/// kind of token passed off as this one.
pub const LOGOUT_TOKEN_TYPES: &[&str] = &["logout+jwt", "jwt"];

/// RFC 7515 §4.1.9: `typ`, when present, must be one of `accepted`
/// (lowercase, without `application/`). Media types compare
/// case-insensitively, and the `application/` prefix may be left out
/// (§4.1.9), so `JWT`, `jwt` and `application/jwt` are one type. A `typ`
/// that is not a string is refused.
pub fn check_type(token: &str, accepted: &[&str]) -> Result<(), JwtError> {
    match header_json(token)?.get("typ") {
        None => Ok(()),
        Some(Value::String(t)) => {
            let t = t.to_ascii_lowercase();
            let t = t.strip_prefix("application/").unwrap_or(&t);
            if accepted.contains(&t) {
                Ok(())
            } else {
                Err(JwtError::Type)
            }
        }
        Some(_) => Err(JwtError::Type),
    }
}

/// Header parameters this verifier understands when a token lists them in
/// `crit`: none (`b64` of RFC 7797, say, would change what is signed).
const UNDERSTOOD_CRITICAL: &[&str] = &[];

/// RFC 7515 §4.1.11: when `crit` lists an extension the recipient does not
/// understand, the JWS is invalid. `crit` must be a non-empty array of names,
/// each present in the header; anything else there (`[]`, `null`, a string) is
/// invalid too. As no extension is understood, any `crit` is refused.
pub fn check_critical(header: &Map<String, Value>) -> Result<(), JwtError> {
    let Some(crit) = header.get("crit") else {
        return Ok(());
    };
    let understood = crit
        .as_array()
        .filter(|names| !names.is_empty())
        .is_some_and(|names| {
            names.iter().all(|n| {
                n.as_str()
                    .is_some_and(|n| UNDERSTOOD_CRITICAL.contains(&n) && header.contains_key(n))
            })
        });
    if understood {
        Ok(())
    } else {
        Err(JwtError::Critical)
    }
}

/// A NumericDate as jsonwebtoken reads one: a non-negative, finite number,
/// rounded to whole seconds. `None` for anything else (a string, `null`, a
/// negative number).
fn numeric_date(v: &Value) -> Option<f64> {
    v.as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n < u64::MAX as f64)
        .map(f64::round)
}

/// RFC 7519 §4.1.4 and §4.1.5 at `now` (Unix seconds), with `leeway` either
/// way: a token is expired once `exp + leeway < now` (so it is still good in
/// the second of `exp` itself), and not valid yet while `nbf - leeway > now`.
/// `exp` is required; a malformed `nbf` makes the token malformed.
pub fn check_time(claims: &Claims, now: i64, leeway: Duration) -> Result<(), JwtError> {
    let now = now as f64;
    let leeway = leeway.as_secs() as f64;
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(JwtError::Claim("exp"))?;
    if exp + leeway < now {
        return Err(JwtError::Expired);
    }
    match claims.get("nbf").map(numeric_date) {
        None => Ok(()),
        Some(None) => Err(JwtError::Malformed),
        Some(Some(nbf)) if nbf > now + leeway => Err(JwtError::NotYetValid),
        Some(Some(_)) => Ok(()),
    }
}

/// RFC 7519 §4.1.6: `iat` is a NumericDate, the time the token was issued. A
/// token issued further ahead than the leeway comes from a signer whose
/// clock, or honesty, is not to be trusted (and could outlive any `exp`-based
/// reasoning about its age), so it is refused as `nbf` in the future is. A
/// non-numeric `iat` is malformed. Whether `iat` must be present is the
/// caller's rule (ID tokens: OIDC Core §2; logout tokens: Back-Channel
/// Logout §2.4).
pub fn check_issued_at(claims: &Claims, now: i64, leeway: Duration) -> Result<(), JwtError> {
    match claims.get("iat").map(Value::as_f64) {
        None => Ok(()),
        Some(Some(iat)) if iat > now as f64 + leeway.as_secs_f64() => Err(JwtError::IssuedInFuture),
        Some(Some(_)) => Ok(()),
        Some(None) => Err(JwtError::Claim("iat")),
    }
}

/// The claim rules after the signature, `iss`, `exp` and `nbf`, at `now`
/// (Unix seconds).
fn check_claims(claims: Claims, expect: &Expect<'_>, now: i64) -> Result<Claims, JwtError> {
    check_issued_at(&claims, now, expect.leeway)?;
    let aud: Vec<&str> = match claims.get("aud") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(JwtError::Claim("aud")),
    };
    let named = |allowed: &[String], a: &str| allowed.iter().any(|x| x == a);
    let client_id = |allowed: &[String]| {
        claims
            .get("client_id")
            .and_then(Value::as_str)
            .is_some_and(|c| named(allowed, c))
    };
    let ok = match &expect.audience {
        Audience::Any(allowed) => aud.iter().any(|a| named(allowed, a)),
        Audience::AnyOrClientId(allowed) => {
            if aud.is_empty() {
                client_id(allowed)
            } else {
                aud.iter().any(|a| named(allowed, a))
            }
        }
        Audience::ClientId(allowed) => {
            client_id(allowed) && (aud.is_empty() || aud.iter().any(|a| named(allowed, a)))
        }
    };
    if !ok {
        return Err(JwtError::Audience);
    }
    if let Some(want) = expect.token_use {
        if claims.get("token_use").and_then(Value::as_str) != Some(want) {
            return Err(JwtError::TokenUse(want));
        }
    }
    Ok(claims)
}

/// The ID-token rules of OIDC Core §3.1.3.7 that `openidconnect` leaves to
/// us (see `id_token`): a non-empty `sub`, and `azp`: ours when present (and
/// a string), required when there are several audiences.
pub fn check_id_token(claims: &Claims, client_id: &str) -> Result<(), JwtError> {
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(JwtError::Claim("sub"));
    }
    let multiple_aud = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").map(Value::as_str) {
        Some(Some(azp)) if azp != client_id => return Err(JwtError::Audience),
        Some(None) => return Err(JwtError::Claim("azp")),
        None if multiple_aud => return Err(JwtError::Claim("azp")),
        _ => {}
    }
    Ok(())
}

impl From<JwtError> for OidcError {
    fn from(e: JwtError) -> Self {
        OidcError::Token(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::jwks::StaticJwks;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn critical_headers_are_refused() {
        let cases = [
            ("no crit", json!({"alg": "ES256", "kid": "k"}), Ok(())),
            (
                "unknown extension, present",
                json!({"alg": "ES256", "crit": ["exp-unknown"], "exp-unknown": 1}),
                Err(JwtError::Critical),
            ),
            (
                "unknown extension, absent",
                json!({"alg": "ES256", "crit": ["exp-unknown"]}),
                Err(JwtError::Critical),
            ),
            (
                "b64 (RFC 7797) is not understood either",
                json!({"alg": "ES256", "crit": ["b64"], "b64": false}),
                Err(JwtError::Critical),
            ),
            (
                "empty list",
                json!({"alg": "ES256", "crit": []}),
                Err(JwtError::Critical),
            ),
            (
                "null",
                json!({"alg": "ES256", "crit": null}),
                Err(JwtError::Critical),
            ),
            (
                "a string",
                json!({"alg": "ES256", "crit": "exp-unknown"}),
                Err(JwtError::Critical),
            ),
            (
                "not names",
                json!({"alg": "ES256", "crit": [1]}),
                Err(JwtError::Critical),
            ),
        ];
        for (name, header, want) in cases {
            assert_eq!(check_critical(&obj(header)), want, "{name}");
        }
    }

    #[test]
    fn issued_at_may_not_be_ahead_of_the_leeway() {
        let now = 1_700_000_000_i64;
        let leeway = Duration::from_secs(60);
        let cases = [
            ("absent", json!({}), Ok(())),
            ("now", json!({"iat": now}), Ok(())),
            ("in the past", json!({"iat": now - 86_400}), Ok(())),
            ("at the leeway", json!({"iat": now + 60}), Ok(())),
            (
                "fractional, inside",
                json!({"iat": now as f64 + 59.5}),
                Ok(()),
            ),
            (
                "just past the leeway",
                json!({"iat": now + 61}),
                Err(JwtError::IssuedInFuture),
            ),
            (
                "a year ahead",
                json!({"iat": now + 365 * 86_400}),
                Err(JwtError::IssuedInFuture),
            ),
            (
                "a string",
                json!({"iat": now.to_string()}),
                Err(JwtError::Claim("iat")),
            ),
            ("null", json!({"iat": null}), Err(JwtError::Claim("iat"))),
        ];
        for (name, claims, want) in cases {
            assert_eq!(check_issued_at(&obj(claims), now, leeway), want, "{name}");
        }
        // No leeway: one second ahead is already too far.
        assert_eq!(
            check_issued_at(&obj(json!({"iat": now + 1})), now, Duration::ZERO),
            Err(JwtError::IssuedInFuture)
        );
    }

    #[test]
    fn audience_rules() {
        let ours = vec!["bff".to_string(), "urn:api".to_string()];
        let expect = |audience| Expect {
            issuer: "https://idp",
            audience,
            token_use: None,
            leeway: Duration::ZERO,
            now: 1_700_000_000,
        };
        let any = || expect(Audience::Any(&ours));
        let any_or_client = || expect(Audience::AnyOrClientId(&ours));
        let client = || expect(Audience::ClientId(&ours));
        let cases: Vec<(&str, Expect<'_>, Value, Result<(), JwtError>)> = vec![
            ("Any: aud ours", any(), json!({"aud": "urn:api"}), Ok(())),
            (
                "Any: one aud of a list",
                any(),
                json!({"aud": ["x", "bff"]}),
                Ok(()),
            ),
            (
                "Any: another aud",
                any(),
                json!({"aud": "x"}),
                Err(JwtError::Audience),
            ),
            (
                "Any: client_id does not count",
                any(),
                json!({"client_id": "bff"}),
                Err(JwtError::Audience),
            ),
            (
                "Any: aud not a string",
                any(),
                json!({"aud": 7}),
                Err(JwtError::Claim("aud")),
            ),
            (
                "AnyOrClientId: aud ours",
                any_or_client(),
                json!({"aud": "urn:api"}),
                Ok(()),
            ),
            (
                "AnyOrClientId: no aud, client_id ours",
                any_or_client(),
                json!({"client_id": "bff"}),
                Ok(()),
            ),
            (
                "AnyOrClientId: another aud, client_id ours",
                any_or_client(),
                json!({"aud": "x", "client_id": "bff"}),
                Err(JwtError::Audience),
            ),
            (
                "AnyOrClientId: neither",
                any_or_client(),
                json!({}),
                Err(JwtError::Audience),
            ),
            (
                "ClientId: Cognito's shape",
                client(),
                json!({"client_id": "bff"}),
                Ok(()),
            ),
            (
                "ClientId: aud ours and no client_id (never a Cognito access token)",
                client(),
                json!({"aud": "bff"}),
                Err(JwtError::Audience),
            ),
            (
                "ClientId: client_id of another app",
                client(),
                json!({"client_id": "other"}),
                Err(JwtError::Audience),
            ),
            (
                "ClientId: client_id ours, aud of someone else",
                client(),
                json!({"client_id": "bff", "aud": "other"}),
                Err(JwtError::Audience),
            ),
            (
                "ClientId: client_id and aud ours",
                client(),
                json!({"client_id": "bff", "aud": "bff"}),
                Ok(()),
            ),
            (
                "ClientId: client_id not a string",
                client(),
                json!({"client_id": ["bff"]}),
                Err(JwtError::Audience),
            ),
        ];
        for (name, expect, claims, want) in cases {
            let got = check_claims(obj(claims), &expect, 1_700_000_000).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn token_use_is_checked_when_asked() {
        let ours = vec!["bff".to_string()];
        let expect = Expect {
            issuer: "https://idp",
            audience: Audience::ClientId(&ours),
            token_use: Some("access"),
            leeway: Duration::ZERO,
            now: 0,
        };
        for (claims, want) in [
            (json!({"client_id": "bff", "token_use": "access"}), Ok(())),
            (
                json!({"client_id": "bff", "token_use": "id"}),
                Err(JwtError::TokenUse("access")),
            ),
            (
                json!({"client_id": "bff"}),
                Err(JwtError::TokenUse("access")),
            ),
        ] {
            let got = check_claims(obj(claims.clone()), &expect, 0).map(|_| ());
            assert_eq!(got, want, "{claims}");
        }
    }

    /// A signer whose JOSE header is written by hand, so headers jsonwebtoken
    /// cannot produce (`"crit": null`, …) can be signed.
    struct Signer {
        pair: EcdsaKeyPair,
        jwk: Value,
    }

    impl Signer {
        fn new() -> Signer {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
            let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
            Signer { pair, jwk }
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }

    #[tokio::test]
    async fn verify_applies_the_header_and_iat_rules() {
        let signer = Signer::new();
        let jwks = JwksCache::new(Box::new(StaticJwks(
            json!({ "keys": [signer.jwk.clone()] }),
        )));
        let ours = vec!["bff".to_string()];
        let now = crate::clock::Clock::system().now_secs();
        let expect = Expect {
            issuer: "https://idp",
            audience: Audience::Any(&ours),
            token_use: None,
            leeway: Duration::from_secs(30),
            now,
        };
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let claims =
            json!({"iss": "https://idp", "aud": "bff", "sub": "u", "iat": now, "exp": now + 300});
        let with = |k: &str, v: Value| {
            let mut h = header.clone();
            h[k] = v;
            h
        };
        let future_iat = {
            let mut c = claims.clone();
            c["iat"] = json!(now + 365 * 86_400);
            c
        };
        // The control: the same hand-made signing, a plain header, passes.
        assert!(verify(&jwks, &signer.sign(&header, &claims), &expect)
            .await
            .is_ok());
        let cases = [
            (
                "crit names an unknown extension",
                signer.sign(&with("crit", json!(["exp-unknown"])), &claims),
                JwtError::Critical,
            ),
            (
                "crit is null",
                signer.sign(&with("crit", Value::Null), &claims),
                JwtError::Critical,
            ),
            (
                "crit is empty",
                signer.sign(&with("crit", json!([])), &claims),
                JwtError::Critical,
            ),
            (
                "iat a year ahead",
                signer.sign(&header, &future_iat),
                JwtError::IssuedInFuture,
            ),
            (
                "header is not JSON",
                format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode("not json"),
                    signer.sign(&header, &claims).split_once('.').unwrap().1
                ),
                JwtError::Malformed,
            ),
        ];
        for (name, token, want) in cases {
            assert_eq!(
                verify(&jwks, &token, &expect).await.err(),
                Some(want),
                "{name}"
            );
        }
    }
    #[test]
    fn exp_and_nbf_are_judged_at_the_given_time_with_leeway() {
        let now = 1_700_000_000_i64;
        let leeway = Duration::from_secs(60);
        let cases = [
            ("valid", json!({"exp": now + 300}), Ok(())),
            ("exp now", json!({"exp": now}), Ok(())),
            (
                "expired inside the leeway",
                json!({"exp": now - 60}),
                Ok(()),
            ),
            (
                "expired past the leeway",
                json!({"exp": now - 61}),
                Err(JwtError::Expired),
            ),
            (
                "fractional exp rounds as jsonwebtoken does",
                json!({"exp": (now - 61) as f64 + 0.4}),
                Err(JwtError::Expired),
            ),
            ("no exp", json!({}), Err(JwtError::Claim("exp"))),
            (
                "exp a string",
                json!({"exp": "soon"}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp negative",
                json!({"exp": -1}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp null",
                json!({"exp": null}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "nbf inside the leeway",
                json!({"exp": now + 300, "nbf": now + 60}),
                Ok(()),
            ),
            (
                "nbf past the leeway",
                json!({"exp": now + 300, "nbf": now + 61}),
                Err(JwtError::NotYetValid),
            ),
            (
                "nbf a string",
                json!({"exp": now + 300, "nbf": "later"}),
                Err(JwtError::Malformed),
            ),
            (
                "nbf null",
                json!({"exp": now + 300, "nbf": null}),
                Err(JwtError::Malformed),
            ),
        ];
        for (name, claims, want) in cases {
            assert_eq!(check_time(&obj(claims), now, leeway), want, "{name}");
        }
        // No leeway: one second past `exp` is expired.
        assert_eq!(
            check_time(&obj(json!({"exp": now - 1})), now, Duration::ZERO),
            Err(JwtError::Expired)
        );
    }

    #[tokio::test]
    async fn verify_judges_time_at_the_callers_clock() {
        let signer = Signer::new();
        let jwks = JwksCache::new(Box::new(StaticJwks(
            json!({ "keys": [signer.jwk.clone()] }),
        )));
        let ours = vec!["bff".to_string()];
        let now = crate::clock::Clock::system().now_secs();
        let at = |now: i64| Expect {
            issuer: "https://idp",
            audience: Audience::Any(&ours),
            token_use: None,
            leeway: Duration::from_secs(30),
            now,
        };
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        let token = signer.sign(
            &header,
            &json!({"iss": "https://idp", "aud": "bff", "iat": now, "nbf": now, "exp": now + 300}),
        );
        assert!(verify(&jwks, &token, &at(now)).await.is_ok());
        assert!(
            verify(&jwks, &token, &at(now + 330)).await.is_ok(),
            "exp + leeway"
        );
        assert_eq!(
            verify(&jwks, &token, &at(now + 331)).await.err(),
            Some(JwtError::Expired),
            "the system time has not moved; the caller's has"
        );
        assert_eq!(
            verify(&jwks, &token, &at(now - 31)).await.err(),
            Some(JwtError::NotYetValid)
        );
    }

    #[test]
    fn time_checks_hold_at_the_extremes() {
        let now = 1_700_000_000_i64;
        let l = Duration::from_secs(60);
        let cases = [
            (
                "exp a float string",
                json!({"exp": "1.7e9"}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp a bool",
                json!({"exp": true}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp an array",
                json!({"exp": [now + 300]}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp an object",
                json!({"exp": {"v": now + 300}}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp past u64",
                json!({"exp": 1e20}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp f64::MAX",
                json!({"exp": f64::MAX}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp tiny negative",
                json!({"exp": -0.4}),
                Err(JwtError::Claim("exp")),
            ),
            (
                "exp i64::MIN",
                json!({"exp": i64::MIN}),
                Err(JwtError::Claim("exp")),
            ),
            ("exp 0", json!({"exp": 0}), Err(JwtError::Expired)),
            (
                "exp i64::MAX is far ahead",
                json!({"exp": i64::MAX}),
                Ok(()),
            ),
            (
                "nbf far ahead",
                json!({"exp": now + 300, "nbf": u64::MAX / 2}),
                Err(JwtError::NotYetValid),
            ),
            (
                "nbf negative",
                json!({"exp": now + 300, "nbf": -1}),
                Err(JwtError::Malformed),
            ),
            (
                "nbf a bool",
                json!({"exp": now + 300, "nbf": false}),
                Err(JwtError::Malformed),
            ),
        ];
        for (name, claims, want) in cases {
            assert_eq!(check_time(&obj(claims), now, l), want, "{name}");
        }
        // No i64 arithmetic to overflow: extreme clocks and leeways neither
        // panic nor wrap into acceptance.
        let c = obj(json!({"exp": now}));
        assert_eq!(check_time(&c, i64::MAX, l), Err(JwtError::Expired));
        assert_eq!(check_time(&c, i64::MIN, l), Ok(()));
        assert_eq!(check_time(&c, now + 61, Duration::MAX), Ok(()));
        assert_eq!(
            check_issued_at(&obj(json!({"iat": 1e300})), now, Duration::MAX),
            Err(JwtError::IssuedInFuture)
        );
        assert_eq!(
            check_issued_at(&obj(json!({"iat": i64::MAX})), i64::MAX, l),
            Ok(())
        );
        // 1e309 is not JSON serde_json reads: the payload does not parse at all.
        assert!(serde_json::from_str::<Claims>(r#"{"exp": 1e309}"#).is_err());
    }

    #[test]
    fn logout_token_types() {
        let token = |header: Value| {
            format!(
                "{}.e30.c2ln",
                URL_SAFE_NO_PAD.encode(header.to_string().as_bytes())
            )
        };
        let cases = [
            (json!({"alg": "ES256"}), Ok(())),
            (json!({"alg": "ES256", "typ": "logout+jwt"}), Ok(())),
            (
                json!({"alg": "ES256", "typ": "application/logout+jwt"}),
                Ok(()),
            ),
            (json!({"alg": "ES256", "typ": "Logout+JWT"}), Ok(())),
            (json!({"alg": "ES256", "typ": "JWT"}), Ok(())),
            (
                json!({"alg": "ES256", "typ": "at+jwt"}),
                Err(JwtError::Type),
            ),
            (
                json!({"alg": "ES256", "typ": "application/at+jwt"}),
                Err(JwtError::Type),
            ),
            (
                json!({"alg": "ES256", "typ": "secevent+jwt"}),
                Err(JwtError::Type),
            ),
            (json!({"alg": "ES256", "typ": ""}), Err(JwtError::Type)),
            (json!({"alg": "ES256", "typ": null}), Err(JwtError::Type)),
            (json!({"alg": "ES256", "typ": ["JWT"]}), Err(JwtError::Type)),
        ];
        for (header, want) in cases {
            assert_eq!(
                check_type(&token(header.clone()), LOGOUT_TOKEN_TYPES),
                want,
                "{header}"
            );
        }
        assert_eq!(
            check_type("!!.e30.c2ln", LOGOUT_TOKEN_TYPES),
            Err(JwtError::Malformed)
        );
    }
}
