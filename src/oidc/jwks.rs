//! JWKS cache: verification keys by `kid`, each with the algorithms its key
//! type allows. An unknown `kid` triggers one refetch (single-flight), then a
//! cooldown, so a flood of bad tokens cannot turn into a flood of fetches.
//! The one source of keys: jsonwebtoken's for bearer and logout tokens,
//! `openidconnect`'s (the same JWK, parsed by the crate) for ID tokens.

use super::OidcError;
use async_trait::async_trait;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::clock::Clock;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use url::Url;

/// Where keys come from (the IdP's `jwks_uri` in production).
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    async fn fetch(&self) -> Result<serde_json::Value, OidcError>;
}

/// Keys the test holds, served as they are (unit tests of the verifiers).
#[cfg(test)]
pub struct StaticJwks(pub serde_json::Value);

#[cfg(test)]
#[async_trait]
impl JwksSource for StaticJwks {
    async fn fetch(&self) -> Result<serde_json::Value, OidcError> {
        Ok(self.0.clone())
    }
}

pub struct HttpJwksSource {
    pub http: reqwest::Client,
    pub url: Url,
}

#[async_trait]
impl JwksSource for HttpJwksSource {
    async fn fetch(&self) -> Result<serde_json::Value, OidcError> {
        let resp = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| OidcError::Jwks(format!("GET {}: {e}", self.url)))?;
        if !resp.status().is_success() {
            return Err(OidcError::Jwks(format!(
                "GET {}: HTTP {}",
                self.url,
                resp.status()
            )));
        }
        let body = super::client::read_body(resp, super::client::MAX_IDP_BODY)
            .await
            .map_err(|e| OidcError::Jwks(format!("GET {}: {e}", self.url)))?;
        serde_json::from_slice(&body)
            .map_err(|e| OidcError::Jwks(format!("GET {}: not JSON: {e}", self.url)))
    }
}

/// One verification key and the algorithms it may be used with.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
    /// The same key as `openidconnect` reads it (ID-token verification).
    pub oidc: Option<openidconnect::core::CoreJsonWebKey>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    fetched_at: Option<Instant>,
}

pub struct JwksCache {
    source: Box<dyn JwksSource>,
    set: RwLock<Arc<KeySet>>,
    /// Serializes fetches; holds the time of the last attempt.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    cooldown: Duration,
    max_age: Duration,
    fetches: std::sync::atomic::AtomicU64,
    /// What the cooldown and key age are judged by; instants above are its.
    clock: Clock,
}

impl JwksCache {
    pub fn new(source: Box<dyn JwksSource>) -> Self {
        Self::with_cooldown(source, Duration::from_secs(30))
    }

    pub fn with_cooldown(source: Box<dyn JwksSource>, cooldown: Duration) -> Self {
        JwksCache {
            source,
            set: RwLock::new(Arc::new(KeySet::default())),
            fetch: tokio::sync::Mutex::new(None),
            cooldown,
            max_age: Duration::from_secs(3600),
            fetches: std::sync::atomic::AtomicU64::new(0),
            clock: Clock::system(),
        }
    }

    /// The same, judging the cooldown and key age by `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How long ago an instant of this cache's clock was.
    fn since(&self, t: Instant) -> Duration {
        self.clock.instant().saturating_duration_since(t)
    }

    /// How many times the keys were fetched (tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keys that may verify a token with this `kid` and `alg`.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<VerifyKey>>, OidcError> {
        let current = self.snapshot();
        let fresh = current
            .fetched_at
            .is_some_and(|t| self.since(t) < self.max_age);
        let found = matching(&current, kid, alg);
        if !found.is_empty() && fresh {
            return Ok(found);
        }
        let after = self.refetch(current.fetched_at).await;
        match after {
            Ok(set) => Ok(matching(&set, kid, alg)),
            // Keep serving known keys when the IdP is briefly unreachable.
            Err(e) if !found.is_empty() => {
                tracing::warn!(error = %crate::claims::log_text(&e), "JWKS refresh failed; using cached keys");
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    /// Loads the key set now (start-up warm-up and readiness).
    pub async fn warm(&self) -> Result<(), OidcError> {
        self.refetch(None).await.map(|_| ())
    }

    pub fn is_loaded(&self) -> bool {
        self.snapshot().fetched_at.is_some()
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.set.read().expect("JWKS lock poisoned").clone()
    }

    async fn refetch(&self, seen: Option<Instant>) -> Result<Arc<KeySet>, OidcError> {
        let mut last = self.fetch.lock().await;
        let current = self.snapshot();
        // Someone else fetched while we waited: use theirs.
        if current.fetched_at != seen && current.fetched_at.is_some() {
            return Ok(current);
        }
        if let Some(t) = *last {
            if self.since(t) < self.cooldown && current.fetched_at.is_some() {
                return Ok(current);
            }
            if self.since(t) < Duration::from_secs(1) {
                return Err(OidcError::Jwks(
                    "JWKS fetch failed moments ago; not retrying yet".into(),
                ));
            }
        }
        *last = Some(self.clock.instant());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let doc = self.source.fetch().await?;
        let keys = parse_jwks(&doc);
        if keys.is_empty() {
            return Err(OidcError::Jwks(
                "the JWKS holds no usable signing key".into(),
            ));
        }
        let set = Arc::new(KeySet {
            keys,
            fetched_at: Some(self.clock.instant()),
        });
        *self.set.write().expect("JWKS lock poisoned") = set.clone();
        Ok(set)
    }
}

fn matching(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
    set.keys
        .iter()
        .filter(|k| k.algorithms.contains(&alg))
        .filter(|k| match (kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            // A token without `kid` may be checked against every key of its type.
            (None, _) => true,
            (Some(_), None) => false,
        })
        .cloned()
        .collect()
}

/// Parses a JWK Set, keeping the signature keys it can use and skipping the rest
/// (one odd key must not break verification with the others).
pub fn parse_jwks(doc: &serde_json::Value) -> Vec<Arc<VerifyKey>> {
    let Some(keys) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|raw| {
            let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
            if !may_verify(&jwk) {
                return None;
            }
            let algorithms = allowed_algorithms(&jwk);
            if algorithms.is_empty() {
                return None;
            }
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(Arc::new(VerifyKey {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
                oidc: serde_json::from_value(raw.clone()).ok(),
            }))
        })
        .collect()
}

/// Whether the key's own declarations allow verifying signatures with it:
/// not an encryption key (`use`, RFC 7517 §4.2), and, when `key_ops` is
/// present, it lists `verify` (RFC 7517 §4.3). ID, bearer and logout tokens
/// all take their keys from [`parse_jwks`], so this holds for each.
pub fn may_verify(jwk: &Jwk) -> bool {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return false;
    }
    match &jwk.common.key_operations {
        None => true,
        Some(ops) => ops.iter().any(|op| matches!(op, KeyOperations::Verify)),
    }
}

