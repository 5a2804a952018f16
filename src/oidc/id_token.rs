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

/// An attacker's table against [`verify`]: what a rogue or compromised IdP
/// answer, or a tampered token, can try on the ID-token path.
#[cfg(test)]
mod attack_tests {
    use super::*;
    use crate::oidc::jwks::StaticJwks;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
        ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use serde_json::{json, Value};

    const NOW: i64 = 1_700_000_000;
    const ISS: &str = "https://idp.example";

    struct Key {
        pair: EcdsaKeyPair,
        jwk: Value,
    }

    impl Key {
        fn new(alg: &'static EcdsaSigningAlgorithm, crv: &str, kid: &str) -> Key {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
            let point = &pair.public_key().as_ref()[1..];
            let (x, y) = point.split_at(point.len() / 2);
            let jwk = json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig",
                "x": B64.encode(x), "y": B64.encode(y)});
            Key { pair, jwk }
        }

        /// Signs the header and payload as given (raw payload text, so
        /// duplicate keys can be written).
        fn sign_raw(&self, header: &Value, payload: &str) -> String {
            let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload));
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", B64.encode(sig.as_ref()))
        }
    }

    /// `n` and `e` of a PKCS#1 RSAPublicKey: SEQUENCE { INTEGER, INTEGER }.
    fn rsa_public(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn item(der: &[u8]) -> (&[u8], &[u8]) {
            let (len, at) = match der[1] {
                l if l < 0x80 => (l as usize, 2),
                l => {
                    let k = (l & 0x7f) as usize;
                    let len = der[2..2 + k].iter().fold(0, |a, b| a << 8 | *b as usize);
                    (len, 2 + k)
                }
            };
            (&der[at..at + len], &der[at + len..])
        }
        let (seq, _) = item(der);
        let (n, rest) = item(seq);
        let (e, _) = item(rest);
        let trim = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect();
        (trim(n), trim(e))
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": ISS, "aud": "bff", "sub": "alice", "nonce": "n1",
            "iat": NOW, "exp": NOW + 300});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn check(cognito: bool) -> IdTokenCheck<'static> {
        IdTokenCheck {
            issuer: ISS,
            client_id: "bff",
            trusted_audiences: &[],
            nonce: Some("n1"),
            access_token: Some("access-1"),
            cognito,
            leeway: Duration::from_secs(60),
            now: NOW,
        }
    }

    #[tokio::test]
    async fn forged_and_odd_id_tokens_are_refused() {
        let good = Key::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "k1");
        let twin = Key::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "k1");
        let p384 = Key::new(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "k384");
        let enc = Key::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "kenc");
        let attacker = Key::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "evil");
        let mut enc_jwk = enc.jwk.clone();
        enc_jwk["use"] = json!("enc");
        let mut lying = good.jwk.clone();
        lying["kid"] = json!("k-lying");
        lying["alg"] = json!("ES384");
        // The IdP's JWKS: `k1` twice (a rotation overlap), a P-384 key, a
        // key for encryption, a P-256 key that claims ES384.
        let ed = {
            use aws_lc_rs::signature::Ed25519KeyPair;
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
        };
        let ed_jwk = {
            use aws_lc_rs::signature::KeyPair;
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ked", "use": "sig",
                "x": B64.encode(ed.public_key().as_ref())})
        };
        let ed_sign = |header: &Value, c: &Value| {
            let input = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(c.to_string())
            );
            format!("{input}.{}", B64.encode(ed.sign(input.as_bytes()).as_ref()))
        };
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let (n, e) = {
            use aws_lc_rs::signature::KeyPair;
            rsa_public(rsa.public_key().as_ref())
        };
        let rsa_any = json!({"kty": "RSA", "kid": "r", "n": B64.encode(&n), "e": B64.encode(e)});
        let mut rsa_rs256 = rsa_any.clone();
        rsa_rs256["kid"] = json!("r-rs");
        rsa_rs256["alg"] = json!("RS256");
        let rsa_sign = |pss: bool, header: &Value, c: &Value| {
            use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256};
            let input = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(c.to_string())
            );
            let mut sig = vec![0; rsa.public_modulus_len()];
            let pad: &'static dyn aws_lc_rs::signature::RsaEncoding = if pss {
                &RSA_PSS_SHA256
            } else {
                &RSA_PKCS1_SHA256
            };
            rsa.sign(pad, &SystemRandom::new(), input.as_bytes(), &mut sig)
                .unwrap();
            format!("{input}.{}", B64.encode(sig))
        };
        let jwks = JwksCache::new(Box::new(StaticJwks(json!({"keys": [
            twin.jwk, good.jwk.clone(), p384.jwk, enc_jwk, lying, ed_jwk, rsa_any, rsa_rs256
        ]}))));
        let es256 = |kid: &str| json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let h = es256("k1");
        let with = |extra: Value| {
            let mut h = h.clone();
            for (k, v) in extra.as_object().unwrap() {
                h[k] = v.clone();
            }
            h
        };
        let signed = |c: Value| good.sign_raw(&h, &c.to_string());
        let at_hash = {
            use sha2::Digest;
            B64.encode(&sha2::Sha256::digest(b"access-1")[..16])
        };
        use JwtError as E;
        type Want = Result<(), JwtError>;
        let cases: Vec<(&str, String, bool, Want)> = vec![
            ("control", signed(claims(json!({}))), false, Ok(())),
            ("aud as a one-element array", signed(claims(json!({"aud": ["bff"]}))), false, Ok(())),
            ("azp ours with a single aud", signed(claims(json!({"azp": "bff"}))), false, Ok(())),
            ("exp fractional", signed(claims(json!({"exp": NOW as f64 + 300.5}))), false, Ok(())),
            ("exp inside the leeway", signed(claims(json!({"exp": NOW - 59}))), false, Ok(())),
            ("no kid: tried against each key", good.sign_raw(&json!({"alg": "ES256"}), &claims(json!({})).to_string()), false, Ok(())),
            ("cognito token_use id", signed(claims(json!({"token_use": "id"}))), true, Ok(())),
            ("EdDSA with an Ed25519 key", ed_sign(&json!({"alg": "EdDSA", "kid": "ked"}), &claims(json!({}))), false, Ok(())),
            ("EdDSA naming an EC key", ed_sign(&json!({"alg": "EdDSA", "kid": "k1"}), &claims(json!({}))), false, Err(E::UnknownKey)),
            ("ES256 naming the Ed25519 key", good.sign_raw(&es256("ked"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("RS256 with an RSA key", rsa_sign(false, &json!({"alg": "RS256", "kid": "r"}), &claims(json!({}))), false, Ok(())),
            ("PS256 with the same key (no alg on it)", rsa_sign(true, &json!({"alg": "PS256", "kid": "r"}), &claims(json!({}))), false, Ok(())),
            ("PS256 on a key that says RS256", rsa_sign(true, &json!({"alg": "PS256", "kid": "r-rs"}), &claims(json!({}))), false, Err(E::UnknownKey)),
            ("RS256 header over a PSS signature", rsa_sign(true, &json!({"alg": "RS256", "kid": "r"}), &claims(json!({}))), false, Err(E::Signature)),
            ("HS256 keyed with the RSA modulus", {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("r".into());
                jsonwebtoken::encode(&h, &claims(json!({})), &jsonwebtoken::EncodingKey::from_secret(&n)).unwrap()
            }, false, Err(E::Algorithm("HS256".into()))),
            // at_hash: optional in the code flow (not over-enforced), bound when there
            ("no at_hash beside an access token", signed(claims(json!({}))), false, Ok(())),
            ("at_hash of the access token", signed(claims(json!({"at_hash": at_hash}))), false, Ok(())),
            // aud
            ("aud empty array", signed(claims(json!({"aud": []}))), false, Err(E::Audience)),
            ("aud empty string", signed(claims(json!({"aud": ""}))), false, Err(E::Audience)),
            ("aud other case", signed(claims(json!({"aud": "BFF"}))), false, Err(E::Audience)),
            ("aud missing", signed(claims(json!({"aud": null}))), false, Err(E::Audience)),
            ("aud ours twice, no azp", signed(claims(json!({"aud": ["bff", "bff"]}))), false, Err(E::Claim("azp"))),
            ("azp another client, single aud", signed(claims(json!({"azp": "other"}))), false, Err(E::Audience)),
            ("azp not a string", signed(claims(json!({"azp": 5}))), false, Err(E::Malformed)),
            // iss
            ("iss upper-case host", signed(claims(json!({"iss": "https://IDP.example"}))), false, Err(E::Issuer)),
            ("iss trailing slash", signed(claims(json!({"iss": "https://idp.example/"}))), false, Err(E::Issuer)),
            ("iss missing", signed(claims(json!({"iss": null}))), false, Err(E::Malformed)),
            // time
            ("exp as a string", signed(claims(json!({"exp": (NOW + 300).to_string()}))), false, Err(E::Malformed)),
            ("exp huge", signed(claims(json!({"exp": 1e300}))), false, Err(E::Malformed)),
            ("exp negative", signed(claims(json!({"exp": -1}))), false, Err(E::Expired)),
            ("exp missing", signed(claims(json!({"exp": null}))), false, Err(E::Malformed)),
            ("exp past the leeway", signed(claims(json!({"exp": NOW - 61}))), false, Err(E::Expired)),
            ("nbf past the leeway", signed(claims(json!({"nbf": NOW + 61}))), false, Err(E::NotYetValid)),
            ("nbf a string", signed(claims(json!({"nbf": NOW.to_string()}))), false, Err(E::Malformed)),
            ("iat past the leeway", signed(claims(json!({"iat": NOW + 61}))), false, Err(E::IssuedInFuture)),
            ("iat a string", signed(claims(json!({"iat": NOW.to_string()}))), false, Err(E::Malformed)),
            // nonce, sub, token_use, at_hash
            ("nonce missing", signed(claims(json!({"nonce": null}))), false, Err(E::Nonce)),
            ("nonce of another login", signed(claims(json!({"nonce": "n2"}))), false, Err(E::Nonce)),
            ("nonce an array", signed(claims(json!({"nonce": ["n1"]}))), false, Err(E::Malformed)),
            ("sub empty", signed(claims(json!({"sub": ""}))), false, Err(E::Claim("sub"))),
            ("sub a number", signed(claims(json!({"sub": 5}))), false, Err(E::Malformed)),
            ("cognito access token as ID token", signed(claims(json!({"token_use": "access"}))), true, Err(E::TokenUse("id"))),
            ("cognito without token_use", signed(claims(json!({}))), true, Err(E::TokenUse("id"))),
            ("at_hash of another token", signed(claims(json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}))), false, Err(E::AccessTokenHash)),
            // Duplicate JSON keys: the crate refuses them in the claims it knows;
            // others are read as RFC 7519 §4 allows, the lexically last wins
            // (checked below)
            ("sub twice", good.sign_raw(&h, &claims(json!({})).to_string().replacen('{', "{\"sub\":\"admin\",", 1)), false, Err(E::Malformed)),
            ("aud twice", good.sign_raw(&h, &claims(json!({"aud": "other"})).to_string().replacen('{', "{\"aud\":\"bff\",", 1)), false, Err(E::Malformed)),
            ("nonce twice", good.sign_raw(&h, &claims(json!({"nonce": "x"})).to_string().replacen('{', "{\"nonce\":\"n1\",", 1)), false, Err(E::Malformed)),
            ("custom claim twice", good.sign_raw(&h, &claims(json!({"groups": ["user"]})).to_string().replacen('{', "{\"groups\":[\"admin\"],", 1)), false, Ok(())),
            ("alg twice in the header", {
                let t = good.sign_raw(&h, &claims(json!({})).to_string());
                let (_, rest) = t.split_once('.').unwrap();
                format!("{}.{rest}", B64.encode(r#"{"alg":"HS256","alg":"ES256","kid":"k1"}"#))
            }, false, Err(E::Malformed)),
            // header and keys
            ("alg none", format!("{}.{}.", B64.encode(r#"{"alg":"none","kid":"k1"}"#), B64.encode(claims(json!({})).to_string())), false, Err(E::Malformed)),
            ("alg HS256", good.sign_raw(&with(json!({"alg": "HS256"})), &claims(json!({})).to_string()), false, Err(E::Algorithm("HS256".into()))),
            ("ES384 on a P-256 key", good.sign_raw(&with(json!({"alg": "ES384"})), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("ES256 naming the P-384 key", good.sign_raw(&es256("k384"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("a key for encryption", enc.sign_raw(&es256("kenc"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("a key whose alg is another", good.sign_raw(&es256("k-lying"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("unknown kid", good.sign_raw(&es256("k9"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
            ("attacker key under the IdP's kid", attacker.sign_raw(&h, &claims(json!({})).to_string()), false, Err(E::Signature)),
            ("attacker key embedded as jwk", attacker.sign_raw(&json!({"alg": "ES256", "jwk": attacker.jwk}), &claims(json!({})).to_string()), false, Err(E::Signature)),
            ("attacker keys by jku and x5u", attacker.sign_raw(&with(json!({"jku": "https://evil.example/jwks", "x5u": "https://evil.example/c"})), &claims(json!({})).to_string()), false, Err(E::Signature)),
            ("P-384 key's kid, signed by the P-384 key as ES256", p384.sign_raw(&es256("k384"), &claims(json!({})).to_string()), false, Err(E::UnknownKey)),
        ];
        let mut wrong = Vec::new();
        for (name, token, cognito, want) in cases {
            let got = verify(&jwks, &token, &check(cognito)).await.map(|_| ());
            if got != want {
                wrong.push(format!("{name}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let twice = claims(json!({"groups": ["user"]})).to_string().replacen(
            '{',
            "{\"groups\":[\"admin\"],",
            1,
        );
        let kept = verify(&jwks, &good.sign_raw(&h, &twice), &check(false))
            .await
            .unwrap();
        assert_eq!(
            kept["groups"],
            json!(["user"]),
            "the last one, as the upstream's parser reads it"
        );
    }
}
