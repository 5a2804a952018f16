//! The single-page app's files: served from `[spa] dir` with `index.html` for
//! client-side routes (deep links), precompressed `.br`/`.gz` variants when
//! present, validators (ETag, Last-Modified) and 304s, long-lived caching for
//! content-hashed assets and revalidation for everything else, plus the
//! configured security headers.

use crate::config::SpaConfig;
use crate::error::AppError;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use std::path::PathBuf;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

/// Ready-made response headers for the app's files.
#[derive(Debug, Clone)]
pub struct Spa {
    dir: PathBuf,
    security: Vec<(header::HeaderName, HeaderValue)>,
}

impl Spa {
    pub fn new(dir: PathBuf, cfg: &SpaConfig, https: bool) -> Self {
        let mut security = vec![(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        )];
        if let Ok(v) = HeaderValue::from_str(&cfg.referrer_policy) {
            security.push((header::REFERRER_POLICY, v));
        }
        if let Some(v) = cfg
            .content_security_policy
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            security.push((header::CONTENT_SECURITY_POLICY, v));
        }
        if https && cfg.hsts {
            security.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            ));
        }
        Spa { dir, security }
    }

    pub async fn serve(&self, req: Request) -> Result<Response, AppError> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return Err(AppError::MethodNotAllowed);
        }
        let path = req.uri().path().to_string();
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let (parts, _) = req.into_parts();
        let files = ServeDir::new(&self.dir)
            .precompressed_br()
            .precompressed_gzip()
            .append_index_html_on_directories(true);
        let mut resp = files
            .oneshot(Request::from_parts(parts.clone(), Body::empty()))
            .await
            .map_err(|e| AppError::Internal(format!("static files: {e}")))?;
        // A deep link to a client-side route gets the app; a missing file does not.
        if resp.status() == StatusCode::NOT_FOUND && is_client_route(&path) {
            resp = ServeFile::new(self.dir.join("index.html"))
                .precompressed_br()
                .precompressed_gzip()
                .oneshot(Request::from_parts(parts, Body::empty()))
                .await
                .map_err(|e| AppError::Internal(format!("static files: {e}")))?;
        }
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(AppError::NotFound);
        }
        let mut resp = resp.map(Body::new);
        finish(&mut resp, &path, &self.security);
        if resp.status() == StatusCode::OK && etag_matches(if_none_match.as_ref(), resp.headers()) {
            // RFC 9110 §15.4.5: 304 keeps the validators and caching headers, drops the body.
            let mut not_modified = Response::new(Body::empty());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::ETAG,
                header::CACHE_CONTROL,
                header::LAST_MODIFIED,
                header::VARY,
            ] {
                if let Some(v) = resp.headers().get(&name) {
                    not_modified.headers_mut().insert(name, v.clone());
                }
            }
            return Ok(not_modified);
        }
        Ok(resp)
    }
}

/// Paths whose last segment has no file extension are the app's own routes.
pub fn is_client_route(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    !last.contains('.')
}

/// Build tools name assets after their content (`app-3f2a9c1b.js`,
/// `index.BTxd5cQ1.css`): such files never change and can be cached for a year.
pub fn is_hashed_asset(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or("");
    let stem = match file.rsplit_once('.') {
        Some((stem, _ext)) if !stem.is_empty() => stem,
        _ => return false,
    };
    // The part after the last '-' or '.' of the stem: 8+ characters, letters
    // and digits mixed (a plain word like "vendor" is not a hash).
    let tail = stem.rsplit(['-', '.']).next().unwrap_or("");
    tail.len() >= 8
        && stem.len() > tail.len()
        && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tail.bytes().any(|b| b.is_ascii_digit())
}

fn finish(resp: &mut Response, path: &str, security: &[(header::HeaderName, HeaderValue)]) {
    let html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    let cache = if !html && is_hashed_asset(path) {
        "public, max-age=31536000, immutable"
    } else {
        // index.html and unhashed files: always revalidate (cheap with the ETag).
        "no-cache"
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(tag) = weak_etag(h) {
        h.insert(header::ETAG, tag);
    }
    for (name, value) in security {
        h.insert(name.clone(), value.clone());
    }
}

/// A weak validator from what identifies this representation: its size, its
/// modification time and its encoding (the `.br` and `.gz` variants differ).
fn weak_etag(h: &HeaderMap) -> Option<HeaderValue> {
    use sha2::{Digest, Sha256};
    let modified = h.get(header::LAST_MODIFIED)?.as_bytes();
    let len = h
        .get(header::CONTENT_LENGTH)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let enc = h
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes())
        .unwrap_or(b"");
    let digest = Sha256::new()
        .chain_update(modified)
        .chain_update(b"|")
        .chain_update(len)
        .chain_update(b"|")
        .chain_update(enc)
        .finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("W/\"{hex}\"")).ok()
}

/// RFC 9110 §13.1.2: weak comparison; `*` matches any.
fn etag_matches(if_none_match: Option<&HeaderValue>, h: &HeaderMap) -> bool {
    let (Some(inm), Some(tag)) = (
        if_none_match.and_then(|v| v.to_str().ok()),
        h.get(header::ETAG).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_assets_are_recognised() {
        for (path, want) in [
            ("/assets/index-BTxd5cQ1.js", true),
            ("/assets/app.3f2a9c1b.css", true),
            ("/static/js/main.8e5c2a41.chunk.js", false),
            ("/static/js/main.8e5c2a41.js", true),
            ("/assets/vendor-abcdefgh.js", false),
            ("/app.js", false),
            ("/index.html", false),
            ("/logo.png", false),
            ("/12345678.js", false),
            ("/assets/font-2a3b4c5d6e.woff2", true),
        ] {
            assert_eq!(is_hashed_asset(path), want, "{path}");
        }
    }

    #[test]
    fn client_routes_have_no_extension() {
        for (path, want) in [
            ("/", true),
            ("/profile", true),
            ("/orders/42", true),
            ("/app.js", false),
            ("/a/b.map", false),
        ] {
            assert_eq!(is_client_route(path), want, "{path}");
        }
    }

    #[test]
    fn etag_comparison_is_weak() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("W/\"abc\""));
        for (inm, want) in [
            ("W/\"abc\"", true),
            ("\"abc\"", true),
            ("\"x\", W/\"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
        ] {
            assert_eq!(
                etag_matches(Some(&HeaderValue::from_static(inm)), &h),
                want,
                "{inm}"
            );
        }
        assert!(!etag_matches(None, &h));
    }
}
