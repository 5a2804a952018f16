//! The back channel: `/oauth2/token` (authorization_code with PKCE,
//! refresh_token without rotation, as Cognito does by default, and
//! client_credentials with Cognito's M2M token shape),
//! `/oauth2/revoke` (RFC 7009) and `/oauth2/userInfo`. Errors are RFC 6749
//! §5.2 JSON; a failed client authentication is 401 `invalid_client`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::config::{DevClient, DevUser};
use super::keys::at_hash;
use super::params::{basic_credentials, bearer_token, no_store, OAuthError, Params};
use super::{random_token, DevIdpState, RefreshRecord};

/// RFC 6749 §3.2: token requests are `application/x-www-form-urlencoded`.
fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Ok(Params::parse(body))
}

/// Client authentication (RFC 6749 §2.3.1): `client_secret_basic` or
/// `client_secret_post`, never both; a public client sends only `client_id`.
fn authenticate<'a>(
    s: &'a DevIdpState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<&'a DevClient, OAuthError> {
    let basic = basic_credentials(headers).map_err(|_| {
        OAuthError::invalid_client("the Authorization header is not valid Basic credentials")
    })?;
    let form_id = p.value("client_id")?;
    let form_secret = p.value("client_secret")?;
    let (client_id, secret) = match &basic {
        Some((id, secret)) => {
            if form_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_client(
                    "client_id differs from the Authorization header",
                ));
            }
            (id.as_str(), Some(secret.as_str()).filter(|s| !s.is_empty()))
        }
        None => match form_id {
            Some(id) => (id, form_secret),
            None => {
                return Err(OAuthError::invalid_client(
                    "client authentication is required",
                ))
            }
        },
    };
    let Some(client) = s.config.client(client_id) else {
        return Err(OAuthError::invalid_client("client authentication failed"));
    };
    let ok = match (&client.client_secret, secret) {
        (Some(expected), Some(given)) => bool::from(given.as_bytes().ct_eq(expected.as_bytes())),
        (None, None) => true,
        _ => false,
    };
    if !ok {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    Ok(client)
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_code_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// What a set of tokens is minted from.
struct Grant<'a> {
    client_id: &'a str,
    user: &'a DevUser,
    scope: &'a [String],
    auth_time: u64,
    nonce: Option<&'a str>,
    origin: &'a str,
}

/// Cognito-shaped tokens: the access token has no `aud` but `client_id`,
/// `token_use: "access"`, `scope` and `username`; the ID token (only with
/// the `openid` scope) has `aud`, `token_use: "id"`, `cognito:username`,
/// `cognito:groups` only when the user has groups, and `email` only when the
/// user has one.
fn mint(s: &DevIdpState, g: &Grant<'_>) -> Result<(String, Option<String>), OAuthError> {
    let now = s.unix_now();
    let sub = s.sub(&g.user.username);
    let event_id = uuid::Uuid::new_v4().to_string();
    let groups = (!g.user.groups.is_empty()).then(|| json!(g.user.groups));

    let mut access = Map::new();
    access.insert("sub".into(), json!(sub));
    if let Some(groups) = &groups {
        access.insert("cognito:groups".into(), groups.clone());
    }
    access.insert("iss".into(), json!(s.config.issuer));
    access.insert("version".into(), json!(2));
    access.insert("client_id".into(), json!(g.client_id));
    access.insert("origin_jti".into(), json!(g.origin));
    access.insert("event_id".into(), json!(event_id));
    access.insert("token_use".into(), json!("access"));
    access.insert("scope".into(), json!(g.scope.join(" ")));
    access.insert("auth_time".into(), json!(g.auth_time));
    access.insert(
        "exp".into(),
        json!(now + s.config.access_token_ttl.as_secs()),
    );
    access.insert("iat".into(), json!(now));
    access.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    access.insert("username".into(), json!(g.user.username));
    let access_token = s
        .access_key
        .sign(&Value::Object(access))
        .map_err(|e| OAuthError::server_error(e.to_string()))?;

    if !g.scope.iter().any(|x| x == "openid") {
        return Ok((access_token, None));
    }
    let mut id = Map::new();
    id.insert("at_hash".into(), json!(at_hash(&access_token)));
    id.insert("sub".into(), json!(sub));
    if let Some(groups) = groups {
        id.insert("cognito:groups".into(), groups);
    }
    if let Some(email) = &g.user.email {
        id.insert("email_verified".into(), json!(true));
        id.insert("email".into(), json!(email));
    }
    for (k, v) in &g.user.attributes {
        id.insert(k.clone(), json!(v));
    }
    id.insert("iss".into(), json!(s.config.issuer));
    id.insert("cognito:username".into(), json!(g.user.username));
    if let Some(nonce) = g.nonce {
        id.insert("nonce".into(), json!(nonce));
    }
    id.insert("origin_jti".into(), json!(g.origin));
    id.insert("aud".into(), json!(g.client_id));
    id.insert("event_id".into(), json!(event_id));
    id.insert("token_use".into(), json!("id"));
    id.insert("auth_time".into(), json!(g.auth_time));
    id.insert("exp".into(), json!(now + s.config.id_token_ttl.as_secs()));
    id.insert("iat".into(), json!(now));
    id.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let id_token = s
        .id_key
        .sign(&Value::Object(id))
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok((access_token, Some(id_token)))
}

