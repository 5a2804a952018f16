//! An attacker's spellings against the gate: percent-encoded, dot-segment,
//! separator and parameter spellings of protected paths against route
//! policies, CSRF and forward-auth; underscore and case spellings of
//! protected headers; cookies of two users at once. Every refusal asserts
//! the status and that the upstream saw nothing; controls show that the
//! allowed user and legitimately encoded paths still get through.

use crate::harness::*;
use crate::negative::{callback, start_login};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway (rogue IdP, one recording upstream) with `routes` (UP is the
/// upstream's URL) and `server` lines.
struct Stack {
    idp: RogueIdp,
    upstream: Upstream,
    gw: Gateway,
}

async fn stack(server: &str, routes: &str) -> Stack {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let mut toml = config_toml(
        &reserved.url,
        &idp.issuer,
        &routes.replace("UP", &upstream.url),
    );
    toml = toml.replace("[server]\n", &format!("[server]\n{server}\n"));
    let gw = Gateway::start(reserved, &toml).await;
    Stack { idp, upstream, gw }
}

impl Stack {
    /// Signs a new browser in as `sub` with `groups`; returns it and its cookie.
    async fn user(&self, sub: &str, groups: &[&str]) -> (reqwest::Client, String) {
        let b = browser();
        let (state, nonce) = start_login(&b, &self.gw.url, "/").await;
        self.idp.answer_with_id_token(json!({
            "iss": self.idp.issuer, "aud": "bff", "sub": sub, "nonce": nonce,
            "iat": now(), "exp": now() + 300, "groups": groups,
        }));
        let r = callback(&b, &self.gw.url, &format!("code=abc&state={state}")).await;
        assert_eq!(r.status(), 200, "sign-in of {sub}");
        let cookie = set_cookie_value(&r, "oidc_bff").expect("a session cookie");
        (b, cookie)
    }

    fn seen(&self) -> usize {
        self.upstream.count()
    }
}

/// One request written byte for byte; returns the status and the whole answer.
async fn raw(gw: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = gw.trim_start_matches("http://");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") {
        req.push_str("Content-Length: 2\r\n\r\n{}");
    } else {
        req.push_str("\r\n");
    }
    raw_exchange(gw, req.as_bytes()).await
}

/// A request whose head starts with `head` (bytes, not necessarily UTF-8),
/// then `headers`; returns the status and the answer.
async fn raw_bytes(gw: &str, head: &[u8], headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = head.to_vec();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    raw_exchange(gw, &req).await
}

/// Every spelling of `/{pre}{word}{post}` with one letter of `word` escaped,
/// in upper- and lower-case hex, and with all of them escaped.
fn escaped_spellings(pre: &str, word: &str, post: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..word.len() {
        for hex in [
            format!("%{:02X}", word.as_bytes()[i]),
            format!("%{:02x}", word.as_bytes()[i]),
        ] {
            out.push(format!("{pre}{}{hex}{}{post}", &word[..i], &word[i + 1..]));
        }
    }
    let all: String = word.bytes().map(|b| format!("%{b:02x}")).collect();
    out.push(format!("{pre}{all}{post}"));
    out
}

/// Structural spellings that must be refused outright (400).
fn structural_spellings(pre: &str, word: &str, post: &str) -> Vec<String> {
    let base = pre.trim_end_matches('/');
    vec![
        format!("{base}%2F{word}{post}"),
        format!("{base}%2f{word}{post}"),
        format!("{base}%252F{word}{post}"),
        format!("{base}%252f{word}{post}"),
        format!("{pre}{word};x{post}"),
        format!("{pre}{word};{post}"),
        format!("{pre}.{post}/../{word}{post}"),
        format!("{pre}./{word}{post}"),
        format!("{pre}x/../{word}{post}"),
        format!("{pre}%2e/{word}{post}"),
        format!("{pre}x/%2e%2e/{word}{post}"),
        format!("{pre}x/%2E%2E/{word}{post}"),
        format!("{pre}x/.%2e/{word}{post}"),
        format!("{base}\\{word}{post}"),
        format!("{base}%5c{word}{post}"),
        format!("{base}//{word}{post}"),
        format!("{pre}/{word}{post}"),
        format!("{pre}{word}%00{post}"),
        format!("{pre}%u0061{}{post}", &word[1..]),
        format!("{pre}{word}%3bx{post}"),
    ]
}

const POLICY_ROUTES: &str = r#"
[[route]]
path = "/api/"
upstream = "UP"
csrf = false

[[route]]
path = "/api/admin"
upstream = "UP"
csrf = false
allow_groups = ["admins"]

[[route]]
path = "/"
upstream = "UP"
csrf = false

[[route]]
path = "/admin/"
upstream = "UP"
csrf = false
allow_groups = ["admins"]
"#;

