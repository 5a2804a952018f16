//! The development IdP's configuration: clients, users and lifetimes, read
//! from TOML (unknown keys are errors) and checked once before start.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use url::Url;

use super::DevIdpError;

/// Everything the development IdP serves. See `config/dev-idp.example.toml`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIdpConfig {
    /// Where `oidc-bff dev-idp` listens. Must be a loopback address unless
    /// `insecure_listen_any` is set.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Allows a non-loopback listen address (the `--insecure-listen-any` flag).
    #[serde(default)]
    pub insecure_listen_any: bool,
    /// The `iss` of every token. Cognito-shaped by default.
    #[serde(default = "defaults::issuer")]
    pub issuer: String,
    /// The URL browsers and the gateway reach this IdP at; default `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<Url>,
    /// `[[client]]` tables: the app clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<DevClient>,
    /// `[[user]]` tables: the users who can sign in.
    #[serde(default, rename = "user")]
    pub users: Vec<DevUser>,
    #[serde(default = "defaults::hour", with = "humantime_serde")]
    pub access_token_ttl: Duration,
    #[serde(default = "defaults::hour", with = "humantime_serde")]
    pub id_token_ttl: Duration,
    #[serde(default = "defaults::thirty_days", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// How long an authorization code can be redeemed (Cognito: 5 minutes).
    #[serde(default = "defaults::five_minutes", with = "humantime_serde")]
    pub code_ttl: Duration,
    /// How long the IdP's own sign-in (cookie `dev_idp_session`) lasts, so a
    /// second authorize skips the form like Cognito's hosted UI does.
    /// `0s` turns this single sign-on off.
    #[serde(default = "defaults::hour", with = "humantime_serde")]
    pub session_ttl: Duration,
}

/// An app client, as registered in a Cognito user pool.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevClient {
    pub client_id: String,
    /// None: a public client (no secret; PKCE is still required).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Callback URLs; the `redirect_uri` must equal one of them exactly.
    /// Needed with the `code` flow.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Sign-out URLs; `/logout`'s `logout_uri` must equal one of them exactly.
    #[serde(default)]
    pub logout_uris: Vec<String>,
    #[serde(default = "defaults::scopes")]
    pub allowed_scopes: Vec<String>,
    /// Cognito's AllowedOAuthFlows: `["code"]` (sign-in, the default) or
    /// `["client_credentials"]` (machine tokens); as at Cognito, not both.
    #[serde(default = "defaults::flows")]
    pub allowed_flows: Vec<String>,
}

impl DevClient {
    /// Whether the client may use `flow` (`code` or `client_credentials`).
    pub fn allows(&self, flow: &str) -> bool {
        self.allowed_flows.iter().any(|f| f == flow)
    }
}

/// A user of the pool.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevUser {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra claims, by their claim name (`custom:tenant`, `name`, …).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000))
    }
    pub fn issuer() -> String {
        "https://cognito-idp.local-1.amazonaws.com/local-1_devpool".into()
    }
    pub fn hour() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn thirty_days() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub fn five_minutes() -> Duration {
        Duration::from_secs(300)
    }
    pub fn flows() -> Vec<String> {
        vec!["code".into()]
    }
    pub fn scopes() -> Vec<String> {
        vec!["openid".into(), "email".into(), "profile".into()]
    }
}

/// Claims the IdP sets itself; a user attribute may not replace them.
const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "at_hash",
    "token_use",
    "client_id",
    "scope",
    "username",
    "cognito:username",
    "cognito:groups",
    "email",
    "email_verified",
    "origin_jti",
    "event_id",
    "version",
];

