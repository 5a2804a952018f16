//! Shared by the benches: a session record shaped like a real sign-in at an
//! OpenID provider (RS256 ID and access tokens of the usual size, the usual
//! ID-token claims), so sealing, unsealing and memory use are measured on
//! realistic bytes.

#![allow(dead_code)] // each bench uses its own part of this module
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use oidc_bff::session::SessionData;
use serde_json::{json, Value};

/// A JWT-shaped string: real header and payload, a 2048-bit RSA signature's worth of bytes.
pub fn jwt_shaped(claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "r1b2c3d4e5f6g7h8i9j0k1"});
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode([0x5au8; 256])
    )
}

pub fn id_claims(user: &str) -> serde_json::Map<String, Value> {
    let now = oidc_bff::clock::Clock::system().now_secs();
    match json!({
        "sub": user,
        "sid": format!("sid-{user}-0123456789abcdef"),
        "email": format!("{user}@example.test"),
        "email_verified": true,
        "name": "Alice Example",
        "groups": ["admins", "staff"],
        "aud": "bff",
        "iss": "https://idp.example.test",
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// A signed-in session of `user`, as the callback stores it.
pub fn session_data(user: &str) -> SessionData {
    let now = oidc_bff::clock::Clock::system().now_secs();
    let claims = id_claims(user);
    let access = json!({
        "sub": user, "client_id": "bff", "aud": "urn:oidc-bff:api",
        "iss": "https://idp.example.test", "iat": now, "exp": now + 3600,
        "jti": "pT0a8pYq2tCq3g5t7kMR1", "scope": "api:read api:write",
    });
    SessionData {
        sub: user.to_string(),
        sid: Some(format!("sid-{user}-0123456789abcdef")),
        id_token: jwt_shaped(&Value::Object(claims.clone())),
        claims,
        access_token: jwt_shaped(&access),
        refresh_token: Some(B64.encode([7u8; 32])),
        access_expires_at: Some(now + 3600),
        scope: Some("openid email profile groups".into()),
        created_at: now,
        expires_at: now + 24 * 3600,
        last_seen: now,
        refreshed_at: None,
        user_agent: None,
    }
}
