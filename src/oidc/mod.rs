//! Talking to the identity provider. The sign-in protocol is `openidconnect`'s
//! (and `oauth2`'s): metadata types, the authorization request, code exchange,
//! client authentication, ID-token verification, refresh and revocation. Ours
//! is what is specific to a BFF and to Cognito: the JWKS cache that feeds both
//! the crate and jsonwebtoken, bearer and logout-token verification, the
//! pending-login cookie, the Cognito shorthand and logout, and the rules that
//! are stricter than the crate's (docs/ARCHITECTURE.md has the table).

pub mod client;
pub mod flow;
pub mod grant;
pub mod hints;
pub mod id_token;
pub mod jwks;
pub mod jwt;
pub mod logout;
pub mod machine;
pub mod metadata;
pub mod return_to;

pub use metadata::{LogoutStyle, ProviderMetadata};

use crate::clock::Clock;
use crate::config::Config;
use client::ClientAuth;
use jwks::{HttpJwksSource, JwksCache};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("provider metadata unavailable: {0}")]
    Metadata(String),
    #[error("JWKS unavailable: {0}")]
    Jwks(String),
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider answered with error {0}")]
    TokenEndpoint(String),
    #[error("the grant is invalid or expired (invalid_grant)")]
    InvalidGrant,
    #[error("identity provider broke the protocol: {0}")]
    Protocol(String),
    #[error("token rejected: {0}")]
    Token(jwt::JwtError),
}

/// The configured provider: metadata loaded once (retried until it loads), keys, credentials.
pub struct Provider {
    pub(crate) config: Arc<Config>,
    http: reqwest::Client,
    metadata: OnceCell<Arc<ProviderMetadata>>,
    jwks: OnceCell<Arc<JwksCache>>,
    pub auth: ClientAuth,
    /// What token times (`exp`, `nbf`, `iat`) and the JWKS cooldown are judged by.
    clock: Clock,
}

impl Provider {
    pub fn new(config: Arc<Config>, http: reqwest::Client) -> Self {
        let auth = ClientAuth {
            client_id: config.provider.client_id.clone(),
            secret: config.provider.client_secret.clone(),
            method: config.provider.token_endpoint_auth,
        };
        Provider {
            config,
            http,
            metadata: OnceCell::new(),
            jwks: OnceCell::new(),
            auth,
            clock: Clock::system(),
        }
    }

    /// The same, judging token times by `clock` (the state's clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Metadata, fetched on first use; a failure is retried on the next call.
    pub async fn metadata(&self) -> Result<Arc<ProviderMetadata>, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let md = metadata::resolve(&self.config.provider, &self.http).await?;
                tracing::info!(issuer = %crate::claims::log_text(md.issuer()), "identity provider metadata loaded");
                Ok(Arc::new(md))
            })
            .await
            .cloned()
    }

    pub async fn jwks(&self) -> Result<Arc<JwksCache>, OidcError> {
        let md = self.metadata().await?;
        self.jwks
            .get_or_try_init(|| async {
                Ok::<_, OidcError>(Arc::new(
                    JwksCache::with_cooldown(
                        Box::new(HttpJwksSource {
                            http: self.http.clone(),
                            url: md.jwks_uri().clone(),
                        }),
                        self.config.provider.jwks_cooldown,
                    )
                    .with_clock(self.clock.clone()),
                ))
            })
            .await
            .cloned()
    }

    /// Ready when metadata and keys are loaded.
    pub fn is_ready(&self) -> bool {
        self.jwks.get().is_some_and(|j| j.is_loaded())
    }

    /// Loads metadata and keys now; called at start-up and retried by `/readyz`.
    pub async fn warm(&self) -> Result<(), OidcError> {
        self.jwks().await?.warm().await
    }

    /// The crate's client for this provider (see `client::ClientAuth::client`).
    pub fn oidc_client(&self, md: &ProviderMetadata) -> Result<client::OidcClient, OidcError> {
        self.auth.client(md, &self.config.redirect_uri())
    }

    pub fn leeway(&self) -> Duration {
        self.config.provider.leeway
    }

    /// Verifies a bearer access token from an API client: signature, `iss`,
    /// `exp`/`nbf`/`iat`, and audience: `aud` in `audiences` (default: the
    /// provider's), or for a token without `aud` `client_id` in them. Cognito
    /// access tokens have their own shape, and nothing else passes for one:
    /// `token_use = "access"` (so an ID token cannot be used as an access
    /// token) and `client_id` ours or one of `audiences`; an `aud`, which
    /// Cognito never puts in an access token, does not stand in for it.
    pub async fn verify_access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<jwt::Claims, OidcError> {
        let md = self.metadata().await?;
        let jwks = self.jwks().await?;
        let mut allowed: Vec<String> = if audiences.is_empty() {
            self.config.provider.audiences.clone()
        } else {
            audiences.to_vec()
        };
        // Cognito access tokens name the app client in `client_id`. Other
        // providers need `audiences` set (validation insists): an ID token's
        // `aud` is our client id, and it must not pass as an access token.
        if md.is_cognito {
            allowed.push(self.auth.client_id.clone());
        }
        let expect = jwt::Expect {
            issuer: md.issuer(),
            audience: if md.is_cognito {
                jwt::Audience::ClientId(&allowed)
            } else {
                jwt::Audience::AnyOrClientId(&allowed)
            },
            token_use: md.is_cognito.then_some("access"),
            leeway: self.leeway(),
            now: self.clock.now_secs(),
        };
        Ok(jwt::verify(&jwks, token, &expect).await?)
    }
}
