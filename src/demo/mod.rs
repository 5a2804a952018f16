//! The demo: parts that let oidc-bff run on one machine with no outside
//! services. [`dev_idp`] is a development identity provider shaped like AWS
//! Cognito's hosted UI; it exists for local work and tests, never production.
//! [`echo`] is an API that shows what the gateway sends upstream, and [`run`]
//! starts the whole stack for `oidc-bff demo`.

pub mod dev_idp;
pub mod echo;
pub mod run;
