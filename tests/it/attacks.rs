//! Attack round on the admin sessions API, machine tokens and session
//! revalidation: each probe an attacker (or a hostile or broken IdP) would
//! try, as a table where it fits. The ones that broke something carry the
//! fix's commit ("attack: ..."); the rest show the defence holds.

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A gateway in front of a [`RogueIdp`] with one `token = "client"` route
/// (callers authenticate with a bearer token the rogue IdP signs).
async fn machine_gateway() -> (RogueIdp, Upstream, Gateway, String) {
    let idp = RogueIdp::start().await;
    let upstream = Upstream::start(None).await;
    let reserved = reserve().await;
    let routes = format!(
        "[[route]]\npath = \"/mm/\"\nupstream = \"{}\"\nauth = \"bearer\"\ntoken = \"client\"\nclient_scopes = [\"x/y\"]\n",
        upstream.url
    );
    let toml = config_toml(&reserved.url, &idp.issuer, &routes).replace(
        "insecure_allow_http = true",
        "insecure_allow_http = true\naudiences = [\"urn:orders-api\"]",
    );
    let gw = Gateway::start(reserved, &toml).await;
    let caller = idp.key.sign(&json!({
        "iss": idp.issuer, "aud": "urn:orders-api", "sub": "client-7",
        "iat": now(), "exp": now() + 3600,
    }));
    (idp, upstream, gw, caller)
}

async fn call_mm(gw: &Gateway, caller: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/mm/x", gw.url))
        .header("authorization", format!("Bearer {caller}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `expires_in` as a hostile or broken token endpoint sends it: every answer
/// is either a usable token (200, sent upstream) or a clear 502; none makes
/// the gateway panic or wedges the grant (the next good answer is used).
#[tokio::test]
async fn machine_token_expires_in_of_any_shape() {
    for (what, expires_in, usable) in [
        ("huge", json!(u64::MAX), true),
        ("i64 max", json!(i64::MAX), true),
        ("a century", json!(3_153_600_000u64), true),
        ("zero", json!(0), true),
        ("absent", Value::Null, true),
        ("negative", json!(-5), false),
        ("a string", json!("300"), false),
        ("a float", json!(1.5), false),
    ] {
        let (idp, upstream, gw, caller) = machine_gateway().await;
        let mut answer = json!({"access_token": "machine-1", "token_type": "Bearer"});
        if !expires_in.is_null() {
            answer["expires_in"] = expires_in;
        }
        idp.answer_with(answer);
        let status = call_mm(&gw, &caller).await;
        if usable {
            assert_eq!(status, 200, "{what}");
            assert_eq!(
                upstream.last().header("authorization"),
                Some("Bearer machine-1"),
                "{what}"
            );
        } else {
            assert_eq!(status, 502, "{what}");
            assert_eq!(upstream.count(), 0, "{what}");
        }
        // Whatever happened, the grant is not wedged: past any backoff and
        // any lifetime, a good answer is fetched and used.
        gw.clock().advance(Duration::from_secs(61));
        idp.answer_with(
            json!({"access_token": "machine-2", "token_type": "Bearer", "expires_in": 300}),
        );
        let status = call_mm(&gw, &caller).await;
        assert_eq!(status, 200, "{what}: the next call");
        let sent = upstream.last().header("authorization").map(str::to_string);
        assert!(
            matches!(
                sent.as_deref(),
                Some("Bearer machine-1" | "Bearer machine-2")
            ),
            "{what}: {sent:?}"
        );
    }
}
