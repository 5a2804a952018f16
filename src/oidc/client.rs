//! The token and revocation endpoints (RFC 6749 §4.1.3 and §6, RFC 7009) on
//! `openidconnect`'s client, which builds the requests, authenticates the
//! client (`client_secret_basic` percent-encoded per RFC 6749 §2.3.1,
//! `client_secret_post`, or `client_id` alone for public clients) and reads
//! RFC 6749 §5.2 error answers. Ours: the HTTP hook over the gateway's own
//! reqwest client (its timeouts, CA and no-redirect policy, and a per-call
//! deadline for refreshes), a token-response type that takes `expires_in` as
//! a string too (some IdPs send one; the crate's standard type refuses it),
//! and the mapping of errors onto [`OidcError`].

use super::id_token::{CognitoClaims, IdToken};
use super::{OidcError, ProviderMetadata};
use crate::config::{Secret, TokenEndpointAuth};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken,
    CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IssuerUrl, JsonWebKeySet, OAuth2TokenResponse,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope,
    StandardErrorResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The crate's client with our claim and token-response types: authorization
/// and token endpoints set, revocation set when `R` is `EndpointSet`.
pub type OidcClient<R = EndpointNotSet> = openidconnect::Client<
    CognitoClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    R,
    EndpointSet,
    EndpointNotSet,
>;

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
#[derive(Debug, Serialize, Deserialize)]
#[serde(from = "RawTokenResponse")]
pub struct TokenResponse {
    access_token: AccessToken,
    token_type: CoreTokenType,
    expires_in: Option<u64>,
    refresh_token: Option<RefreshToken>,
    /// The granted scopes; RFC 6749 §5.1 lets the IdP leave it out when they
    /// are the ones requested (Cognito always does).
    #[serde(rename = "scope")]
    scopes: Option<Vec<Scope>>,
    /// The ID token as sent: what the session keeps and `id_token_hint` carries.
    #[serde(rename = "id_token")]
    raw_id_token: Option<String>,
    /// The same, parsed; `None` when it does not parse, which verification
    /// reports as a malformed token (401), not as a broken answer (502).
    #[serde(skip_serializing)]
    id_token: Option<IdToken>,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: AccessToken,
    #[serde(default, deserialize_with = "token_type")]
    token_type: Option<CoreTokenType>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// `token_type` compared case-insensitively (RFC 6749 §5.1); Bearer when
/// absent. Another type is kept here and refused by [`usable`].
fn token_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CoreTokenType>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.map(|t| match t.to_ascii_lowercase().as_str() {
        "bearer" => CoreTokenType::Bearer,
        "mac" => CoreTokenType::Mac,
        other => CoreTokenType::Extension(other.to_string()),
    }))
}

impl From<RawTokenResponse> for TokenResponse {
    fn from(r: RawTokenResponse) -> Self {
        // Some IdPs send `expires_in` as a string.
        let expires_in = match r.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        TokenResponse {
            access_token: r.access_token,
            token_type: r.token_type.unwrap_or(CoreTokenType::Bearer),
            expires_in,
            refresh_token: r.refresh_token,
            scopes: r
                .scope
                .map(|s| s.split_whitespace().map(|s| Scope::new(s.into())).collect()),
            id_token: r.id_token.as_deref().and_then(|t| t.parse().ok()),
            raw_id_token: r.id_token,
        }
    }
}

impl OAuth2TokenResponse for TokenResponse {
    type TokenType = CoreTokenType;
    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &CoreTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }
    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }
    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

impl
    openidconnect::TokenResponse<
        CognitoClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    > for TokenResponse
{
    fn id_token(&self) -> Option<&IdToken> {
        self.id_token.as_ref()
    }
}

impl TokenResponse {
    /// The access token's value.
    pub fn access_token_str(&self) -> &str {
        self.access_token.secret()
    }

    /// The refresh token's value, when one came (a rotated one on refresh).
    /// An empty one is none: it could refresh nothing, and on refresh it
    /// must not replace the one the session holds.
    pub fn refresh_token_str(&self) -> Option<&str> {
        self.refresh_token
            .as_ref()
            .map(|t| t.secret().as_str())
            .filter(|t| !t.is_empty())
    }

