//! Provider metadata as `openidconnect`'s `ProviderMetadata`: from OpenID
//! Connect Discovery 1.0 for a generic issuer, or built by hand from the
//! Cognito shorthand (Cognito's hosted UI lives on the pool's domain, its
//! issuer and JWKS on `cognito-idp`). Explicit endpoint overrides win in both
//! cases, so the issuer may differ from the host serving JWKS. Ours: fetching
//! the document with the gateway's HTTP client from `provider.discovery_url`
//! (which need not be under the issuer; the crate's `discover_async` insists
//! on the issuer's and fetches a JWKS our cache owns), the Cognito shorthand
//! and the overrides, and the logout style.

use super::OidcError;
use crate::config::{CognitoConfig, ProviderConfig};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, IssuerUrl, JsonWebKeySetUrl, ResponseTypes, TokenUrl,
    UserInfoUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

/// How the IdP wants RP-initiated logout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutStyle {
    /// OpenID Connect RP-Initiated Logout 1.0: `id_token_hint`, `post_logout_redirect_uri`.
    EndSession(Url),
    /// Cognito's `/logout?client_id=…&logout_uri=…`, which rejects the standard parameters.
    Cognito(Url),
    /// The IdP offers no logout endpoint: only the local session ends.
    None,
}

/// Discovery fields outside OIDC Discovery 1.0 §3 that the gateway uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MoreMetadata {
    /// RFC 7009 / RFC 8414.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<Url>,
    /// OpenID Connect RP-Initiated Logout 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<Url>,
    /// RFC 8414 (PKCE methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207 §3: the IdP puts `iss` in every authorization response, so a
    /// callback without one is refused. `"true"` as a string counts too (the
    /// stricter reading of a sloppy document).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_bool"
    )]
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Bool(b)) => Some(b),
        Some(serde_json::Value::String(s)) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    })
}

impl AdditionalProviderMetadata for MoreMetadata {}

/// The crate's provider metadata with [`MoreMetadata`].
pub type OidcMetadata = openidconnect::ProviderMetadata<
    MoreMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[derive(Debug, Clone)]
pub struct ProviderMetadata {
    pub oidc: OidcMetadata,
    pub logout: LogoutStyle,
    pub is_cognito: bool,
}

impl ProviderMetadata {
    /// The issuer exactly as the IdP names itself (`iss` must match it byte for byte).
    pub fn issuer(&self) -> &str {
        self.oidc.issuer().as_str()
    }

    pub fn authorization_endpoint(&self) -> &Url {
        self.oidc.authorization_endpoint().url()
    }

    /// Always present: [`resolve`] refuses metadata without one.
    pub fn token_endpoint(&self) -> Result<&Url, OidcError> {
        self.oidc
            .token_endpoint()
            .map(|t| t.url())
            .ok_or_else(|| OidcError::Metadata("the provider names no token_endpoint".into()))
    }

    pub fn revocation_endpoint(&self) -> Option<&Url> {
        self.oidc.additional_metadata().revocation_endpoint.as_ref()
    }

    pub fn jwks_uri(&self) -> &Url {
        self.oidc.jwks_uri().url()
    }

    /// RFC 9207: whether the callback must carry `iss`.
    pub fn requires_iss_in_callback(&self) -> bool {
        self.oidc
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true)
    }

    /// Every endpoint the gateway talks to or sends the browser to, by name.
    fn endpoints(&self) -> Vec<(&'static str, &Url)> {
        let mut out = vec![
            ("authorization_endpoint", self.authorization_endpoint()),
            ("jwks_uri", self.jwks_uri()),
        ];
        if let Some(t) = self.oidc.token_endpoint() {
            out.push(("token_endpoint", t.url()));
        }
        if let Some(u) = self.oidc.userinfo_endpoint() {
            out.push(("userinfo_endpoint", u.url()));
        }
        if let Some(u) = self.revocation_endpoint() {
            out.push(("revocation_endpoint", u));
        }
        if let LogoutStyle::EndSession(u) | LogoutStyle::Cognito(u) = &self.logout {
            out.push(("end_session_endpoint", u));
        }
        out
    }

    /// The endpoints must be https, as the configured ones must: a discovery
    /// document (fetched over TLS) naming an `http://` token endpoint or JWKS
    /// would send the code and client secret, or take signing keys, in the
    /// clear. `http://` only with `provider.insecure_allow_http`.
    pub fn check_schemes(&self, allow_http: bool) -> Result<(), OidcError> {
        for (name, url) in self.endpoints() {
            let ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
            if !ok {
                return Err(OidcError::Metadata(format!(
                    "{name} {url} is not https (http:// only with provider.insecure_allow_http)"
                )));
            }
        }
        Ok(())
    }
}

