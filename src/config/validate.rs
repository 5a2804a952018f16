//! Validation: every rule a config must satisfy, checked once, all problems
//! collected (not just the first). Also reads `*_file` secrets into place.

use super::{Config, Problem, SameSite, Secret, StoreKind};
use base64::Engine;
use std::collections::HashSet;
use std::path::Path;

/// Checks `config`, resolving `client_secret_file` and `keys_file` relative to `base`.
pub fn validate(config: &mut Config, base: &Path) -> Vec<Problem> {
    let mut p = Vec::new();
    server(config, &mut p);
    provider(config, base, &mut p);
    session(config, base, &mut p);
    routes(config, &mut p);
    spa(config, base, &mut p);
    p
}

fn server(c: &Config, p: &mut Vec<Problem>) {
    let url = &c.server.public_url;
    if !matches!(url.scheme(), "http" | "https") {
        p.push(Problem::new("server.public_url", "must be an http:// or https:// URL"));
    } else if url.host_str().is_none() {
        p.push(Problem::new("server.public_url", "must have a host"));
    } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        p.push(Problem::new(
            "server.public_url",
            "must be an origin only (scheme, host, port), without path, query or fragment",
        ));
    } else if url.scheme() == "http" && !is_loopback_host(url.host_str().unwrap_or_default()) {
        p.push(Problem::new(
            "server.public_url",
            "must be https unless the host is loopback (cookies would travel in clear)",
        ));
    }
    let prefix = &c.server.auth_prefix;
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.len() < 2 {
        p.push(Problem::new(
            "server.auth_prefix",
            "must start with '/' and not end with '/', e.g. \"/auth\"",
        ));
    } else if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)) {
        p.push(Problem::new(
            "server.auth_prefix",
            "may only hold letters, digits, '/', '-', '_' and '.'",
        ));
    }
    if c.server.listen == c.server.admin_listen {
        p.push(Problem::new(
            "server.admin_listen",
            "must differ from server.listen",
        ));
    }
    if c.server.max_body_bytes == 0 {
        p.push(Problem::new("server.max_body_bytes", "must be greater than 0"));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.server.log_level) {
        p.push(Problem::new("server.log_level", format!("is not a valid filter: {e}")));
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn provider(c: &mut Config, base: &Path, p: &mut Vec<Problem>) {
    let pc = &mut c.provider;
    match (&pc.issuer, &pc.cognito) {
        (None, None) => p.push(Problem::new(
            "provider",
            "set either `issuer` (any OIDC provider) or `cognito = { region, user_pool_id, domain }`",
        )),
        (Some(_), Some(_)) => p.push(Problem::new(
            "provider",
            "set only one of `issuer` and `cognito`",
        )),
        (Some(issuer), None) => match url::Url::parse(issuer) {
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && pc.insecure_allow_http) => {}
            Ok(u) if u.scheme() == "http" => p.push(Problem::new(
                "provider.issuer",
                "must be https (set provider.insecure_allow_http = true for a local test IdP)",
            )),
            _ => p.push(Problem::new("provider.issuer", "must be an https:// URL")),
        },
        (None, Some(cog)) => {
            if cog.region.is_empty() || !cog.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                p.push(Problem::new("provider.cognito.region", "must be an AWS region such as \"eu-west-1\""));
            }
            match cog.user_pool_id.split_once('_') {
                Some((region, id)) if region == cog.region && !id.is_empty() => {}
                _ => p.push(Problem::new(
                    "provider.cognito.user_pool_id",
                    "must look like \"<region>_<id>\" with the same region as provider.cognito.region",
                )),
            }
            let d = &cog.domain;
            if d.is_empty() || d.contains('/') && !d.starts_with("https://") {
                p.push(Problem::new(
                    "provider.cognito.domain",
                    "must be the hosted-UI domain, e.g. \"myapp.auth.eu-west-1.amazoncognito.com\"",
                ));
            }
        }
    }
    if pc.client_id.trim().is_empty() {
        p.push(Problem::new("provider.client_id", "must not be empty"));
    }
    match (&pc.client_secret, &pc.client_secret_file) {
        (Some(_), Some(_)) => p.push(Problem::new(
            "provider.client_secret_file",
            "set only one of client_secret and client_secret_file",
        )),
        (None, Some(path)) => match read_secret_file(base, path) {
            Ok(s) if s.is_empty() => p.push(Problem::new("provider.client_secret_file", "the file is empty")),
            Ok(s) => pc.client_secret = Some(Secret::new(s)),
            Err(e) => p.push(Problem::new("provider.client_secret_file", e)),
        },
        _ => {}
    }
    if !pc.scopes.iter().any(|s| s == "openid") {
        p.push(Problem::new("provider.scopes", "must include \"openid\""));
    }
    for (key, url) in [
        ("discovery_url", &pc.discovery_url),
        ("jwks_url", &pc.jwks_url),
        ("authorization_endpoint", &pc.authorization_endpoint),
        ("token_endpoint", &pc.token_endpoint),
        ("userinfo_endpoint", &pc.userinfo_endpoint),
        ("revocation_endpoint", &pc.revocation_endpoint),
        ("end_session_endpoint", &pc.end_session_endpoint),
    ] {
        if let Some(u) = url {
            if u.scheme() != "https" && !(u.scheme() == "http" && pc.insecure_allow_http) {
                p.push(Problem::new(
                    format!("provider.{key}"),
                    "must be https (set provider.insecure_allow_http = true for a local test IdP)",
                ));
            }
        }
    }
    for reserved in ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"] {
        if pc.extra_auth_params.contains_key(reserved) {
            p.push(Problem::new(
                format!("provider.extra_auth_params.{reserved}"),
                "is set by oidc-bff itself and cannot be overridden",
            ));
        }
    }
}

