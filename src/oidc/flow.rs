//! The login flow's browser-bound state: PKCE (RFC 7636, S256 only), `state`
//! and `nonce`, kept in one sealed, short-lived cookie that holds several
//! pending logins (several tabs) and stays small (no cookie pile-up, no 431).
//! The values and the authorization request itself are `openidconnect`'s; the
//! cookie that carries them between login and callback is ours.

use super::client::OidcClient;
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, Scope};
use serde::{Deserialize, Serialize};
use url::Url;

/// At most this many logins may be pending in one browser at once.
pub const MAX_PENDING: usize = 5;
/// The sealed cookie value stays under this size, oldest entries dropped first.
const MAX_COOKIE_BYTES: usize = 3000;

/// One login in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingLogin {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub verifier: String,
    #[serde(rename = "r")]
    pub return_to: String,
    /// Unix seconds when the login started.
    #[serde(rename = "t")]
    pub started: i64,
}

impl PendingLogin {
    pub fn new(return_to: String, now: i64) -> Self {
        // The crate's: 256-bit random state and nonce, a 256-bit PKCE verifier.
        let (_, verifier) = PkceCodeChallenge::new_random_sha256();
        PendingLogin {
            state: CsrfToken::new_random_len(32).into_secret(),
            nonce: Nonce::new_random_len(32).secret().clone(),
            verifier: verifier.into_secret(),
            return_to,
            started: now,
        }
    }
}

/// The authorization request (OIDC Core §3.1.2.1) for `login`: code flow,
/// `scopes`, state, nonce and PKCE S256, then `extra` (`identity_provider`,
/// `lang`, `prompt`, … as configured or hinted).
pub fn authorization_url(
    client: &OidcClient,
    login: &PendingLogin,
    scopes: &[String],
    extra: &[(String, String)],
) -> Url {
    let (state, nonce) = (login.state.clone(), login.nonce.clone());
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
            &PkceCodeVerifier::new(login.verifier.clone()),
        ));
    for (k, v) in extra {
        req = req.add_extra_param(k.clone(), v.clone());
    }
    req.url().0
}

/// The pending logins of one browser.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PendingLogins(pub Vec<PendingLogin>);

impl PendingLogins {
    /// Drops logins older than `max_age` seconds.
    pub fn prune(&mut self, now: i64, max_age: i64) {
        self.0
            .retain(|p| now - p.started < max_age && p.started <= now + 60);
    }

    /// Adds a login, dropping the oldest past [`MAX_PENDING`].
    pub fn push(&mut self, login: PendingLogin) {
        self.0.push(login);
        while self.0.len() > MAX_PENDING {
            self.0.remove(0);
        }
    }

    /// Removes and returns the login with this `state` (single use).
    pub fn take(&mut self, state: &str) -> Option<PendingLogin> {
        use subtle::ConstantTimeEq;
        let i = self
            .0
            .iter()
            .position(|p| bool::from(p.state.as_bytes().ct_eq(state.as_bytes())))?;
        Some(self.0.remove(i))
    }

    /// Serializes, sealing with `seal`, shrinking until the cookie fits.
    pub fn encode(&mut self, seal: impl Fn(&[u8]) -> String) -> String {
        loop {
            let value = seal(&serde_json::to_vec(&self.0).expect("serializes"));
            if value.len() <= MAX_COOKIE_BYTES || self.0.len() <= 1 {
                return value;
            }
            self.0.remove(0);
        }
    }

    pub fn decode(plaintext: &[u8]) -> Self {
        PendingLogins(serde_json::from_slice(plaintext).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn authorization_request_carries_the_login() {
        let cfg: crate::config::ProviderConfig = toml::from_str(
            r#"client_id = "bff"
               cognito = { region = "eu-west-1", user_pool_id = "eu-west-1_A", domain = "app.auth.eu-west-1.amazoncognito.com" }"#,
        )
        .unwrap();
        crate::install_crypto_provider();
        let md = crate::oidc::metadata::resolve(&cfg, &reqwest::Client::new())
            .await
            .unwrap();
        let auth = crate::oidc::client::ClientAuth {
            client_id: "bff".into(),
            secret: None,
            method: crate::config::TokenEndpointAuth::ClientSecretBasic,
        };
        let client = auth
            .client(&md, "https://app.example/auth/callback")
            .unwrap();
        let mut login = PendingLogin::new("/".into(), 0);
        login.verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        let scopes = ["openid".to_string(), "email".to_string()];
        let extra = [("identity_provider".to_string(), "Google".to_string())];
        let url = authorization_url(&client, &login, &scopes, &extra);
        assert!(url
            .as_str()
            .starts_with("https://app.auth.eu-west-1.amazoncognito.com/oauth2/authorize?"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        // RFC 7636 appendix B.
        assert_eq!(
            q["code_challenge"],
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "bff");
        assert_eq!(q["redirect_uri"], "https://app.example/auth/callback");
        assert_eq!(q["scope"], "openid email", "openid once, as configured");
        assert_eq!(q["state"], login.state);
        assert_eq!(q["nonce"], login.nonce);
        assert_eq!(q["identity_provider"], "Google");
        assert_eq!(url.query_pairs().count(), 9, "nothing else: {url}");
        // 256 bits each, base64url.
        for v in [&login.state, &login.nonce] {
            assert_eq!(v.len(), 43);
        }
    }

    #[test]
    fn pending_logins_are_bounded_single_use_and_expire() {
        let mut p = PendingLogins::default();
        for i in 0..8 {
            p.push(PendingLogin::new(format!("/tab{i}"), 1000 + i));
        }
        assert_eq!(p.0.len(), MAX_PENDING);
        assert_eq!(p.0[0].return_to, "/tab3", "oldest dropped first");
        let state = p.0[2].state.clone();
        assert_eq!(p.take(&state).unwrap().return_to, "/tab5");
        assert!(p.take(&state).is_none(), "single use");
        p.prune(1000 + 600 + 4, 600);
        assert_eq!(
            p.0.iter().map(|l| l.return_to.as_str()).collect::<Vec<_>>(),
            ["/tab6", "/tab7"]
        );
    }

    #[test]
    fn encoded_cookie_stays_small() {
        let mut p = PendingLogins::default();
        for i in 0..MAX_PENDING {
            p.push(PendingLogin::new(
                format!("/{}", "x".repeat(1000)),
                i as i64,
            ));
        }
        let v = p.encode(|b| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        });
        assert!(v.len() <= MAX_COOKIE_BYTES, "{}", v.len());
        assert!(!p.0.is_empty());
    }
}