/// The issuer Cognito puts in `iss`.
pub fn cognito_issuer(c: &CognitoConfig) -> String {
    format!(
        "https://cognito-idp.{}.amazonaws.com/{}",
        c.region, c.user_pool_id
    )
}

/// The hosted-UI base URL; `domain` may carry a scheme (development IdPs).
pub fn cognito_domain_url(c: &CognitoConfig) -> Result<Url, OidcError> {
    let raw = if c.domain.contains("://") {
        c.domain.clone()
    } else {
        format!("https://{}", c.domain)
    };
    Url::parse(&raw).map_err(|e| OidcError::Metadata(format!("cognito domain: {e}")))
}

fn issuer_url(issuer: String) -> Result<IssuerUrl, OidcError> {
    IssuerUrl::new(issuer).map_err(|e| OidcError::Metadata(format!("issuer: {e}")))
}

/// Cognito's metadata, built by hand: it is what Cognito's own discovery
/// document says, without a request to the pool.
fn cognito(cognito: &CognitoConfig) -> Result<OidcMetadata, OidcError> {
    let issuer = cognito_issuer(cognito);
    let base = cognito_domain_url(cognito)?;
    let at = |p: &str| base.join(p).map_err(|e| OidcError::Metadata(e.to_string()));
    let jwks = Url::parse(&format!("{issuer}/.well-known/jwks.json"))
        .map_err(|e| OidcError::Metadata(e.to_string()))?;
    Ok(OidcMetadata::new(
        issuer_url(issuer)?,
        AuthUrl::from_url(at("/oauth2/authorize")?),
        JsonWebKeySetUrl::from_url(jwks),
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        MoreMetadata {
            revocation_endpoint: Some(at("/oauth2/revoke")?),
            // Cognito's `/logout` is not RP-Initiated Logout: see `LogoutStyle`.
            end_session_endpoint: None,
            code_challenge_methods_supported: Some(vec!["S256".into()]),
            authorization_response_iss_parameter_supported: None,
        },
    )
    .set_token_endpoint(Some(TokenUrl::from_url(at("/oauth2/token")?)))
    .set_userinfo_endpoint(Some(UserInfoUrl::from_url(at("/oauth2/userInfo")?))))
}

/// Builds metadata from config, fetching the discovery document when needed.
pub async fn resolve(
    cfg: &ProviderConfig,
    http: &reqwest::Client,
) -> Result<ProviderMetadata, OidcError> {
    let mut md = if let Some(c) = &cfg.cognito {
        let mut md = cognito(c)?;
        // A discovery override (emulators) may still supply endpoints.
        if let Some(url) = &cfg.discovery_url {
            let d = fetch(http, url.clone()).await?;
            md = md
                .set_authorization_endpoint(d.authorization_endpoint().clone())
                .set_token_endpoint(d.token_endpoint().cloned())
                .set_jwks_uri(d.jwks_uri().clone());
        }
        let logout = LogoutStyle::Cognito(
            cognito_domain_url(c)?
                .join("/logout")
                .map_err(|e| OidcError::Metadata(e.to_string()))?,
        );
        ProviderMetadata {
            oidc: md,
            logout,
            is_cognito: true,
        }
    } else {
        let issuer = cfg.issuer.clone().unwrap_or_default();
        let url = match &cfg.discovery_url {
            Some(u) => u.clone(),
            None => Url::parse(&format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ))
            .map_err(|e| OidcError::Metadata(format!("issuer: {e}")))?,
        };
        let d = fetch(http, url).await?;
        // OIDC Discovery 1.0 §4.3: the issuer in the document must be the one configured.
        if d.issuer().as_str() != issuer {
            return Err(OidcError::Metadata(format!(
                "discovery document names issuer {:?}, config says {:?}",
                d.issuer().as_str(),
                issuer
            )));
        }
        if let Some(methods) = &d.additional_metadata().code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                tracing::warn!(
                    "the provider does not advertise PKCE S256; oidc-bff sends it anyway"
                );
            }
        }
        let logout = d
            .additional_metadata()
            .end_session_endpoint
            .clone()
            .map(LogoutStyle::EndSession)
            .unwrap_or(LogoutStyle::None);
        ProviderMetadata {
            oidc: d,
            logout,
            is_cognito: false,
        }
    };
    apply_overrides(&mut md, cfg);
    md.token_endpoint()?;
    md.check_schemes(cfg.insecure_allow_http)?;
    Ok(md)
}