impl DevIdpConfig {
    /// The demo's IdP: client `demo-spa` (with a secret) for a gateway at
    /// `gateway_url`, and the users alice (group `admins`, an email, tenant
    /// `acme`) and bob (no groups and no email, so email-less users get
    /// exercised).
    pub fn demo(public_url: Option<Url>, gateway_url: &Url) -> DevIdpConfig {
        let gateway = gateway_url.as_str().trim_end_matches('/');
        DevIdpConfig {
            listen: defaults::listen(),
            insecure_listen_any: false,
            issuer: defaults::issuer(),
            public_url,
            clients: vec![
                DevClient {
                    client_id: "demo-spa".into(),
                    client_secret: Some("demo-spa-secret".into()),
                    redirect_uris: vec![format!("{gateway}/auth/callback")],
                    logout_uris: vec![format!("{gateway}/auth/signed-out")],
                    allowed_scopes: defaults::scopes(),
                    allowed_flows: defaults::flows(),
                },
                // The gateway's machine client (`token = "client"` routes):
                // Cognito allows client_credentials only on a client of its own.
                DevClient {
                    client_id: "demo-machine".into(),
                    client_secret: Some("demo-machine-secret".into()),
                    redirect_uris: vec![],
                    logout_uris: vec![],
                    allowed_scopes: vec!["echo/read".into()],
                    allowed_flows: vec!["client_credentials".into()],
                },
            ],
            users: vec![
                DevUser {
                    username: "alice".into(),
                    password: "alice-password".into(),
                    email: Some("alice@example.com".into()),
                    groups: vec!["admins".into()],
                    attributes: BTreeMap::from([("custom:tenant".into(), "acme".into())]),
                },
                DevUser {
                    username: "bob".into(),
                    password: "bob-password".into(),
                    email: None,
                    groups: vec![],
                    attributes: BTreeMap::new(),
                },
            ],
            access_token_ttl: defaults::hour(),
            id_token_ttl: defaults::hour(),
            refresh_token_ttl: defaults::thirty_days(),
            code_ttl: defaults::five_minutes(),
            session_ttl: defaults::hour(),
        }
    }

    /// Parses TOML and validates it.
    pub fn from_toml_str(text: &str) -> Result<DevIdpConfig, DevIdpError> {
        let config: DevIdpConfig =
            toml::from_str(text).map_err(|e| DevIdpError::Config(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<DevIdpConfig, DevIdpError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            DevIdpError::Config(vec![format!("{}: cannot read: {e}", path.display())])
        })?;
        DevIdpConfig::from_toml_str(&text)
    }

