//! Provider metadata: from OpenID Connect Discovery 1.0 for a generic issuer, or
//! derived from the Cognito shorthand (Cognito's hosted UI lives on the pool's
//! domain, its issuer and JWKS on `cognito-idp`). Explicit endpoint overrides
//! win in both cases, so the issuer may differ from the host serving JWKS.

use super::OidcError;
use crate::config::{CognitoConfig, ProviderConfig};
use serde::Deserialize;
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

#[derive(Debug, Clone)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    pub jwks_uri: Url,
    pub logout: LogoutStyle,
    pub is_cognito: bool,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    #[serde(default)]
    userinfo_endpoint: Option<Url>,
    #[serde(default)]
    revocation_endpoint: Option<Url>,
    #[serde(default)]
    end_session_endpoint: Option<Url>,
    jwks_uri: Url,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
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

/// Builds metadata from config, fetching the discovery document when needed.
pub async fn resolve(
    cfg: &ProviderConfig,
    http: &reqwest::Client,
) -> Result<ProviderMetadata, OidcError> {
    let mut md = if let Some(cognito) = &cfg.cognito {
        let issuer = cognito_issuer(cognito);
        let base = cognito_domain_url(cognito)?;
        let at = |p: &str| base.join(p).map_err(|e| OidcError::Metadata(e.to_string()));
        let mut md = ProviderMetadata {
            jwks_uri: Url::parse(&format!("{issuer}/.well-known/jwks.json"))
                .map_err(|e| OidcError::Metadata(e.to_string()))?,
            issuer,
            authorization_endpoint: at("/oauth2/authorize")?,
            token_endpoint: at("/oauth2/token")?,
            userinfo_endpoint: Some(at("/oauth2/userInfo")?),
            revocation_endpoint: Some(at("/oauth2/revoke")?),
            logout: LogoutStyle::Cognito(at("/logout")?),
            is_cognito: true,
        };
        // A discovery override (emulators) may still supply endpoints.
        if let Some(url) = &cfg.discovery_url {
            let d = fetch(http, url.clone()).await?;
            md.authorization_endpoint = d.authorization_endpoint;
            md.token_endpoint = d.token_endpoint;
            md.jwks_uri = d.jwks_uri;
        }
        md
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
        if d.issuer != issuer {
            return Err(OidcError::Metadata(format!(
                "discovery document names issuer {:?}, config says {:?}",
                d.issuer, issuer
            )));
        }
        if let Some(methods) = &d.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                tracing::warn!(
                    "the provider does not advertise PKCE S256; oidc-bff sends it anyway"
                );
            }
        }
        ProviderMetadata {
            issuer: d.issuer,
            authorization_endpoint: d.authorization_endpoint,
            token_endpoint: d.token_endpoint,
            userinfo_endpoint: d.userinfo_endpoint,
            revocation_endpoint: d.revocation_endpoint,
            jwks_uri: d.jwks_uri,
            logout: d
                .end_session_endpoint
                .map(LogoutStyle::EndSession)
                .unwrap_or(LogoutStyle::None),
            is_cognito: false,
        }
    };
    apply_overrides(&mut md, cfg);
    Ok(md)
}

fn apply_overrides(md: &mut ProviderMetadata, cfg: &ProviderConfig) {
    if let Some(u) = &cfg.jwks_url {
        md.jwks_uri = u.clone();
    }
    if let Some(u) = &cfg.authorization_endpoint {
        md.authorization_endpoint = u.clone();
    }
    if let Some(u) = &cfg.token_endpoint {
        md.token_endpoint = u.clone();
    }
    if let Some(u) = &cfg.userinfo_endpoint {
        md.userinfo_endpoint = Some(u.clone());
    }
    if let Some(u) = &cfg.revocation_endpoint {
        md.revocation_endpoint = Some(u.clone());
    }
    if let Some(u) = &cfg.end_session_endpoint {
        md.logout = if md.is_cognito {
            LogoutStyle::Cognito(u.clone())
        } else {
            LogoutStyle::EndSession(u.clone())
        };
    }
}

async fn fetch(http: &reqwest::Client, url: Url) -> Result<Discovery, OidcError> {
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
    resp.json()
        .await
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
            md.issuer,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        assert_eq!(
            md.jwks_uri.as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(
            md.authorization_endpoint.as_str(),
            "https://app.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
        );
        assert_eq!(
            md.token_endpoint.as_str(),
            "https://app.auth.eu-west-1.amazoncognito.com/oauth2/token"
        );
        assert_eq!(
            md.revocation_endpoint.unwrap().as_str(),
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
            md.issuer,
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X"
        );
        assert_eq!(
            md.jwks_uri.as_str(),
            "http://127.0.0.1:9/.well-known/jwks.json"
        );
        assert_eq!(
            md.token_endpoint.as_str(),
            "http://127.0.0.1:9/oauth2/token"
        );
    }
}
