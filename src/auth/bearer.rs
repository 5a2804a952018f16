//! Bearer authentication for API clients (RFC 6750): a JWT access token in
//! `Authorization: Bearer`, verified against the provider's keys. Results are
//! cached by token hash until the token's own `exp`, so a hot API client costs
//! one signature check per token, and an expired token is never served from
//! the cache.

use crate::error::AppError;
use crate::oidc::jwt::{Claims, JwtError};
use crate::oidc::{OidcError, Provider};
use http::HeaderMap;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A verified bearer token's claims, and the client's `Authorization` value
/// that carried it (passed on as it came: no copy of the token per request).
#[derive(Clone, Debug)]
pub struct BearerIdentity {
    pub authorization: http::HeaderValue,
    pub claims: Arc<Claims>,
}

#[derive(Clone)]
struct Verified {
    claims: Arc<Claims>,
    /// Unix seconds; the cached result is only used before this.
    exp: i64,
    valid_until: Instant,
}

struct UntilExp;

impl moka::Expiry<[u8; 32], Verified> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], v: &Verified, now: Instant) -> Option<Duration> {
        Some(v.valid_until.saturating_duration_since(now))
    }
}

/// Verifies bearer tokens, remembering good ones until they expire (by the
/// provider's clock: a cached result is never used at or after `exp`; the
/// cache's own eviction runs on real time and only bounds memory).
pub struct BearerVerifier {
    cache: Cache<[u8; 32], Verified>,
}

impl Default for BearerVerifier {
    fn default() -> Self {
        BearerVerifier {
            cache: Cache::builder()
                .max_capacity(50_000)
                .expire_after(UntilExp)
                .build(),
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    // RFC 6750 §2.1: the scheme is case-insensitive.
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The cache key: the token and the audiences it was verified for, so a
/// verification for one route never answers for a route with other audiences.
fn cache_key(token: &str, audiences: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    for a in audiences {
        h.update([0]);
        h.update(a.as_bytes());
    }
    h.finalize().into()
}

impl BearerVerifier {
    /// Whether a verification of `token` for `audiences` is held (tests and
    /// diagnostics; `verify` still checks `exp` before using one).
    pub fn is_cached(&self, token: &str, audiences: &[String]) -> bool {
        self.cache.contains_key(&cache_key(token, audiences))
    }

    /// The claims of `token` (from `authorization`), verified for one of `audiences`.
    pub async fn verify(
        &self,
        provider: &Provider,
        authorization: &http::HeaderValue,
        token: &str,
        audiences: &[String],
    ) -> Result<BearerIdentity, AppError> {
        let key = cache_key(token, audiences);
        let now = provider.clock().now_secs();
        if let Some(v) = self.cache.get(&key) {
            if now < v.exp {
                return Ok(BearerIdentity {
                    authorization: authorization.clone(),
                    claims: v.claims,
                });
            }
        }
        let claims = match provider.verify_access_token(token, audiences).await {
            Ok(c) => Arc::new(c),
            Err(OidcError::Token(e)) => return Err(AppError::InvalidToken(e)),
            Err(e) => return Err(e.into()),
        };
        let exp = claims.get("exp").and_then(|e| e.as_i64()).unwrap_or(now);
        if exp > now {
            let ttl = Duration::from_secs((exp - now) as u64);
            self.cache.insert(
                key,
                Verified {
                    claims: claims.clone(),
                    exp,
                    valid_until: Instant::now() + ttl,
                },
            );
        }
        Ok(BearerIdentity {
            authorization: authorization.clone(),
            claims,
        })
    }
}

impl From<JwtError> for AppError {
    fn from(e: JwtError) -> Self {
        AppError::InvalidToken(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        let cases = [
            ("Bearer abc.def.ghi", Some("abc.def.ghi")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic dXNlcjpwdw==", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("", None),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(bearer_token(&h), want, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
