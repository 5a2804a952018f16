//! Header hygiene for proxied requests and responses, as pure functions:
//! hop-by-hop headers go (RFC 9110 §7.6.1), the gateway's cookies go, identity
//! headers a client could forge go before trusted ones are set, and
//! `X-Forwarded-*` is set according to whether the peer is a trusted proxy,
//! and the caching rules of answers (who may keep them, RFC 9111).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the historical ones).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that some upstream framework or gateway trusts as the user's
/// identity, or as the path it serves (route overrides). A client must never
/// set them: they are removed on every route, before the gateway sets its own.
pub const PROTECTED_HEADERS: [&str; 31] = [
    // oauth2-proxy, Pomerium and friends.
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-id-token",
    "x-userinfo",
    "x-user",
    "x-email",
    "x-groups",
    "x-auth-user",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-authenticated-groups",
    "x-authenticated-scope",
    "x-consumer-username",
    "x-consumer-id",
    "x-credential-identifier",
    // CGI's REMOTE_USER and the servers that map a header onto it.
    "remote-user",
    "x-remote-user",
    "x-remote-group",
    "x-webauth-user",
    // Route overrides: some frameworks serve this path instead of the request's.
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-envoy-original-path",
    // Method overrides: an upstream that honours them would walk around `methods`.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers that tell an upstream where the client is or what it asked for,
/// as a proxy in front sees it: believed from `server.trusted_proxies` only,
/// removed when anyone else sends them.
const PROXY_ONLY_HEADERS: [&str; 10] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

/// Families of protected headers, by prefix (oauth2-proxy's `X-Auth-Request-*`,
/// the AWS ALB's `X-Amzn-Oidc-*`).
const PROTECTED_PREFIXES: [&str; 2] = ["x-auth-request-", "x-amzn-oidc-"];

/// Headers the gateway sets or decides itself. Their exact spelling is
/// handled where they are set; a spelling with `_` is removed, since CGI,
/// WSGI and Rack servers read `X_Forwarded_For` as `X-Forwarded-For` and
/// would merge the client's value into ours.
const MANAGED_HEADERS: [&str; 11] = [
    "authorization",
    "cookie",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
    "content-length",
];

/// The request headers a client may not send upstream, compared as servers
/// read names: case-insensitively (HTTP/2 and `http` lower-case them
/// already) and with `_` read as `-`.
#[derive(Debug, Clone)]
pub struct ProtectedHeaders {
    /// Lower-case, `-` spelled: the built-in set plus configured names.
    names: std::collections::HashSet<String>,
}

impl ProtectedHeaders {
    /// The built-in set plus `extra` (identity header names configured on
    /// routes, the assertion header, `server.protected_headers`).
    pub fn new<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        let names = PROTECTED_HEADERS
            .into_iter()
            .map(str::to_string)
            .chain(extra.into_iter().map(normalize_name))
            .collect();
        ProtectedHeaders { names }
    }

    /// Whether a client header of this name is removed.
    pub fn is_protected(&self, name: &HeaderName) -> bool {
        let raw = name.as_str();
        let underscored = raw.contains('_');
        let name = if underscored {
            std::borrow::Cow::Owned(raw.replace('_', "-"))
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        self.names.contains(name.as_ref())
            || PROTECTED_PREFIXES.iter().any(|p| name.starts_with(p))
            || (underscored
                && (MANAGED_HEADERS.contains(&name.as_ref())
                    || HOP_BY_HOP.contains(&name.as_ref())))
    }
}

/// A header name as servers compare it: lower case, `_` read as `-`.
pub fn normalize_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes every header `doomed` picks, in one pass over the names present
/// (a typical request has none to remove, so nothing is allocated).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    remove_where(headers, is_hop_by_hop);
}

