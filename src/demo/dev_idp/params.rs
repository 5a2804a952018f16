//! Request parameters and OAuth error answers: strict enough that garbage,
//! repeats and oversized values become OAuth errors, never panics.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use std::collections::HashMap;

/// No legitimate OAuth parameter here comes near this; longer ones are refused.
pub(super) const MAX_PARAM_LEN: usize = 4096;

/// Why a parameter could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParamError {
    /// RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once."
    Repeated,
    TooLong,
}

/// Form or query parameters, each name with all its values.
pub(super) struct Params(HashMap<String, Vec<String>>);

impl Params {
    pub fn parse(input: &[u8]) -> Params {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Params(map)
    }

    pub fn from_query(query: Option<&str>) -> Params {
        Params::parse(query.unwrap_or("").as_bytes())
    }

    /// RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    pub fn get(&self, name: &str) -> Result<Option<&str>, ParamError> {
        let values: Vec<&str> = match self.0.get(name) {
            None => return Ok(None),
            Some(v) => v
                .iter()
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .collect(),
        };
        match values.as_slice() {
            [] => Ok(None),
            [one] if one.len() > MAX_PARAM_LEN => Err(ParamError::TooLong),
            [one] => Ok(Some(one)),
            _ => Err(ParamError::Repeated),
        }
    }

    /// Like `get`, with the failure already phrased as `invalid_request`.
    pub fn value(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        self.get(name)
            .map_err(|e| OAuthError::invalid_request(describe(name, e)))
    }

    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.value(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }

    /// All (name, value) pairs whose value is single and short, for carrying
    /// a request along (hidden form fields, forwarding).
    pub fn pairs(&self, names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .filter_map(|n| match self.get(n) {
                Ok(Some(v)) => Some((n.to_string(), v.to_string())),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn describe(name: &str, e: ParamError) -> String {
    match e {
        ParamError::Repeated => format!("{name} is repeated"),
        ParamError::TooLong => format!("{name} is too long"),
    }
}

/// An OAuth 2.0 error response from the token, revocation or userinfo endpoints
/// (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 6750 §3.1).
#[derive(Debug)]
pub(super) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// The `WWW-Authenticate` challenge for 401 answers.
    pub challenge: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub fn invalid_grant(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    /// RFC 6749 §5.2: 401 with a `WWW-Authenticate` for the scheme the client may use.
    pub fn invalid_client(description: impl Into<String>) -> OAuthError {
        let mut e = OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        e.challenge = Some(r#"Basic realm="dev-idp""#.into());
        e
    }
    pub fn unauthorized_client(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }
    pub fn invalid_scope(description: impl Into<String>) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }
    pub fn unsupported_grant_type(description: impl Into<String>) -> OAuthError {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }
    pub fn server_error(description: impl Into<String>) -> OAuthError {
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }
    /// RFC 6750 §3.1: a missing or bad bearer token.
    pub fn invalid_token(description: impl Into<String>, present: bool) -> OAuthError {
        let description = description.into();
        let mut e = OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            description.clone(),
        );
        e.challenge = Some(if present {
            format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                description.replace('"', "'")
            )
        } else {
            "Bearer".into()
        });
        e
    }
    pub fn insufficient_scope(description: impl Into<String>) -> OAuthError {
        let mut e = OAuthError::new(StatusCode::FORBIDDEN, "insufficient_scope", description);
        e.challenge = Some(r#"Bearer error="insufficient_scope", scope="openid""#.into());
        e
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut resp = (self.status, axum::Json(body)).into_response();
        no_store(resp.headers_mut());
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}

/// RFC 6749 §5.1: token responses must not be cached.
pub(super) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: the id and
/// secret are form-urlencoded before base64). Err: the header is there but
/// unreadable.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ()> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (id, secret) = decoded.split_once(':').ok_or(())?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// The bearer token of `Authorization: Bearer …` (RFC 6750 §2.1).
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name`, if the request carries it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let p = Params::parse(b"a=1&b=&c=x&c=y&d=%ZZ&e=caf%C3%A9&f=%FF");
        assert_eq!(p.get("a"), Ok(Some("1")));
        assert_eq!(p.get("b"), Ok(None));
        assert_eq!(p.get("c"), Err(ParamError::Repeated));
        assert_eq!(p.get("d"), Ok(Some("%ZZ")));
        assert_eq!(p.get("e"), Ok(Some("café")));
        assert!(p.get("f").unwrap().is_some());
        assert_eq!(p.get("missing"), Ok(None));
        let long = format!("x={}", "a".repeat(MAX_PARAM_LEN + 1));
        assert_eq!(
            Params::parse(long.as_bytes()).get("x"),
            Err(ParamError::TooLong)
        );
    }

    #[test]
    fn basic_auth() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), Ok(None));
        // RFC 6749 §2.3.1: "a:b" form-encoded is "a%3Ab".
        let v = format!("Basic {}", STANDARD.encode("my%3Aclient:s+e%25cret"));
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        assert_eq!(
            basic_credentials(&h),
            Ok(Some(("my:client".into(), "s e%cret".into())))
        );
        for bad in ["Basic !!!", "Basic", "Bearer abc", "Basic bm9jb2xvbg=="] {
            h.insert(header::AUTHORIZATION, bad.parse().unwrap());
            assert_eq!(basic_credentials(&h), Err(()), "{bad}");
        }
    }

    #[test]
    fn cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; dev_idp_session=xyz; b".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "dev_idp_session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        h.insert(header::AUTHORIZATION, "bearer  tok ".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("tok"));
    }
}