fn token_response(
    s: &DevIdpState,
    access: String,
    id: Option<String>,
    refresh: Option<String>,
) -> Value {
    let mut body = json!({
        "access_token": access,
        "expires_in": s.config.access_token_ttl.as_secs(),
        "token_type": "Bearer",
    });
    if let Some(id) = id {
        body["id_token"] = json!(id);
    }
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    body
}

fn authorization_code(
    s: &DevIdpState,
    client: &DevClient,
    p: &Params,
) -> Result<Value, OAuthError> {
    let code = p.required("code")?;
    let redirect_uri = p.required("redirect_uri")?;
    let verifier = p.value("code_verifier")?;
    // Redemption consumes the code whatever happens next: a code gets one
    // try, so a PKCE verifier cannot be guessed across attempts.
    let record = {
        let mut store = s.store();
        let Some(record) = store.codes.get_mut(code) else {
            return Err(OAuthError::invalid_grant(
                "the authorization code is not valid",
            ));
        };
        if record.used {
            // RFC 6749 §4.1.2: a replayed code revokes what it produced.
            let origin = record.origin.clone();
            store.revoke_origin(&origin);
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        record.used = true;
        record.clone()
    };
    if record.expires <= s.instant() {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if record.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    // RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge.
    let pkce_ok = verifier.is_some_and(|v| {
        is_code_verifier(v)
            && bool::from(
                B64.encode(Sha256::digest(v.as_bytes()))
                    .as_bytes()
                    .ct_eq(record.code_challenge.as_bytes()),
            )
    });
    if !pkce_ok {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    let Some(user) = s.config.user(&record.username) else {
        return Err(OAuthError::invalid_grant("the user no longer exists"));
    };
    let (access, id) = mint(
        s,
        &Grant {
            client_id: &client.client_id,
            user,
            scope: &record.scope,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            origin: &record.origin,
        },
    )?;
    let refresh = random_token();
    {
        let now = s.instant();
        let mut store = s.store();
        store.purge(now);
        store.refresh_tokens.insert(
            refresh.clone(),
            RefreshRecord {
                client_id: client.client_id.clone(),
                username: record.username.clone(),
                scope: record.scope.clone(),
                auth_time: record.auth_time,
                origin: record.origin.clone(),
                expires: now + s.config.refresh_token_ttl,
            },
        );
    }
    Ok(token_response(s, access, id, Some(refresh)))
}

fn refresh_token(s: &DevIdpState, client: &DevClient, p: &Params) -> Result<Value, OAuthError> {
    let token = p.required("refresh_token")?;
    let (username, scope, auth_time, origin) = {
        let store = s.store();
        let Some(r) = store.refresh_tokens.get(token) else {
            return Err(OAuthError::invalid_grant("the refresh token is not valid"));
        };
        if r.expires <= s.instant() || store.revoked_origins.contains(&r.origin) {
            return Err(OAuthError::invalid_grant("the refresh token is not valid"));
        }
        if r.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        (
            r.username.clone(),
            r.scope.clone(),
            r.auth_time,
            r.origin.clone(),
        )
    };
    let Some(user) = s.config.user(&username) else {
        return Err(OAuthError::invalid_grant("the user no longer exists"));
    };
    // Refreshed ID tokens carry no nonce (OpenID Connect Core §12.2), and
    // Cognito without rotation returns no new refresh token.
    let (access, id) = mint(
        s,
        &Grant {
            client_id: &client.client_id,
            user,
            scope: &scope,
            auth_time,
            nonce: None,
            origin: &origin,
        },
    )?;
    Ok(token_response(s, access, id, None))
}

/// Machine tokens (RFC 6749 §4.4), shaped as Cognito's M2M access tokens:
/// `sub` and `client_id` the client's id, `token_use: "access"`, `scope`
/// the granted resource-server scopes, no user claims, no ID or refresh token.
fn client_credentials(
    s: &DevIdpState,
    client: &DevClient,
    p: &Params,
) -> Result<Value, OAuthError> {
    if !client.allows("client_credentials") || client.client_secret.is_none() {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the client_credentials grant",
        ));
    }
    // No `scope`: every scope the client is allowed (as Cognito does).
    let scope: Vec<String> = match p.value("scope")? {
        None => client.allowed_scopes.clone(),
        Some(requested) => {
            let requested: Vec<String> = requested
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect();
            if requested.is_empty() {
                return Err(OAuthError::invalid_scope("the scope is empty"));
            }
            if let Some(bad) = requested
                .iter()
                .find(|x| !client.allowed_scopes.contains(x))
            {
                return Err(OAuthError::invalid_scope(format!(
                    "the scope {bad} is not allowed for this client"
                )));
            }
            requested
        }
    };
    let now = s.unix_now();
    let access = json!({
        "sub": client.client_id,
        "token_use": "access",
        "scope": scope.join(" "),
        "auth_time": now,
        "iss": s.config.issuer,
        "exp": now + s.config.access_token_ttl.as_secs(),
        "iat": now,
        "version": 2,
        "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": client.client_id,
    });
    let access = s
        .access_key
        .sign(&access)
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok(token_response(s, access, None, None))
}

/// `POST /oauth2/token`.
pub(super) async fn token(
    State(s): State<Arc<DevIdpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = (|| {
        let p = form_body(&headers, &body)?;
        let client = authenticate(&s, &headers, &p)?;
        match p.required("grant_type")? {
            "authorization_code" => authorization_code(&s, client, &p),
            "refresh_token" => refresh_token(&s, client, &p),
            "client_credentials" => client_credentials(&s, client, &p),
            other => Err(OAuthError::unsupported_grant_type(format!(
                "grant_type {other} is not supported"
            ))),
        }
    })();
    match result {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            no_store(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth2/revoke` (RFC 7009): revokes a refresh token and with it the
/// access tokens of the same sign-in. Unknown tokens get 200 (§2.2).
pub(super) async fn revoke(
    State(s): State<Arc<DevIdpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = (|| {
        let p = form_body(&headers, &body)?;
        let client = authenticate(&s, &headers, &p)?;
        let token = p.required("token")?;
        let mut store = s.store();
        let origin = match store.refresh_tokens.get(token) {
            None => return Ok(()),
            Some(r) if r.client_id != client.client_id => {
                return Err(OAuthError::invalid_grant(
                    "the token was issued to another client",
                ))
            }
            Some(r) => r.origin.clone(),
        };
        store.revoke_origin(&origin);
        Ok(())
    })();
    match result {
        Ok(()) => {
            let mut resp = StatusCode::OK.into_response();
            no_store(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /oauth2/userInfo` with the access token as a bearer token.
/// Like Cognito, `email_verified` comes as the string `"true"`.
pub(super) async fn userinfo(State(s): State<Arc<DevIdpState>>, headers: HeaderMap) -> Response {
    let result = (|| {
        let Some(token) = bearer_token(&headers) else {
            return Err(OAuthError::invalid_token(
                "an access token is required",
                false,
            ));
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&s.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Value>(token, &s.access_key.decoding, &validation)
            .map_err(|_| OAuthError::invalid_token("the access token is not valid", true))?
            .claims;
        if claims["token_use"] != "access" {
            return Err(OAuthError::invalid_token("not an access token", true));
        }
        let revoked = claims["origin_jti"]
            .as_str()
            .is_none_or(|o| s.store().revoked_origins.contains(o));
        if revoked {
            return Err(OAuthError::invalid_token(
                "the access token has been revoked",
                true,
            ));
        }
        let scopes = claims["scope"].as_str().unwrap_or("");
        if !scopes.split(' ').any(|x| x == "openid") {
            return Err(OAuthError::insufficient_scope(
                "userInfo needs the openid scope",
            ));
        }
        let Some(user) = claims["username"].as_str().and_then(|u| s.config.user(u)) else {
            return Err(OAuthError::invalid_token("unknown user", true));
        };
        let mut info = Map::new();
        info.insert("sub".into(), json!(s.sub(&user.username)));
        for (k, v) in &user.attributes {
            info.insert(k.clone(), json!(v));
        }
        if let Some(email) = &user.email {
            info.insert("email_verified".into(), json!("true"));
            info.insert("email".into(), json!(email));
        }
        info.insert("username".into(), json!(user.username));
        Ok(Value::Object(info))
    })();
    match result {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            no_store(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_verifier_format() {
        assert!(is_code_verifier(&"a".repeat(43)));
        assert!(is_code_verifier(&"-._~".repeat(32)));
        assert!(!is_code_verifier(&"a".repeat(42)));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }
}
