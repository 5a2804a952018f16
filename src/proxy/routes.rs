//! The route table: longest-prefix match of the request path against the
//! configured `[[route]]` prefixes, after rejecting request targets that could
//! be read differently by an upstream (dot segments, encoded slashes,
//! backslashes), so no path trick reaches another route's upstream.

use crate::config::{AuthMode, RouteConfig, TokenKind};
use crate::policy::RoutePolicy;
use http::Method;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct Route {
    /// Stable id for logs and metrics: the configured prefix.
    pub id: String,
    prefix: String,
    pub upstream: Url,
    pub strip_prefix: bool,
    pub auth: AuthMode,
    pub token: TokenKind,
    pub csrf: bool,
    pub methods: Vec<Method>,
    pub timeout: Duration,
    pub websocket: bool,
    pub max_body_bytes: u64,
    /// Accepted `aud` of bearer tokens here (empty: the provider's `audiences`).
    pub audiences: Vec<String>,
    pub preserve_host: bool,
    pub identity_headers: Option<crate::config::IdentityHeaders>,
    /// The `aud` of identity assertions, when this route sends them.
    pub assertion_audience: Option<String>,
    /// Who may pass once authenticated; `None` when the route sets no rule.
    pub policy: Option<RoutePolicy>,
    /// Federated IdP for sign-ins started by navigations to this route.
    pub login_idp: Option<String>,
}

impl Route {
    pub fn from_config(c: &RouteConfig, default_max_body: u64) -> Self {
        Route {
            id: c.path.clone(),
            prefix: c.path.trim_end_matches('/').to_string(),
            upstream: c.upstream.clone(),
            strip_prefix: c.strip_prefix,
            auth: c.auth,
            token: c.token,
            csrf: c.csrf,
            methods: c
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            timeout: c.timeout,
            websocket: c.websocket,
            max_body_bytes: c.max_body_bytes.unwrap_or(default_max_body),
            audiences: c.audiences.clone(),
            preserve_host: c.preserve_host,
            identity_headers: c.identity_headers.clone(),
            assertion_audience: c.identity_assertion.then(|| {
                c.assertion_audience
                    .clone()
                    .unwrap_or_else(|| c.upstream.origin().ascii_serialization())
            }),
            policy: Some(RoutePolicy {
                allow_groups: c.allow_groups.clone(),
                require_scopes: c.require_scopes.clone(),
                require_claims: c.require_claims.clone(),
            })
            .filter(|p| !p.is_empty()),
            login_idp: c.login_idp.clone(),
        }
    }