/// The algorithms a key may verify, from its type (and its `alg`, when given).
/// Symmetric keys never appear: an IdP's public JWKS cannot hold an HMAC
/// secret, and accepting one is the classic HS256-with-public-key attack.
pub fn allowed_algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    use Algorithm::*;
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![EdDSA],
        _ => vec![],
    };
    match jwk.common.key_algorithm {
        None => by_type,
        Some(declared) => {
            let declared = match declared {
                KeyAlgorithm::RS256 => RS256,
                KeyAlgorithm::RS384 => RS384,
                KeyAlgorithm::RS512 => RS512,
                KeyAlgorithm::PS256 => PS256,
                KeyAlgorithm::PS384 => PS384,
                KeyAlgorithm::PS512 => PS512,
                KeyAlgorithm::ES256 => ES256,
                KeyAlgorithm::ES384 => ES384,
                KeyAlgorithm::EdDSA => EdDSA,
                _ => return vec![],
            };
            by_type.into_iter().filter(|a| *a == declared).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    #[test]
    fn algorithms_follow_the_key_type() {
        let rsa = json!({"kty":"RSA","kid":"r","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"});
        let ec = json!({"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let hmac = json!({"kty":"oct","kid":"h","k":"c2VjcmV0"});
        let rsa_declared = json!({"kty":"RSA","kid":"r2","alg":"RS256","n":rsa["n"],"e":"AQAB"});
        let rsa_lying = json!({"kty":"RSA","kid":"r3","alg":"HS256","n":rsa["n"],"e":"AQAB"});
        let enc = json!({"kty":"RSA","kid":"r4","use":"enc","n":rsa["n"],"e":"AQAB"});
        let keys = parse_jwks(
            &json!({"keys":[rsa, ec, hmac, rsa_declared, rsa_lying, enc, {"kty":"weird"}]}),
        );
        let by_kid: HashMap<_, _> = keys
            .iter()
            .map(|k| (k.kid.clone().unwrap(), k.algorithms.clone()))
            .collect();
        assert_eq!(
            by_kid.len(),
            3,
            "oct, HS256-declared, enc and unknown keys dropped: {:?}",
            by_kid.keys()
        );
        assert!(by_kid["r"].contains(&Algorithm::RS256) && by_kid["r"].contains(&Algorithm::PS512));
        assert!(!by_kid["r"]
            .iter()
            .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)));
        assert_eq!(by_kid["e"], vec![Algorithm::ES256]);
        assert_eq!(by_kid["r2"], vec![Algorithm::RS256]);
    }

    #[test]
    fn key_ops_without_verify_keep_a_key_from_verifying() {
        let ec = json!({"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let with = |extra: Value| {
            let mut k = ec.clone();
            k.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            k
        };
        let cases = [
            ("no use, no key_ops", json!({}), true),
            ("use sig", json!({"use": "sig"}), true),
            ("use enc", json!({"use": "enc"}), false),
            ("key_ops verify", json!({"key_ops": ["verify"]}), true),
            (
                "key_ops sign and verify",
                json!({"key_ops": ["sign", "verify"]}),
                true,
            ),
            ("key_ops sign only", json!({"key_ops": ["sign"]}), false),
            (
                "key_ops encrypt",
                json!({"key_ops": ["encrypt", "wrapKey"]}),
                false,
            ),
            ("key_ops empty", json!({"key_ops": []}), false),
            (
                "key_ops unknown op",
                json!({"key_ops": ["x-verify"]}),
                false,
            ),
        ];
        for (name, extra, want) in cases {
            let raw = with(extra);
            let jwk: Jwk = serde_json::from_value(raw.clone()).unwrap();
            assert_eq!(may_verify(&jwk), want, "{name}");
            // The key set keeps exactly the keys that may verify.
            let kept = parse_jwks(&json!({"keys": [raw]})).len();
            assert_eq!(kept, usize::from(want), "{name}");
        }
    }
}
