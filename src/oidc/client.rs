//! Calls to the IdP's token and revocation endpoints (RFC 6749 §4.1.3 and §6,
//! RFC 7009), with client authentication by `client_secret_basic` (percent-
//! encoded per RFC 6749 §2.3.1) or `client_secret_post`, or none for public clients.

use super::OidcError;
use crate::config::{Secret, TokenEndpointAuth};
use serde::Deserialize;
use url::Url;

/// A successful token response.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    /// The granted scopes; RFC 6749 §5.1 lets the IdP leave it out when they
    /// are the ones requested (Cognito always does).
    #[serde(default)]
    pub scope: Option<String>,
}

impl TokenResponse {
    /// `expires_in` as seconds; some IdPs send it as a string.
    pub fn expires_in_secs(&self) -> Option<i64> {
        match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    /// When the access token expires: `expires_in` counted from `sent_at`
    /// (when the request went out, so an answer that came late does not
    /// stretch it), or the token's own `exp` when it is a JWT, whichever is
    /// sooner; either alone when only one is known.
    pub fn access_expires_at(&self, sent_at: i64) -> Option<i64> {
        let by_expires_in = self.expires_in_secs().map(|s| sent_at + s);
        let by_exp = crate::policy::trusted_jwt_payload(&self.access_token)
            .and_then(|c| c.get("exp")?.as_i64());
        match (by_expires_in, by_exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// The client's credentials at the token endpoint.
#[derive(Clone)]
pub struct ClientAuth {
    pub client_id: String,
    pub secret: Option<Secret>,
    pub method: TokenEndpointAuth,
}

impl ClientAuth {
    fn apply(
        &self,
        req: reqwest::RequestBuilder,
        form: &mut Vec<(&str, String)>,
    ) -> reqwest::RequestBuilder {
        match (&self.secret, self.method) {
            (Some(secret), TokenEndpointAuth::ClientSecretBasic) => {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req.basic_auth(enc(&self.client_id), Some(enc(secret.expose())))
            }
            (Some(secret), TokenEndpointAuth::ClientSecretPost) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret.expose().to_string()));
                req
            }
            (None, _) => {
                form.push(("client_id", self.client_id.clone()));
                req
            }
        }
    }
}

/// Redeems an authorization code (with its PKCE verifier).
pub async fn exchange_code(
    http: &reqwest::Client,
    endpoint: &Url,
    auth: &ClientAuth,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<TokenResponse, OidcError> {
    let form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", redirect_uri.to_string()),
        ("code_verifier", verifier.to_string()),
    ];
    token_request(http.post(endpoint.clone()), auth, form).await
}

/// The refresh-token grant (RFC 6749 §6). `timeout` replaces the client's
/// usual one: a refresh is left to finish even when the requests that wanted
/// it have stopped waiting, so a rotated refresh token is not lost.
pub async fn refresh(
    http: &reqwest::Client,
    endpoint: &Url,
    auth: &ClientAuth,
    refresh_token: &str,
    timeout: std::time::Duration,
) -> Result<TokenResponse, OidcError> {
    let form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", refresh_token.to_string()),
    ];
    token_request(http.post(endpoint.clone()).timeout(timeout), auth, form).await
}

async fn token_request(
    req: reqwest::RequestBuilder,
    auth: &ClientAuth,
    mut form: Vec<(&str, String)>,
) -> Result<TokenResponse, OidcError> {
    let req = auth.apply(req, &mut form);
    let resp = req
        .header(http::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| OidcError::Unreachable(format!("token endpoint: {}", e.without_url())))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| OidcError::Unreachable(format!("token endpoint: {}", e.without_url())))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            OidcError::Protocol(format!("token endpoint answered an unreadable body: {e}"))
        });
    }
    // RFC 6749 §5.2: the error code is safe to log; the description may echo input, so it is not kept.
    let code = serde_json::from_slice::<ErrorResponse>(&body)
        .map(|e| e.error)
        .unwrap_or_else(|_| format!("HTTP {status}"));
    if code == "invalid_grant" {
        Err(OidcError::InvalidGrant)
    } else {
        Err(OidcError::TokenEndpoint(code))
    }
}

/// RFC 7009 revocation; the caller decides how long to wait.
pub async fn revoke(
    http: &reqwest::Client,
    endpoint: &Url,
    auth: &ClientAuth,
    token: &str,
    hint: &str,
) -> Result<(), OidcError> {
    let mut form = vec![
        ("token", token.to_string()),
        ("token_type_hint", hint.to_string()),
    ];
    let req = auth.apply(http.post(endpoint.clone()), &mut form);
    let resp =
        req.form(&form).send().await.map_err(|e| {
            OidcError::Unreachable(format!("revocation endpoint: {}", e.without_url()))
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(OidcError::TokenEndpoint(format!(
            "revocation: HTTP {}",
            resp.status()
        )))
    }
}

#[cfg(test)]
mod expiry_tests {
    use super::TokenResponse;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    fn answer(access_token: &str, expires_in: Option<serde_json::Value>) -> TokenResponse {
        TokenResponse {
            access_token: access_token.into(),
            token_type: None,
            expires_in,
            refresh_token: None,
            id_token: None,
            scope: None,
        }
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
}
