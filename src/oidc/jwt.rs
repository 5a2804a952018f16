//! JWT verification: signature with a key from the JWKS cache and an algorithm
//! that key allows (never `none`, never HMAC), then the claims: `iss`,
//! `exp`/`nbf`/`iat` with leeway, audience (`aud`, or Cognito's `client_id` for
//! access tokens, which carry no `aud`), `token_use`, and for ID tokens `azp`
//! and `nonce` (OpenID Connect Core 1.0 §3.1.3.7).

use super::jwks::JwksCache;
use super::OidcError;
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
    #[error("keys unavailable: {0}")]
    Keys(String),
}

/// Which audience check applies.
#[derive(Debug, Clone)]
pub enum Audience<'a> {
    /// `aud` must contain one of these.
    Any(&'a [String]),
    /// `aud` must contain one of these, or, for a token without `aud`
    /// (Cognito access tokens), `client_id` must be one of them.
    AnyOrClientId(&'a [String]),
}

#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: Audience<'a>,
    /// Cognito's `token_use` claim, checked when `Some`.
    pub token_use: Option<&'static str>,
    pub leeway: Duration,
}

/// Verifies signature and standard claims; returns the claims.
pub async fn verify(
    jwks: &JwksCache,
    token: &str,
    expect: &Expect<'_>,
) -> Result<Claims, JwtError> {
    let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
    // Only asymmetric signatures: an HMAC "signed" with the public key is forgeable.
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
    }
    let keys = jwks
        .keys_for(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| JwtError::Keys(e.to_string()))?;
    if keys.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    let mut v = Validation::new(header.alg);
    v.leeway = expect.leeway.as_secs();
    v.validate_nbf = true;
    v.validate_aud = false; // checked below: Cognito access tokens have none
    v.set_issuer(&[expect.issuer]);
    v.set_required_spec_claims(&["exp", "iss"]);
    for key in keys {
        match decode::<Claims>(token, &key.key, &v) {
            Ok(data) => return check_claims(data.claims, expect),
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::InvalidSignature => continue,
                    ErrorKind::ExpiredSignature => JwtError::Expired,
                    ErrorKind::ImmatureSignature => JwtError::NotYetValid,
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

fn check_claims(claims: Claims, expect: &Expect<'_>) -> Result<Claims, JwtError> {
    let aud: Vec<&str> = match claims.get("aud") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(JwtError::Claim("aud")),
    };
    let ok = match &expect.audience {
        Audience::Any(allowed) => aud.iter().any(|a| allowed.iter().any(|x| x == a)),
        Audience::AnyOrClientId(allowed) => {
            if aud.is_empty() {
                claims
                    .get("client_id")
                    .and_then(Value::as_str)
                    .is_some_and(|c| allowed.iter().any(|x| x == c))
            } else {
                aud.iter().any(|a| allowed.iter().any(|x| x == a))
            }
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

/// The extra ID-token rules of OIDC Core §3.1.3.7 on top of [`verify`].
pub fn check_id_token(
    claims: &Claims,
    client_id: &str,
    nonce: Option<&str>,
) -> Result<(), JwtError> {
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(JwtError::Claim("sub"));
    }
    if !claims.get("iat").is_some_and(Value::is_number) {
        return Err(JwtError::Claim("iat"));
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
    if let Some(want) = nonce {
        use subtle::ConstantTimeEq;
        let got = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
            return Err(JwtError::Nonce);
        }
    }
    Ok(())
}

impl From<JwtError> for OidcError {
    fn from(e: JwtError) -> Self {
        OidcError::Token(e)
    }
}
