//! ID-token verification at sign-in and refresh (OIDC Core §3.1.3.7 and
//! §12.2) on `openidconnect`'s `IdTokenVerifier`: signature with a key from
//! the JWKS cache (one source of keys, with its refetch on an unknown `kid`
//! and its cooldown), `iss` (exact match), `aud` (ours; other audiences only
//! when `provider.audiences` trusts them), `exp` and `iat` at the gateway's
//! clock with `provider.leeway`, `nonce`, and `at_hash` when present. Cognito's
//! claims are the crate's additional claims ([`CognitoClaims`]).
//!
//! Ours, on top, because the crate does not check them or is laxer: no `crit`
//! header at all (the crate lets `"crit": null` through), asymmetric algorithms
//! only, `nbf`, a non-empty `sub`, `azp` (the crate leaves it out on purpose),
//! and Cognito's `token_use = "id"` (an access token never passes as an ID token).

use super::jwks::JwksCache;
use super::jwt::{self, Claims, JwtError};
use super::{OidcError, Provider};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, AdditionalClaims, ClaimsVerificationError, ClientId, IdTokenVerifier, IssuerUrl,
    JsonWebKeySet, Nonce, SignatureVerificationError,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Cognito's own ID-token claims; absent from other providers' tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CognitoClaims {
    /// `"id"` in ID tokens, `"access"` in access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    #[serde(
        rename = "cognito:groups",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub groups: Option<Vec<String>>,
    #[serde(
        rename = "cognito:username",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
}

impl AdditionalClaims for CognitoClaims {}

/// An ID token as the crate reads it.
pub type IdToken = openidconnect::IdToken<
    CognitoClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The signature algorithms accepted: asymmetric only (an HMAC "signed" with
/// the public key, or with a client secret a public client shares, is forgeable).
const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What an ID token is checked against.
pub struct IdTokenCheck<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// Further audiences trusted next to ours (`provider.audiences`).
    pub trusted_audiences: &'a [String],
    /// The login's nonce; `None` for refreshed ID tokens, which may carry none.
    pub nonce: Option<&'a str>,
    /// The access token from the same answer, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// Cognito: `token_use` must be `"id"`.
    pub cognito: bool,
    pub leeway: Duration,
    /// Unix seconds, the gateway's clock.
    pub now: i64,
}

/// Verifies `token`; returns its claims as sent.
pub async fn verify(
    jwks: &JwksCache,
    token: &str,
    check: &IdTokenCheck<'_>,
) -> Result<Claims, JwtError> {
    let header = jwt::checked_header(token)?;
    let id_token: IdToken = token.parse().map_err(|_| JwtError::Malformed)?;
    let keys = jwks
        .keys_for(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| JwtError::Keys(e.to_string()))?;
    if keys.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    // One key at a time: a token without `kid` is tried against each of its type.
    let mut outcome = Err(JwtError::Signature);
    for key in keys.iter().filter_map(|k| k.oidc.clone()) {
        let verifier = verifier(check, JsonWebKeySet::new(vec![key]))?;
        match verified(&id_token, &verifier, check) {
            Err(JwtError::Signature) => continue,
            other => {
                outcome = other;
                break;
            }
        }
    }
    outcome?;
    // Verified: the claims as the IdP sent them are what the session keeps.
    let claims = crate::policy::trusted_jwt_payload(token).ok_or(JwtError::Malformed)?;
    jwt::check_time(&claims, check.now, check.leeway)?;
    jwt::check_id_token(&claims, check.client_id)?;
    Ok(claims)
}