    fn matches(&self, path: &str) -> bool {
        // "/api" matches "/api" and "/api/…", never "/apix".
        self.prefix.is_empty()
            || path == self.prefix
            || path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// The upstream URL for a request path and query.
    pub fn upstream_url(&self, path: &str, query: Option<&str>) -> String {
        let base = self.upstream.as_str().trim_end_matches('/');
        let rest = if self.strip_prefix {
            let r = &path[self.prefix.len().min(path.len())..];
            // The route's own path maps to the upstream's base path as written.
            match (r.is_empty(), self.upstream.path() == "/") {
                (true, true) => "/",
                _ => r,
            }
        } else {
            path
        };
        match query {
            Some(q) => format!("{base}{rest}?{q}"),
            None => format!("{base}{rest}"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Longest prefix first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(configs: &[RouteConfig], default_max_body: u64) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .map(|c| Route::from_config(c, default_max_body))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable { routes }
    }

    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(path))
    }
}

/// Why a request target is refused before routing.
#[derive(Debug, PartialEq, Eq)]
pub enum BadTarget {
    /// Dot segments, encoded separators, backslashes or control bytes.
    Ambiguous,
    TooLong,
}

const MAX_PATH: usize = 4096;

/// Accepts only origin-form paths that every upstream reads the same way.
pub fn check_path(path: &str) -> Result<(), BadTarget> {
    if path.len() > MAX_PATH {
        return Err(BadTarget::TooLong);
    }
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(BadTarget::Ambiguous);
    }
    let lower = path.to_ascii_lowercase();
    // Encoded '/', '\', '.', '%' and NUL let "/api/..%2fadmin" mean different things to different parsers.
    for enc in ["%2f", "%5c", "%2e", "%25", "%00"] {
        if lower.contains(enc) {
            return Err(BadTarget::Ambiguous);
        }
    }
    if path
        .bytes()
        .any(|b| b == b'\\' || b.is_ascii_control() || b == b' ')
    {
        return Err(BadTarget::Ambiguous);
    }
    // A segment is a dot segment also with path parameters ("..;x"), as servlet containers read it.
    let dot_segment = |seg: &str| matches!(seg.split(';').next(), Some("." | ".."));
    if path.split('/').any(dot_segment) || path.contains("//") {
        return Err(BadTarget::Ambiguous);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let cfg: Vec<RouteConfig> = toml::from_str::<toml::Table>(
            r#"
            [[route]]
            path = "/api/"
            upstream = "http://api.internal:8080"
            [[route]]
            path = "/api/admin"
            upstream = "http://admin.internal:8080/base"
            strip_prefix = true
            [[route]]
            path = "/"
            upstream = "http://web.internal"
            "#,
        )
        .unwrap()["route"]
            .clone()
            .try_into()
            .unwrap();
        RouteTable::new(&cfg, 1024)
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        for (path, want) in [
            ("/api/orders", "/api/"),
            ("/api", "/api/"),
            ("/api/admin", "/api/admin"),
            ("/api/admin/users", "/api/admin"),
            ("/api/administrator", "/api/"),
            ("/apix", "/"),
            ("/", "/"),
            ("/index.html", "/"),
        ] {
            assert_eq!(t.find(path).map(|r| r.id.as_str()), Some(want), "{path}");
        }
    }

    #[test]
    fn upstream_urls() {
        let t = table();
        let admin = t.find("/api/admin/users").unwrap();
        assert_eq!(
            admin.upstream_url("/api/admin/users", Some("a=1")),
            "http://admin.internal:8080/base/users?a=1"
        );
        assert_eq!(
            admin.upstream_url("/api/admin", None),
            "http://admin.internal:8080/base"
        );
        assert_eq!(
            admin.upstream_url("/api/admin/", None),
            "http://admin.internal:8080/base/"
        );
        let api = t.find("/api/x").unwrap();
        assert_eq!(
            api.upstream_url("/api/x", None),
            "http://api.internal:8080/api/x"
        );
    }

    #[test]
    fn hostile_targets_are_refused() {
        let hostile = [
            "/api/../admin",
            "/api/..",
            "/api/./x",
            "/api/%2e%2e/admin",
            "/api/%2E%2E/admin",
            "/api/.%2e/admin",
            "/api/%2e./admin",
            "/api/..%2fadmin",
            "/api/..%2Fadmin",
            "/api/%2fadmin",
            "/api/..%5cadmin",
            "/api/..\\admin",
            "/api\\..\\admin",
            "//evil.com/api",
            "//api.internal/admin",
            "/api//admin",
            "/api/%252e%252e/admin",
            "/api/%00/x",
            "/api/\x00",
            "/api/\t/x",
            "/api/ x",
            "api/x",
            "http://evil.com/api",
            "",
            "/api/x/../../admin",
            "/api/..;/admin",
            "/api/.;x/admin",
            "/api/x/..",
            "/.",
            "/..",
        ];
        assert!(hostile.len() >= 25);
        for p in hostile {
            assert!(check_path(p).is_err(), "{p:?} was accepted");
        }
        assert_eq!(
            check_path(&format!("/{}", "a".repeat(5000))),
            Err(BadTarget::TooLong)
        );
        for ok in [
            "/",
            "/api/orders",
            "/api/orders?x=1",
            "/a.b/c..d/.e",
            "/%41",
        ] {
            let path = ok.split('?').next().unwrap();
            assert!(check_path(path).is_ok(), "{ok}");
        }
    }
}