    /// Every problem, as `key: what is wrong`.
    pub fn validate(&self) -> Result<(), DevIdpError> {
        let mut problems = Vec::new();
        if Url::parse(&self.issuer).is_err() {
            problems.push("issuer: not an absolute URL".to_string());
        }
        if let Some(url) = &self.public_url {
            if !matches!(url.scheme(), "http" | "https")
                || url.query().is_some()
                || url.fragment().is_some()
            {
                problems.push(
                    "public_url: must be an http(s) URL without query or fragment".to_string(),
                );
            }
        }
        for (key, ttl) in [
            ("access_token_ttl", self.access_token_ttl),
            ("id_token_ttl", self.id_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("code_ttl", self.code_ttl),
        ] {
            if ttl < Duration::from_secs(1) {
                problems.push(format!("{key}: must be at least 1s"));
            }
        }
        if self.clients.is_empty() {
            problems.push("client: at least one [[client]] is needed".to_string());
        }
        let mut ids = HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let at = format!("client[{i}]");
            if c.client_id.is_empty() || !c.client_id.chars().all(|ch| ch.is_ascii_graphic()) {
                problems.push(format!("{at}.client_id: must be non-empty printable ASCII"));
            }
            if !ids.insert(c.client_id.as_str()) {
                problems.push(format!("{at}.client_id: `{}` appears twice", c.client_id));
            }
            if c.client_secret.as_deref() == Some("") {
                problems.push(format!(
                    "{at}.client_secret: empty (leave it out for a public client)"
                ));
            }
            let code = c.allows("code");
            let machine = c.allows("client_credentials");
            if let Some(f) = c
                .allowed_flows
                .iter()
                .find(|f| !matches!(f.as_str(), "code" | "client_credentials"))
            {
                problems.push(format!(
                    "{at}.allowed_flows: `{f}` is not \"code\" or \"client_credentials\""
                ));
            }
            if code == machine {
                problems.push(format!(
                    "{at}.allowed_flows: one of \"code\" and \"client_credentials\" (Cognito allows client_credentials only on a client of its own)"
                ));
            }
            if code && c.redirect_uris.is_empty() {
                problems.push(format!("{at}.redirect_uris: at least one is needed"));
            }
            if machine && c.client_secret.is_none() {
                problems.push(format!(
                    "{at}.client_secret: client_credentials needs a confidential client"
                ));
            }
            if machine {
                if let Some(s) = c.allowed_scopes.iter().find(|s| !s.contains('/')) {
                    problems.push(format!(
                        "{at}.allowed_scopes: `{s}` is no resource-server scope (`server/scope`): machine tokens carry custom scopes only"
                    ));
                }
            }
            for (key, uris) in [
                ("redirect_uris", &c.redirect_uris),
                ("logout_uris", &c.logout_uris),
            ] {
                for uri in uris {
                    match Url::parse(uri) {
                        Ok(u) if u.fragment().is_none() && !u.cannot_be_a_base() => {}
                        _ => problems.push(format!(
                            "{at}.{key}: `{uri}` is not an absolute URL without a fragment"
                        )),
                    }
                }
            }
            if c.allowed_scopes.is_empty() {
                problems.push(format!("{at}.allowed_scopes: at least one is needed"));
            }
        }
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("user[{i}]");
            if u.username.is_empty() {
                problems.push(format!("{at}.username: empty"));
            }
            if !names.insert(u.username.as_str()) {
                problems.push(format!("{at}.username: `{}` appears twice", u.username));
            }
            if u.password.is_empty() {
                problems.push(format!("{at}.password: empty"));
            }
            for key in u.attributes.keys() {
                if RESERVED_CLAIMS.contains(&key.as_str()) {
                    problems.push(format!("{at}.attributes: `{key}` is set by the IdP itself"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DevIdpError::Config(problems))
        }
    }

    pub(super) fn client(&self, client_id: &str) -> Option<&DevClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub(super) fn user(&self, username: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.username == username)
    }
}

// Debug output must never show secrets or passwords, even for a dev IdP:
// configs get pasted into issues.
impl fmt::Debug for DevIdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdpConfig")
            .field("listen", &self.listen)
            .field("insecure_listen_any", &self.insecure_listen_any)
            .field("issuer", &self.issuer)
            .field("public_url", &self.public_url.as_ref().map(Url::as_str))
            .field("clients", &self.clients)
            .field("users", &self.users)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("id_token_ttl", &self.id_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("code_ttl", &self.code_ttl)
            .field("session_ttl", &self.session_ttl)
            .finish()
    }
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("logout_uris", &self.logout_uris)
            .field("allowed_scopes", &self.allowed_scopes)
            .field("allowed_flows", &self.allowed_flows)
            .finish()
    }
}

impl fmt::Debug for DevUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevUser")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("attributes", &self.attributes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let gw = Url::parse("http://127.0.0.1:8080/").unwrap();
        let c = DevIdpConfig::demo(None, &gw);
        c.validate().unwrap();
        assert_eq!(
            c.clients[0].redirect_uris,
            ["http://127.0.0.1:8080/auth/callback"]
        );
        assert_eq!(
            c.clients[0].logout_uris,
            ["http://127.0.0.1:8080/auth/signed-out"]
        );
        assert!(c.user("bob").unwrap().email.is_none());
    }

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev-idp.example.toml");
        let c = DevIdpConfig::load(&path).unwrap();
        assert_eq!(c.code_ttl, Duration::from_secs(300));
        assert_eq!(c.user("alice").unwrap().groups, ["admins"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let typo = "[[client]]\nclient_id = \"a\"\nredirect_uris = [\"http://x/cb\"]\nredirect_uri = \"oops\"\n";
        assert!(DevIdpConfig::from_toml_str(typo).is_err());
        let bad =
            "code_ttl = \"0s\"\n[[client]]\nclient_id = \"a\"\nredirect_uris = [\"not a url\"]\n\
                   [[user]]\nusername = \"x\"\npassword = \"\"\nattributes = { sub = \"evil\" }\n";
        let Err(DevIdpError::Config(problems)) = DevIdpConfig::from_toml_str(bad) else {
            panic!("expected config errors");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let gw = Url::parse("http://127.0.0.1:8080").unwrap();
        let text = format!("{:?}", DevIdpConfig::demo(None, &gw));
        assert!(!text.contains("alice-password") && !text.contains("demo-spa-secret"));
    }
}
