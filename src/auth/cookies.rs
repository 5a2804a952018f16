//! The gateway's cookies: the session cookie (opaque id, `HttpOnly`, `Secure`
//! and `__Host-` on https, configured `SameSite`, `Path=/`, no `Domain`) and the
//! short-lived pending-login cookie (`SameSite=Lax`, since the IdP's redirect
//! back is a cross-site navigation).

use crate::config::{Config, SameSite};
use cookie::{Cookie, SameSite as CookieSameSite};
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CookieSpec {
    pub session_name: String,
    pub login_name: String,
    secure: bool,
    same_site: CookieSameSite,
    session_max_age: Duration,
    login_max_age: Duration,
}

impl CookieSpec {
    pub fn from_config(c: &Config) -> Self {
        let secure = c.is_https();
        let prefix = if secure { "__Host-" } else { "" };
        CookieSpec {
            session_name: format!("{prefix}{}", c.session.cookie_name),
            login_name: format!("{prefix}{}_login", c.session.cookie_name),
            secure,
            same_site: match c.session.same_site {
                SameSite::Strict => CookieSameSite::Strict,
                SameSite::Lax => CookieSameSite::Lax,
                SameSite::None => CookieSameSite::None,
            },
            session_max_age: c.session.absolute_timeout,
            login_max_age: c.provider.login_timeout,
        }
    }

    /// Every cookie name the gateway owns (removed before forwarding upstream).
    pub fn names(&self) -> [&str; 2] {
        [&self.session_name, &self.login_name]
    }

    pub fn session(&self, value: &str) -> HeaderValue {
        self.build(
            &self.session_name,
            value,
            self.same_site,
            self.session_max_age,
        )
    }

    pub fn clear_session(&self) -> HeaderValue {
        self.build(&self.session_name, "", self.same_site, Duration::ZERO)
    }

    pub fn login(&self, value: &str) -> HeaderValue {
        self.build(
            &self.login_name,
            value,
            CookieSameSite::Lax,
            self.login_max_age,
        )
    }

    pub fn clear_login(&self) -> HeaderValue {
        self.build(&self.login_name, "", CookieSameSite::Lax, Duration::ZERO)
    }

    fn build(
        &self,
        name: &str,
        value: &str,
        same_site: CookieSameSite,
        max_age: Duration,
    ) -> HeaderValue {
        let c = Cookie::build((name.to_string(), value.to_string()))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
            .build();
        HeaderValue::from_str(&c.to_string())
            .expect("cookie names and base64url values are valid header text")
    }
}

/// Values of every cookie called `name` in the request (HTTP/2 may split
/// `Cookie` into several headers; a browser may send duplicates).
pub fn request_cookies<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    // Read as bytes: a header that is not UTF-8 (another cookie's value)
    // must not hide the gateway's cookie in it. A value of ours that is not
    // UTF-8 is garbage, read as empty: present, and no session.
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (k, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (k == name.as_bytes()).then(|| std::str::from_utf8(v).unwrap_or("").trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(public_url: &str) -> CookieSpec {
        let c = crate::config::load_from_str(&format!(
            r#"[server]
public_url = "{public_url}"
[provider]
issuer = "https://idp.example.com"
client_id = "x"
[session]
keys = ["{}"]
"#,
            crate::session::generate_key()
        ))
        .unwrap();
        CookieSpec::from_config(&c)
    }

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        let s = spec("https://app.example.com");
        let v = s.session("abc").to_str().unwrap().to_string();
        assert!(v.starts_with("__Host-oidc_bff=abc"), "{v}");
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=",
        ] {
            assert!(v.contains(attr), "{attr} missing in {v}");
        }
        assert!(!v.contains("Domain"), "{v}");
        let l = s.login("x").to_str().unwrap().to_string();
        assert!(
            l.starts_with("__Host-oidc_bff_login=")
                && l.contains("SameSite=Lax")
                && l.contains("HttpOnly"),
            "{l}"
        );
    }

    #[test]
    fn http_loopback_cookies_are_not_secure() {
        let s = spec("http://127.0.0.1:8080");
        let v = s.session("abc").to_str().unwrap().to_string();
        assert!(
            v.starts_with("oidc_bff=abc") && !v.contains("Secure") && v.contains("HttpOnly"),
            "{v}"
        );
        assert!(s.clear_session().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn reads_cookies_from_every_header() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1; oidc_bff=first"));
        h.append(
            "cookie",
            HeaderValue::from_static("oidc_bff=\"second\"; b=2"),
        );
        assert_eq!(
            request_cookies(&h, "oidc_bff").collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(request_cookies(&h, "missing").count(), 0);
        // A header that is not UTF-8 (another cookie's value) is read too.
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"oidc_bff=third; name=J\xc3\xb6rg").unwrap(),
        );
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"oidc_bff=\xff").unwrap(),
        );
        assert_eq!(
            request_cookies(&h, "oidc_bff").collect::<Vec<_>>(),
            ["first", "second", "third", ""]
        );
    }
}