fn verifier<'a>(
    check: &IdTokenCheck<'_>,
    keys: JsonWebKeySet<CoreJsonWebKey>,
) -> Result<IdTokenVerifier<'a, CoreJsonWebKey>, JwtError> {
    let issuer = IssuerUrl::new(check.issuer.to_string()).map_err(|_| JwtError::Issuer)?;
    let trusted = check.trusted_audiences.to_vec();
    let (now, leeway) = (check.now, check.leeway.as_secs() as i64);
    Ok(
        IdTokenVerifier::new_public_client(ClientId::new(check.client_id.into()), issuer, keys)
            .set_allowed_algs(ALGORITHMS)
            .set_other_audience_verifier_fn(move |aud| trusted.iter().any(|t| t == aud.as_str()))
            // The crate refuses once `now >= exp`: judged `leeway` earlier.
            .set_time_fn(move || at(now.saturating_sub(leeway)))
            .set_issue_time_verifier_fn(move |iat| {
                if iat > at(now.saturating_add(leeway)) {
                    Err(ISSUED_IN_FUTURE.into())
                } else {
                    Ok(())
                }
            }),
    )
}

const ISSUED_IN_FUTURE: &str = "issued in the future";

fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    })
}

/// The crate's checks, `at_hash` and Cognito's `token_use`, with one key.
fn verified(
    id_token: &IdToken,
    verifier: &IdTokenVerifier<'_, CoreJsonWebKey>,
    check: &IdTokenCheck<'_>,
) -> Result<(), JwtError> {
    let claims = match check.nonce {
        Some(n) => id_token.claims(verifier, &Nonce::new(n.to_string())),
        // OIDC Core §12.2: a refreshed ID token need not carry a nonce.
        None => id_token.claims(verifier, |_: Option<&Nonce>| Ok(())),
    }
    .map_err(claims_error)?;
    if let (Some(want), Some(at)) = (claims.access_token_hash(), check.access_token) {
        let alg = id_token.signing_alg().map_err(signature_error)?;
        let key = id_token.signing_key(verifier).map_err(signature_error)?;
        let got =
            openidconnect::AccessTokenHash::from_token(&AccessToken::new(at.to_string()), alg, key)
                .map_err(|_| JwtError::AccessTokenHash)?;
        if got != *want {
            return Err(JwtError::AccessTokenHash);
        }
    }
    if check.cognito && claims.additional_claims().token_use.as_deref() != Some("id") {
        return Err(JwtError::TokenUse("id"));
    }
    Ok(())
}

fn claims_error(e: ClaimsVerificationError) -> JwtError {
    match e {
        ClaimsVerificationError::Expired(m) if m == ISSUED_IN_FUTURE => JwtError::IssuedInFuture,
        ClaimsVerificationError::Expired(_) => JwtError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => JwtError::Audience,
        ClaimsVerificationError::InvalidIssuer(_) => JwtError::Issuer,
        ClaimsVerificationError::InvalidNonce(_) => JwtError::Nonce,
        ClaimsVerificationError::SignatureVerification(e) => signature_error(e),
        ClaimsVerificationError::Unsupported(m) if m.contains("crit") => JwtError::Critical,
        _ => JwtError::Malformed,
    }
}

fn signature_error(e: SignatureVerificationError) -> JwtError {
    match e {
        SignatureVerificationError::DisallowedAlg(a)
        | SignatureVerificationError::UnsupportedAlg(a) => JwtError::Algorithm(a),
        SignatureVerificationError::NoMatchingKey
        | SignatureVerificationError::AmbiguousKeyId(_) => JwtError::UnknownKey,
        _ => JwtError::Signature,
    }
}

impl Provider {
    /// Verifies an ID token from the token endpoint (OIDC Core §3.1.3.7):
    /// `nonce` is the login's (none on refresh), `access_token` the one from
    /// the same answer (for `at_hash`).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<Claims, OidcError> {
        let md = self.metadata().await?;
        let jwks = self.jwks().await?;
        let check = IdTokenCheck {
            issuer: md.issuer(),
            client_id: &self.auth.client_id,
            trusted_audiences: &self.config.provider.audiences,
            nonce,
            access_token,
            cognito: md.is_cognito,
            leeway: self.leeway(),
            now: self.clock().now_secs(),
        };
        Ok(verify(&jwks, token, &check).await?)
    }
}
