//! Sign-in hints a login link may carry to the IdP's hosted UI:
//! `/auth/login?idp=Google&lang=fr`.
//!
//! - `idp`: Cognito's `identity_provider` (go straight to a federated IdP such
//!   as `Google`, `Facebook`, `SignInWithApple`, `LoginWithAmazon`, a SAML or
//!   OIDC provider's name, or `COGNITO` for the pool's own form). Generic OIDC
//!   has no standard parameter for this, so there it is ignored (use
//!   `provider.extra_auth_params`, e.g. Keycloak's `kc_idp_hint`, instead).
//! - `lang`: Cognito's `lang` (hosted-UI language); for generic OIDC the
//!   standard `ui_locales` (OpenID Connect Core 1.0 §3.1.2.1).
//!
//! Both are checked against a short, safe alphabet: they end up in a URL the
//! browser is sent to, and a hint that is not a name is a mistake or an attack.

use std::collections::HashMap;

/// Longest accepted `idp` value (Cognito provider names are at most 32).
const MAX_IDP: usize = 40;
/// Longest accepted `lang` tag (BCP 47 tags in practice are far shorter).
const MAX_LANG: usize = 35;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginHints {
    pub idp: Option<String>,
    pub lang: Option<String>,
}

/// Why a hint was refused (the 400 message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHint {
    Idp,
    Lang,
}

impl BadHint {
    pub fn message(self) -> &'static str {
        match self {
            BadHint::Idp => "the idp parameter is not an identity provider name",
            BadHint::Lang => "the lang parameter is not a language tag such as \"fr\" or \"pt-BR\"",
        }
    }
}

/// A provider name: letters, digits and `.`, `_`, `-`, `:`, `@`.
pub fn valid_idp(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IDP
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b))
}

/// A language tag: 2-3 letters, then `-`-separated parts of 1-8 letters or digits.
pub fn valid_lang(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_LANG {
        return false;
    }
    let mut parts = s.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl LoginHints {
    /// The hints of a login request's query; empty values count as absent.
    pub fn from_query(params: &HashMap<String, String>) -> Result<LoginHints, BadHint> {
        let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
        let idp = get("idp");
        let lang = get("lang");
        if idp.as_deref().is_some_and(|i| !valid_idp(i)) {
            return Err(BadHint::Idp);
        }
        if lang.as_deref().is_some_and(|l| !valid_lang(l)) {
            return Err(BadHint::Lang);
        }
        Ok(LoginHints { idp, lang })
    }

    /// The authorize-request parameters these hints become.
    pub fn auth_params(&self, cognito: bool) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if cognito {
            if let Some(idp) = &self.idp {
                out.push(("identity_provider", idp.as_str()));
            }
            if let Some(lang) = &self.lang {
                out.push(("lang", lang.as_str()));
            }
        } else if let Some(lang) = &self.lang {
            out.push(("ui_locales", lang.as_str()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_tags() {
        for ok in [
            "Google",
            "SignInWithApple",
            "COGNITO",
            "corp-saml",
            "okta.prod",
            "a:b",
            "x_y",
        ] {
            assert!(valid_idp(ok), "{ok}");
        }
        for bad in ["", "Goo gle", "a/b", "a&b=c", "é", "<x>", &"a".repeat(41)] {
            assert!(!valid_idp(bad), "{bad}");
        }
        for ok in ["fr", "pt-BR", "zh-CN", "es-419", "deu"] {
            assert!(valid_lang(ok), "{ok}");
        }
        for bad in [
            "",
            "f",
            "fr_FR",
            "fr-",
            "-fr",
            "french",
            "fr-ABCDEFGHI",
            "fr;x",
            "12",
        ] {
            assert!(!valid_lang(bad), "{bad}");
        }
    }

    #[test]
    fn cognito_and_generic_parameters() {
        let h = LoginHints::from_query(&q(&[("idp", "Google"), ("lang", "fr")])).unwrap();
        assert_eq!(
            h.auth_params(true),
            [("identity_provider", "Google"), ("lang", "fr")]
        );
        assert_eq!(h.auth_params(false), [("ui_locales", "fr")]);
        assert_eq!(
            LoginHints::from_query(&q(&[("idp", "")])).unwrap(),
            LoginHints::default()
        );
        assert_eq!(
            LoginHints::from_query(&q(&[("idp", "evil&x=1")])),
            Err(BadHint::Idp)
        );
        assert_eq!(
            LoginHints::from_query(&q(&[("lang", "x")])),
            Err(BadHint::Lang)
        );
    }
}
