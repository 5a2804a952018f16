//! Per-route authorization as pure decisions: what is known about the caller
//! (claims and granted scopes) against a route's policy (`allow_groups`,
//! `require_scopes`, `require_claims`), giving allow, or deny with what is
//! missing in words a user may read (a group, scope or claim *name*; never a
//! value the caller holds, never the policy's internals).
//!
//! The rules, combined with AND (each one that is configured must pass):
//! - `allow_groups`: the caller is in at least one of these groups, read from
//!   the claim `provider.groups_claim` names (`cognito:groups` for Cognito,
//!   `groups` otherwise), by the one rule of [`crate::claims::groups`]: a
//!   list of names, or a string as one name (never split).
//! - `require_scopes`: every one of these scopes was granted.
//! - `require_claims`: per claim, a string means "equals", a list means "one
//!   of"; when the caller's claim is itself a list, it must contain the value
//!   (or one of the values). Scalars compare by their text, so `true` and
//!   `"true"` are the same (Cognito's userInfo sends `email_verified` as a
//!   string), and so are `42` and `"42"`. A missing claim, `null` or an
//!   object never matches.
//!
//! What the caller's claims and scopes are (see [`session_caller`] and
//! [`bearer_caller`]): for a
//! browser session, the ID token's claims and the scopes granted at sign-in;
//! for a bearer token, the access token's claims and its `scope` / `scp`.

use crate::claims::groups;
use crate::oidc::jwt::Claims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// One `require_claims` entry: `claim = "value"` or `claim = ["a", "b"]`.
/// In the config file a boolean or an integer is taken as its text
/// (`email_verified = true` is `email_verified = "true"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRule {
    /// The claim equals this (or, for a list claim, contains it).
    Equals(String),
    /// The claim is one of these (or, for a list claim, contains one of them).
    OneOf(Vec<String>),
}

impl ClaimRule {
    fn accepts(&self, value: &str) -> bool {
        match self {
            ClaimRule::Equals(want) => want == value,
            ClaimRule::OneOf(allowed) => allowed.iter().any(|a| a == value),
        }
    }
}