    /// The ID token as sent, when one came.
    pub fn id_token_str(&self) -> Option<&str> {
        self.raw_id_token.as_deref()
    }

    /// The ID token parsed, when one came and parses.
    pub fn parsed_id_token(&self) -> Option<&IdToken> {
        self.id_token.as_ref()
    }

    /// The granted scopes, space-separated, when the answer names them.
    pub fn scope(&self) -> Option<String> {
        self.scopes
            .as_ref()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
    }

    /// When the access token expires: `expires_in` counted from `sent_at`
    /// (when the request went out, so an answer that came late does not
    /// stretch it), or the token's own `exp` when it is a JWT, whichever is
    /// sooner; either alone when only one is known.
    pub fn access_expires_at(&self, sent_at: i64) -> Option<i64> {
        let by_expires_in = self
            .expires_in
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| sent_at.saturating_add(s));
        let by_exp = crate::policy::trusted_jwt_payload(self.access_token_str())
            .and_then(|c| c.get("exp")?.as_i64());
        match (by_expires_in, by_exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The client's credentials at the token endpoint.
#[derive(Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub secret: Option<Secret>,
    pub method: TokenEndpointAuth,
}

impl ClientAuth {
    /// The crate's client for these endpoints. Its own key set stays empty:
    /// ID tokens are verified with the JWKS cache's keys (see `id_token`).
    pub fn client(
        &self,
        md: &ProviderMetadata,
        redirect_uri: &str,
    ) -> Result<OidcClient, OidcError> {
        let issuer = IssuerUrl::new(md.issuer().to_string())
            .map_err(|e| OidcError::Metadata(format!("issuer: {e}")))?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| OidcError::Metadata(format!("redirect URI: {e}")))?;
        let client: OidcClient = openidconnect::Client::new(
            ClientId::new(self.client_id.clone()),
            issuer,
            JsonWebKeySet::default(),
        )
        .set_auth_uri(AuthUrl::from_url(md.authorization_endpoint().clone()))
        .set_token_uri(TokenUrl::from_url(md.token_endpoint()?.clone()))
        .set_redirect_uri(redirect)
        // `provider.scopes` holds `openid` already (validated); the crate would add a second.
        .disable_openid_scope()
        .set_auth_type(match self.method {
            TokenEndpointAuth::ClientSecretBasic => AuthType::BasicAuth,
            TokenEndpointAuth::ClientSecretPost => AuthType::RequestBody,
        });
        Ok(match &self.secret {
            Some(s) => client.set_client_secret(ClientSecret::new(s.expose().to_string())),
            // A public client: the crate sends `client_id` in the body.
            None => client,
        })
    }
}

/// The crate's HTTP hook over the gateway's reqwest client (its timeouts,
/// private CA, no redirects followed). `timeout` replaces the client's usual
/// one for this call. `plain_http` is the configured `http://` twin of an
/// `https://` URL the crate insists on (revocation, with
/// `provider.insecure_allow_http` only): the request goes there instead.
pub fn http_client(
    http: &reqwest::Client,
    timeout: Option<Duration>,
    plain_http: Option<url::Url>,
) -> impl Fn(
    HttpRequest,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'static>,
> {
    let http = http.clone();
    move |request: HttpRequest| {
        let http = http.clone();
        let plain_http = plain_http.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut url = url::Url::parse(&parts.uri.to_string()).map_err(|_| HttpError::Url)?;
            if let Some(plain) = plain_http {
                let mut twin = plain.clone();
                let _ = twin.set_scheme("https");
                if twin == url {
                    url = plain;
                }
            }
            let mut req = http
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| HttpError::Send(e.without_url().to_string()))?;
            let mut out = http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                out = out.header(name, value);
            }
            let body = read_body(resp, MAX_IDP_BODY)
                .await
                .map_err(HttpError::Send)?;
            out.body(body).map_err(|_| HttpError::Url)
        })
    }
}

/// The most read of one IdP answer (token, revocation, discovery, JWKS): far
/// above any real one (a token answer with a big ID token is a few tens of KB),
/// and a bound on what a rogue or compromised IdP can make the gateway hold.
pub const MAX_IDP_BODY: usize = 1024 * 1024;

