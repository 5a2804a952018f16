//! What a sign-in's token response grants, checked before a session exists:
//! with Cognito, the access token is a JWT of its own kind and is verified as
//! one (`token_use = "access"`, `client_id` = ours, no `aud` needed), so an
//! ID token or another app client's token cannot stand in for it; and the
//! scopes granted, kept in the session for `require_scopes`.

use super::client::TokenResponse;
use super::jwt::{self, Claims};
use super::{OidcError, Provider};

impl Provider {
    /// Verifies a Cognito access token issued to this client at sign-in.
    pub async fn verify_own_access_token(&self, token: &str) -> Result<Claims, OidcError> {
        let md = self.metadata().await?;
        let jwks = self.jwks().await?;
        let client_id = [self.auth.client_id.clone()];
        let expect = jwt::Expect {
            issuer: md.issuer(),
            // Cognito names the app client in `client_id`; it must be this one
            // even if some `aud` happened to match.
            audience: jwt::Audience::ClientId(&client_id),
            token_use: Some("access"),
            leeway: self.leeway(),
            now: self.clock().now_secs(),
        };
        Ok(jwt::verify(&jwks, token, &expect).await?)
    }

    /// The scopes a sign-in granted, space-separated. Cognito: the verified
    /// access token's `scope` (its token response has none). Others: the token
    /// response's `scope`; else, for a JWT access token, its `scope` / `scp`
    /// (read without a second signature check: it came from the token
    /// endpoint over TLS in exchange for our code); else the scopes requested,
    /// which RFC 6749 §5.1 says is what an absent `scope` means.
    pub async fn granted_scope(
        &self,
        tokens: &TokenResponse,
        requested: &[String],
    ) -> Result<String, OidcError> {
        let md = self.metadata().await?;
        if md.is_cognito {
            let claims = self
                .verify_own_access_token(tokens.access_token_str())
                .await?;
            return Ok(crate::policy::scopes_from_claims(&claims).join(" "));
        }
        if let Some(s) = tokens.scope() {
            return Ok(s);
        }
        let from_jwt = crate::policy::trusted_jwt_payload(tokens.access_token_str())
            .map(|c| crate::policy::scopes_from_claims(&c))
            .filter(|s| !s.is_empty());
        Ok(from_jwt.unwrap_or_else(|| requested.to_vec()).join(" "))
    }
}
