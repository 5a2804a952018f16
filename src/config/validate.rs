//! Validation: every rule a config must satisfy, checked once, all problems
//! collected (not just the first). Pure: the files a config names were read
//! by loading (`files.rs`). What it parses (session keys, Redis URLs) it
//! keeps in the config, so nothing parses them again.

use super::{AuthMode, Config, KeyBytes, Problem, SameSite, StoreKind, TokenKind};
use base64::Engine;
use std::collections::HashSet;

/// Checks `config`, filling in what it parses on the way.
pub fn validate(config: &mut Config) -> Vec<Problem> {
    let mut p = Vec::new();
    server(config, &mut p);
    provider(config, &mut p);
    session(config, &mut p);
    routes(config, &mut p);
    authorization(config, &mut p);
    spa(config, &mut p);
    p
}

/// Shortest admin token accepted: 32 bytes, e.g. `openssl rand -hex 32` (64).
pub const ADMIN_TOKEN_MIN_BYTES: usize = 32;

/// An admin token must be strong and sendable as a bearer token (RFC 6750
/// `b64token` characters are a subset of visible ASCII without spaces).
fn admin_token_ok(token: &str) -> Result<(), String> {
    if token.len() < ADMIN_TOKEN_MIN_BYTES {
        return Err(format!(
            "the token is too short: at least {ADMIN_TOKEN_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII without spaces (a bearer token)".into());
    }
    Ok(())
}

fn server(c: &Config, p: &mut Vec<Problem>) {
    let url = &c.server.public_url;
    if !matches!(url.scheme(), "http" | "https") {
        p.push(Problem::new(
            "server.public_url",
            "must be an http:// or https:// URL",
        ));
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
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
    {
        p.push(Problem::new(
            "server.auth_prefix",
            "may only hold letters, digits, '/', '-', '_' and '.'",
        ));
    } else if crate::request_path::canonicalize(prefix).ok().as_deref() != Some(prefix.as_str()) {
        p.push(Problem::new(
            "server.auth_prefix",
            "must be a canonical path (no empty, '.' or '..' segments)",
        ));
    }
    if c.server.listen == c.server.admin_listen {
        p.push(Problem::new(
            "server.admin_listen",
            "must differ from server.listen",
        ));
    }
    if let Some(token) = &c.server.admin_token {
        if let Err(why) = admin_token_ok(token.expose()) {
            p.push(Problem::new("server.admin_token_file", why));
        }
    }
    if c.server.max_body_bytes == 0 {
        p.push(Problem::new(
            "server.max_body_bytes",
            "must be greater than 0",
        ));
    }
    for (key, value) in [
        ("server.header_read_timeout", c.server.header_read_timeout),
        ("server.keepalive_timeout", c.server.keepalive_timeout),
        ("server.write_timeout", c.server.write_timeout),
        ("server.body_timeout", c.server.body_timeout),
    ] {
        if value.is_zero() {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    for (key, value) in [
        ("server.max_connections", c.server.max_connections),
        (
            "server.admin_max_connections",
            c.server.admin_max_connections,
        ),
        (
            "server.max_upstream_per_connection",
            c.server.max_upstream_per_connection.unwrap_or(1),
        ),
        (
            "server.http2_max_concurrent_streams",
            c.server.http2_max_concurrent_streams as usize,
        ),
    ] {
        if value == 0 {
            p.push(Problem::new(key, "must be greater than 0"));
        }
    }
    if c.server.workers > 1024 {
        p.push(Problem::new(
            "server.workers",
            "must be at most 1024 (0 means one per CPU core)",
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.server.log_level) {
        p.push(Problem::new(
            "server.log_level",
            format!("is not a valid filter: {e}"),
        ));
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

fn provider(c: &mut Config, p: &mut Vec<Problem>) {
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
            // A bare host (Cognito's own or a custom domain), or a URL for development IdPs.
            let d = cog.domain.trim_end_matches('/');
            let ok = match d.split_once("://") {
                None => !d.is_empty() && !d.contains('/'),
                Some(("https", rest)) => !rest.is_empty() && !rest.contains('/'),
                Some(("http", rest)) => pc.insecure_allow_http && !rest.is_empty() && !rest.contains('/'),
                Some(_) => false,
            };
            if !ok {
                p.push(Problem::new(
                    "provider.cognito.domain",
                    "must be the hosted-UI domain, e.g. \"myapp.auth.eu-west-1.amazoncognito.com\" (http:// only with provider.insecure_allow_http)",
                ));
            }
        }
    }
    if pc.client_id.trim().is_empty() {
        p.push(Problem::new("provider.client_id", "must not be empty"));
    }
    if pc
        .machine
        .as_ref()
        .is_some_and(|m| m.client_id.trim().is_empty())
    {
        p.push(Problem::new(
            "provider.machine.client_id",
            "must not be empty",
        ));
    }
    // Clocks drift by seconds; a leeway of more turns expiry checks off.
    if pc.leeway > std::time::Duration::from_secs(300) {
        p.push(Problem::new(
            "provider.leeway",
            "must be at most 5m (it is how far exp, nbf and iat may be off)",
        ));
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
    for reserved in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        if pc.extra_auth_params.contains_key(reserved) {
            p.push(Problem::new(
                format!("provider.extra_auth_params.{reserved}"),
                "is set by oidc-bff itself and cannot be overridden",
            ));
        }
    }
}

fn session(c: &mut Config, p: &mut Vec<Problem>) {
    let https = c.is_https();
    let s = &mut c.session;
    // An unreadable or empty keys_file was reported by loading.
    if s.keys.is_empty() && s.keys_file.is_none() {
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
                s.decoded_keys.push(KeyBytes(bytes));
            }
            None => p.push(Problem::new(
                format!("session.keys[{i}]"),
                "must be 32 bytes, base64url-encoded (use `oidc-bff generate-key`)",
            )),
        }
    }
    if s.idle_timeout.is_zero() {
        p.push(Problem::new(
            "session.idle_timeout",
            "must be greater than 0",
        ));
    }
    if s.revalidate_every
        .is_some_and(|d| d < std::time::Duration::from_secs(1))
    {
        p.push(Problem::new(
            "session.revalidate_every",
            "must be at least 1s, or \"off\"",
        ));
    }
    if s.absolute_timeout < s.idle_timeout {
        p.push(Problem::new(
            "session.absolute_timeout",
            "must be at least session.idle_timeout",
        ));
    }
    if s.cookie_name.is_empty()
        || !s
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
        p.push(Problem::new(
            "session.max_sessions",
            "must be greater than 0",
        ));
    }
    redis(s, p);
}

/// The `redis_*` keys. They are checked whenever present (a typo should not
/// wait for the day someone switches to Redis); `store = "redis"` needs a server.
fn redis(s: &mut super::SessionConfig, p: &mut Vec<Problem>) {
    use crate::session::redis::{parse_ca_pem, parse_url};
    let mut tls = None;
    let mut endpoints = Vec::new();
    if let Some(url) = &s.redis_url {
        match parse_url(url.expose()) {
            Ok(e) => {
                tls = Some(e.tls);
                endpoints.push(e);
            }
            Err(e) => p.push(Problem::new("session.redis_url", e)),
        }
    }
    let mut first = None;
    for (i, url) in s.redis_cluster_urls.iter().enumerate() {
        let key = format!("session.redis_cluster_urls[{i}]");
        match parse_url(url.expose()) {
            Ok(e) if e.database.is_some_and(|d| d != 0) => {
                p.push(Problem::new(key, "must not name a database: a cluster has only database 0"))
            }
            Ok(e) => match &first {
                None => {
                    tls = Some(e.tls);
                    endpoints.push(e.clone());
                    first = Some(e);
                }
                Some(f) if (f.tls, &f.username, &f.password) != (e.tls, &e.username, &e.password) => p.push(Problem::new(
                    key,
                    "must use the same scheme and credentials as redis_cluster_urls[0] (or set redis_username / redis_password)",
                )),
                Some(_) => endpoints.push(e),
            },
            Err(e) => p.push(Problem::new(key, e)),
        }
    }
    s.redis_endpoints = endpoints;
    let has_url = s.redis_url.is_some();
    let has_cluster = !s.redis_cluster_urls.is_empty();
    if has_url && has_cluster {
        p.push(Problem::new(
            "session.redis_cluster_urls",
            "set only one of redis_url (one server) and redis_cluster_urls (a cluster)",
        ));
    }
    if s.store == StoreKind::Redis && !has_url && !has_cluster {
        p.push(Problem::new(
            "session.store",
            "\"redis\" needs session.redis_url (one server) or session.redis_cluster_urls (a cluster)",
        ));
    }
    if s.redis_username
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        p.push(Problem::new(
            "session.redis_username",
            "must be a non-empty name without spaces",
        ));
    }
    if let (Some(path), Some(pem)) = (&s.redis_ca_file, &s.redis_ca_pem) {
        if tls == Some(false) {
            p.push(Problem::new(
                "session.redis_ca_file",
                "only applies to rediss:// (TLS) URLs",
            ));
        } else if let Err(e) = parse_ca_pem(pem) {
            p.push(Problem::new(
                "session.redis_ca_file",
                format!("{}: {e}", path.display()),
            ));
        }
    }
    let prefix = &s.redis_key_prefix;
    if prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        // Braces would make a cluster hash tag and put every session on one node.
        p.push(Problem::new(
            "session.redis_key_prefix",
            "must be at most 64 printable characters without spaces, '{' or '}', e.g. \"oidc-bff:\"",
        ));
    }
    if s.redis_timeout.is_zero() {
        p.push(Problem::new(
            "session.redis_timeout",
            "must be greater than 0",
        ));
    } else if s.redis_timeout > std::time::Duration::from_secs(60) {
        p.push(Problem::new(
            "session.redis_timeout",
            "must be at most 60s (every request that needs a session waits this long when Redis hangs)",
        ));
    }
}

/// Decodes a session key: base64url (padding optional) or standard base64, 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    [
        URL_SAFE_NO_PAD.decode(text),
        URL_SAFE.decode(text),
        STANDARD.decode(text),
    ]
    .into_iter()
    .flatten()
    .find_map(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
}

