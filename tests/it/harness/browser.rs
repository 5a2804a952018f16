//! The test's browser: a cookie-keeping HTTP client, the walk through the
//! test IdP's sign-in forms, raw byte-for-byte exchanges and small URL and
//! cookie helpers. It starts nothing; unexpected answers panic with the page.

use regex::Regex;
use std::time::Duration;

/// A cookie-keeping HTTP client that does not follow redirects by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {} {}", resp.status(), resp.url()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Resolves a Location against the URL that answered.
pub fn resolve(base: &reqwest::Url, loc: &str) -> String {
    base.join(loc).unwrap().to_string()
}

/// Walks the whole sign-in as a browser would: `/auth/login` -> the IdP's
/// login form -> consent form -> `/auth/callback`. Returns the callback's
/// response (a redirect to `return_to`).
pub async fn sign_in(
    b: &reqwest::Client,
    gateway: &str,
    user: &str,
    return_to: &str,
) -> reqwest::Response {
    let start = format!("{gateway}/auth/login?return_to={}", urlencode(return_to));
    sign_in_from(b, &start, &format!("{gateway}/auth/callback"), user).await
}

/// Follows a sign-in from `start` (the gateway's login URL, or an authorize
/// URL already issued) through the test IdP's login and consent forms, until
/// the request to `callback`; returns the callback's answer.
pub async fn sign_in_from(
    b: &reqwest::Client,
    start: &str,
    callback: &str,
    user: &str,
) -> reqwest::Response {
    let form_re =
        Regex::new(r#"<form autocomplete="off" action="([^"]+)" method="post">"#).unwrap();
    let prompt_re =
        Regex::new(r#"<input type="hidden" name="prompt" value="(login|consent)"/>"#).unwrap();
    let mut url = start.to_string();
    let mut method_post: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let resp = match method_post.take() {
            Some(form) => b.post(&url).form(&form).send().await.unwrap(),
            None => b
                .get(&url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap(),
        };
        if url.starts_with(callback) {
            return resp;
        }
        if resp.status().is_redirection() {
            url = resolve(resp.url(), &location(&resp));
            continue;
        }
        assert_eq!(resp.status(), 200, "unexpected answer at {url}");
        let page = resp.text().await.unwrap();
        let action = form_re
            .captures(&page)
            .unwrap_or_else(|| panic!("no form at {url}: {page}"))[1]
            .to_string();
        let prompt = prompt_re.captures(&page).expect("no prompt input")[1].to_string();
        let mut form = vec![("prompt".to_string(), prompt.clone())];
        if prompt == "login" {
            form.push(("login".into(), user.into()));
            form.push(("password".into(), "any-password".into()));
        }
        url = action;
        method_post = Some(form);
    }
    panic!("sign-in did not reach the callback");
}

/// Sends `request` to the gateway byte for byte (no client library
/// normalises the target or the header names) and reads the answer to the
/// end; returns its status and text. The request should ask for
/// `Connection: close`.
pub async fn raw_exchange(gw: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = gw.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("the gateway answers within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A query parameter of a URL.
pub fn param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The value a response sets for cookie `name`.
pub fn set_cookie_value(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| rest.split(';').next().unwrap_or("").to_string())
    })
}

/// Where a callback response sends the browser: the `Location` of a redirect,
/// or the target of the same-origin landing page used with `SameSite=Strict`.
pub async fn landing_page(r: reqwest::Response) -> String {
    if r.status().is_redirection() {
        return location(&r);
    }
    assert_eq!(r.status(), 200, "callback answered {}", r.status());
    let page = r.text().await.unwrap();
    let re = regex::Regex::new(r#"<meta http-equiv="refresh" content="0;url=([^"]*)">"#).unwrap();
    let target = re
        .captures(&page)
        .unwrap_or_else(|| panic!("no landing target in {page}"))[1]
        .to_string();
    target
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
}

/// `GET url` as the SPA's fetch calls send it (with `X-CSRF`): status and
/// JSON body (`null` when the body is not JSON).
pub async fn api(b: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = b.get(url).header("x-csrf", "1").send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Asserts the browser is refused as the gateway promises a signed-out
/// user: 401 `unauthenticated` JSON for a fetch call to `{gw}{api_path}`,
/// a redirect to sign-in for a navigation to `{gw}/app/page`.
pub async fn assert_signed_out(b: &reqwest::Client, gw: &str, api_path: &str) {
    let (status, body) = api(b, &format!("{gw}{api_path}")).await;
    assert_eq!((status, &body["error"]), (401, &"unauthenticated".into()));
    let r = b
        .get(format!("{gw}/app/page"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/auth/login?return_to=%2Fapp%2Fpage");
}

/// Asserts a signed-out browser can sign in again (no loop): it lands on
/// `/app/page`, and a navigation there is served.
pub async fn assert_signs_in_again(nav: &reqwest::Client, gw: &str, user: &str) {
    let r = sign_in(nav, gw, user, "/app/page").await;
    assert_eq!(landing_page(r).await, "/app/page");
    let r = nav
        .get(format!("{gw}/app/page"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
