//! `return_to` hygiene: the page to land on after sign-in must be a path on
//! this origin. Anything that a browser could read as another origin
//! (`//host`, `/\host`, schemes, control characters, encoded variants) falls
//! back to `/`. The check is strict on purpose: a rejected odd path costs a
//! click, an accepted one is an open redirect.

use url::Url;

const MAX_LEN: usize = 1024;

/// The gateway's sign-in link: `<auth_prefix>/login`, with `return_to` (made
/// safe here, so no caller can hand out an open redirect) and an optional IdP
/// hint. The one place a login URL is written: the proxy, forward-auth,
/// error pages and the signed-out page all call it.
pub fn login_url(auth_prefix: &str, return_to: Option<&str>, idp: Option<&str>) -> String {
    let mut url = format!("{auth_prefix}/login");
    let mut sep = '?';
    let mut param = |name: &str, value: &str| {
        url.push(sep);
        url.push_str(name);
        url.push('=');
        url.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        sep = '&';
    };
    if let Some(raw) = return_to {
        param("return_to", &safe_return_to(Some(raw), auth_prefix));
    }
    if let Some(idp) = idp {
        param("idp", idp);
    }
    url
}

/// Returns `raw` normalised when it is a safe same-origin path, else `/`.
/// Paths under the gateway's own `auth_prefix` also give `/` (no login loops).
pub fn safe_return_to(raw: Option<&str>, auth_prefix: &str) -> String {
    raw.and_then(|r| check(r, auth_prefix))
        .unwrap_or_else(|| "/".to_string())
}

fn check(raw: &str, auth_prefix: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN || !raw.starts_with('/') {
        return None;
    }
    // Browsers treat '\' as '/', and strip tabs and newlines before parsing.
    if raw
        .bytes()
        .any(|b| b == b'\\' || b.is_ascii_control() || b == b' ' || b >= 0x80)
    {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    // A second look after decoding: `%2F%2Fevil.com`, `%5Cevil.com`, `%09`.
    if decoded.starts_with("//")
        || decoded.starts_with("/\\")
        || decoded.chars().any(|c| c == '\\' || c.is_control())
    {
        return None;
    }
    if raw.starts_with("//") {
        return None;
    }
    // Resolve against a placeholder origin: the result must stay on it.
    let base = Url::parse("https://return-to.invalid/").expect("static URL");
    let joined = base.join(raw).ok()?;
    if joined.origin() != base.origin() || joined.username() != "" || joined.password().is_some() {
        return None;
    }
    let mut out = joined.path().to_string();
    if out.starts_with("//") {
        return None;
    }
    // No landing on the gateway's own endpoints, judged on the path the
    // gateway will read (`/%61uth/login` is `/auth/login`).
    let judged =
        crate::request_path::canonicalize(&out).unwrap_or(std::borrow::Cow::Borrowed(&out));
    if crate::request_path::under_prefix(&judged, auth_prefix) {
        return None;
    }
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = joined.fragment() {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_encode_and_make_return_to_safe() {
        assert_eq!(login_url("/auth", None, None), "/auth/login");
        assert_eq!(
            login_url("/auth", Some("/app/x?y=1&z=a+b"), Some("Google")),
            "/auth/login?return_to=%2Fapp%2Fx%3Fy%3D1%26z%3Da%2Bb&idp=Google"
        );
        // An open redirect is never written, whoever asks.
        assert_eq!(
            login_url("/bff", Some("//evil.example"), None),
            "/bff/login?return_to=%2F"
        );
        assert_eq!(
            login_url("/auth", None, Some("a&b")),
            "/auth/login?idp=a%26b"
        );
    }

    #[test]
    fn accepts_same_origin_paths() {
        for (input, want) in [
            ("/", "/"),
            ("/orders", "/orders"),
            ("/orders/42?tab=items&x=1", "/orders/42?tab=items&x=1"),
            ("/search?q=a%20b", "/search?q=a%20b"),
            ("/app#/route", "/app#/route"),
            ("/a/./b/../c", "/a/c"),
            ("/%E2%9C%93", "/%E2%9C%93"),
        ] {
            assert_eq!(safe_return_to(Some(input), "/auth"), want, "{input}");
        }
    }

    #[test]
    fn rejects_open_redirects() {
        let hostile = [
            "//evil.com",
            "//evil.com/path",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/\\/evil.com",
            "https://evil.com",
            "http://evil.com",
            "https:evil.com",
            "http:/evil.com",
            "HTTPS://evil.com",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "%2F%2Fevil.com",
            "/%2F%2Fevil.com",
            "/%2F/evil.com",
            "/%5Cevil.com",
            "/%5C%5Cevil.com",
            "/\tevil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r\n/evil.com",
            "/%09/evil.com",
            "/%0a/evil.com",
            "/%0d%0a/evil.com",
            "//user:pass@evil.com",
            "/@evil.com/..//evil.com",
            "//evil.com@app.example.com",
            "/ /evil.com",
            "/\u{3000}/evil.com",
            "evil.com",
            "./evil.com",
            "",
            " /path",
            "/auth/login",
            "/auth/callback?code=x",
            "/auth",
            &format!("/{}", "a".repeat(2000)),
        ];
        assert!(hostile.len() >= 25);
        for input in hostile {
            let got = safe_return_to(Some(input), "/auth");
            assert_eq!(got, "/", "{input:?} gave {got:?}");
        }
        assert_eq!(safe_return_to(None, "/auth"), "/");
    }

    #[test]
    fn dot_segments_and_idp_injection_hold() {
        for input in [
            "/.//evil.com",
            "/..//evil.com",
            "/%2e%2e//evil.com",
            "/%2e//evil.com",
            "/auth/%2e%2e/auth/login",
            "/x/%2e%2e/auth/login",
            "/auth/./login",
            "/x%00",
            "/x?%0d%0a",
            "/x#%0d%0a",
        ] {
            assert_eq!(safe_return_to(Some(input), "/auth"), "/", "{input:?}");
        }
        // The idp hint cannot add a parameter of its own.
        assert_eq!(
            login_url("/auth", Some("/a#f"), Some("x&return_to=//evil")),
            "/auth/login?return_to=%2Fa%23f&idp=x%26return_to%3D%2F%2Fevil"
        );
    }

    #[test]
    fn encoded_auth_prefix_is_still_the_gateways_own() {
        // `/%61uth/login` is accepted as is, and the gateway's request path
        // canonicalisation reads it as `/auth/login`: after sign-in the browser
        // lands on a gateway endpoint, which this rule says never happens.
        let input = "/%61uth/login";
        assert_eq!(
            crate::request_path::canonicalize(input).unwrap(),
            "/auth/login",
            "the gateway serves it as its own endpoint"
        );
        assert_eq!(safe_return_to(Some(input), "/auth"), "/");
        assert_eq!(safe_return_to(Some("/%61uth/logout"), "/auth"), "/");
    }
}