/// Reads an answer's body, refusing one over `max` bytes, whether announced by
/// `Content-Length` or only found while reading (chunked).
pub async fn read_body(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("the answer is larger than {max} bytes");
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if out.len() + chunk.len() > max {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Why the HTTP hook failed (no URL in it: it may carry a code or token).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Send(String),
    #[error("the request could not be built")]
    Url,
}

/// The crate's token-call errors as ours. RFC 6749 §5.2: the error code is
/// safe to log; the description may echo input, so it is not kept.
fn token_error<T>(what: &str, e: RequestTokenError<HttpError, T>) -> OidcError
where
    T: openidconnect::ErrorResponse + Serialize + 'static,
{
    match e {
        RequestTokenError::ServerResponse(r) => {
            // Logged: kept to a short code's characters (RFC 6749 §5.2 codes
            // are such), so a rogue answer cannot forge log lines or flood them.
            let code: String = serde_json::to_value(&r)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_default()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            let code = if code.is_empty() {
                "error".into()
            } else {
                code
            };
            if code == "invalid_grant" {
                OidcError::InvalidGrant
            } else {
                OidcError::TokenEndpoint(code)
            }
        }
        RequestTokenError::Request(e) => OidcError::Unreachable(format!("{what}: {e}")),
        // An error status whose body is not RFC 6749 §5.2 JSON arrives here too.
        RequestTokenError::Parse(..) => {
            OidcError::Protocol(format!("{what} answered an unreadable body"))
        }
        RequestTokenError::Other(e) => OidcError::TokenEndpoint(e),
    }
}

/// What the gateway can use from a token answer, as machine tokens are held
/// to: a Bearer token (RFC 6750; `token_type` left out is taken as Bearer,
/// a DPoP- or MAC-bound one could not be sent on as one) whose value is
/// RFC 6750 §2.1 token text, so it can neither break nor smuggle anything
/// into the `Authorization` header it is sent upstream in.
pub(super) fn usable(t: TokenResponse) -> Result<TokenResponse, OidcError> {
    if *t.token_type() != CoreTokenType::Bearer {
        // Quoted and cut short: it is logged.
        let named: String = t.token_type().as_ref().chars().take(32).collect();
        return Err(OidcError::Protocol(format!(
            "the token answer has token_type {named:?}, not Bearer"
        )));
    }
    if !super::machine::is_b64token(t.access_token_str()) {
        return Err(OidcError::Protocol(
            "the token answer's access_token is not RFC 6750 token text".into(),
        ));
    }
    Ok(t)
}

/// Redeems an authorization code with its PKCE verifier.
pub async fn exchange_code(
    http: &reqwest::Client,
    client: &OidcClient,
    code: &str,
    verifier: &str,
) -> Result<TokenResponse, OidcError> {
    client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(&http_client(http, None, None))
        .await
        .map_err(|e| token_error("token endpoint", e))
        .and_then(usable)
}

/// The refresh-token grant (RFC 6749 §6). `timeout` replaces the client's
/// usual one: a refresh is left to finish even when the requests that wanted
/// it have stopped waiting, so a rotated refresh token is not lost.
pub async fn refresh(
    http: &reqwest::Client,
    client: &OidcClient,
    refresh_token: &str,
    timeout: Duration,
) -> Result<TokenResponse, OidcError> {
    let token = RefreshToken::new(refresh_token.to_string());
    client
        .exchange_refresh_token(&token)
        .request_async(&http_client(http, Some(timeout), None))
        .await
        .map_err(|e| token_error("token endpoint", e))
        .and_then(usable)
}

/// RFC 7009 revocation of a refresh token (or, without one, the access
/// token); the caller decides how long to wait.
pub async fn revoke(
    http: &reqwest::Client,
    client: OidcClient,
    endpoint: &url::Url,
    token: CoreRevocableToken,
) -> Result<(), OidcError> {
    // The crate sends revocations over TLS only (RFC 7009 §5); an `http://`
    // endpoint exists only with `provider.insecure_allow_http`.
    let plain = (endpoint.scheme() == "http").then(|| endpoint.clone());
    let mut url = endpoint.clone();
    let _ = url.set_scheme("https");
    client
        .set_revocation_url(RevocationUrl::from_url(url))
        .revoke_token(token)
        .map_err(|e| OidcError::TokenEndpoint(format!("revocation: {e}")))?
        .request_async(&http_client(http, None, plain))
        .await
        .map_err(|e| match token_error("revocation endpoint", e) {
            OidcError::InvalidGrant => OidcError::TokenEndpoint("revocation: invalid_grant".into()),
            other => other,
        })
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use openidconnect::core::CoreErrorResponseType;

    fn server(code: &str) -> OidcError {
        let e = StandardErrorResponse::new(
            CoreErrorResponseType::Extension(code.into()),
            Some("desc\nwith=injection".into()),
            None,
        );
        token_error::<StandardErrorResponse<CoreErrorResponseType>>(
            "token endpoint",
            RequestTokenError::ServerResponse(e),
        )
    }

    /// What a rogue token endpoint's error answer can put in the logs.
    #[test]
    fn error_codes_are_short_and_single_line() {
        let got = |code: &str| {
            let m = server(code).to_string();
            m.strip_prefix("identity provider answered with error ")
                .unwrap_or(&m)
                .to_string()
        };
        assert!(matches!(server("invalid_grant"), OidcError::InvalidGrant));
        assert_eq!(got("invalid_client"), "invalid_client");
        let forged = got("x\n2026-12-07T14:00:00Z INFO signed in sub=admin\r\u{1b}[0m");
        assert!(
            !forged.contains(['\n', '\r', '\u{1b}', ' ', '=']),
            "{forged:?}"
        );
        assert!(got(&"a".repeat(10_000)).len() < 100);
        assert_eq!(got("\n\n"), "error");
        assert!(
            !got("invalid_client").contains("desc"),
            "the description is not kept"
        );
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::TokenResponse;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn answer(access_token: &str, expires_in: Option<serde_json::Value>) -> TokenResponse {
        let mut body = serde_json::json!({"access_token": access_token, "token_type": "Bearer"});
        if let Some(e) = expires_in {
            body["expires_in"] = e;
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn access_expiry_counts_from_the_request_and_never_past_exp() {
        let jwt = |exp: i64| {
            let payload = B64.encode(format!("{{\"exp\":{exp}}}"));
            format!("eyJhbGciOiJub25lIn0.{payload}.sig")
        };
        let n = |v: i64| Some(serde_json::json!(v));
        assert_eq!(answer("opaque", n(300)).access_expires_at(1000), Some(1300));
        assert_eq!(
            answer("opaque", Some("60".into())).access_expires_at(1000),
            Some(1060)
        );
        assert_eq!(answer("opaque", None).access_expires_at(1000), None);
        // A JWT's own exp bounds it (an answer that came late), and stands in
        // for a missing expires_in.
        assert_eq!(
            answer(&jwt(1100), n(300)).access_expires_at(1000),
            Some(1100)
        );
        assert_eq!(
            answer(&jwt(2000), n(300)).access_expires_at(1000),
            Some(1300)
        );
        assert_eq!(answer(&jwt(1100), None).access_expires_at(1000), Some(1100));
    }

    #[test]
    fn token_answers_are_read_leniently_where_idps_differ() {
        let t: TokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "a", "token_type": "bearer", "expires_in": "3600",
            "scope": "openid  email", "id_token": "not.a.jwt", "refresh_token": "r"
        }))
        .unwrap();
        assert_eq!(t.scope().as_deref(), Some("openid email"));
        assert_eq!(t.id_token_str(), Some("not.a.jwt"));
        assert!(
            t.parsed_id_token().is_none(),
            "kept raw, refused at verification"
        );
        assert_eq!(t.refresh_token_str(), Some("r"));
        assert_eq!(t.access_expires_at(0), Some(3600));
        let t: TokenResponse = serde_json::from_value(serde_json::json!({
            "access_token": "a", "token_type": "Bearer", "refresh_token": ""
        }))
        .unwrap();
        assert_eq!(
            t.refresh_token_str(),
            None,
            "an empty refresh token is none"
        );
    }
}