#[tokio::test]
async fn encoded_paths_cannot_walk_around_route_policies() {
    let s = stack("", POLICY_ROUTES).await;
    let (_, user) = s.user("user-1", &["users"]).await;
    let (_, admin) = s.user("admin-1", &["admins"]).await;
    let user_cookie = format!("oidc_bff={user}");
    let admin_cookie = format!("oidc_bff={admin}");
    // The plain spellings, and other letter cases (which IIS, ASP.NET and
    // Express serve as the same path): denied for the user.
    for target in [
        "/api/admin/users",
        "/admin/secret",
        "/API/admin/users",
        "/api/ADMIN/users",
        "/Admin/secret",
        "/api/%41dmin/users",
        "/%41DMIN",
    ] {
        let before = s.seen();
        let (status, _) = raw(&s.gw.url, "GET", target, &[("Cookie", &user_cookie)]).await;
        assert_eq!(status, 403, "{target}");
        assert_eq!(s.seen(), before, "{target} reached the upstream");
    }
    for (pre, word, post) in [("/api/", "admin", "/users"), ("/", "admin", "/secret")] {
        // Escaped letters name the same path: the policy applies (403).
        for target in escaped_spellings(pre, word, post) {
            for method in ["GET", "DELETE", "POST"] {
                let before = s.seen();
                let (status, _) =
                    raw(&s.gw.url, method, &target, &[("Cookie", &user_cookie)]).await;
                assert_eq!(status, 403, "{method} {target}");
                assert_eq!(s.seen(), before, "{method} {target} reached the upstream");
            }
            // Control: an admin passes, and the upstream gets the canonical path.
            let (status, body) = raw(&s.gw.url, "GET", &target, &[("Cookie", &admin_cookie)]).await;
            assert_eq!(status, 200, "admin: {target}");
            assert_eq!(
                s.upstream.last().uri,
                format!("{pre}{word}{post}"),
                "forwarded as {target}: {body}"
            );
        }
        // Spellings that mean different things to different parsers: 400 for anyone.
        for target in structural_spellings(pre, word, post) {
            for cookie in [&user_cookie, &admin_cookie] {
                let before = s.seen();
                let (status, _) = raw(&s.gw.url, "GET", &target, &[("Cookie", cookie)]).await;
                assert_eq!(status, 400, "{target}");
                assert_eq!(s.seen(), before, "{target} reached the upstream");
            }
        }
    }
    // Controls: legitimately encoded paths reach the upstream as sent.
    for (target, forwarded) in [
        ("/api/files/a%20b", "/api/files/a%20b"),
        ("/api/files/ab?x=%2F", "/api/files/ab?x=%2F"),
        (
            "/api/search?path=%2Fetc%2F..%2F&q=a;b",
            "/api/search?path=%2Fetc%2F..%2F&q=a;b",
        ),
        ("/api/files/caf%c3%a9", "/api/files/caf%C3%A9"),
        ("/api/administrator", "/api/administrator"),
    ] {
        let (status, body) = raw(&s.gw.url, "GET", target, &[("Cookie", &user_cookie)]).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(s.upstream.last().uri, forwarded, "{target}");
    }
}