/// Removes the named cookies from every `Cookie` header, keeping the others;
/// drops the header when nothing is left. Headers without any of the named
/// cookies are left as they are. Works on bytes: a header that is not UTF-8
/// (another cookie's value) must not carry the gateway's cookie through.
pub fn strip_cookies(headers: &mut HeaderMap, names: &[&str]) {
    let is_named = |pair: &[u8]| {
        let name = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => &pair[..eq],
            None => pair,
        };
        names.iter().any(|n| n.as_bytes() == name.trim_ascii())
    };
    let pairs = |headers: &HeaderMap| -> Vec<Vec<u8>> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .map(|p| p.trim_ascii().to_vec())
            .collect()
    };
    let any_named = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .any(is_named);
    if !any_named && headers.get_all(header::COOKIE).iter().count() <= 1 {
        return;
    }
    let mut kept = Vec::new();
    for pair in pairs(headers)
        .into_iter()
        .filter(|pair| !pair.is_empty() && !is_named(pair))
    {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(&pair);
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Removes the protected headers a client may have sent (any spelling a
/// server would read as one). `Authorization` goes too when the route
/// authenticates by session (the gateway decides what the upstream sees there).
pub fn strip_protected(
    headers: &mut HeaderMap,
    protected: &ProtectedHeaders,
    strip_authorization: bool,
) {
    remove_where(headers, |n| {
        protected.is_protected(n) || (strip_authorization && n == header::AUTHORIZATION)
    });
}

/// What the gateway knows about the client connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub peer: IpAddr,
    /// The peer is a configured trusted proxy: its `X-Forwarded-*` are believed.
    pub trusted_peer: bool,
    /// Scheme and host the browser used (`public_url`).
    pub public_proto: String,
    pub public_host: String,
}

/// Sets `X-Forwarded-For/Proto/Host`. From a trusted proxy the chain is kept
/// and extended; from anyone else, whatever they sent is replaced.
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo) {
    let prior: Vec<String> = if client.trusted_peer {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let xff = if !prior.is_empty() {
        format!("{}, {}", prior.join(", "), client.peer)
    } else {
        client.peer.to_string()
    };
    headers.remove("x-forwarded-for");
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if !client.trusted_peer {
        for name in PROXY_ONLY_HEADERS {
            headers.remove(name);
        }
    }
    let keep_proto = client.trusted_peer && headers.contains_key("x-forwarded-proto");
    if !keep_proto {
        if let Ok(v) = HeaderValue::from_str(&client.public_proto) {
            headers.insert("x-forwarded-proto", v);
        }
    }
    let keep_host = client.trusted_peer && headers.contains_key("x-forwarded-host");
    if !keep_host {
        if let Ok(v) = HeaderValue::from_str(&client.public_host) {
            headers.insert("x-forwarded-host", v);
        }
    }
}

/// Response side: hop-by-hop headers go, and an upstream cannot set (or
/// clear) the gateway's own cookies.
pub fn clean_response(headers: &mut HeaderMap, gateway_cookies: &[&str]) {
    strip_hop_by_hop(headers);
    drop_gateway_cookies(headers, gateway_cookies);
    // `Clear-Site-Data: "cookies"` (or `"*"`) would delete the gateway's
    // cookies too: an upstream could sign users out behind the gateway's back.
    let clears_cookies = headers
        .get_all(header::HeaderName::from_static("clear-site-data"))
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|d| d.eq_ignore_ascii_case(b"\"cookies\"") || d == b"\"*\"");
    if clears_cookies {
        headers.remove("clear-site-data");
    }
}