fn apply_overrides(md: &mut ProviderMetadata, cfg: &ProviderConfig) {
    let mut o = md.oidc.clone();
    if let Some(u) = &cfg.jwks_url {
        o = o.set_jwks_uri(JsonWebKeySetUrl::from_url(u.clone()));
    }
    if let Some(u) = &cfg.authorization_endpoint {
        o = o.set_authorization_endpoint(AuthUrl::from_url(u.clone()));
    }
    if let Some(u) = &cfg.token_endpoint {
        o = o.set_token_endpoint(Some(TokenUrl::from_url(u.clone())));
    }
    if let Some(u) = &cfg.userinfo_endpoint {
        o = o.set_userinfo_endpoint(Some(UserInfoUrl::from_url(u.clone())));
    }
    if let Some(u) = &cfg.revocation_endpoint {
        o.additional_metadata_mut().revocation_endpoint = Some(u.clone());
    }
    md.oidc = o;
    if let Some(u) = &cfg.end_session_endpoint {
        md.logout = if md.is_cognito {
            LogoutStyle::Cognito(u.clone())
        } else {
            LogoutStyle::EndSession(u.clone())
        };
    }
}

async fn fetch(http: &reqwest::Client, url: Url) -> Result<OidcMetadata, OidcError> {
    let resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| OidcError::Metadata(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(OidcError::Metadata(format!(
            "GET {url}: HTTP {}",
            resp.status()
        )));
    }
    let body = super::client::read_body(resp, super::client::MAX_IDP_BODY)
        .await
        .map_err(|e| OidcError::Metadata(format!("GET {url}: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| OidcError::Metadata(format!("GET {url}: not a discovery document: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cognito_shorthand_derives_everything() {
        let cfg: ProviderConfig = toml::from_str(
            r#"client_id = "abc"
               cognito = { region = "eu-west-1", user_pool_id = "eu-west-1_AbC123", domain = "app.auth.eu-west-1.amazoncognito.com" }"#,
        )
        .unwrap();
        crate::install_crypto_provider();
        let md = resolve(&cfg, &reqwest::Client::new()).await.unwrap();
        assert_eq!(
            md.issuer(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        assert_eq!(
            md.jwks_uri().as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(
            md.authorization_endpoint().as_str(),
            "https://app.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
        );
        assert_eq!(
            md.token_endpoint().unwrap().as_str(),
            "https://app.auth.eu-west-1.amazoncognito.com/oauth2/token"
        );
        assert_eq!(
            md.revocation_endpoint().unwrap().as_str(),
            "https://app.auth.eu-west-1.amazoncognito.com/oauth2/revoke"
        );
        assert_eq!(
            md.logout,
            LogoutStyle::Cognito(
                Url::parse("https://app.auth.eu-west-1.amazoncognito.com/logout").unwrap()
            )
        );
        assert!(md.is_cognito);
    }

    #[tokio::test]
    async fn overrides_win() {
        let cfg: ProviderConfig = toml::from_str(
            r#"client_id = "abc"
               cognito = { region = "us-east-1", user_pool_id = "us-east-1_X", domain = "http://127.0.0.1:9" }
               jwks_url = "http://127.0.0.1:9/.well-known/jwks.json"
               insecure_allow_http = true"#,
        )
        .unwrap();
        crate::install_crypto_provider();
        let md = resolve(&cfg, &reqwest::Client::new()).await.unwrap();
        assert_eq!(
            md.issuer(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X"
        );
        assert_eq!(
            md.jwks_uri().as_str(),
            "http://127.0.0.1:9/.well-known/jwks.json"
        );
        assert_eq!(
            md.token_endpoint().unwrap().as_str(),
            "http://127.0.0.1:9/oauth2/token"
        );
    }

    /// A discovery document (fetched over TLS) may not downgrade an endpoint
    /// to `http://`, nor name a scheme that is not HTTP at all.
    #[test]
    fn discovered_endpoints_must_be_https() {
        let doc = |field: &str, value: &str| {
            let mut d = serde_json::json!({
                "issuer": "https://idp.example",
                "authorization_endpoint": "https://idp.example/authorize",
                "token_endpoint": "https://idp.example/token",
                "jwks_uri": "https://idp.example/jwks",
                "revocation_endpoint": "https://idp.example/revoke",
                "end_session_endpoint": "https://idp.example/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            if !field.is_empty() {
                d[field] = value.into();
            }
            let oidc: OidcMetadata = serde_json::from_value(d).unwrap();
            let logout = oidc
                .additional_metadata()
                .end_session_endpoint
                .clone()
                .map_or(LogoutStyle::None, LogoutStyle::EndSession);
            ProviderMetadata {
                oidc,
                logout,
                is_cognito: false,
            }
        };
        assert!(doc("", "").check_schemes(false).is_ok(), "control");
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "userinfo_endpoint",
            "revocation_endpoint",
            "end_session_endpoint",
        ] {
            let md = doc(field, "http://169.254.169.254/latest");
            let err = md.check_schemes(false).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
            assert!(md.check_schemes(true).is_ok(), "{field}: with the flag");
            let odd = doc(field, "ftp://idp.example/x");
            assert!(odd.check_schemes(true).is_err(), "{field}: ftp");
        }
    }

    /// `resolve` applies the rule to whatever it ends with (here an override
    /// that skipped config validation).
    #[tokio::test]
    async fn resolve_refuses_http_endpoints_without_the_flag() {
        let toml = |flag: bool| {
            format!(
                r#"client_id = "abc"
                   cognito = {{ region = "eu-west-1", user_pool_id = "eu-west-1_A", domain = "app.example" }}
                   revocation_endpoint = "http://10.0.0.1/revoke"
                   insecure_allow_http = {flag}"#
            )
        };
        crate::install_crypto_provider();
        for (flag, ok) in [(false, false), (true, true)] {
            let cfg: ProviderConfig = toml::from_str(&toml(flag)).unwrap();
            let got = resolve(&cfg, &reqwest::Client::new()).await;
            assert_eq!(got.is_ok(), ok, "insecure_allow_http = {flag}");
        }
    }

    /// RFC 9207's flag, as IdPs write it.
    #[test]
    fn iss_parameter_flag_is_read_strictly_true() {
        let more = |v: serde_json::Value| {
            serde_json::from_value::<MoreMetadata>(
                serde_json::json!({ "authorization_response_iss_parameter_supported": v }),
            )
            .unwrap()
            .authorization_response_iss_parameter_supported
        };
        assert_eq!(more(true.into()), Some(true));
        assert_eq!(more("true".into()), Some(true));
        assert_eq!(more("TRUE".into()), Some(true));
        assert_eq!(more(false.into()), Some(false));
        assert_eq!(more("yes".into()), Some(false));
        assert_eq!(more(1.into()), None);
        assert_eq!(more(serde_json::Value::Null), None);
        let absent: MoreMetadata = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.authorization_response_iss_parameter_supported, None);
    }
}