#[tokio::test]
async fn encoded_paths_cannot_walk_around_csrf() {
    let routes = r#"
[[route]]
path = "/"
upstream = "UP"
csrf = false

[[route]]
path = "/api/"
upstream = "UP"
csrf = true

[[route]]
path = "/mixed/"
upstream = "UP"
auth = "session_or_bearer"
audiences = ["api"]
csrf = true
"#;
    let s = stack("", routes).await;
    let (_, cookie) = s.user("user-1", &[]).await;
    let cookie = format!("oidc_bff={cookie}");
    let mut targets = escaped_spellings("/", "api", "/orders");
    targets.push("/api/orders".into());
    targets.push("/mixed/orders".into());
    targets.extend(escaped_spellings("/", "mixed", "/orders"));
    for target in &targets {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            // No X-CSRF, and an empty one: both refused.
            for extra in [None, Some(""), Some("  ")] {
                let mut headers = vec![("Cookie", cookie.as_str())];
                if let Some(v) = extra {
                    headers.push(("X-CSRF", v));
                }
                let before = s.seen();
                let (status, text) = raw(&s.gw.url, method, target, &headers).await;
                assert_eq!(status, 403, "{method} {target} X-CSRF={extra:?}");
                if method != "HEAD" {
                    assert!(text.contains("csrf_required"), "{method} {target}: {text}");
                }
                assert_eq!(s.seen(), before, "{method} {target} reached the upstream");
            }
        }
        // Control: with the header, the same request passes.
        let (status, _) = raw(
            &s.gw.url,
            "POST",
            target,
            &[("Cookie", &cookie), ("X-CSRF", "1")],
        )
        .await;
        assert_eq!(status, 200, "{target} with X-CSRF");
    }
    // The csrf = false catch-all still works without the header.
    let (status, _) = raw(&s.gw.url, "POST", "/other", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn forward_auth_judges_the_canonical_path() {
    let routes = r#"
[[route]]
path = "/"
upstream = "UP"
csrf = false

[[route]]
path = "/admin/"
upstream = "UP"
csrf = false
allow_groups = ["admins"]

[[route]]
path = "/api/"
upstream = "UP"
csrf = true
"#;
    let s = stack("trusted_proxies = [\"127.0.0.1/32\"]", routes).await;
    let (_, user) = s.user("user-1", &["users"]).await;
    let (_, admin) = s.user("admin-1", &["admins"]).await;
    let user_cookie = format!("oidc_bff={user}");
    let admin_cookie = format!("oidc_bff={admin}");
    let check = |uri_header: &'static str, uri: String, cookie: String, csrf: bool| {
        let gw = s.gw.url.clone();
        async move {
            let mut headers = vec![(uri_header, uri.as_str()), ("Cookie", cookie.as_str())];
            if csrf {
                headers.push(("X-CSRF", "1"));
            }
            raw(&gw, "GET", "/auth/check", &headers).await.0
        }
    };
    let mut denied: Vec<String> = vec!["/admin/secret".into()];
    denied.extend(escaped_spellings("/", "admin", "/secret"));
    let refused = structural_spellings("/", "admin", "/secret");
    for header in ["X-Original-URI", "X-Forwarded-Uri", "X-Original-URL"] {
        let spell = |p: &str| match header {
            "X-Original-URL" => format!("https://app.example.com{p}"),
            _ => p.to_string(),
        };
        for target in denied.iter().chain(&refused) {
            let status = check(header, spell(target), user_cookie.clone(), false).await;
            assert_eq!(status, 403, "{header}: {target}");
        }
        // Control: the admin is allowed on the escaped spellings (the same
        // path), never on the ambiguous ones.
        for target in &denied {
            let status = check(header, spell(target), admin_cookie.clone(), false).await;
            assert_eq!(status, 200, "admin, {header}: {target}");
        }
        for target in &refused {
            let status = check(header, spell(target), admin_cookie.clone(), false).await;
            assert_eq!(status, 403, "admin, {header}: {target}");
        }
        // CSRF through forward-auth: a csrf = true route, reached by an escaped spelling.
        for target in escaped_spellings("/", "api", "/orders") {
            let status = check(header, spell(&target), user_cookie.clone(), false).await;
            assert_eq!(status, 403, "no X-CSRF, {header}: {target}");
            let status = check(header, spell(&target), user_cookie.clone(), true).await;
            assert_eq!(status, 200, "with X-CSRF, {header}: {target}");
        }
    }
    // The ingress sets one target header and passes the client's others on:
    // a second opinion that disagrees, or a value that cannot be read, or a
    // fragment, is refused rather than chosen from.
    for headers in [
        vec![
            ("X-Original-URL", "https://app.example.com/admin/x"),
            ("X-Original-URI", "/x"),
        ],
        vec![
            ("X-Original-URL", "https://app.example.com/admin/x"),
            ("X-Forwarded-Uri", "/x"),
        ],
        vec![("X-Forwarded-Uri", "/admin/x"), ("X-Original-URI", "/x")],
        vec![("X-Forwarded-Uri", "/admin/x"), ("X-Forwarded-Uri", "/x")],
        vec![("X-Original-URI", "/x#/../admin/x")],
        vec![("X-Original-URL", "http://a#/admin/x")],
        vec![("X-Original-URL", "http://a?/admin/x")],
        vec![
            ("X-Original-URI", "/x"),
            ("X-Forwarded-Method", "GET"),
            ("X-Original-Method", "DELETE"),
        ],
    ] {
        let mut h = headers.clone();
        h.push(("Cookie", &user_cookie));
        let (status, _) = raw(&s.gw.url, "GET", "/auth/check", &h).await;
        assert_eq!(status, 403, "{headers:?}");
    }
    // A raw byte that is not visible ASCII makes the header unreadable, not absent.
    let (status, _) = raw_bytes(
        &s.gw.url,
        b"GET /auth/check HTTP/1.1\r\nHost: x\r\nX-Original-URI: /admin/x\xff\r\nX-Forwarded-Uri: /x\r\n",
        &[("Cookie", &user_cookie)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(s.seen(), 0, "forward-auth never forwards");
}

#[tokio::test]
async fn protected_headers_in_any_spelling_never_reach_upstreams() {
    let routes = r#"
[[route]]
path = "/api/"
upstream = "UP"
csrf = false
identity_headers = { user = "X-Team-User" }
identity_assertion = true

[[route]]
path = "/open/"
upstream = "UP"
auth = "public"
"#;
    let s = stack(
        "assertion_header = \"X-Gw-Assertion\"\nprotected_headers = [\"X-Tenant\"]",
        routes,
    )
    .await;
    let (_, cookie) = s.user("alice", &[]).await;
    let cookie = format!("oidc_bff={cookie}");
    // Written from what upstream frameworks read, not from the gateway's list.
    let payload = [
        "X-Forwarded-User",
        "X_Forwarded_User",
        "x_forwarded_user",
        "X-FORWARDED-USER",
        "x-Forwarded_Email",
        "X_Forwarded_Groups",
        "X_Forwarded_Preferred_Username",
        "X_Forwarded_Access_Token",
        "X-Auth-Request-User",
        "X_Auth_Request_User",
        "X_AUTH_REQUEST_EMAIL",
        "x_auth_request_groups",
        "X-Auth-Request-Access-Token",
        "Remote-User",
        "Remote_User",
        "REMOTE_USER",
        "X-Remote-User",
        "X_Remote_User",
        "X-Webauth-User",
        "X_WebAuth_User",
        "X-Authenticated-Userid",
        "X_Authenticated_Userid",
        "X-User",
        "X_User",
        "X-Original-URL",
        "X_Original_URL",
        "X-Rewrite-URL",
        "x_rewrite_url",
        "X-Amzn-Oidc-Identity",
        "X_Amzn_Oidc_Data",
        "X-AMZN-OIDC-ACCESSTOKEN",
        "X-Team-User",
        "X_Team_User",
        "x-team_user",
        "X-Gw-Assertion",
        "X_Gw_Assertion",
        "X-Tenant",
        "X_TENANT",
        "X_Forwarded_For",
        "X_Real_IP",
        "X_Request_Id",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Envoy-Original-Path",
        "X-HTTP-Method-Override",
        "X_HTTP_Method_Override",
        "X-Method-Override",
        // Where the client is: believed from trusted proxies only.
        "X-Real-IP",
        "True-Client-IP",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "Forwarded",
    ];
    let headers: Vec<(&str, &str)> = payload.iter().map(|n| (*n, "mallory")).collect();
    for target in ["/api/x", "/open/x"] {
        let mut h = headers.clone();
        h.push(("Cookie", &cookie));
        let before = s.seen();
        let (status, body) = raw(&s.gw.url, "GET", target, &h).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert_eq!(s.seen(), before + 1);
        let seen = s.upstream.last();
        let forged: Vec<_> = seen
            .headers
            .iter()
            .filter(|(_, v)| v.contains("mallory"))
            .collect();
        assert!(
            forged.is_empty(),
            "{target}: forged headers reached the upstream: {forged:?}"
        );
        if target == "/api/x" {
            // The gateway's own identity header and assertion are there, and true.
            assert_eq!(seen.header("x-team-user"), Some("alice"));
            assert!(seen.header("x-gw-assertion").is_some());
        }
    }
    // A header that merely contains an underscore is not touched.
    let (status, _) = raw(
        &s.gw.url,
        "GET",
        "/open/x",
        &[("X-Api_Version", "2"), ("Accept", "*/*")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.upstream.last().header("x-api_version"), Some("2"));
}

#[tokio::test]
async fn cookies_of_two_sessions_are_refused_not_chosen_from() {
    let routes = "[[route]]\npath = \"/api/\"\nupstream = \"UP\"\ncsrf = false\n\
                  [[route]]\npath = \"/open/\"\nupstream = \"UP\"\nauth = \"public\"\n";
    let s = stack("", routes).await;
    let (_, alice) = s.user("alice", &[]).await;
    let (_, mallory) = s.user("mallory", &[]).await;
    assert_eq!(s.gw.session_count(), 2);
    for cookies in [
        vec![format!("oidc_bff={mallory}; oidc_bff={alice}")],
        vec![format!("oidc_bff={alice}; oidc_bff={mallory}")],
        vec![format!("oidc_bff={mallory}"), format!("oidc_bff={alice}")],
        vec![format!(
            "a=1; oidc_bff=garbage; oidc_bff={alice}; oidc_bff={mallory}"
        )],
    ] {
        for target in ["/api/x", "/auth/user"] {
            let mut h: Vec<(&str, &str)> = cookies.iter().map(|c| ("Cookie", c.as_str())).collect();
            h.push(("X-CSRF", "1"));
            h.push(("Accept", "text/html"));
            let before = s.seen();
            let (status, text) = raw(&s.gw.url, "GET", target, &h).await;
            assert_eq!(status, 401, "{target} {cookies:?}");
            assert_eq!(s.seen(), before, "{target} reached the upstream");
            let lower = text.to_ascii_lowercase();
            assert!(
                lower.contains("set-cookie: oidc_bff=;") && lower.contains("max-age=0"),
                "the browser is told to clear the cookie: {text}"
            );
        }
    }
    // Neither session was lost by this.
    assert_eq!(s.gw.session_count(), 2);
    // Controls: one session's cookie twice, or next to garbage, is that session.
    for cookie in [
        format!("oidc_bff={alice}; oidc_bff={alice}"),
        format!("oidc_bff=garbage; oidc_bff={alice}"),
        format!("oidc_bff={alice}"),
    ] {
        let (status, body) = raw(
            &s.gw.url,
            "GET",
            "/auth/user",
            &[("Cookie", &cookie), ("X-CSRF", "1")],
        )
        .await;
        assert_eq!(status, 200, "{cookie}");
        assert!(body.contains("\"sub\":\"alice\""), "{body}");
    }
    // Another cookie whose value is not UTF-8 hides nothing: the two sessions
    // are still seen, and the session cookie never reaches an upstream.
    let (status, _) = raw_bytes(
        &s.gw.url,
        format!("GET /api/x HTTP/1.1\r\nHost: x\r\nCookie: oidc_bff={alice}\r\n").as_bytes(),
        &[("Cookie", &format!("oidc_bff={mallory}; name=J\u{f6}rg"))],
    )
    .await;
    assert_eq!(
        status, 401,
        "two sessions, one in a header that is not UTF-8"
    );
    let mut head =
        format!("GET /open/x HTTP/1.1\r\nHost: x\r\nCookie: oidc_bff={alice}; name=J").into_bytes();
    head.extend_from_slice(b"\xc3\xb6rg\r\n");
    let before = s.seen();
    let (status, _) = raw_bytes(&s.gw.url, &head, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(s.seen(), before + 1);
    let seen = s.upstream.last();
    assert!(
        seen.all("cookie").iter().all(|c| !c.contains("oidc_bff"))
            && !seen.headers.iter().any(|(_, v)| v.contains(&alice)),
        "the session cookie reached the upstream: {:?}",
        seen.headers
    );
    // More cookies of the name than any browser sends: refused.
    let many = format!("oidc_bff=a; oidc_bff=b; oidc_bff=c; oidc_bff=d; oidc_bff={alice}");
    let (status, _) = raw(&s.gw.url, "GET", "/api/x", &[("Cookie", &many)]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn websocket_shaped_requests_neither_smuggle_nor_skip_csrf() {
    let routes = r#"
[[route]]
path = "/ws/"
upstream = "UP"
websocket = true

[[route]]
path = "/pub/"
upstream = "UP"
auth = "public"
websocket = true
"#;
    let s = stack("", routes).await;
    let (_, cookie) = s.user("bob", &[]).await;
    let cookie = format!("oidc_bff={cookie}");
    let origin = s.gw.url.clone();
    let upgrade = [
        ("Origin", origin.as_str()),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    // A handshake that declares a body would leave it on a pooled upstream
    // connection, to be read as the next request: refused before the upstream.
    for body in [("Content-Length", "209"), ("Transfer-Encoding", "chunked")] {
        let mut h = upgrade.to_vec();
        h.push(body);
        let before = s.seen();
        let (status, _) = raw_bytes(&s.gw.url, b"GET /pub/x HTTP/1.1\r\nHost: x\r\n", &h).await;
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(s.seen(), before, "{body:?} reached the upstream");
    }
    // Upgrade headers on another method, or without a key, make no handshake:
    // the CSRF rule applies as to any request.
    for method in ["DELETE", "POST", "GET"] {
        let mut h: Vec<(&str, &str)> = upgrade
            .iter()
            .filter(|(k, _)| method != "GET" || *k != "Sec-WebSocket-Key")
            .cloned()
            .collect();
        h.push(("Cookie", &cookie));
        let before = s.seen();
        let (status, _) = raw(&s.gw.url, method, "/ws/orders/1", &h).await;
        assert_eq!(status, 403, "{method}");
        assert_eq!(s.seen(), before, "{method} reached the upstream");
    }
}

/// A request body that is malformed (a bare LF, a chunk size that is no
/// number) or shorter than its `Content-Length` is the client's fault: 400
/// `bad_request` with a body, never a 502, never a dropped connection.
#[tokio::test]
async fn a_malformed_request_body_is_the_clients_fault() {
    let s = stack(
        "",
        "[[route]]\npath = \"/pub/\"\nupstream = \"UP\"\nauth = \"public\"\n",
    )
    .await;
    let addr = s.gw.url.trim_start_matches("http://").to_string();
    // Sends `request` (then shuts its side when `half_close`) and reads the
    // whole answer.
    let exchange = |request: &'static str, half_close: bool| {
        let addr = addr.clone();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            if half_close {
                tcp.shutdown().await.unwrap();
            }
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
                .await
                .expect("answered within 10 s")
                .unwrap();
            String::from_utf8_lossy(&out).to_string()
        }
    };
    let cases = [
        ("a bare LF in the chunked framing", "POST /pub/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\nhello\n0\n\n", false),
        ("a chunk size that is no number", "POST /pub/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false),
        // Then the client goes away (its side closed; it still reads).
        ("a body shorter than its Content-Length", "POST /pub/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort", true),
    ];
    for (what, request, half_close) in cases {
        let text = exchange(request, half_close).await;
        let status = text.split_whitespace().nth(1);
        assert_eq!(status, Some("400"), "{what}: {text}");
        let body: serde_json::Value = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or_else(|| panic!("{what}: no JSON body in {text}"));
        assert_eq!(body["error"], "bad_request", "{what}: {text}");
    }
    let m = reqwest::get(format!("{}/metrics", s.gw.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!m.contains("error=\"upstream_unreachable\""), "{m}");
}

#[tokio::test]
async fn a_backchannel_logout_body_can_neither_trickle_nor_flood() {
    // http_timeout bounds the IdP's call, and so its body: 1 s here.
    let idp = RogueIdp::start().await;
    let reserved = reserve().await;
    let toml = config_toml(&reserved.url, &idp.issuer, "").replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\nhttp_timeout = \"1s\"",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    // A body that never finishes: answered 400 once the timeout passes.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /auth/backchannel-logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogout_",
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    let mut out = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut out))
        .await
        .expect("answered within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // A body larger than any logout token: 400, unread.
    let big = format!("logout_token={}", "a".repeat(100 * 1024));
    let r = reqwest::Client::new()
        .post(format!("{}/auth/backchannel-logout", gw.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// Routes where a longer, weaker route sits inside a stricter one, as in
/// front of a case-sensitive upstream (Flask, Go, Spring, Django), which
/// reads `/api/HEALTH` as a path of its `/api/…` handler.
const NESTED_WEAKER_ROUTES: &str = r#"
[[route]]
path = "/api/"
upstream = "UP"
allow_groups = ["admins"]

[[route]]
path = "/api/health"
upstream = "UP"
auth = "public"

[[route]]
path = "/api/webhooks"
upstream = "UP"
csrf = false
"#;

#[tokio::test]
async fn a_case_variant_of_a_weaker_longer_route_meets_the_stricter_rules() {
    let s = stack("trusted_proxies = [\"127.0.0.1/32\"]", NESTED_WEAKER_ROUTES).await;
    let (_, user) = s.user("user-1", &["users"]).await;
    let (_, admin) = s.user("admin-1", &["admins"]).await;
    let user_cookie = format!("oidc_bff={user}");
    let admin_cookie = format!("oidc_bff={admin}");
    // Anonymous and a signed-in non-admin: the exact spelling's route (`/api/`)
    // refuses them, and the upstream sees nothing.
    for target in ["/api/HEALTH", "/api/Health/live", "/api/hEALTH"] {
        for (who, headers, want) in [
            ("anonymous", vec![], 401),
            (
                "user",
                vec![("Cookie", user_cookie.as_str()), ("X-CSRF", "1")],
                403,
            ),
        ] {
            let before = s.seen();
            let (status, _) = raw(&s.gw.url, "GET", target, &headers).await;
            assert_eq!(status, want, "{who}: {target}");
            assert_eq!(s.seen(), before, "{who}: {target} reached the upstream");
        }
        // Control: an admin meets both routes' rules.
        let (status, answer) = raw(
            &s.gw.url,
            "GET",
            target,
            &[("Cookie", &admin_cookie), ("X-CSRF", "1")],
        )
        .await;
        assert_eq!(status, 200, "admin: {target}: {answer}");
        assert_eq!(s.upstream.last().uri, target);
    }
    // Controls: the exact spelling still reaches the public route, and a case
    // variant that only the stricter route claims works for an allowed user.
    let (status, _) = raw(&s.gw.url, "GET", "/api/health", &[]).await;
    assert_eq!(status, 200, "the public route itself");
    for (cookie, want) in [(&user_cookie, 403), (&admin_cookie, 200)] {
        let (status, _) = raw(
            &s.gw.url,
            "GET",
            "/API/orders",
            &[("Cookie", cookie), ("X-CSRF", "1")],
        )
        .await;
        assert_eq!(status, want, "/API/orders");
    }

    // CSRF: `/api/` asks for X-CSRF, `/api/webhooks` does not; a case variant
    // of the webhook route needs it, as the exact spelling's route does.
    let before = s.seen();
    let (status, _) = raw(
        &s.gw.url,
        "POST",
        "/api/WEBHOOKS/x",
        &[("Cookie", &admin_cookie)],
    )
    .await;
    assert_eq!(status, 403, "CSRF skipped through a case variant");
    assert_eq!(s.seen(), before, "the upstream saw the cross-site POST");
    let (status, _) = raw(
        &s.gw.url,
        "POST",
        "/api/WEBHOOKS/x",
        &[("Cookie", &admin_cookie), ("X-CSRF", "1")],
    )
    .await;
    assert_eq!(status, 200, "with the header");
    let (status, _) = raw(
        &s.gw.url,
        "POST",
        "/api/webhooks/x",
        &[("Cookie", &admin_cookie)],
    )
    .await;
    assert_eq!(status, 200, "the webhook route as spelled needs no X-CSRF");

    // Forward-auth judges the same way.
    for (target, headers, want) in [
        ("/api/HEALTH", vec![], 401),
        (
            "/api/HEALTH",
            vec![("Cookie", user_cookie.as_str()), ("X-CSRF", "1")],
            403,
        ),
        (
            "/api/HEALTH",
            vec![("Cookie", admin_cookie.as_str()), ("X-CSRF", "1")],
            200,
        ),
        ("/api/health", vec![], 200),
    ] {
        let mut h = vec![("X-Original-URI", target)];
        h.extend(headers.iter().copied());
        let (status, _) = raw(&s.gw.url, "GET", "/auth/check", &h).await;
        assert_eq!(status, want, "forward-auth {target} {headers:?}");
    }
    let (status, _) = raw(
        &s.gw.url,
        "GET",
        "/auth/check",
        &[
            ("X-Original-URI", "/api/WEBHOOKS/x"),
            ("X-Forwarded-Method", "POST"),
            ("Cookie", &admin_cookie),
        ],
    )
    .await;
    assert_eq!(status, 403, "forward-auth: CSRF through a case variant");
}

#[tokio::test]
async fn connect_and_trace_are_refused_unless_a_route_names_them() {
    let routes = r#"
[[route]]
path = "/ws/"
upstream = "UP"
websocket = true
csrf = false

[[route]]
path = "/debug/"
upstream = "UP"
csrf = false
methods = ["GET", "TRACE"]
"#;
    let s = stack("trusted_proxies = [\"127.0.0.1/32\"]", routes).await;
    let (_, user) = s.user("user-1", &["users"]).await;
    let cookie = format!("oidc_bff={user}");
    for (method, target) in [
        ("CONNECT", "/ws/chat"),
        ("TRACE", "/ws/chat"),
        ("CONNECT", "/debug/x"),
        // Other spellings, which an upstream that folds case reads as these.
        ("connect", "/ws/chat"),
        ("Trace", "/ws/chat"),
        ("trace", "/debug/x"),
    ] {
        for headers in [vec![], vec![("Cookie", cookie.as_str())]] {
            let before = s.seen();
            let (status, _) = raw(&s.gw.url, method, target, &headers).await;
            assert_eq!(status, 405, "{method} {target} {headers:?}");
            assert_eq!(s.seen(), before, "{method} {target} reached the upstream");
        }
    }
    // An authority-form CONNECT (RFC 9112 §3.2.3) gets nowhere either.
    let before = s.seen();
    let addr = s.gw.url.trim_start_matches("http://").to_string();
    let (status, _) = raw_bytes(
        &s.gw.url,
        format!("CONNECT {addr} HTTP/1.1\r\nHost: {addr}\r\n").as_bytes(),
        &[("Cookie", &cookie)],
    )
    .await;
    assert!(
        (400..500).contains(&status),
        "authority-form CONNECT answered {status}"
    );
    assert_eq!(
        s.seen(),
        before,
        "authority-form CONNECT reached the upstream"
    );
    // Control: a route that names TRACE takes it.
    let (status, _) = raw(&s.gw.url, "TRACE", "/debug/x", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 200, "TRACE where the route names it");
    assert_eq!(s.upstream.last().method, "TRACE");
    // Forward-auth: the same rule for the method the ingress reports.
    for (method, want) in [("CONNECT", 403), ("TRACE", 403), ("GET", 200)] {
        let (status, _) = raw(
            &s.gw.url,
            "GET",
            "/auth/check",
            &[
                ("X-Original-URI", "/ws/chat"),
                ("X-Forwarded-Method", method),
                ("Cookie", &cookie),
            ],
        )
        .await;
        assert_eq!(status, want, "forward-auth {method}");
    }
}

#[tokio::test]
async fn a_body_in_another_transfer_coding_is_refused_not_changed() {
    let s = stack(
        "",
        "[[route]]\npath = \"/api/\"\nupstream = \"UP\"\nauth = \"public\"\n",
    )
    .await;
    for coding in ["gzip, chunked", "deflate, chunked", "x-custom, chunked"] {
        let before = s.seen();
        let head =
            format!("POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n");
        let mut req = head.into_bytes();
        req.extend_from_slice(b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        let (status, _) = raw_exchange(&s.gw.url, &req).await;
        assert_eq!(status, 501, "Transfer-Encoding: {coding}");
        assert_eq!(
            s.seen(),
            before,
            "{coding}: the upstream got a changed body"
        );
    }
    // Control: plain chunked passes.
    let req = b"POST /api/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (status, _) = raw_exchange(&s.gw.url, req).await;
    assert_eq!(status, 200);
}

/// An upstream whose answers carry the caching headers the query asks for:
/// `/c?cc=public,max-age=600` answers with that `Cache-Control`; no `cc`, none.
async fn caching_upstream() -> String {
    use axum::extract::Query;
    use axum::routing::get;
    let app = axum::Router::new().fallback(get(
        |Query(q): Query<std::collections::HashMap<String, String>>| async move {
            let mut resp = axum::response::IntoResponse::into_response("cached?");
            if let Some(cc) = q.get("cc") {
                resp.headers_mut()
                    .insert("cache-control", cc.parse().unwrap());
                resp.headers_mut()
                    .insert("cdn-cache-control", cc.parse().unwrap());
            }
            resp
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The value of header `name` in a raw answer's head, lower-cased name.
fn head_values(answer: &str, name: &str) -> Vec<String> {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[tokio::test]
async fn answers_carrying_the_session_cookie_are_never_cacheable() {
    let idp = RogueIdp::start().await;
    let up = caching_upstream().await;
    let routes = format!(
        "[[route]]\npath = \"/api/\"\nupstream = \"{up}\"\ncsrf = false\n\
         [[route]]\npath = \"/opt/\"\nupstream = \"{up}\"\nauth = \"optional\"\ncsrf = false\n\
         [[route]]\npath = \"/raw/\"\nupstream = \"{up}\"\ncsrf = false\ncache_private = false\n"
    );
    let reserved = reserve().await;
    let old_toml = config_toml(&reserved.url, &idp.issuer, &routes);
    let gw = Gateway::start(reserved, &old_toml).await;
    let b = browser();
    let (state, nonce) = start_login(&b, &gw.url, "/").await;
    idp.answer_with_id_token(json!({
        "iss": idp.issuer, "aud": "bff", "sub": "alice", "nonce": nonce,
        "iat": now(), "exp": now() + 300,
    }));
    let r = callback(&b, &gw.url, &format!("code=abc&state={state}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "the sign-in's answer sets the cookie"
    );
    let cookie = set_cookie_value(&r, "oidc_bff").unwrap();
    let with_cookie = format!("oidc_bff={cookie}");

    // Signed in: no caching headers of its own -> private; the upstream's
    // own `public` is believed; `cache_private = false` passes it as it is.
    for (target, want) in [
        ("/api/x", vec!["private"]),
        ("/api/x?cc=public,max-age=600", vec!["public,max-age=600"]),
        ("/raw/x", vec![]),
    ] {
        let (status, answer) = raw(&gw.url, "GET", target, &[("Cookie", &with_cookie)]).await;
        assert_eq!(status, 200, "{target}: {answer}");
        assert_eq!(head_values(&answer, "cache-control"), want, "{target}");
    }
    // An optional route answers both ways: Vary: Cookie, signed in or not.
    for headers in [vec![], vec![("Cookie", with_cookie.as_str())]] {
        let (status, answer) = raw(&gw.url, "GET", "/opt/x", &headers).await;
        assert_eq!(status, 200);
        assert!(
            head_values(&answer, "vary")
                .iter()
                .any(|v| v.eq_ignore_ascii_case("cookie")),
            "{headers:?}: {answer}"
        );
    }
    let (_, anonymous) = raw(&gw.url, "GET", "/opt/x", &[]).await;
    assert!(
        head_values(&anonymous, "cache-control").is_empty(),
        "anonymous: as the upstream said"
    );

    // The session key rotates: a replica with the new key first re-seals the
    // session and re-issues its cookie on a proxied answer the upstream calls
    // public. That answer is no-store, whatever the upstream said.
    let new_key = test_key();
    let reserved = reserve().await;
    let rotated = regex::Regex::new(r#"keys = \["([^"]+)"\]"#)
        .unwrap()
        .replace(&old_toml, format!(r#"keys = ["{new_key}", "$1"]"#).as_str())
        .into_owned();
    assert_ne!(rotated, old_toml);
    let replica = Gateway::start_replica(reserved, &rotated, &gw).await;
    let (status, answer) = raw(
        &replica.url,
        "GET",
        "/api/x?cc=public,max-age=600",
        &[("Cookie", &with_cookie)],
    )
    .await;
    assert_eq!(status, 200);
    let set: Vec<_> = head_values(&answer, "set-cookie");
    assert!(
        set.iter().any(|c| c.starts_with("oidc_bff=")),
        "the cookie is re-issued: {answer}"
    );
    assert_eq!(
        head_values(&answer, "cache-control"),
        ["no-store"],
        "{answer}"
    );
    assert!(
        head_values(&answer, "cdn-cache-control").is_empty(),
        "{answer}"
    );
}

#[tokio::test]
async fn an_h2_host_header_that_disagrees_with_the_authority_is_refused() {
    let routes =
        "[[route]]\npath = \"/api/\"\nupstream = \"UP\"\nauth = \"public\"\npreserve_host = true\n";
    let s = stack("", routes).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let authority = s.gw.url.trim_start_matches("http://").to_string();
    let before = s.seen();
    let r = h2
        .get(format!("{}/api/x", s.gw.url))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let status = r.status();
    assert_eq!(
        status,
        400,
        "host disagreeing with :authority: {}",
        r.text().await.unwrap()
    );
    assert_eq!(s.seen(), before, "the upstream saw the spoofed host");
    // Controls: the same authority as a host header, and none at all.
    for host in [Some(authority.as_str()), None] {
        let mut req = h2.get(format!("{}/api/x", s.gw.url));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "host {host:?}");
        assert_eq!(
            s.upstream.last().header("host"),
            Some(authority.as_str()),
            "{:?}",
            s.upstream.last()
        );
    }
}