/// Removes every `Set-Cookie` that names one of the gateway's cookies; the one
/// rule for proxied responses and WebSocket handshakes alike.
pub fn drop_gateway_cookies(headers: &mut HeaderMap, gateway_cookies: &[&str]) {
    let ours = |v: &HeaderValue| sets_gateway_cookie(v.as_bytes(), gateway_cookies);
    if !headers.get_all(header::SET_COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !ours(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Whether a `Set-Cookie` value sets one of `gateway_cookies`: the name before
/// the first `=` of the first pair, trimmed, compared ASCII case-insensitively
/// (a browser or a framework in between may fold case). Read as bytes, so a
/// value with non-ASCII attributes cannot slip through as "unreadable".
pub fn sets_gateway_cookie(value: &[u8], gateway_cookies: &[&str]) -> bool {
    let pair = value.split(|&b| b == b';').next().unwrap_or_default();
    let Some((name, rest)) = split_pair(pair) else {
        // `Set-Cookie: value` sets the empty name to `value`, which browsers
        // send back as `value` alone: not a name=value pair, not ours.
        return false;
    };
    // A nameless cookie (`=oidc_bff=v`) is sent back as its value alone,
    // `oidc_bff=v` (RFC 6265bis §5.6, §5.8.3): judge the name it spells.
    let name = match name.trim_ascii() {
        b"" => match split_pair(rest) {
            Some((inner, _)) => inner.trim_ascii(),
            None => return false,
        },
        name => name,
    };
    gateway_cookies
        .iter()
        .any(|g| g.as_bytes().eq_ignore_ascii_case(name))
}

/// `name=value` split at the first `=`.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = pair.iter().position(|&b| b == b'=')?;
    Some((&pair[..i], &pair[i + 1..]))
}

/// Fields through which an upstream tells caches how long to keep an answer:
/// `Cache-Control`, `Expires` (RFC 9111 §5.2, §5.3), and the fields that CDNs
/// obey in its place (RFC 9213 `CDN-Cache-Control`, `Surrogate-Control`).
const CACHING_FIELDS: [&str; 4] = [
    "cache-control",
    "expires",
    "cdn-cache-control",
    "surrogate-control",
];

/// A response that sets one of the gateway's cookies is never stored by any
/// cache: a cached copy would hand one user's session to the next (RFC 9111
/// §3: `no-store` forbids keeping it). Whatever the upstream asked for
/// (`public`, `max-age`, a CDN's own field) is replaced. The one rule for
/// every answer, proxied or the gateway's own; returns whether it applied.
pub fn no_store_with_gateway_cookie(headers: &mut HeaderMap, gateway_cookies: &[&str]) -> bool {
    let sets_ours = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| sets_gateway_cookie(v.as_bytes(), gateway_cookies));
    if sets_ours {
        for name in CACHING_FIELDS {
            headers.remove(name);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    sets_ours
}

/// How a route's answer may be cached, by who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRule {
    /// The caller was signed in (a session or a verified bearer token).
    pub signed_in: bool,
    /// The route's `cache_private`.
    pub private: bool,
    /// The route answers signed-in and anonymous callers alike (`auth =
    /// "optional"`): the answer depends on the cookie.
    pub varies_with_cookie: bool,
}

/// Applies [`CacheRule`] to a proxied answer: one for a signed-in caller that
/// says nothing of caching becomes `Cache-Control: private` (no shared cache
/// keeps it, RFC 9111 §5.2.2.7); an upstream that does say (`public`, an
/// `Expires`) is believed. An answer that depends on the cookie says so with
/// `Vary: Cookie` (§4.1), so a cache never gives a signed-out copy to a
/// signed-in user or the other way round.
pub fn apply_cache_rule(headers: &mut HeaderMap, rule: CacheRule) {
    if rule.signed_in && rule.private && !CACHING_FIELDS.iter().any(|n| headers.contains_key(*n)) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
    if rule.varies_with_cookie {
        let listed = headers
            .get_all(header::VARY)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|f| f == b"*" || f.eq_ignore_ascii_case(b"cookie"));
        if !listed {
            headers.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_sets_a_gateway_cookie_is_never_stored() {
        let names = ["oidc_bff", "oidc_bff_login"];
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600"),
        );
        h.insert(
            header::EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"),
        );
        h.insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
        h.insert("surrogate-control", HeaderValue::from_static("max-age=600"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("theirs=1"));
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("oidc_bff=abc; HttpOnly"),
        );
        assert!(no_store_with_gateway_cookie(&mut h, &names));
        assert_eq!(
            h.get_all(header::CACHE_CONTROL).iter().collect::<Vec<_>>(),
            ["no-store"]
        );
        for gone in ["expires", "cdn-cache-control", "surrogate-control"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(
            h.get_all(header::SET_COOKIE).iter().count(),
            2,
            "cookies stay"
        );

        // Another application's cookie alone: the upstream's caching stands.
        let mut theirs = HeaderMap::new();
        theirs.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600"),
        );
        theirs.append(header::SET_COOKIE, HeaderValue::from_static("theirs=1"));
        assert!(!no_store_with_gateway_cookie(&mut theirs, &names));
        assert_eq!(theirs[header::CACHE_CONTROL], "public, max-age=600");
        // The login cookie, in another case spelling, is ours too.
        let mut login = HeaderMap::new();
        login.append(
            header::SET_COOKIE,
            HeaderValue::from_static("OIDC_BFF_LOGIN=x"),
        );
        assert!(no_store_with_gateway_cookie(&mut login, &names));
        assert_eq!(login[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn cache_rules_of_proxied_answers() {
        let rule = |signed_in, private, varies_with_cookie| CacheRule {
            signed_in,
            private,
            varies_with_cookie,
        };
        // (rule, upstream headers, Cache-Control after, Vary after)
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(CacheRule, Headers, Option<&str>, &[&str])] = &[
            (rule(true, true, false), &[], Some("private"), &[]),
            (rule(false, true, false), &[], None, &[]),
            (rule(true, false, false), &[], None, &[]),
            (
                rule(true, true, false),
                &[("cache-control", "public, max-age=60")],
                Some("public, max-age=60"),
                &[],
            ),
            (rule(true, true, false), &[("expires", "0")], None, &[]),
            (
                rule(true, true, false),
                &[("cdn-cache-control", "max-age=5")],
                None,
                &[],
            ),
            (rule(false, true, true), &[], None, &["Cookie"]),
            (
                rule(true, true, true),
                &[("vary", "Accept-Encoding")],
                Some("private"),
                &["Accept-Encoding", "Cookie"],
            ),
            (
                rule(true, true, true),
                &[("vary", "accept, COOKIE")],
                Some("private"),
                &["accept, COOKIE"],
            ),
            (rule(false, true, true), &[("vary", "*")], None, &["*"]),
        ];
        for (i, (rule, upstream, cache, vary)) in cases.iter().enumerate() {
            let mut h = HeaderMap::new();
            for (k, v) in upstream.iter() {
                h.append(*k, HeaderValue::from_static(v));
            }
            apply_cache_rule(&mut h, *rule);
            assert_eq!(
                h.get(header::CACHE_CONTROL).map(|v| v.to_str().unwrap()),
                *cache,
                "case {i}"
            );
            let got: Vec<_> = h
                .get_all(header::VARY)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, *vary, "case {i}");
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eA=="),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn gateway_cookies_are_removed_others_kept() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["oidc_bff=abc; theme=dark"], Some("theme=dark")),
            (
                &["theme=dark; oidc_bff=abc; lang=en"],
                Some("theme=dark; lang=en"),
            ),
            (&["oidc_bff=abc", "oidc_bff_login=x"], None),
            (&["oidc_bff=abc", "a=1"], Some("a=1")),
            (&["oidc_bffx=1"], Some("oidc_bffx=1")),
            (&[" oidc_bff =abc"], None),
        ];
        for (input, want) in cases {
            let mut h = HeaderMap::new();
            for v in *input {
                h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
            }
            strip_cookies(&mut h, &["oidc_bff", "oidc_bff_login"]);
            assert_eq!(
                h.get(header::COOKIE).map(|v| v.to_str().unwrap()),
                *want,
                "{input:?}"
            );
        }
        // A header that is not UTF-8 still loses the gateway's cookie.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"oidc_bff=secret; name=J\xc3\xb6rg").unwrap(),
        );
        strip_cookies(&mut h, &["oidc_bff"]);
        assert_eq!(h[header::COOKIE].as_bytes(), b"name=J\xc3\xb6rg");
    }

    #[test]
    fn identity_headers_cannot_be_forged() {
        let protected = ProtectedHeaders::new(["X-Team-User", "x_bff_identity"]);
        for strip_auth in [true, false] {
            let mut h = map(&[
                ("x-forwarded-user", "admin"),
                ("X-Forwarded-Email", "admin@example.com"),
                ("x-forwarded-groups", "admins"),
                ("x-amzn-oidc-identity", "admin"),
                ("x-amzn-oidc-anything-new", "admin"),
                ("x-auth-request-whatever", "admin"),
                ("remote-user", "admin"),
                ("X_Forwarded_User", "mallory"),
                ("x_auth_request_user", "mallory"),
                ("x-team_user", "mallory"),
                ("x-bff-identity", "forged"),
                ("x-original-url", "/admin"),
                ("x_rewrite_url", "/admin"),
                ("x_forwarded_for", "6.6.6.6"),
                ("x_real_ip", "6.6.6.6"),
                ("x_request_id", "x"),
                ("transfer_encoding", "chunked"),
                ("authorization", "Bearer forged"),
                ("accept", "*/*"),
                ("x-api_version", "2"),
                ("x-forwarded-for", "1.2.3.4"),
            ]);
            strip_protected(&mut h, &protected, strip_auth);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            let mut want = vec!["accept", "x-api_version", "x-forwarded-for"];
            if !strip_auth {
                want.insert(0, "authorization");
            }
            let mut left_sorted = left.clone();
            left_sorted.sort();
            want.sort();
            assert_eq!(left_sorted, want, "strip_auth={strip_auth}");
        }
    }

    #[test]
    fn protected_names_compare_as_servers_read_them() {
        let p = ProtectedHeaders::new([]);
        for name in PROTECTED_HEADERS {
            for spelling in [name.to_string(), name.replace('-', "_")] {
                let n = HeaderName::from_bytes(spelling.as_bytes()).unwrap();
                assert!(p.is_protected(&n), "{spelling}");
            }
        }
        for name in [
            "accept",
            "x-forwarded-for",
            "authorization",
            "x-api_key",
            "user-agent",
        ] {
            let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert!(!p.is_protected(&n), "{name}");
        }
        assert_eq!(normalize_name("X_Forwarded_User"), "x-forwarded-user");
    }

    #[test]
    fn forwarded_headers_by_trust() {
        let client = |trusted| ClientInfo {
            peer: "10.0.0.9".parse().unwrap(),
            trusted_peer: trusted,
            public_proto: "https".into(),
            public_host: "app.example.com".into(),
        };
        let sent = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.com"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-forwarded-port", "1"),
            ("true-client-ip", "1.2.3.4"),
            ("x-forwarded-prefix", "/evil"),
        ];
        let mut h = map(&sent);
        set_forwarded(&mut h, &client(false));
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.9"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&h, "x-forwarded-host"), ["app.example.com"]);
        for name in [
            "forwarded",
            "x-real-ip",
            "x-forwarded-port",
            "true-client-ip",
            "x-forwarded-prefix",
        ] {
            assert!(!h.contains_key(name), "{name} from an untrusted peer");
        }

        let mut h = map(&sent);
        set_forwarded(&mut h, &client(true));
        assert_eq!(values(&h, "x-forwarded-for"), ["1.2.3.4, 10.0.0.9"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&h, "x-forwarded-host"), ["evil.com"]);
        assert_eq!(
            values(&h, "x-real-ip"),
            ["1.2.3.4"],
            "kept from a trusted proxy"
        );

        let mut h = HeaderMap::new();
        set_forwarded(&mut h, &client(true));
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.9"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
    }

    #[test]
    fn upstreams_cannot_set_gateway_cookies() {
        let mut h = map(&[
            ("set-cookie", "oidc_bff=stolen; Path=/"),
            ("set-cookie", "OIDC_BFF_LOGIN=x"),
            ("set-cookie", "app=1; Path=/"),
            ("set-cookie", " oidc_bff =x; Path=/"),
            ("connection", "close"),
            ("content-type", "text/plain"),
        ]);
        clean_response(&mut h, &["oidc_bff", "oidc_bff_login"]);
        assert_eq!(values(&h, "set-cookie"), ["app=1; Path=/"]);
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn set_cookie_spellings_browsers_read_as_ours_are_dropped() {
        let names = ["__Host-oidc_bff", "__Host-oidc_bff_login"];
        for v in [
            "__Host-oidc_bff=x; Path=/; Secure",
            "__HOST-oidc_bff=x; Path=/; Secure",
            "\t__Host-oidc_bff=x; Path=/; Secure",
            "__Host-oidc_bff\t=x",
            "  __host-OIDC_BFF_LOGIN = x",
            "__Host-oidc_bff=",
            "__Host-oidc_bff=; Max-Age=0",
        ] {
            assert!(sets_gateway_cookie(v.as_bytes(), &names), "{v:?}");
        }
        // A browser reads each of these as another cookie: kept.
        for v in [
            "app=1, __Host-oidc_bff=x",
            "\"__Host-oidc_bff\"=x",
            "__Host-oidc_bff_x=1",
            "oidc_bff=x",
            "__Host-oidc_bff",
            "x=__Host-oidc_bff=1",
        ] {
            assert!(!sets_gateway_cookie(v.as_bytes(), &names), "{v:?}");
        }
        // Non-UTF-8 bytes elsewhere do not hide ours.
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_bytes(b"__Host-oidc_bff=\xff\xfe; Path=/").unwrap(),
        );
        h.append(header::SET_COOKIE, HeaderValue::from_static("app=1"));
        drop_gateway_cookies(&mut h, &names);
        assert_eq!(values(&h, "set-cookie"), ["app=1"]);
    }

    #[test]
    fn nameless_cookie_cannot_stand_in_for_ours() {
        // RFC 6265bis §5.6: the name is what precedes the first `=` (here
        // empty), the value the rest; a nameless cookie is serialised as its
        // value alone (§5.8.3), so the next request carries `oidc_bff=v`, which
        // `request_cookies` reads as the session cookie. Firefox, Safari and
        // Chromium before M148 store it (Chromium only refuses it for
        // `__Host-`/`__Secure-` values), so on an http `public_url` (no
        // `__Host-` prefix) an upstream can plant a session of its choosing
        // (session fixation) past the matcher.
        let names = ["oidc_bff", "oidc_bff_login"];
        for v in ["=oidc_bff=attacker-session; Path=/", " =oidc_bff_login=x"] {
            assert!(sets_gateway_cookie(v.as_bytes(), &names), "{v:?}");
        }
        let mut h = map(&[("set-cookie", "=oidc_bff=attacker-session; Path=/")]);
        clean_response(&mut h, &names);
        assert!(!h.contains_key("set-cookie"));
    }

    #[test]
    fn upstreams_cannot_clear_gateway_cookies_with_clear_site_data() {
        // Browsers (Chromium, Firefox) honour `Clear-Site-Data: "cookies"`
        // (or `"*"`) on https responses by deleting every cookie of the
        // registrable domain, the gateway's session and login cookies
        // included: any upstream behind the gateway can sign its users out
        // (the server-side session lives on, orphaned).
        for directive in ["\"cookies\"", "\"*\"", "\"cache\", \"cookies\""] {
            let mut h = map(&[
                ("clear-site-data", directive),
                ("content-type", "text/html"),
            ]);
            clean_response(&mut h, &["__Host-oidc_bff", "__Host-oidc_bff_login"]);
            assert!(
                !h.contains_key("clear-site-data"),
                "Clear-Site-Data: {directive} reaches the browser"
            );
        }
    }
}