fn routes(c: &Config, p: &mut Vec<Problem>) {
    let mut paths = HashSet::new();
    for (i, r) in c.routes.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        // Requests are matched on their canonical path, so a prefix that is
        // not canonical itself could never match, or match more than it says.
        match crate::request_path::canonicalize(&r.path) {
            Err(e) => p.push(Problem::new(key("path"), format!("{e}"))),
            Ok(c) if c != r.path => p.push(Problem::new(
                key("path"),
                format!("must be written in canonical form: \"{c}\""),
            )),
            Ok(_) => {}
        }
        // Routes match case-insensitively: `/Admin` and `/admin` are one prefix.
        if !paths.insert(r.path.trim_end_matches('/').to_ascii_lowercase()) {
            p.push(Problem::new(
                key("path"),
                format!("\"{}\" is used by another route", r.path),
            ));
        }
        let auth = &c.server.auth_prefix;
        if r.path == *auth || r.path.starts_with(&format!("{auth}/")) {
            p.push(Problem::new(
                key("path"),
                format!("must not be under the gateway's own prefix {auth}"),
            ));
        }
        if !matches!(r.upstream.scheme(), "http" | "https") || r.upstream.host_str().is_none() {
            p.push(Problem::new(
                key("upstream"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if r.upstream.query().is_some() || r.upstream.fragment().is_some() {
            p.push(Problem::new(
                key("upstream"),
                "must not have a query or fragment",
            ));
        }
        if r.timeout.is_zero() {
            p.push(Problem::new(key("timeout"), "must be greater than 0"));
        }
        let bearer = matches!(r.auth, AuthMode::Bearer | AuthMode::SessionOrBearer);
        if bearer
            && r.audiences.is_empty()
            && c.provider.audiences.is_empty()
            && c.provider.cognito.is_none()
        {
            p.push(Problem::new(
                key("audiences"),
                "a bearer route needs the `aud` its tokens carry: set provider.audiences or this route's audiences",
            ));
        }
        machine_token(c, r, &key, p);
        if r.max_body_bytes == Some(0) {
            p.push(Problem::new(
                key("max_body_bytes"),
                "must be greater than 0",
            ));
        }
    }
}

/// `token = "client"`: a machine token for a signed-in user's request needs
/// its scopes, a confidential client, and a route that is not open to anyone.
fn machine_token(
    c: &Config,
    r: &super::RouteConfig,
    key: &dyn Fn(&str) -> String,
    p: &mut Vec<Problem>,
) {
    if r.token != TokenKind::Client {
        if !r.client_scopes.is_empty() || r.client_resource.is_some() {
            p.push(Problem::new(
                key("client_scopes"),
                "client_scopes and client_resource are for token = \"client\" only",
            ));
        }
        return;
    }
    if r.client_scopes.is_empty() {
        p.push(Problem::new(
            key("client_scopes"),
            "token = \"client\" needs the scopes of the machine token, e.g. [\"orders/read\"]",
        ));
    }
    if let Some(bad) = r.client_scopes.iter().find(|s| {
        s.is_empty()
            || s.chars()
                .any(|ch| ch == ' ' || ch == '"' || ch == '\\' || ch.is_control())
    }) {
        p.push(Problem::new(
            key("client_scopes"),
            format!("\"{bad}\" is not a scope (RFC 6749 §3.3)"),
        ));
    }
    if let Some(res) = &r.client_resource {
        // RFC 8707 §2: an absolute URI without a fragment.
        match url::Url::parse(res) {
            Ok(u) if u.fragment().is_none() => {}
            _ => p.push(Problem::new(
                key("client_resource"),
                "must be an absolute URI without a fragment (RFC 8707)",
            )),
        }
    }
    if matches!(r.auth, AuthMode::Public | AuthMode::Optional) {
        p.push(Problem::new(
            key("auth"),
            "token = \"client\" sends the gateway's own token: the route must require a signed-in caller (session, bearer or session_or_bearer)",
        ));
    }
    let (_, secret, _) = c.provider.machine_client();
    if secret.is_none() {
        p.push(Problem::new(
            "provider.machine.client_secret",
            "token = \"client\" needs a confidential client: set provider.client_secret or provider.machine.client_secret",
        ));
    }
}

/// Per-route policies, `login_idp`, `provider.groups_claim` and `server.logout_return_to`.
fn authorization(c: &Config, p: &mut Vec<Problem>) {
    use crate::policy::ClaimRule;
    if let Some(g) = &c.provider.groups_claim {
        if g.is_empty() || g.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            p.push(Problem::new(
                "provider.groups_claim",
                "must be a claim name such as \"cognito:groups\" or \"groups\"",
            ));
        }
    }
    if let Some(to) = &c.server.logout_return_to {
        let prefix = &c.server.auth_prefix;
        if crate::oidc::return_to::safe_return_to(Some(to), prefix) != *to {
            p.push(Problem::new(
                "server.logout_return_to",
                format!(
                    "must be a path on this origin outside {prefix}, e.g. \"/\" or \"/goodbye\""
                ),
            ));
        }
    }
    for (i, r) in c.routes.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        let set: Vec<&str> = [
            ("allow_groups", !r.allow_groups.is_empty()),
            ("require_scopes", !r.require_scopes.is_empty()),
            ("require_claims", !r.require_claims.is_empty()),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        if let Some(first) = set.first() {
            if matches!(r.auth, AuthMode::Public | AuthMode::Optional) {
                p.push(Problem::new(
                    key(first),
                    "needs auth = \"session\", \"bearer\" or \"session_or_bearer\": this route lets anonymous callers through",
                ));
            }
        }
        if r.allow_groups.iter().any(|g| g.is_empty()) {
            p.push(Problem::new(
                key("allow_groups"),
                "group names must not be empty",
            ));
        }
        if r.require_scopes
            .iter()
            .any(|s| s.is_empty() || s.chars().any(char::is_whitespace))
        {
            p.push(Problem::new(
                key("require_scopes"),
                "each scope must be one non-empty word (no spaces)",
            ));
        }
        for (name, rule) in &r.require_claims {
            if name.is_empty() {
                p.push(Problem::new(
                    key("require_claims"),
                    "claim names must not be empty",
                ));
            } else if matches!(rule, ClaimRule::OneOf(v) if v.is_empty()) {
                p.push(Problem::new(
                    key(&format!("require_claims.{name}")),
                    "an empty list matches nothing: give at least one value",
                ));
            }
        }
        if r.login_idp
            .as_deref()
            .is_some_and(|idp| !crate::oidc::hints::valid_idp(idp))
        {
            p.push(Problem::new(
                key("login_idp"),
                "must be an identity provider name such as \"Google\" (letters, digits, '.', '_', '-', ':', '@')",
            ));
        }
    }
}

fn spa(c: &mut Config, p: &mut Vec<Problem>) {
    let Some(spa) = &c.spa else { return };
    match (&spa.dir, &spa.upstream) {
        (Some(_), Some(_)) => p.push(Problem::new("spa", "set only one of dir and upstream")),
        (None, None) => p.push(Problem::new("spa", "set dir or upstream")),
        // The directory was resolved and looked at by loading.
        (Some(_), None) => {}
        (None, Some(u)) => {
            if !matches!(u.scheme(), "http" | "https") {
                p.push(Problem::new(
                    "spa.upstream",
                    "must be an http:// or https:// URL",
                ));
            }
        }
    }
}

#[cfg(test)]
mod redis_tests {
    //! The `[session] redis_*` rules; the general table lives in `config/tests.rs`.

    use crate::config::load_from_str;

    fn config(session: &str) -> String {
        format!(
            "[server]\npublic_url = \"https://app.example.com\"\n\n[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"bff\"\n\n[session]\nkeys = [\"rKFjFOFP6sPFwG0ckYs4P92X-dRWoYVFbgJduZp0nJ8\"]\n{session}\n"
        )
    }

    /// The keys of the problems `session` causes (empty when valid).
    fn problems(session: &str) -> Vec<String> {
        match load_from_str(&config(session)) {
            Ok(_) => vec![],
            Err(e) => e.problems().into_iter().map(|p| p.key).collect(),
        }
    }

    #[test]
    fn valid_redis_configs() {
        for ok in [
            "store = \"redis\"\nredis_url = \"redis://redis:6379\"",
            "store = \"redis\"\nredis_url = \"rediss://app:pw@redis.internal:6380/2\"\nredis_timeout = \"500ms\"",
            "store = \"redis\"\nredis_cluster_urls = [\"redis://n1:7000\", \"redis://n2:7000\"]\nredis_key_prefix = \"shop:\"",
            "store = \"redis\"\nredis_url = \"redis://redis\"\nredis_username = \"app\"\nredis_password = \"pw\"",
            // Set but unused (store = "memory"): accepted, warned about at start.
            "redis_url = \"redis://redis:6379\"",
        ] {
            assert_eq!(problems(ok), Vec::<String>::new(), "{ok}");
        }
        let c = load_from_str(&config("store = \"redis\"\nredis_url = \"redis://r\"")).unwrap();
        assert_eq!(c.session.redis_key_prefix, "oidc-bff:");
        assert_eq!(c.session.redis_timeout, std::time::Duration::from_secs(2));
    }

    #[test]
    fn bad_redis_configs_name_the_key() {
        for (session, key) in [
            ("store = \"redis\"", "session.store"),
            ("store = \"redis\"\nredis_url = \"http://redis:6379\"", "session.redis_url"),
            ("store = \"redis\"\nredis_url = \"redis://redis:6379/x\"", "session.redis_url"),
            ("store = \"redis\"\nredis_url = \"redis://a\"\nredis_cluster_urls = [\"redis://b\"]", "session.redis_cluster_urls"),
            ("store = \"redis\"\nredis_cluster_urls = [\"redis://a\", \"rediss://b\"]", "session.redis_cluster_urls[1]"),
            ("store = \"redis\"\nredis_cluster_urls = [\"redis://a/3\"]", "session.redis_cluster_urls[0]"),
            ("store = \"redis\"\nredis_url = \"rediss://r\"\nredis_ca_file = \"/nonexistent/ca.pem\"", "session.redis_ca_file"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_ca_file = \"Cargo.toml\"", "session.redis_ca_file"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_key_prefix = \"{tag}:\"", "session.redis_key_prefix"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_key_prefix = \"a b\"", "session.redis_key_prefix"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_timeout = \"0s\"", "session.redis_timeout"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_timeout = \"5m\"", "session.redis_timeout"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_password = \"a\"\nredis_password_file = \"/x\"", "session.redis_password_file"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_password_file = \"/nonexistent/pw\"", "session.redis_password_file"),
            ("store = \"redis\"\nredis_url = \"redis://r\"\nredis_username = \"\"", "session.redis_username"),
        ] {
            assert_eq!(problems(session), [key], "{session}");
        }
    }

    #[test]
    fn problems_never_echo_a_redis_password() {
        let c = config("store = \"redis\"\nredis_url = \"redis://:s3cret-pw@redis:6379/x\"");
        let err = load_from_str(&c).unwrap_err().to_string();
        assert!(!err.contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn password_file_and_ca_file_are_read() {
        let dir = std::env::temp_dir().join(format!("oidc-bff-redis-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "file-pw\n").unwrap();
        std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
        let session = format!(
            "store = \"redis\"\nredis_url = \"rediss://r\"\nredis_password_file = \"{}\"",
            dir.join("pw").display()
        );
        let c = load_from_str(&config(&session)).unwrap();
        assert_eq!(c.session.redis_password.unwrap().expose(), "file-pw");
        let bad_ca = format!(
            "{session}\nredis_ca_file = \"{}\"",
            dir.join("ca.pem").display()
        );
        assert_eq!(problems(&bad_ca), ["session.redis_ca_file"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