fn session(c: &mut Config, base: &Path, p: &mut Vec<Problem>) {
    let https = c.is_https();
    let s = &mut c.session;
    if s.keys.is_empty() {
        if let Some(path) = &s.keys_file {
            match read_secret_file(base, path) {
                Ok(text) => {
                    s.keys = text
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(Secret::new)
                        .collect()
                }
                Err(e) => p.push(Problem::new("session.keys_file", e)),
            }
        }
    } else if s.keys_file.is_some() {
        p.push(Problem::new("session.keys_file", "set only one of keys and keys_file"));
    }
    if s.keys.is_empty() && s.keys_file.is_some() {
        p.push(Problem::new("session.keys_file", "holds no key"));
    } else if s.keys.is_empty() {
        p.push(Problem::new(
            "session.keys",
            "at least one key is required; create one with `oidc-bff generate-key`",
        ));
    }
    let mut seen = HashSet::new();
    for (i, k) in s.keys.iter().enumerate() {
        match decode_key(k.expose()) {
            Some(bytes) => {
                if !seen.insert(bytes) {
                    p.push(Problem::new(format!("session.keys[{i}]"), "appears twice"));
                }
            }
            None => p.push(Problem::new(
                format!("session.keys[{i}]"),
                "must be 32 bytes, base64url-encoded (use `oidc-bff generate-key`)",
            )),
        }
    }
    if s.idle_timeout.is_zero() {
        p.push(Problem::new("session.idle_timeout", "must be greater than 0"));
    }
    if s.absolute_timeout < s.idle_timeout {
        p.push(Problem::new(
            "session.absolute_timeout",
            "must be at least session.idle_timeout",
        ));
    }
    if s.cookie_name.is_empty()
        || !s.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        p.push(Problem::new(
            "session.cookie_name",
            "may only hold letters, digits, '_' and '-'",
        ));
    }
    if s.same_site == SameSite::None && !https {
        p.push(Problem::new(
            "session.same_site",
            "\"none\" needs an https public_url (browsers drop SameSite=None cookies without Secure)",
        ));
    }
    if s.max_sessions == 0 {
        p.push(Problem::new("session.max_sessions", "must be greater than 0"));
    }
    match s.store {
        StoreKind::Memory => {}
        StoreKind::Redis => p.push(Problem::new(
            "session.store",
            "\"redis\" is not available in this version yet; use \"memory\"",
        )),
    }
}

/// Decodes a session key: base64url (padding optional) or standard base64, 32 bytes.
pub(crate) fn decode_key(text: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [URL_SAFE_NO_PAD.decode(text), URL_SAFE.decode(text), STANDARD.decode(text)]
        .into_iter()
        .flatten()
        .find_map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
}

fn routes(c: &Config, p: &mut Vec<Problem>) {
    let mut paths = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        if !r.path.starts_with('/') {
            p.push(Problem::new(key("path"), "must start with '/'"));
        } else if r.path.contains("..") || r.path.contains("//") || r.path.contains('\\') || r.path.contains('%') {
            p.push(Problem::new(key("path"), "must be a plain path prefix (no '..', '//', '\\' or '%')"));
        }
        if !paths.insert(r.path.trim_end_matches('/').to_string()) {
            p.push(Problem::new(key("path"), format!("\"{}\" is used by another route", r.path)));
        }
        let auth = &c.server.auth_prefix;
        if r.path == *auth || r.path.starts_with(&format!("{auth}/")) {
            p.push(Problem::new(key("path"), format!("must not be under the gateway's own prefix {auth}")));
        }
        if !matches!(r.upstream.scheme(), "http" | "https") || r.upstream.host_str().is_none() {
            p.push(Problem::new(key("upstream"), "must be an http:// or https:// URL with a host"));
        }
        if r.upstream.query().is_some() || r.upstream.fragment().is_some() {
            p.push(Problem::new(key("upstream"), "must not have a query or fragment"));
        }
        for m in &r.methods {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                p.push(Problem::new(key("methods"), format!("\"{m}\" is not an upper-case HTTP method")));
            }
        }
        if r.timeout.is_zero() {
            p.push(Problem::new(key("timeout"), "must be greater than 0"));
        }
    }
}

fn spa(c: &mut Config, base: &Path, p: &mut Vec<Problem>) {
    let Some(spa) = &mut c.spa else { return };
    match (&spa.dir, &spa.upstream) {
        (Some(_), Some(_)) => p.push(Problem::new("spa", "set only one of dir and upstream")),
        (None, None) => p.push(Problem::new("spa", "set dir or upstream")),
        (Some(dir), None) => {
            // Relative to the config file, like every other path in it.
            let dir = base.join(dir);
            if !dir.join("index.html").is_file() {
                p.push(Problem::new("spa.dir", format!("{} has no index.html", dir.display())));
            }
            spa.dir = Some(dir);
        }
        (None, Some(u)) => {
            if !matches!(u.scheme(), "http" | "https") {
                p.push(Problem::new("spa.upstream", "must be an http:// or https:// URL"));
            }
        }
    }
}

fn read_secret_file(base: &Path, path: &Path) -> Result<String, String> {
    let full = base.join(path);
    std::fs::read_to_string(&full)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", full.display()))
}
