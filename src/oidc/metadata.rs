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
    let body = resp
        .bytes()
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
}
