//! RP-initiated logout URLs. Standard providers get OpenID Connect RP-Initiated
//! Logout 1.0 (`id_token_hint`, `client_id`, `post_logout_redirect_uri`) from
//! `openidconnect`'s `LogoutRequest`; Cognito gets its own
//! `/logout?client_id=…&logout_uri=…`, built here, since it rejects the
//! standard parameters (the crate's request has no `logout_uri`) and returns
//! no `state`.

use super::id_token::IdToken;
use super::metadata::LogoutStyle;
use openidconnect::{ClientId, EndSessionUrl, LogoutRequest, PostLogoutRedirectUrl};

/// Where to send the browser after the local session has ended.
pub fn logout_url(
    style: &LogoutStyle,
    client_id: &str,
    id_token: Option<&str>,
    after: &str,
) -> String {
    match style {
        LogoutStyle::EndSession(endpoint) => {
            let mut req = LogoutRequest::from(EndSessionUrl::from_url(endpoint.clone()));
            // A stored ID token that does not parse (it always did at sign-in) goes without hint.
            if let Some(t) = id_token.and_then(|t| t.parse::<IdToken>().ok()) {
                req = req.set_id_token_hint(&t);
            }
            req = req.set_client_id(ClientId::new(client_id.to_string()));
            if let Ok(u) = PostLogoutRedirectUrl::new(after.to_string()) {
                req = req.set_post_logout_redirect_uri(u);
            }
            req.http_get_url().to_string()
        }
        LogoutStyle::Cognito(endpoint) => {
            let mut url = endpoint.clone();
            url.query_pairs_mut()
                .append_pair("client_id", client_id)
                .append_pair("logout_uri", after);
            url.to_string()
        }
        LogoutStyle::None => after.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    #[test]
    fn each_style_builds_its_url() {
        let after = "https://app.example.com/auth/signed-out";
        let cognito = LogoutStyle::Cognito(
            Url::parse("https://x.auth.eu-west-1.amazoncognito.com/logout").unwrap(),
        );
        assert_eq!(
            logout_url(&cognito, "cid", Some("tok"), after),
            "https://x.auth.eu-west-1.amazoncognito.com/logout?client_id=cid&logout_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fsigned-out"
        );
        let std =
            LogoutStyle::EndSession(Url::parse("https://idp.example.com/session/end").unwrap());
        // An ID token as the crate reads one (the signature is not checked here).
        let tok = {
            use base64::Engine;
            let b64 = |v: serde_json::Value| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            };
            let claims = serde_json::json!({"iss": "https://idp.example.com", "aud": "cid",
                "sub": "u", "exp": 2_000_000_000, "iat": 1_700_000_000});
            format!(
                "{}.{}.c2ln",
                b64(serde_json::json!({"alg": "RS256"})),
                b64(claims)
            )
        };
        assert_eq!(
            logout_url(&std, "cid", Some(&tok), after),
            format!("https://idp.example.com/session/end?id_token_hint={tok}&client_id=cid&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fsigned-out")
        );
        assert_eq!(
            logout_url(&std, "cid", Some("not-a-jwt"), after),
            "https://idp.example.com/session/end?client_id=cid&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fsigned-out",
            "no hint rather than a broken one"
        );
        assert_eq!(logout_url(&LogoutStyle::None, "cid", None, after), after);
    }

    /// Odd client ids and return URLs cannot add, drop or split parameters
    /// of either logout URL, nor move it to another host.
    #[test]
    fn odd_values_stay_one_parameter_each() {
        let after = "https://app.example.com/auth/signed-out?x=1&y=#frag";
        let styles = [
            LogoutStyle::Cognito(Url::parse("https://x.auth.example/logout").unwrap()),
            LogoutStyle::EndSession(Url::parse("https://idp.example/end?keep=1").unwrap()),
        ];
        for client_id in [
            "a&logout_uri=https://evil.example",
            "a#https://evil.example",
            "a b+c%26d",
            "é\u{0}\r\n/..",
            "",
        ] {
            for style in &styles {
                let url = Url::parse(&logout_url(style, client_id, None, after)).unwrap();
                let (LogoutStyle::Cognito(base) | LogoutStyle::EndSession(base)) = style else {
                    unreachable!()
                };
                assert_eq!(url.origin(), base.origin(), "{client_id:?}");
                assert_eq!(url.path(), base.path(), "{client_id:?}");
                assert_eq!(url.fragment(), None, "{client_id:?}");
                let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let one = |k: &str| {
                    let v: Vec<_> = pairs.iter().filter(|(n, _)| n == k).collect();
                    assert_eq!(v.len(), 1, "{k} once in {url}");
                    v[0].1.clone()
                };
                assert_eq!(one("client_id"), client_id);
                let back = match style {
                    LogoutStyle::Cognito(_) => "logout_uri",
                    _ => "post_logout_redirect_uri",
                };
                assert_eq!(one(back), after);
            }
        }
    }
}
