//! RP-initiated logout URLs. Standard providers get OpenID Connect RP-Initiated
//! Logout 1.0 (`id_token_hint`, `post_logout_redirect_uri`, `client_id`);
//! Cognito gets its own `/logout?client_id=…&logout_uri=…`, since it rejects the
//! standard parameters and returns no `state`.

use super::metadata::LogoutStyle;

/// Where to send the browser after the local session has ended.
pub fn logout_url(
    style: &LogoutStyle,
    client_id: &str,
    id_token: Option<&str>,
    after: &str,
) -> String {
    match style {
        LogoutStyle::EndSession(endpoint) => {
            let mut url = endpoint.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(t) = id_token {
                    q.append_pair("id_token_hint", t);
                }
                q.append_pair("client_id", client_id);
                q.append_pair("post_logout_redirect_uri", after);
            }
            url.to_string()
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
        assert_eq!(
            logout_url(&std, "cid", Some("tok"), after),
            "https://idp.example.com/session/end?id_token_hint=tok&client_id=cid&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fauth%2Fsigned-out"
        );
        assert_eq!(logout_url(&LogoutStyle::None, "cid", None, after), after);
    }
}
