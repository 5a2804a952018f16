//! The client-credentials grant (RFC 6749 §4.4): the gateway asks the token
//! endpoint for a machine token of its own, for routes with
//! `token = "client"`. The call is the `oauth2` crate's; this module only
//! maps the configured client and the answer onto the gateway's types. It
//! caches nothing: the cache (single flight, shared across replicas) sits
//! above it, in `auth::machine`.

use super::OidcError;
use crate::config::{Secret, TokenEndpointAuth};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use std::time::Duration;
use url::Url;

/// The `oauth2` client with the gateway's token-response type, which reads
/// answers as leniently as the sign-in's do (`expires_in` as a string, as
/// some IdPs send it; `token_type` in any case).
type CredentialsClient = oauth2::Client<
    BasicErrorResponse,
    super::client::TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The client that asks for machine tokens.
#[derive(Debug, Clone)]
pub struct MachineClient {
    pub client_id: String,
    pub secret: Secret,
    pub method: TokenEndpointAuth,
}

/// What the machine token is for: its scopes and, optionally, its resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MachineGrant {
    pub scopes: Vec<String>,
    /// RFC 8707 `resource`.
    pub resource: Option<String>,
}

/// A machine token as the token endpoint issued it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    /// How long it lives, as the answer said (`expires_in`).
    pub expires_in: Option<Duration>,
}

/// One client-credentials request at `token_endpoint`, authenticated as
/// `client.method` says. `http` is the provider's client (no redirects,
/// `provider.http_timeout`), through the same HTTP hook as every other token call.
pub async fn client_credentials(
    http: &reqwest::Client,
    token_endpoint: &Url,
    client: &MachineClient,
    grant: &MachineGrant,
) -> Result<IssuedToken, OidcError> {
    let auth_type = match client.method {
        TokenEndpointAuth::ClientSecretBasic => AuthType::BasicAuth,
        TokenEndpointAuth::ClientSecretPost => AuthType::RequestBody,
    };
    let oauth: CredentialsClient = oauth2::Client::new(ClientId::new(client.client_id.clone()))
        .set_client_secret(ClientSecret::new(client.secret.expose().to_string()))
        .set_auth_type(auth_type)
        .set_token_uri(TokenUrl::from_url(token_endpoint.clone()));
    let mut request = oauth
        .exchange_client_credentials()
        .add_scopes(grant.scopes.iter().cloned().map(Scope::new));
    if let Some(resource) = &grant.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let hook = super::client::http_client(http, None, None);
    let answer = request.request_async(&hook).await.map_err(|e| match e {
        RequestTokenError::ServerResponse(err) => {
            OidcError::TokenEndpoint(err.error().as_ref().to_string())
        }
        RequestTokenError::Request(e) => OidcError::Unreachable(format!("token endpoint: {e}")),
        RequestTokenError::Parse(e, _) => {
            OidcError::Protocol(format!("client-credentials answer: {e}"))
        }
        RequestTokenError::Other(e) => OidcError::Protocol(format!("client-credentials: {e}")),
    })?;
    // Held to what every token answer is: a Bearer token whose value is RFC
    // 6750 token text (it goes into a header; never cached, never sent otherwise).
    let answer = super::client::usable(answer)?;
    Ok(IssuedToken {
        access_token: answer.access_token_str().to_string(),
        expires_in: answer.expires_in(),
    })
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`, what `Authorization: Bearer` can carry.
pub fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::is_b64token;

    #[test]
    fn bearer_token_text() {
        for ok in ["abc", "eyJ.a-b_c~d+e/f", "abc==", "A1"] {
            assert!(is_b64token(ok), "{ok}");
        }
        for bad in [
            "",
            "==",
            "a b",
            "a\r\nx-injected: 1",
            "a=b",
            "ä",
            "a\"b",
            "a,b",
        ] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }
}