impl Serialize for ClaimRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClaimRule::Equals(v) => s.serialize_str(v),
            ClaimRule::OneOf(vs) => {
                let mut seq = s.serialize_seq(Some(vs.len()))?;
                for v in vs {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

/// A scalar of the config file, as text.
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(ScalarText)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a string (the claim equals it) or a list of strings (the claim is one of them)",
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for ClaimRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = ClaimRule;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                ScalarVisitor.expecting(f)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClaimRule, E> {
                Ok(ClaimRule::Equals(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ClaimRule, E> {
                Ok(ClaimRule::Equals(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ClaimRule, E> {
                Ok(ClaimRule::Equals(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ClaimRule, E> {
                Ok(ClaimRule::Equals(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimRule, A::Error> {
                let mut out = Vec::new();
                while let Some(ScalarText(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(ClaimRule::OneOf(out))
            }
        }
        d.deserialize_any(RuleVisitor)
    }
}

/// A route's policy. Empty lists and maps impose nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    pub allow_groups: Vec<String>,
    pub require_scopes: Vec<String>,
    pub require_claims: BTreeMap<String, ClaimRule>,
}

impl RoutePolicy {
    pub fn is_empty(&self) -> bool {
        self.allow_groups.is_empty()
            && self.require_scopes.is_empty()
            && self.require_claims.is_empty()
    }
}

/// What the policy is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub claims: &'a Claims,
    /// The claim that lists the caller's groups.
    pub groups_claim: &'a str,
    pub scopes: &'a [String],
}

/// One thing a caller lacks, by name only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Membership in one of these groups.
    Group(Vec<String>),
    Scope(String),
    /// A claim that is absent or has a value the route does not accept.
    Claim(String),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Group(gs) if gs.len() == 1 => write!(f, "group {:?}", gs[0]),
            Missing::Group(gs) => {
                let names: Vec<String> = gs.iter().map(|g| format!("{g:?}")).collect();
                write!(f, "one of the groups {}", names.join(", "))
            }
            Missing::Scope(s) => write!(f, "scope {s:?}"),
            Missing::Claim(c) => write!(f, "claim {c:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { missing: Vec<Missing> },
}

impl Decision {
    /// The sentence a denied user sees (403 page or JSON `message`).
    pub fn reason(&self) -> Option<String> {
        match self {
            Decision::Allow => None,
            Decision::Deny { missing } => {
                let parts: Vec<String> = missing.iter().map(Missing::to_string).collect();
                Some(format!(
                    "You do not have access to this: it needs {}.",
                    parts.join(" and ")
                ))
            }
        }
    }
}

/// The text of a scalar claim value; `None` for null, objects and lists.
fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Scopes named in token claims: `scope` (space-separated, RFC 8693 §4.2 /
/// RFC 9068 §2.2.3) or `scp` (a list, or a space-separated string).
pub fn scopes_from_claims(claims: &Claims) -> Vec<String> {
    let split = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => split(s),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        (_, Some(Value::String(s))) => split(s),
        _ => vec![],
    }
}

fn claim_matches(value: Option<&Value>, rule: &ClaimRule) -> bool {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(scalar_text)
            .any(|v| rule.accepts(&v)),
        Some(v) => scalar_text(v).is_some_and(|v| rule.accepts(&v)),
        None => false,
    }
}

/// The decision for `caller` on a route with `policy`.
pub fn evaluate(caller: &Caller<'_>, policy: &RoutePolicy) -> Decision {
    let mut missing = Vec::new();
    if !policy.allow_groups.is_empty() {
        let have = groups(caller.claims, caller.groups_claim);
        if !policy
            .allow_groups
            .iter()
            .any(|g| have.contains(&g.as_str()))
        {
            missing.push(Missing::Group(policy.allow_groups.clone()));
        }
    }
    for scope in &policy.require_scopes {
        if !caller.scopes.iter().any(|s| s == scope) {
            missing.push(Missing::Scope(scope.clone()));
        }
    }
    for (name, rule) in &policy.require_claims {
        if !claim_matches(caller.claims.get(name), rule) {
            missing.push(Missing::Claim(name.clone()));
        }
    }
    if missing.is_empty() {
        Decision::Allow
    } else {
        Decision::Deny { missing }
    }
}

/// The payload of a JWT, *without* verifying it. Only for tokens the gateway
/// already trusts by where they came from: the session's access token was
/// handed to us by the IdP's token endpoint over TLS in exchange for our code
/// (and, with Cognito, verified at sign-in), so reading its claims needs no
/// second signature check. Never use this on a token a client presented.
pub fn trusted_jwt_payload(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

/// The claims and scopes a policy is judged against.
pub type Facts<'a> = (Cow<'a, Claims>, Vec<String>);

/// A browser session's: the ID token's claims (as stored at sign-in). When
/// the groups claim is absent there but present in the session's access
/// token (some IdPs put groups only in the access token), it is taken from
/// there. Scopes: those granted at sign-in (`granted`), else the access
/// token's `scope` / `scp`.
pub fn session_caller<'a>(
    claims: &'a Claims,
    access_token: &str,
    granted: Option<&str>,
    groups_claim: &str,
) -> Facts<'a> {
    let mut access = None;
    let mut access_claims = || {
        access
            .get_or_insert_with(|| trusted_jwt_payload(access_token))
            .clone()
    };
    let claims = if claims.contains_key(groups_claim) {
        Cow::Borrowed(claims)
    } else {
        match access_claims().and_then(|a| a.get(groups_claim).cloned()) {
            Some(g) => {
                let mut merged = claims.clone();
                merged.insert(groups_claim.to_string(), g);
                Cow::Owned(merged)
            }
            None => Cow::Borrowed(claims),
        }
    };
    let scopes = match granted {
        Some(s) => s.split_whitespace().map(str::to_string).collect(),
        None => access_claims()
            .map(|a| scopes_from_claims(&a))
            .unwrap_or_default(),
    };
    (claims, scopes)
}

/// A bearer token's: the verified access token's claims and its `scope` / `scp`.
pub fn bearer_caller(claims: &Claims) -> Facts<'_> {
    (Cow::Borrowed(claims), scopes_from_claims(claims))
}

/// Why the authorize step refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The route has a policy and the caller is anonymous.
    Anonymous,
    /// What is missing, in words a user may read.
    Missing(String),
}

/// The authorize step: `Ok` when the route has no policy or the caller meets
/// it. An anonymous caller (`None`) never meets a policy (configuration only
/// allows policies where authentication is required, so this is a second
/// line of defence).
pub fn authorize(
    policy: Option<&RoutePolicy>,
    caller: Option<Facts<'_>>,
    groups_claim: &str,
) -> Result<(), Denial> {
    let Some(policy) = policy.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let Some((claims, scopes)) = caller else {
        return Err(Denial::Anonymous);
    };
    let caller = Caller {
        claims: &claims,
        groups_claim,
        scopes: &scopes,
    };
    let decision = evaluate(&caller, policy);
    match decision.reason() {
        None => Ok(()),
        Some(reason) => {
            tracing::info!(decision = ?decision, "authorization denied");
            Err(Denial::Missing(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => m,
            _ => panic!("claims must be an object"),
        }
    }

    fn policy(toml_text: &str) -> RoutePolicy {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct P {
            #[serde(default)]
            allow_groups: Vec<String>,
            #[serde(default)]
            require_scopes: Vec<String>,
            #[serde(default)]
            require_claims: BTreeMap<String, ClaimRule>,
        }
        let p: P = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"));
        RoutePolicy {
            allow_groups: p.allow_groups,
            require_scopes: p.require_scopes,
            require_claims: p.require_claims,
        }
    }

    fn alice() -> Value {
        json!({
            "sub": "a-1",
            "cognito:groups": ["admins", "staff"],
            "groups": ["generic-admins"],
            "email_verified": "true",
            "custom:tenant": "acme",
            "custom:level": 3,
            "roles": ["reader", "writer"],
            "mfa": true,
            "address": { "country": "FR" },
            "nothing": null,
        })
    }

    /// (name, claims, groups claim, scopes, policy TOML, expected: None = allow, Some(missing))
    type Row = (
        &'static str,
        Value,
        &'static str,
        &'static [&'static str],
        &'static str,
        Option<&'static [&'static str]>,
    );

    #[test]
    fn decisions_table() {
        const CG: &str = "cognito:groups";
        let rows: Vec<Row> = vec![
            ("empty policy allows", alice(), CG, &[], "", None),
            (
                "member of the only group",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["admins"]"#,
                None,
            ),
            (
                "member of one of several groups",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["ops", "staff"]"#,
                None,
            ),
            (
                "not a member",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["ops"]"#,
                Some(&[r#"group "ops""#]),
            ),
            (
                "not a member of any",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["ops", "sre"]"#,
                Some(&[r#"one of the groups "ops", "sre""#]),
            ),
            (
                "groups claim absent",
                json!({"sub": "b"}),
                CG,
                &[],
                r#"allow_groups = ["admins"]"#,
                Some(&[r#"group "admins""#]),
            ),
            (
                "groups claim configurable",
                alice(),
                "groups",
                &[],
                r#"allow_groups = ["generic-admins"]"#,
                None,
            ),
            (
                "other groups claim is not read",
                alice(),
                "groups",
                &[],
                r#"allow_groups = ["admins"]"#,
                Some(&[r#"group "admins""#]),
            ),
            (
                "groups claim as one string",
                json!({"groups": "admins"}),
                "groups",
                &[],
                r#"allow_groups = ["admins"]"#,
                None,
            ),
            (
                "groups claim of wrong type",
                json!({"groups": 7}),
                "groups",
                &[],
                r#"allow_groups = ["7"]"#,
                Some(&[r#"group "7""#]),
            ),
            (
                "group names are case-sensitive",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["Admins"]"#,
                Some(&[r#"group "Admins""#]),
            ),
            (
                "granted scope",
                alice(),
                CG,
                &["openid", "orders:write"],
                r#"require_scopes = ["orders:write"]"#,
                None,
            ),
            (
                "every scope needed",
                alice(),
                CG,
                &["orders:read"],
                r#"require_scopes = ["orders:read", "orders:write"]"#,
                Some(&[r#"scope "orders:write""#]),
            ),
            (
                "no scopes at all",
                alice(),
                CG,
                &[],
                r#"require_scopes = ["openid"]"#,
                Some(&[r#"scope "openid""#]),
            ),
            (
                "scope is not a prefix match",
                alice(),
                CG,
                &["orders:write-all"],
                r#"require_scopes = ["orders:write"]"#,
                Some(&[r#"scope "orders:write""#]),
            ),
            (
                "claim equals",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:tenant" = "acme" }"#,
                None,
            ),
            (
                "claim differs",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:tenant" = "globex" }"#,
                Some(&[r#"claim "custom:tenant""#]),
            ),
            (
                "claim one of",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:tenant" = ["globex", "acme"] }"#,
                None,
            ),
            (
                "claim none of",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:tenant" = ["globex", "initech"] }"#,
                Some(&[r#"claim "custom:tenant""#]),
            ),
            (
                "missing claim",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:region" = "eu" }"#,
                Some(&[r#"claim "custom:region""#]),
            ),
            (
                "array claim contains",
                alice(),
                CG,
                &[],
                r#"require_claims = { roles = "writer" }"#,
                None,
            ),
            (
                "array claim lacks",
                alice(),
                CG,
                &[],
                r#"require_claims = { roles = "admin" }"#,
                Some(&[r#"claim "roles""#]),
            ),
            (
                "array claim contains one of",
                alice(),
                CG,
                &[],
                r#"require_claims = { roles = ["admin", "reader"] }"#,
                None,
            ),
            (
                "string \"true\" equals true",
                alice(),
                CG,
                &[],
                r#"require_claims = { email_verified = true }"#,
                None,
            ),
            (
                "bool true equals \"true\"",
                alice(),
                CG,
                &[],
                r#"require_claims = { mfa = "true" }"#,
                None,
            ),
            (
                "bool false is not true",
                json!({"email_verified": false}),
                CG,
                &[],
                r#"require_claims = { email_verified = true }"#,
                Some(&[r#"claim "email_verified""#]),
            ),
            (
                "number compares as text",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:level" = 3 }"#,
                None,
            ),
            (
                "number one of",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:level" = ["2", "3"] }"#,
                None,
            ),
            (
                "object claim never matches",
                alice(),
                CG,
                &[],
                r#"require_claims = { address = "FR" }"#,
                Some(&[r#"claim "address""#]),
            ),
            (
                "null claim never matches",
                alice(),
                CG,
                &[],
                r#"require_claims = { nothing = "null" }"#,
                Some(&[r#"claim "nothing""#]),
            ),
            (
                "claim values are case-sensitive",
                alice(),
                CG,
                &[],
                r#"require_claims = { "custom:tenant" = "ACME" }"#,
                Some(&[r#"claim "custom:tenant""#]),
            ),
            (
                "everything at once passes",
                alice(),
                CG,
                &["orders:write"],
                r#"allow_groups = ["admins"]
require_scopes = ["orders:write"]
require_claims = { "custom:tenant" = "acme", email_verified = "true" }"#,
                None,
            ),
            (
                "AND: every failure is named",
                json!({"sub": "b", "custom:tenant": "globex"}),
                CG,
                &["openid"],
                r#"allow_groups = ["admins"]
require_scopes = ["orders:write"]
require_claims = { "custom:tenant" = "acme" }"#,
                Some(&[
                    r#"group "admins""#,
                    r#"scope "orders:write""#,
                    r#"claim "custom:tenant""#,
                ]),
            ),
            (
                "AND: one failing rule denies",
                alice(),
                CG,
                &[],
                r#"allow_groups = ["admins"]
require_claims = { "custom:tenant" = "globex" }"#,
                Some(&[r#"claim "custom:tenant""#]),
            ),
            (
                "user without email or groups, no policy",
                json!({"sub": "bob"}),
                CG,
                &[],
                "",
                None,
            ),
        ];
        assert!(rows.len() >= 20);
        let mut failures = Vec::new();
        for (name, c, groups_claim, scopes, p, want) in &rows {
            let c = claims(c.clone());
            let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            let caller = Caller {
                claims: &c,
                groups_claim,
                scopes: &scopes,
            };
            let got = evaluate(&caller, &policy(p));
            let got_names: Option<Vec<String>> = match &got {
                Decision::Allow => None,
                Decision::Deny { missing } => Some(missing.iter().map(|m| m.to_string()).collect()),
            };
            let want_names: Option<Vec<String>> =
                want.map(|w| w.iter().map(|s| s.to_string()).collect());
            if got_names != want_names {
                failures.push(format!("{name}: want {want_names:?}, got {got_names:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn reason_names_what_is_missing_and_nothing_else() {
        let c = claims(json!({"sub": "b", "custom:tenant": "globex"}));
        let p = policy(
            r#"allow_groups = ["admins"]
require_claims = { "custom:tenant" = "acme" }"#,
        );
        let d = evaluate(
            &Caller {
                claims: &c,
                groups_claim: "cognito:groups",
                scopes: &[],
            },
            &p,
        );
        let reason = d.reason().unwrap();
        assert_eq!(
            reason,
            r#"You do not have access to this: it needs group "admins" and claim "custom:tenant"."#
        );
        assert!(
            !reason.contains("acme") && !reason.contains("globex"),
            "{reason}"
        );
        assert_eq!(Decision::Allow.reason(), None);
    }

    #[test]
    fn scopes_from_token_claims() {
        for (c, want) in [
            (
                json!({"scope": "openid email  orders:write"}),
                vec!["openid", "email", "orders:write"],
            ),
            (json!({"scp": ["a", "b", 3]}), vec!["a", "b"]),
            (json!({"scp": "a b"}), vec!["a", "b"]),
            (json!({"scope": 5}), vec![]),
            (json!({}), vec![]),
        ] {
            assert_eq!(scopes_from_claims(&claims(c.clone())), want, "{c}");
        }
    }

    #[test]
    fn claim_rules_parse_and_print() {
        let p = policy(
            r#"require_claims = { a = "x", b = ["y", "z"], c = true, d = 42, e = [1, false] }"#,
        );
        assert_eq!(p.require_claims["a"], ClaimRule::Equals("x".into()));
        assert_eq!(
            p.require_claims["b"],
            ClaimRule::OneOf(vec!["y".into(), "z".into()])
        );
        assert_eq!(p.require_claims["c"], ClaimRule::Equals("true".into()));
        assert_eq!(p.require_claims["d"], ClaimRule::Equals("42".into()));
        assert_eq!(
            p.require_claims["e"],
            ClaimRule::OneOf(vec!["1".into(), "false".into()])
        );
        let bad: Result<BTreeMap<String, ClaimRule>, _> = toml::from_str("a = { nested = 1 }");
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("a string (the claim equals it)"), "{e}");
        let text = toml::to_string(&p.require_claims).unwrap();
        assert!(
            text.contains("a = \"x\"") && text.contains("b = [\"y\", \"z\"]"),
            "{text}"
        );
    }

    /// The config keys of these rules: accepted shapes, and refusals that name the key.
    #[test]
    fn config_keys_are_validated() {
        let config = |provider_extra: &str, server_extra: &str, route: &str| {
            format!(
                "[server]\npublic_url = \"https://app.example.com\"\n{server_extra}\n\
                 [provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"bff\"\n{provider_extra}\n\
                 [session]\nkeys = [\"rKFjFOFP6sPFwG0ckYs4P92X-dRWoYVFbgJduZp0nJ8\"]\n\
                 [[route]]\npath = \"/api\"\nupstream = \"http://api:8080\"\n{route}\n"
            )
        };
        let problems = |toml: String| -> Vec<String> {
            match crate::config::load_from_str(&toml) {
                Ok(_) => vec![],
                Err(e) => e.problems().into_iter().map(|p| p.key).collect(),
            }
        };
        let c = crate::config::load_from_str(&config(
            "",
            "logout_return_to = \"/goodbye?x=1\"",
            r#"allow_groups = ["admins"]
require_scopes = ["orders:write"]
require_claims = { "custom:tenant" = "acme", email_verified = true, roles = ["a", "b"] }
login_idp = "Google""#,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.provider.groups_claim(), "groups");
        assert_eq!(
            c.routes[0].require_claims["email_verified"],
            ClaimRule::Equals("true".into())
        );
        let custom_groups = config(
            "groups_claim = \"roles\"",
            "",
            "auth = \"bearer\"\nallow_groups = [\"x\"]\naudiences = [\"api\"]",
        );
        let c = crate::config::load_from_str(&custom_groups).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.provider.groups_claim(), "roles");
        let table: &[(&str, &str, &str, &str)] = &[
            (
                "",
                "",
                "auth = \"public\"\nallow_groups = [\"admins\"]",
                "route[0].allow_groups",
            ),
            (
                "",
                "",
                "auth = \"optional\"\nrequire_claims = { a = \"b\" }",
                "route[0].require_claims",
            ),
            ("", "", "allow_groups = [\"\"]", "route[0].allow_groups"),
            (
                "",
                "",
                "require_scopes = [\"a b\"]",
                "route[0].require_scopes",
            ),
            (
                "",
                "",
                "require_claims = { roles = [] }",
                "route[0].require_claims.roles",
            ),
            (
                "",
                "",
                "require_claims = { roles = { x = 1 } }",
                "route[0].require_claims",
            ),
            ("", "", "login_idp = \"Goo gle\"", "route[0].login_idp"),
            ("groups_claim = \"\"", "", "", "provider.groups_claim"),
            (
                "",
                "logout_return_to = \"https://evil.example\"",
                "",
                "server.logout_return_to",
            ),
            (
                "",
                "logout_return_to = \"/auth/login\"",
                "",
                "server.logout_return_to",
            ),
            ("", "", "allow_group = [\"typo\"]", "route[0].allow_group"),
        ];
        for (provider, server, route, key) in table {
            let got = problems(config(provider, server, route));
            assert!(
                got.iter().any(|k| k.starts_with(key)),
                "{route}{server}{provider}: {got:?}"
            );
        }
    }

    #[test]
    fn trusted_payload_reads_only_well_formed_jwts() {
        let payload = B64.encode(br#"{"cognito:groups":["admins"],"scope":"openid"}"#);
        let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln");
        let c = trusted_jwt_payload(&token).unwrap();
        assert_eq!(groups(&c, "cognito:groups"), ["admins"]);
        for bad in [
            "opaque-token",
            "a.b",
            "a.b.c.d",
            "a.!!!.c",
            &format!("a.{}.c", B64.encode(b"[1]")),
        ] {
            assert!(trusted_jwt_payload(bad).is_none(), "{bad}");
        }
    }

    /// The shared groups table, through `allow_groups`: every name read is
    /// allowed alone, every name the table says is not there is denied.
    #[test]
    fn allow_groups_judges_the_shared_groups_table() {
        for case in crate::claims::GROUP_CASES {
            let mut c = Claims::new();
            c.insert("sub".into(), "u".into());
            c.insert("groups".into(), (case.claim)());
            let decide = |g: &str| {
                let p = RoutePolicy {
                    allow_groups: vec![g.to_string()],
                    ..RoutePolicy::default()
                };
                let facts = (Cow::Borrowed(&c), vec![]);
                authorize(Some(&p), Some(facts), "groups").is_ok()
            };
            for g in case.judged {
                assert!(decide(g), "{}: {g:?} allowed", case.name);
            }
            for g in case.not {
                assert!(!decide(g), "{}: {g:?} denied", case.name);
            }
        }
    }
}
